"""The default model, SmolLM2-135M-Instruct (real pretrained weights, Q4_1), end to end.

ktx's logits are compared with the independent NumPy reference (tests/reference), which uses
the same dequantized weights in float64. ktx, like llama.cpp, quantizes activations to Q8_1 for
Q4_1 weights, so the two differ by that rounding alone: the test bounds the KL divergence of the
next-token distributions and requires the same top token. (With the weights converted to F32,
ktx and the reference agree to 1e-6 relative; the golden tests hold that on tiny models.)
"""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "reference"))


@pytest.fixture(scope="module")
def model_path():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "default_model.py")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(r.stderr)
    return r.stdout.strip()


def log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def test_logits_match_the_reference(model_path, ktx_bin, tmp_path):
    import deepseek_numpy

    tokens = [504, 3458, 282, 4649, 314, 2]  # "The capital of France is" + one more
    out = tmp_path / "logits.f32"
    r = subprocess.run([str(ktx_bin), "logits", "-m", model_path, "--tokens",
                        ",".join(map(str, tokens)), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = np.fromfile(out, dtype="<f4").reshape(len(tokens), -1).astype(np.float64)
    want = deepseek_numpy.forward(model_path, tokens).astype(np.float64)
    p, q = log_softmax(want), log_softmax(got)
    kld = (np.exp(p) * (p - q)).sum(axis=1)
    print("KL divergence per position:", kld)
    assert kld.max() < 0.03
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))


def test_greedy_generation_is_english(model_path, ktx_bin):
    r = subprocess.run([str(ktx_bin), "generate", "-m", model_path, "-p",
                        "The capital of France is", "-n", "8", "--temp", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    assert "decode:" in r.stderr and "tok/s" in r.stderr


def test_a_prompt_cache_reuses_the_prompt(model_path, ktx_bin, tmp_path):
    cache = tmp_path / "prompt.session"

    def generate(prompt, *extra):
        r = subprocess.run([str(ktx_bin), "generate", "-m", model_path, "-p", prompt, "-n", "8",
                            "--temp", "0", "-t", "2", *extra], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r

    prompt = "The capital of France is"
    plain = generate(prompt).stdout
    first = generate(prompt, "--prompt-cache", str(cache))
    assert first.stdout == plain and cache.exists()
    assert "0 of the prompt's" in first.stderr and "saved there" in first.stderr
    again = generate(prompt, "--prompt-cache", str(cache))
    assert again.stdout == plain
    assert "prefill: 0 tokens" in again.stderr and "saved there" not in again.stderr
    longer = prompt + " a city"
    extended = generate(longer, "--prompt-cache", str(cache))
    assert extended.stdout == generate(longer).stdout
    assert "restored from" in extended.stderr and "prefill: 2 tokens" in extended.stderr
    # A shorter prompt: the part the file shares, its last token evaluated again for logits.
    shorter = generate("The capital", "--prompt-cache", str(cache))
    assert shorter.stdout == generate("The capital").stdout
    assert "prefill: 1 tokens" in shorter.stderr

    other = tmp_path / "other.session"
    other.write_bytes(b"GGUF not really")
    r = subprocess.run([str(ktx_bin), "generate", "-m", model_path, "-p", prompt,
                        "--prompt-cache", str(other)], capture_output=True, text=True)
    assert r.returncode != 0 and "--prompt-cache" in r.stderr and str(other) in r.stderr
    assert "name another file" in r.stderr
    assert other.read_bytes() == b"GGUF not really"  # left as it was
    # A folder that cannot take the file is refused before the prompt is evaluated.
    r = subprocess.run([str(ktx_bin), "generate", "-m", model_path, "-p", prompt,
                        "--prompt-cache", str(tmp_path / "missing" / "p.session")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "cannot write in the folder" in r.stderr
    assert "prefill" not in r.stderr


def test_generation_errors_are_clear(model_path, ktx_bin, tmp_path):
    r = subprocess.run([str(ktx_bin), "generate", "-m", model_path], capture_output=True, text=True)
    assert r.returncode == 2 and "prompt" in r.stderr
    r = subprocess.run([str(ktx_bin), "generate", "-m", model_path, "-p", "x", "--top-p", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "top_p" in r.stderr
    r = subprocess.run([str(ktx_bin), "logits", "-m", model_path, "--tokens", "1,x", "-o",
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and "'x'" in r.stderr
    r = subprocess.run([str(ktx_bin), "logits", "-m", model_path, "--tokens", "99999999", "-o",
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and "vocabulary" in r.stderr


def test_chat_and_perplexity(model_path, ktx_bin, tmp_path):
    r = subprocess.run([str(ktx_bin), "chat", "-m", model_path, "--temp", "0", "-n", "24"],
                       input="What is the capital of France?\n", capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # The reply is model text, not a fixed string: a 135M model's greedy chat answer flips with
    # last-bit differences between kernel variants (float summation order changes which
    # activations round up when quantized to Q8_1). It must be a non-empty line of words.
    reply = r.stdout.strip()
    assert len(reply.split()) >= 3, reply
    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 40)
    r = subprocess.run([str(ktx_bin), "perplexity", "-m", model_path, "-f", str(text), "--ctx", "64",
                        "--chunks", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ppl = float(r.stdout.strip().splitlines()[-1].split()[1])
    # A repeated sentence becomes almost certain for a real model.
    assert 1.0 <= ppl < 3.0


def test_chat_drops_old_turns_when_the_context_fills(model_path, ktx_bin):
    # SmolLM2's template costs ~30 tokens of system prompt and ~5 a turn: three questions and
    # 16-token replies outgrow a 96-token context. The chat goes on, oldest turns dropped.
    questions = "What is the capital of France?\nName three colours.\nWhat is two plus two?\n"
    r = subprocess.run([str(ktx_bin), "chat", "-m", model_path, "--temp", "0", "-n", "16",
                        "--ctx", "96"], input=questions, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "oldest turn was dropped" in r.stderr
    assert len(r.stdout.strip().splitlines()) >= 3, r.stdout
    # A message that cannot fit even alone is refused without dropping the turns before it, and
    # the chat goes on.
    r = subprocess.run([str(ktx_bin), "chat", "-m", model_path, "--temp", "0", "-n", "4",
                        "--ctx", "128"], input="Hi.\n" + "word " * 200 + "\nHello again.\n",
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "not sent" in r.stderr and "--ctx" in r.stderr
    assert "dropped" not in r.stderr, r.stderr
    assert len(r.stdout.strip().splitlines()) >= 2, r.stdout


def test_model_commands_answer_help(ktx_bin):
    for command in ["generate", "chat", "logits", "perplexity", "inspect"]:
        r = subprocess.run([str(ktx_bin), command, "--help"], capture_output=True, text=True)
        assert r.returncode == 0, (command, r.stderr)
        assert command in r.stdout and "--backend" in r.stdout


def test_a_tokenizer_that_disagrees_with_the_vocabulary_is_refused(model_path, ktx_bin, tmp_path):
    import ktx

    # A tiny model with SmolLM2's tokenizer, then the same file with 10 more tokens in the list
    # than the embedding has rows.
    tiny = tmp_path / "tiny.gguf"
    r = subprocess.run([str(ktx_bin), "make-model", str(tiny), "--vocab-from", model_path],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    f = ktx.GGUFFile(str(tiny))
    meta = {k: (f.metadata_types[k], v) for k, v in f.metadata.items()}
    n = len(meta["tokenizer.ggml.tokens"][1])
    meta["tokenizer.ggml.tokens"] = ("ARRAY[STRING]",
                                     meta["tokenizer.ggml.tokens"][1] + [f"<x{i}>" for i in range(10)])
    if "tokenizer.ggml.token_type" in meta:
        kind, types = meta["tokenizer.ggml.token_type"]
        meta["tokenizer.ggml.token_type"] = (kind, types + [1] * 10)
    tensors = [(t, f.tensor_info(t)["type"], f.tensor_info(t)["shape"], np.array(f.raw(t)))
               for t in f.tensor_names()]
    bad = tmp_path / "bad.gguf"
    ktx.write_gguf(str(bad), meta, tensors, alignment=f.alignment)
    del f

    r = subprocess.run([str(ktx_bin), "generate", "-m", str(bad), "-p", "hello", "-n", "2"],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert f"the tokenizer has {n + 10} tokens" in r.stderr and f"vocabulary is {n}" in r.stderr
    assert r.stdout == ""  # refused before any text, not halfway through
    # Token ids still evaluate, with the reason as a warning.
    r = subprocess.run([str(ktx_bin), "logits", "-m", str(bad), "--tokens", "1,2", "-o",
                        str(tmp_path / "l.f32")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "tokenizer" in r.stderr


def test_outputs_never_overwrite_inputs(model_path, ktx_bin, tmp_path):
    import shutil

    model = tmp_path / "m.gguf"
    shutil.copy(model_path, model)
    before = model.read_bytes()
    link = tmp_path / "link.gguf"
    link.symlink_to(model)
    for args in (["logits", "-m", model, "--tokens", "1,2", "-o", model],
                 ["logits", "-m", model, "--tokens", "1,2", "-o", link],
                 ["plan", "-m", model, "--cpu-bw", "10", "--rules-out", model],
                 ["make-model", model, "--vocab-from", model],
                 ["logits", "-m", model, "--tokens", "1,2", "-o", tmp_path]):
        r = subprocess.run([str(ktx_bin), *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 2, (args, r.stderr)
        assert "is the input file" in r.stderr or "is a directory" in r.stderr, r.stderr
    assert model.read_bytes() == before
    # A write that fails says so.
    r = subprocess.run([str(ktx_bin), "logits", "-m", model, "--tokens", "1,2", "-o",
                        tmp_path / "missing" / "l.f32"], capture_output=True, text=True)
    assert r.returncode == 1 and "missing/l.f32" in r.stderr
    if pathlib.Path("/dev/full").is_char_device():
        # Written in place (never renamed over: that would replace the device), and the full
        # disk is an error, on -o and on standard output alike.
        r = subprocess.run([str(ktx_bin), "logits", "-m", model, "--tokens", "1,2", "-o",
                            "/dev/full"], capture_output=True, text=True)
        assert r.returncode == 1 and "No space left" in r.stderr, r.stderr
        assert pathlib.Path("/dev/full").is_char_device()
        with open("/dev/full", "w") as full:
            r = subprocess.run([str(ktx_bin), "inspect", model], stdout=full,
                               stderr=subprocess.PIPE, text=True)
        assert r.returncode == 1 and "No space left" in r.stderr, r.stderr
        assert "internal" not in r.stderr
    # Raw logits can go to a pipe, and to a file standard output appends to (written through
    # the descriptor, not renamed over the file).
    r = subprocess.run([str(ktx_bin), "logits", "-m", model, "--tokens", "1,2", "-o",
                        "/dev/stdout"], capture_output=True)
    assert r.returncode == 0 and len(r.stdout) == 2 * 4 * 49152  # the report goes to stderr
    log = tmp_path / "log.bin"
    log.write_bytes(b"kept")
    with open(log, "ab") as out:
        r = subprocess.run([str(ktx_bin), "logits", "-m", model, "--tokens", "1,2", "-o",
                            "/dev/stdout"], stdout=out, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    assert log.read_bytes()[:4] == b"kept" and log.stat().st_size == 4 + 2 * 4 * 49152
    # A dangling link: its target is written, the link stays a link.
    dangling = tmp_path / "dangling.f32"
    dangling.symlink_to(tmp_path / "target.f32")
    r = subprocess.run([str(ktx_bin), "logits", "-m", model, "--tokens", "1,2", "-o", dangling],
                       capture_output=True)
    assert r.returncode == 0 and dangling.is_symlink()
    assert (tmp_path / "target.f32").stat().st_size == 2 * 4 * 49152


def test_a_context_past_the_training_context_is_warned_about(ktx_bin, tmp_path):
    golden = ROOT / "tests" / "data" / "golden" / "ds2_lite.gguf"  # trained for 256 positions
    r = subprocess.run([str(ktx_bin), "logits", "-m", str(golden), "--tokens", "1,2", "--ctx",
                        "1000", "-o", str(tmp_path / "l.f32")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "--ctx 1000 is beyond the 256 positions" in r.stderr
    r = subprocess.run([str(ktx_bin), "logits", "-m", str(golden), "--tokens", "1,2", "--ctx",
                        "200", "-o", str(tmp_path / "l.f32")], capture_output=True, text=True)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
