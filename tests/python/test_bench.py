"""`ktx bench` on tiny random models: its JSON, the per-kind breakdown, the bytes it says a decoded
token reads (recomputed here from the file with the gguf package), and its argument errors."""

import json
import subprocess

import gguf
import pytest

P, N = 16, 8  # prompt and decode tokens: small, the whole file runs in a few seconds


def run(ktx_bin, *args):
    return subprocess.run([str(ktx_bin), *map(str, args)], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture(params=["tiny-deepseek2", "tiny-llama"])
def model(request, tmp_path, ktx_bin):
    path = tmp_path / f"{request.param}.gguf"
    r = run(ktx_bin, "make-model", path, "--model", request.param)
    assert r.returncode == 0, r.stderr
    return path


def bench_json(ktx_bin, path, *extra):
    r = run(ktx_bin, "bench", "-m", path, "-p", P, "-n", N, "-t", 2, "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # exactly one object: anything else on stdout fails here


def field(reader, key):
    f = reader.fields[key]
    return f.contents()


def expected_bytes_per_token(path):
    """Dense tensors in full, routed experts n_expert_used/n_expert of theirs, one embedding row
    (and the whole of token_embd again when it doubles as the output head)."""
    reader = gguf.GGUFReader(str(path))
    arch = field(reader, "general.architecture")
    n_expert = field(reader, f"{arch}.expert_count") if f"{arch}.expert_count" in reader.fields else 0
    n_used = field(reader, f"{arch}.expert_used_count") if n_expert else 0
    total = 0
    names = {t.name for t in reader.tensors}
    for t in reader.tensors:
        n = int(t.n_bytes)
        if t.name == "token_embd.weight":
            total += n // int(t.shape[1])  # one row
            if "output.weight" not in names:
                total += n
        elif "_exps." in t.name:
            total += n * n_used // n_expert
        else:
            total += n
    return total


def test_json_keys_and_breakdown(model, ktx_bin):
    doc = bench_json(ktx_bin, model, "--bandwidth", 20)
    for key in ("prefill_tok_s", "decode_tok_s", "prefill_gflop_s", "decode_gbs",
                "bytes_per_token", "weight_bytes_per_token", "kv_bytes_per_token",
                "roofline_decode_tok_s", "roofline_fraction", "decode_ms_per_token",
                "prefill_seconds", "decode_seconds"):
        assert doc[key] > 0, key
    assert doc["model"] == str(model)
    assert doc["threads"] == 2
    assert doc["n_prompt"] == P and doc["n_gen"] == N
    assert doc["isa"] in ("scalar", "avx2", "avx512vnni")
    assert isinstance(doc["onednn"], bool)
    assert doc["numa_nodes"] >= 1
    assert doc["bandwidth_gbs"] == 20 and doc["bandwidth_source"] == "given"
    assert doc["bandwidth_before_decode_gbs"] == 20 and doc["bandwidth_after_decode_gbs"] == 20
    assert doc["roofline_decode_tok_s"] == pytest.approx(20e9 / doc["bytes_per_token"])
    assert doc["roofline_fraction"] == pytest.approx(doc["decode_tok_s"] / doc["roofline_decode_tok_s"])

    # One decode step, per module kind: the calls the model's structure implies.
    reader = gguf.GGUFReader(str(model))
    arch = field(reader, "general.architecture")
    n_layer = field(reader, f"{arch}.block_count")
    kinds = doc["decode_breakdown"]
    attention = "mla_attention" if arch == "deepseek2" else "gqa_attention"
    assert kinds[attention]["calls_per_token"] == n_layer
    assert kinds["rms_norm"]["calls_per_token"] == 2 * n_layer + 1
    assert kinds["lm_head"]["calls_per_token"] == 1
    assert kinds["embedding"]["calls_per_token"] == 1
    if arch == "deepseek2":
        n_moe = n_layer - field(reader, "deepseek2.leading_dense_block_count")
        assert kinds["experts"]["calls_per_token"] == n_moe
        assert kinds["moe_gate"]["calls_per_token"] == n_moe
    for k in kinds.values():
        assert k["ms_per_token"] >= 0 and k["bytes_per_token"] > 0
    # The kinds cover the step: what is left (residual adds, logits copy) is small.
    step = doc["decode_ms_per_token"]
    kinds_ms = sum(k["ms_per_token"] for k in kinds.values())
    assert kinds_ms + doc["decode_other_ms_per_token"] == pytest.approx(step, rel=1e-6)
    assert 0.5 * step < kinds_ms <= step * (1 + 1e-9)
    assert sum(k["share"] for k in kinds.values()) == pytest.approx(kinds_ms / step, rel=1e-6)
    assert sum(k["bytes_per_token"] for k in kinds.values()) == pytest.approx(doc["bytes_per_token"])
    assert set(doc["prefill_breakdown"]) == set(kinds)


def test_batched_decode_is_reported(model, ktx_bin):
    doc = bench_json(ktx_bin, model, "--bandwidth", 20, "--batch", 3)
    assert doc["batch"] == 3
    assert doc["batch_decode_tok_s"] > 0 and doc["batch_ms_per_step"] > 0
    assert doc["batch_breakdown"]["rms_norm"] > 0
    assert "batch" not in bench_json(ktx_bin, model, "--bandwidth", 20)


def test_bytes_per_token_from_the_file(model, ktx_bin):
    doc = bench_json(ktx_bin, model, "--bandwidth", 10)
    assert doc["weight_bytes_per_token"] == expected_bytes_per_token(model)
    # KV cache: every layer's cached row per position, at the mean position a decode step sees.
    reader = gguf.GGUFReader(str(model))
    arch = field(reader, "general.architecture")
    n_layer = field(reader, f"{arch}.block_count")
    if arch == "deepseek2":
        row = field(reader, "deepseek2.attention.kv_lora_rank") + field(reader, "deepseek2.rope.dimension_count")
    else:
        head_dim = field(reader, "llama.embedding_length") // field(reader, "llama.attention.head_count")
        row = 2 * field(reader, "llama.attention.head_count_kv") * head_dim
    assert doc["kv_bytes_per_token"] == pytest.approx(4 * row * n_layer * (P + (N + 1) / 2))


def test_measured_bandwidth_and_text_output(tmp_path, ktx_bin):
    path = tmp_path / "m.gguf"
    assert run(ktx_bin, "make-model", path).returncode == 0
    doc = bench_json(ktx_bin, path)
    assert doc["bandwidth_source"] == "measured" and doc["bandwidth_gbs"] > 0.1
    # Probed before and after the decode steps; the roofline takes the larger.
    before, after = doc["bandwidth_before_decode_gbs"], doc["bandwidth_after_decode_gbs"]
    assert before > 0.1 and after > 0.1 and doc["bandwidth_gbs"] == max(before, after)
    r = run(ktx_bin, "bench", "-m", path, "-p", 4, "-n", 2, "--bandwidth", 5)
    assert r.returncode == 0, r.stderr
    for word in ("prefill", "decode", "tok/s", "roofline", "experts", "mla_attention", "other"):
        assert word in r.stdout, word


@pytest.mark.parametrize("args, message", [
    ([], "needs a model: -m"),
    (["-m", "{model}", "-p", "0"], "-p must be a whole number from 1"),
    (["-m", "{model}", "-n", "x"], "-n must be a whole number"),
    (["-m", "{model}", "--bandwidth", "-3"], "--bandwidth must be a positive number of GB/s"),
    (["-m", "{model}", "--bandwidth", "fast"], "--bandwidth must be a positive number"),
    (["-m", "{model}", "-p", "8", "-n", "4", "--ctx", "10"], "--ctx 10 is smaller than -p 8 + -n 4"),
    (["-m", "{model}", "--frobnicate"], "unknown option '--frobnicate'"),
    (["-m", "{model}", "--batch", "0"], "--batch must be a whole number from 1"),
    (["-m", "{model}", "extra"], "unexpected argument: 'extra'"),
])
def test_bad_arguments(tmp_path, ktx_bin, args, message):
    path = tmp_path / "m.gguf"
    assert run(ktx_bin, "make-model", path).returncode == 0
    r = run(ktx_bin, "bench", *[a.format(model=path) for a in args])
    assert r.returncode == 2, r.stdout
    assert r.stdout == ""
    assert message in r.stderr and r.stderr.startswith("ktx bench: error:"), r.stderr


def test_missing_model_names_the_file(tmp_path, ktx_bin):
    r = run(ktx_bin, "bench", "-m", tmp_path / "absent.gguf", "--bandwidth", 1)
    assert r.returncode == 1
    assert "absent.gguf" in r.stderr
