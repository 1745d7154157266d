"""Sessions and generation through the ktx package (and so through the C ABI): eval / decode /
logits / rewind / reset, streaming generation against one ktx_generate call, stop strings,
UTF-8 that a token cuts in half, the GIL released while computing, one thread per session.
"""

import threading
import time

import numpy as np
import pytest

import ktx


@pytest.fixture(scope="module")
def model(default_model_path):
    return ktx.Model(default_model_path, progress=False)


# --- eval, logits, rewind, reset ------------------------------------------------------------------

def test_eval_decode_and_logits(model):
    tok = model.tokenizer
    ids = tok.encode("The capital of France is")
    session = model.session(n_ctx=64)
    assert session.n_ctx == 64 and session.position == 0 and session.logits() is None
    last = session.eval(ids)
    assert last.shape == (model.n_vocab,) and last.dtype == np.float32
    assert session.position == len(ids) and session.tokens == ids
    assert tok.decode([int(last.argmax())]).strip() == "Paris"
    np.testing.assert_array_equal(session.logits(), last)
    nxt = session.decode(int(last.argmax()))
    assert session.position == len(ids) + 1 and nxt.shape == (model.n_vocab,)
    # numpy arrays of ids are taken as they are
    other = model.session()
    np.testing.assert_allclose(other.eval(np.array(ids, dtype=np.int64)), last, rtol=1e-5,
                               atol=1e-4)
    assert session.model is model


def test_rewind_and_reset(model):
    ids = model.tokenizer.encode("One two three four five six")
    session = model.session(n_ctx=32)
    full = session.eval(ids, all_logits=True)
    assert full.shape == (len(ids), model.n_vocab)
    session.rewind(3)
    assert session.position == 3 and session.tokens == ids[:3]
    assert session.logits() is None  # cleared: evaluate again to get some
    again = session.eval(ids[3:])
    np.testing.assert_allclose(again, full[-1], rtol=1e-4, atol=1e-3)
    with pytest.raises(ktx.InvalidArgumentError, match="position"):
        session.rewind(session.position + 1)
    session.reset()
    assert session.position == 0 and session.tokens == [] and session.logits() is None
    np.testing.assert_allclose(session.eval(ids), full[-1], rtol=1e-4, atol=1e-3)


def test_session_errors(model):
    session = model.session(n_ctx=8)
    with pytest.raises(ktx.InvalidArgumentError, match="vocabulary"):
        session.eval([model.n_vocab])
    with pytest.raises(ktx.InvalidArgumentError, match="context"):
        session.eval(list(range(9)))
    assert session.position == 0  # a refused call changes nothing
    with pytest.raises(TypeError):
        session.eval("text, not ids")
    with pytest.raises(ktx.InvalidArgumentError):
        session.eval([])  # nothing evaluated and no logits to return
    assert session.eval([], all_logits=True).shape == (0, model.n_vocab)


@pytest.mark.parametrize("tokens, error, words", [
    ([1.5], TypeError, ["token #0", "1.5", "float"]),
    ([1, True], TypeError, ["token #1", "True"]),
    (np.array([1.0]), TypeError, ["token #0", "float64"]),
    (np.array([[1, 2]]), TypeError, ["token #0"]),
    (None, TypeError, ["NoneType"]),
    ([2**40], ktx.InvalidArgumentError, ["token #0", str(2**40), "vocabulary"]),
    ([5, -2**33], ktx.InvalidArgumentError, ["token #1"]),
])
def test_token_ids_of_the_wrong_kind_are_named(model, tokens, error, words):
    session = model.session(n_ctx=8)
    with pytest.raises(error) as info:
        session.eval(tokens)
    for w in words:
        assert w in str(info.value)
    assert session.position == 0
    # numpy integers of any width are ids
    assert session.eval([np.int16(1), np.uint64(2)]).shape == (model.n_vocab,)


def test_a_wrong_argument_type_is_a_type_error(model):
    with pytest.raises(TypeError):
        model.session(n_ctx="big")
    with pytest.raises(TypeError):
        model.tokenizer.apply_chat_template([{"role": 1, "content": "x"}])


# --- generation -----------------------------------------------------------------------------------

def test_greedy_generation_streams_paris(model):
    session = model.session()
    generation = session.generate("The capital of France is", max_tokens=8, temperature=0)
    pieces = list(generation)
    text = "".join(pieces)
    assert "Paris" in text
    assert generation.done and generation.stop_reason == "length"
    assert generation.n_generated == 8 == len(generation.tokens)
    assert generation.text == text == model.tokenizer.decode(generation.tokens)
    assert generation.n_prompt == len(model.tokenizer.encode("The capital of France is"))
    assert generation.prefill_seconds > 0 and generation.decode_seconds > 0
    # The last sampled token is not evaluated (as ktx_generate leaves it).
    assert session.position == generation.n_prompt + 7


@pytest.mark.parametrize("kwargs", [
    dict(prompt="Once upon a time", max_tokens=40, temperature=0.9, seed=7),
    dict(prompt="List three colors:", max_tokens=30, temperature=0.7, top_k=20, top_p=0.9,
         min_p=0.02, repeat_penalty=1.3, presence_penalty=0.2, frequency_penalty=0.1, seed=11),
    dict(prompt="What is 2 + 2?", chat=True, max_tokens=60, temperature=0),
    dict(prompt=[{"role": "system", "content": "Be brief."},
                 {"role": "user", "content": "Name a planet."}], max_tokens=40, temperature=0),
    dict(prompt="Count: one, two,", max_tokens=40, temperature=0, stop=[" five", "\n"]),
])
def test_streaming_equals_one_ktx_generate_call(model, kwargs):
    kwargs = dict(kwargs)
    prompt = kwargs.pop("prompt")
    streamed_session, called_session = model.session(), model.session()
    generation = streamed_session.generate(prompt, **kwargs)
    text = "".join(generation)
    completion = called_session.complete(prompt, **kwargs)
    assert text == completion.text == str(completion)
    assert generation.tokens == completion.tokens
    assert generation.stop_reason == completion.stop_reason
    assert generation.n_prompt == completion.n_prompt
    assert streamed_session.tokens == called_session.tokens


def test_stop_strings(model):
    session = model.session()
    full = session.complete("Count: one, two,", max_tokens=30, temperature=0).text
    assert " five" in full, full  # the test needs the model to count
    cut = full.index(" five")
    for stop in (" five", [" fiv", "zzz"], ["zzz", " five,"]):
        g = model.session().generate("Count: one, two,", max_tokens=30, temperature=0, stop=stop)
        text = "".join(g)
        assert text == full[:cut], (stop, text)
        assert g.stop_reason == "stop"
    with pytest.raises(ValueError):
        model.session().generate("x", stop=[""])


def test_pieces_are_whole_characters(model):
    # Byte-level BPE cuts most emoji into several tokens: no piece may hold half a character.
    prompt = "Repeat: 🎉🚀🎉🚀 日本語\nRepeat: 🎉🚀🎉🚀 日本語\nRepeat:"
    tok = model.tokenizer
    g = model.session().generate(prompt, max_tokens=12, temperature=0)
    text = "".join(g)
    assert "\ufffd" not in text and text == tok.decode(g.tokens)
    cuts = [n for n in range(1, len(g.tokens))
            if not _valid_utf8(tok.decode_bytes(g.tokens[:n]))]
    assert cuts, "no token split a character; choose another prompt"
    # Stopping inside a character hands out its bytes, replaced, at the end: never an error.
    short = model.session().generate(prompt, max_tokens=cuts[0], temperature=0)
    out = "".join(short)
    assert out.endswith("\ufffd") and out.rstrip("\ufffd") == text[:len(out.rstrip("\ufffd"))]


def _valid_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_generation_continues_a_session(model):
    session = model.session()
    first = session.complete("The capital of France is", max_tokens=4, temperature=0)
    position = session.position
    second = session.generate(" The capital of Italy is", max_tokens=4, temperature=0)
    "".join(second)
    assert second.n_prompt == len(model.tokenizer.encode(" The capital of Italy is",
                                                         add_special=False))
    assert session.position > position and first.stop_reason == "length"
    # An empty prompt generates from the logits the session holds.
    session.eval([model.tokenizer.encode("Hello", add_special=False)[0]])
    assert session.complete([], max_tokens=2, temperature=0).n_generated == 2


def test_generation_errors(model):
    session = model.session(n_ctx=16)
    with pytest.raises(ktx.InvalidArgumentError, match="context"):
        session.generate(list(range(1, 20)))
    with pytest.raises(ktx.InvalidArgumentError, match="nothing to generate"):
        session.generate([])
    with pytest.raises(ktx.InvalidArgumentError, match="top_p"):
        session.generate("x", top_p=2.0)
    with pytest.raises(ktx.InvalidArgumentError, match="max_tokens"):
        session.generate("x", max_tokens=-1)
    with pytest.raises(TypeError):
        session.generate([1, 2], chat=True)


def test_ctrl_c_stops_complete_at_the_next_token(model):
    import os
    import signal

    # Counting to a thousand greedily: ~10 s of tokens, interrupted after 0.3 s.
    session = model.session(n_ctx=2048)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # even if ignored
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            session.complete("Count from one to one thousand: one, two, three,", max_tokens=1500,
                             temperature=0)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.perf_counter() - t0 < 3.0
    assert 0 < session.position < 1500  # what was generated before Ctrl-C stays
    session.eval([1])  # and the session goes on


def test_a_generation_notices_a_changed_session(model):
    session = model.session()
    g = session.generate("Hello", max_tokens=10, temperature=0)
    next(g)
    session.reset()
    with pytest.raises(ktx.InvalidArgumentError, match="start a new one"):
        next(g)
    g = session.generate("Hello", max_tokens=10, temperature=0)
    next(g)
    g.close()
    assert g.stop_reason == "cancelled" and list(g) == []


def test_the_context_fills(model):
    session = model.session(n_ctx=12)
    prompt = model.tokenizer.encode("Once upon a time there was")
    g = session.generate(prompt, max_tokens=100, temperature=0)
    "".join(g)
    assert g.stop_reason == "context_full" and session.position == 12


# --- threads --------------------------------------------------------------------------------------

class Ticker(threading.Thread):
    """A Python thread that wakes every millisecond to count: it needs the GIL for each tick, and
    sleeps in between, so it takes no core from the computation it watches."""

    def __init__(self):
        super().__init__(daemon=True)
        self.count = 0
        self.stop = False

    def run(self):
        while not self.stop:
            time.sleep(0.001)
            self.count += 1


def test_the_gil_is_released_while_computing(model):
    ids = (model.tokenizer.encode("The quick brown fox jumps over the lazy dog. ") * 10)[:64]
    session = model.session()
    ticker = Ticker()
    ticker.start()
    try:
        time.sleep(0.05)
        calls, before, t0 = 0, ticker.count, time.perf_counter()
        while time.perf_counter() - t0 < 0.3:
            session.reset()
            session.eval(ids)
            calls += 1
        eval_ticks = ticker.count - before
        before = ticker.count
        generation = session.generate("Hello", max_tokens=16, temperature=0)
        for _ in generation:
            pass
        generate_ticks = ticker.count - before
    finally:
        ticker.stop = True
        ticker.join()
    # Were the GIL held through each call, the ticker could tick about once per call (when the
    # caller runs Python in between); released, it ticks about once a millisecond.
    print(f"{eval_ticks} ticks during {calls} evals, {generate_ticks} during "
          f"{generation.n_generated} tokens")
    assert eval_ticks > 5 * calls + 10
    assert generate_ticks > 3 * generation.n_generated + 10


def test_a_session_refuses_a_second_thread(model):
    session = model.session()
    ids = (model.tokenizer.encode("The quick brown fox jumps over the lazy dog. ") * 10)[:64]
    started = threading.Event()
    errors = []

    def run():
        started.set()
        session.eval(ids)

    worker = threading.Thread(target=run)
    worker.start()
    started.wait()
    while worker.is_alive():
        try:
            session.position
        except ktx.InvalidArgumentError as e:
            errors.append(str(e))
            break
    worker.join()
    assert errors and "another thread" in errors[0]
    assert session.position == 64  # the worker's evaluation went through
    # Sessions of one model on two threads at once are fine.
    results = {}

    def generate(name):
        results[name] = model.session().complete("The capital of France is", max_tokens=6,
                                                 temperature=0).text

    threads = [threading.Thread(target=generate, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["a"] == results["b"] and "Paris" in results["a"]
