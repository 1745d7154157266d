"""Whole-model logits against the independent NumPy reference (tests/reference/deepseek_numpy.py).

The golden models and logits in tests/data/golden were written by tests/reference/make_goldens.py
(gguf-py writes the files, a float64 NumPy port of the DeepSeek/llama equations computes the
logits); ktx evaluates the same token ids with `ktx logits` and must agree:
- F32 models within 1e-4 of the largest logit (relative), and the manifest's absolute bounds;
- quantized models within the manifest's bounds, which allow for ktx quantizing activations to
  Q8_0/Q8_K as llama.cpp does (the reference uses the same dequantized weights in float64).
"""

import json
import pathlib
import subprocess

import numpy as np
import pytest

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "data" / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
MODELS = {m["name"]: m for m in MANIFEST["models"]}


def ktx_logits(ktx_bin, model_path, tokens, out, *extra):
    r = subprocess.run(
        [str(ktx_bin), "logits", "-m", str(model_path), "--tokens", ",".join(map(str, tokens)),
         "-o", str(out), *extra],
        capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return np.fromfile(out, dtype="<f4")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_match_reference(name, ktx_bin, tmp_path):
    m = MODELS[name]
    tokens = MANIFEST["tokens"]
    want = np.load(GOLDEN / m["logits"])
    got = ktx_logits(ktx_bin, GOLDEN / m["model"], tokens, tmp_path / "out.f32")
    got = got.reshape(want.shape)
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    rms = float(np.sqrt(np.mean(diff**2)))
    scale = float(np.max(np.abs(want)))
    print(f"{name}: max_abs {diff.max():.3g}, rms {rms:.3g}, relative {diff.max() / scale:.3g}")
    assert diff.max() <= m["tolerance"]["max_abs"], name
    assert rms <= m["tolerance"]["rms"], name
    if m["weights"] == "F32":
        assert diff.max() / scale <= 1e-4, f"{name}: relative error {diff.max() / scale:.3g}"
    # The same next-token choice everywhere the reference is not near a tie.
    top2 = np.sort(want, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * m["tolerance"]["max_abs"]
    assert np.array_equal(got.argmax(1)[clear], want.argmax(1)[clear])


def test_logits_are_independent_of_batching(ktx_bin, tmp_path):
    """Prefilling all tokens at once equals evaluating growing prefixes (causality, KV cache)."""
    m = MODELS["ds2_lite"]
    tokens = MANIFEST["tokens"]
    full = ktx_logits(ktx_bin, GOLDEN / m["model"], tokens, tmp_path / "a.f32").reshape(len(tokens), -1)
    prefix = ktx_logits(ktx_bin, GOLDEN / m["model"], tokens[:3], tmp_path / "b.f32").reshape(3, -1)
    np.testing.assert_allclose(prefix, full[:3], rtol=1e-5, atol=1e-5)


RULES = pathlib.Path(__file__).resolve().parents[2] / "rules"
TEST_RULES = GOLDEN.parent / "rules"
CPU_RULE_FILES = [RULES / "deepseek-v2-cpu.yaml", RULES / "deepseek-v3-cpu.yaml",
                  RULES / "deepseek-v2-cpu-repack.yaml", RULES / "deepseek-v3-cpu-repack.yaml",
                  TEST_RULES / "cpu-mla-never-absorb.yaml", TEST_RULES / "cpu-mla-always-absorb.yaml"]


@pytest.mark.parametrize("rules", CPU_RULE_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("name", ["ds2_lite", "ds2_v2", "ds2_v3", "ds2_lite_mla", "ds2_lite_q4_k"])
def test_every_cpu_rule_file_gives_the_same_logits(name, rules, ktx_bin, tmp_path):
    m = MODELS[name]
    tokens = MANIFEST["tokens"]
    default = ktx_logits(ktx_bin, GOLDEN / m["model"], tokens, tmp_path / "a.f32")
    ruled = ktx_logits(ktx_bin, GOLDEN / m["model"], tokens, tmp_path / "b.f32", "--rules", str(rules))
    # Absorbed and decompressed MLA differ only in float rounding, and so do the row tiles'
    # Q5_0/Q8_0 sums (the reference's order) and the file-layout kernels' (another order).
    np.testing.assert_allclose(ruled, default, rtol=0, atol=2e-5 * np.abs(default).max())
