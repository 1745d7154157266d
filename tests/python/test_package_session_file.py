"""Session files, forks and batched decode steps through the ktx package (and so through the C
ABI).

A saved file is read back with the gguf package, which ktx did not write: it holds the session's
tokens and logits, and the cache rows that the NumPy reference (tests/reference/deepseek_numpy.py,
written from the papers) computes — MLA's latent c_kv and rotary k_pe, llama's K and V. A restored
or forked session continues exactly as the original; foreign, damaged and ill-fitting files are
refused by name.
"""

import pathlib
import sys

import gguf
import numpy as np
import pytest

import ktx

HERE = pathlib.Path(__file__).resolve().parent
GOLDEN = HERE.parent / "data" / "golden"
sys.path.insert(0, str(HERE.parent / "reference"))
import deepseek_numpy as ref  # noqa: E402

TOKENS = [1, 17, 42, 60, 5, 17, 33]


@pytest.fixture(scope="module")
def model(default_model_path):
    return ktx.Model(default_model_path, progress=False)


def read_session(path):
    """The file through the gguf package: metadata values and tensors in NumPy order."""
    reader = gguf.GGUFReader(str(path))
    meta = {k: f.contents() for k, f in reader.fields.items()}
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    return meta, tensors


@pytest.mark.parametrize("name", ["ds2_lite", "ds2_v3", "llama_gqa"])
def test_the_file_holds_the_reference_cache(name, tmp_path):
    path = GOLDEN / f"{name}.gguf"
    session = ktx.Model(path, threads=2, progress=False).session(n_ctx=16)
    logits = session.eval(TOKENS)
    session.save(tmp_path / "s.session")
    meta, tensors = read_session(tmp_path / "s.session")

    assert meta["general.type"] == "ktx.session"
    assert meta["ktx.session.version"] == 1
    assert meta["ktx.session.n_ctx"] == 16
    assert len(meta["ktx.session.checksums"]) == len(tensors)
    np.testing.assert_array_equal(tensors["tokens"], np.array(TOKENS, dtype=np.int32))
    np.testing.assert_array_equal(tensors["logits"], logits)

    m = ref.GGUFModel(path)
    want = []
    ref.forward(m, TOKENS, kv_cache=want)
    names = (("cache_kv_latent", "cache_k_pe") if m.arch == "deepseek2"
             else ("cache_k", "cache_v"))
    assert len(tensors) == 2 + 2 * len(want)
    for il, pair in enumerate(want):
        for tensor_name, values in zip(names, pair):
            got = tensors[f"blk.{il}.{tensor_name}"]
            assert got.dtype == np.float32 and got.shape == values.shape, tensor_name
            scale = max(1.0, float(np.abs(values).max()))
            assert np.abs(got - values).max() <= 1e-4 * scale, f"blk.{il}.{tensor_name}"


def test_restored_and_forked_sessions_continue_exactly(model, tmp_path):
    prompt = model.tokenizer.encode("The capital of France is")
    original = model.session(n_ctx=64)
    original.eval(prompt)
    original.save(tmp_path / "prompt.session")  # a PathLike
    fork = original.fork()
    bigger = original.fork(n_ctx=128)
    assert (fork.n_ctx, bigger.n_ctx, fork.position) == (64, 128, len(prompt))

    restored = model.session(n_ctx=32)
    restored.eval(model.tokenizer.encode("Something else entirely"))
    restored.load(str(tmp_path / "prompt.session"))
    assert restored.tokens == prompt and restored.n_ctx == 32
    np.testing.assert_array_equal(restored.logits(), original.logits())

    want = original.complete([], max_tokens=8).text
    assert "Paris" in want
    for other in (fork, bigger, restored):
        assert other.complete([], max_tokens=8).text == want
    # The fork kept its own cache: the original went on without it.
    assert fork.position == original.position


def test_session_files_are_refused_clearly(model, tmp_path):
    session = model.session(n_ctx=16)
    session.eval([1, 2, 3, 4])
    good = tmp_path / "good.session"
    session.save(good)

    small = model.session(n_ctx=3)
    with pytest.raises(ktx.InvalidArgumentError, match="holds 4 tokens, more than this session's "
                                                       "context of 3"):
        small.load(good)
    assert small.position == 0

    other = ktx.Model(GOLDEN / "ds2_lite.gguf", threads=2, progress=False).session(n_ctx=16)
    other.eval([1, 2])
    with pytest.raises(ktx.InvalidArgumentError, match="saved from another model"):
        other.load(good)
    assert other.tokens == [1, 2]
    with pytest.raises(ktx.InvalidFileError, match="not a ktx session file"):
        other.load(GOLDEN / "ds2_lite.gguf")
    with pytest.raises(ktx.InvalidFileError, match="a ktx session file"):
        ktx.Model(good, progress=False)

    damaged = tmp_path / "damaged.session"
    data = bytearray(good.read_bytes())
    data[-5] ^= 0x01  # inside the last cache tensor
    damaged.write_bytes(bytes(data))
    with pytest.raises(ktx.InvalidFileError, match="does not match its checksum"):
        session.load(damaged)
    assert session.tokens == [1, 2, 3, 4]

    with pytest.raises(ktx.InvalidArgumentError, match="the session file"):
        session.save(model.path)
    with pytest.raises(ktx.InvalidArgumentError, match="cannot fork into a context of 2"):
        session.fork(n_ctx=2)
    with pytest.raises(TypeError):
        session.save(3)
    with pytest.raises(ValueError, match="null byte"):
        session.save(str(tmp_path / "a\0b.session"))
    assert not (tmp_path / "a").exists()


def test_decode_batch_equals_each_sessions_own_step(model):
    prompts = ["The capital of France is", "One, two, three,", "Hello"]
    sessions = [model.session(n_ctx=32) for _ in prompts]
    alone = []
    for s, p in zip(sessions, prompts):
        s.eval(model.tokenizer.encode(p))
        alone.append(s.fork())
    for _ in range(3):
        tokens = [int(s.logits().argmax()) for s in sessions]
        logits = ktx.decode_batch(sessions, np.array(tokens))
        assert logits.shape == (3, model.n_vocab) and logits.dtype == np.float32
        for i, (s, a) in enumerate(zip(sessions, alone)):
            want = a.decode(tokens[i])
            np.testing.assert_allclose(logits[i], want, rtol=1e-4, atol=2e-3)
            np.testing.assert_array_equal(s.logits(), logits[i])
            assert s.tokens == a.tokens
    assert "Paris" in model.tokenizer.decode(sessions[0].tokens)

    with pytest.raises(ktx.InvalidArgumentError, match="2 sessions but 1 tokens"):
        ktx.decode_batch(sessions[:2], [1])
    with pytest.raises(ktx.InvalidArgumentError, match="session #1 is session #0 again"):
        ktx.decode_batch([sessions[0], sessions[0]], [1, 2])
    other = ktx.Model(GOLDEN / "ds2_lite.gguf", threads=2, progress=False).session(n_ctx=8)
    with pytest.raises(ktx.InvalidArgumentError, match="session #1 is of another model"):
        ktx.decode_batch([sessions[0], other], [1, 2])
    with pytest.raises(ktx.InvalidArgumentError, match="session #0: token #0"):
        ktx.decode_batch([sessions[0]], [model.n_vocab])
    with pytest.raises(TypeError):
        ktx.decode_batch([sessions[0], None], [1, 2])
    assert [s.position for s in sessions] == [a.position for a in alone]
    assert ktx.decode_batch([], []).shape == (0, 0)

