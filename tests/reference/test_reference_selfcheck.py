"""Sanity checks of the NumPy reference itself (not of ktx): identities that must hold if the
reference is right, so a silly bug in it cannot quietly become the golden truth.

    python -m pytest -q tests/reference
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import deepseek_numpy as ref  # noqa: E402
import make_goldens  # noqa: E402
import make_tiny_models as tiny  # noqa: E402

GOLDEN = make_goldens.DEFAULT_OUT
TOKENS = make_goldens.TOKENS


@pytest.fixture
def rng(request):
    seed = secrets.randbits(32)
    print(f"{request.node.name}: seed {seed}")
    return np.random.default_rng(seed)


def spec(name):
    return next(s for s in tiny.SPECS if s.name == name)


def golden_model(name) -> ref.GGUFModel:
    return ref.GGUFModel(GOLDEN / f"{name}.gguf")


# ----------------------------------------------------------------------------------------------
# MLA: absorbed == naive, kv_b == k_b/v_b
# ----------------------------------------------------------------------------------------------

def mla_attention_absorbed(p: ref.MlaPieces, kq_scale: float) -> np.ndarray:
    """The inference-time form (DeepSeek-V2 paper, sec. 2.1.2/2.1.3): fold W_UK into the query
    and W_UV after the attention average, attend over the shared latent c_kv and k_pe."""
    T = p.q_nope.shape[0]
    q_lat = np.einsum("thd,hdc->thc", p.q_nope, p.w_uk)             # [T, H, kv_lora]
    scores = (np.einsum("thc,sc->hts", q_lat, p.c_kv)
              + np.einsum("thr,sr->hts", p.q_pe, p.k_pe)) * kq_scale
    scores = np.where(np.triu(np.ones((T, T), bool), 1)[None], -np.inf, scores)
    probs = ref.softmax(scores, -1)
    o_lat = np.einsum("hts,sc->thc", probs, p.c_kv)                  # [T, H, kv_lora]
    o = np.einsum("thc,hvc->thv", o_lat, p.w_uv)                     # [T, H, v]
    return o.reshape(T, -1) @ p.w_o.T


@pytest.mark.parametrize("name", ["ds2_lite", "ds2_v3", "ds2_lite_yarn", "ds2_lite_mla"])
def test_absorbed_mla_equals_naive(name, rng):
    m = golden_model(name)
    cfg = ref.deepseek_config(m)
    T = 9
    for il in range(cfg.n_layer):
        x = rng.standard_normal((T, cfg.n_embd))
        # positions far from 0 so the rotary part matters
        p = ref.mla_pieces(m, cfg, il, x, np.arange(T) + int(rng.integers(0, 500)))
        naive = ref.mla_attention_naive(p, cfg.kq_scale)
        absorbed = mla_attention_absorbed(p, cfg.kq_scale)
        np.testing.assert_allclose(absorbed, naive, rtol=1e-10, atol=1e-12)


def test_kv_b_split_matches_mla_flavour(tmp_path):
    """The attn_k_b/attn_v_b file gives the same logits as the same weights stored as attn_kv_b,
    and its tensors/keys have the shapes llama.cpp's converter writes."""
    s = spec("ds2_lite_mla")
    twin = tiny.build(replace(s, name="kvb_twin", mla_split=False), tmp_path)
    np.testing.assert_allclose(ref.forward(GOLDEN / "ds2_lite_mla.gguf", TOKENS),
                               ref.forward(twin.path, TOKENS), rtol=0, atol=1e-6)

    m = golden_model("ds2_lite_mla")
    H, nope, rope, v, r = s.n_head, s.qk_nope, s.qk_rope, s.v_head, s.kv_lora_rank
    assert m.ne("blk.0.attn_k_b.weight") == (nope, r, H)
    assert m.ne("blk.0.attn_v_b.weight") == (r, v, H)
    assert not m.has("blk.0.attn_kv_b.weight")
    assert m.key("attention.head_count_kv") == 1
    assert m.key("attention.key_length") == r + rope
    assert m.key("attention.value_length") == r
    assert m.key("attention.key_length_mla") == nope + rope
    assert m.key("attention.value_length_mla") == v
    old = ref.GGUFModel(twin.path)
    assert old.ne("blk.0.attn_kv_b.weight") == (r, H * (nope + v))
    assert old.key("attention.head_count_kv") == H


# ----------------------------------------------------------------------------------------------
# Quantized twins
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("f32,q8", [("ds2_lite", "ds2_lite_q8_0"), ("ds2_v3", "ds2_v3_q8_0")])
def test_q8_0_logits_close_to_f32(f32, q8):
    a = np.load(GOLDEN / f"{f32}.logits.npy")
    b = np.load(GOLDEN / f"{q8}.logits.npy")
    diff = np.abs(a - b)
    assert diff.max() > 0, "quantized twin produced identical logits: was anything quantized?"
    assert diff.max() < 0.15 and np.sqrt(np.mean(diff ** 2)) < 0.05, diff.max()
    assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.7


def test_q4_k_bytes_decode_to_the_intended_weights():
    """The Q4_K bytes (made by ktx.quantize) decode with gguf.quants to within Q4_K's error of
    the float weights the spec draws: guards against mislaid rows or a wrong block layout."""
    s = spec("ds2_lite_q4_k")
    m = golden_model(s.name)
    floats = tiny.deepseek_tensors(s)
    seen = set()
    for name, w in floats.items():
        got = m.tensor(name)
        assert got.shape == w.shape, name
        t = m.tensor_type(name).name
        seen.add(t)
        err = np.sqrt(np.mean((got - w) ** 2)) / np.sqrt(np.mean(w.astype(np.float64) ** 2))
        limit = {"F32": 0.0, "Q8_0": 0.01, "Q4_K": 0.12}[t]
        assert err <= limit, f"{name} ({t}): relative rms error {err:.3g}"
    assert {"F32", "Q8_0", "Q4_K"} <= seen


# ----------------------------------------------------------------------------------------------
# Routing
# ----------------------------------------------------------------------------------------------

def brute_force_route(scores, bias, cfg):
    """Straightforward per-token restatement of group-limited top-k, for comparison."""
    E, G = scores.shape[-1], cfg.n_group
    per = E // G
    sel = scores + (bias if bias is not None else 0.0)
    groups = [list(range(g * per, (g + 1) * per)) for g in range(G)]
    if cfg.group_score == "max":
        gscore = [max(sel[i] for i in grp) for grp in groups]
    else:
        gscore = [sum(sorted(sel[i] for i in grp)[-2:]) for grp in groups]
    kept = sorted(range(G), key=lambda g: -gscore[g])[:cfg.n_group_used]
    allowed = [i for g in kept for i in groups[g]]
    chosen = sorted(allowed, key=lambda i: -sel[i])[:cfg.n_expert_used]
    w = np.array([scores[i] for i in chosen])
    if cfg.weights_norm:
        w = w / max(w.sum(), ref.EXPERT_WEIGHT_SUM_MIN)
    return chosen, set(kept), w * cfg.weights_scale


@pytest.mark.parametrize("name", ["ds2_v2", "ds2_v3"])
def test_group_routing_picks_from_kept_groups_only(name, rng):
    cfg = ref.deepseek_config(golden_model(name))
    per = cfg.n_expert // cfg.n_group
    T = 64
    logits = rng.standard_normal((T, cfg.n_expert)) * 2
    bias = rng.standard_normal(cfg.n_expert) * 0.2 if cfg.gating == ref.GATING_SIGMOID else None
    ids, w, info = ref.route_experts(logits, cfg, bias)
    scores = ref.softmax(logits) if cfg.gating == ref.GATING_SOFTMAX else ref.sigmoid(logits)
    for t in range(T):
        kept = set(info["kept_groups"][t].tolist())
        assert len(kept) == cfg.n_group_used
        assert all(e // per in kept for e in ids[t]), (ids[t], kept)
        chosen, kept_bf, w_bf = brute_force_route(scores[t], bias, cfg)
        assert kept == kept_bf
        assert ids[t].tolist() == chosen
        np.testing.assert_allclose(w[t], w_bf, rtol=1e-12)


def test_v2_and_v3_group_rules_differ_on_the_v2_golden():
    """ds2_v2 is built so the two rules disagree; otherwise its golden could not tell them apart."""
    default = ref.forward(GOLDEN / "ds2_v2.gguf", TOKENS)
    llama_cpp_rule = ref.forward(GOLDEN / "ds2_v2.gguf", TOKENS, group_score="top2sum")
    assert np.abs(default - llama_cpp_rule).max() > 0.05


def test_probs_bias_steers_selection_but_not_weights():
    cfg = ref.deepseek_config(golden_model("ds2_v3"))
    cfg = replace(cfg, n_group=1, n_group_used=1, weights_norm=False, weights_scale=1.0)
    logits = np.array([[2.0, 1.9, 1.8, -1.0] + [-3.0] * (cfg.n_expert - 4)])
    bias = np.zeros(cfg.n_expert)
    bias[3] = 2.0   # expert 3 has a poor score but a large selection bias
    ids, w, _ = ref.route_experts(logits, cfg, bias)
    assert 3 in ids[0].tolist()
    np.testing.assert_allclose(w[0], ref.sigmoid(logits[0, ids[0]]), rtol=1e-12)


def test_expert_weights_norm_and_scale(rng):
    cfg = ref.deepseek_config(golden_model("ds2_v3"))
    ids, w, _ = ref.route_experts(rng.standard_normal((5, cfg.n_expert)), cfg, None)
    np.testing.assert_allclose(w.sum(-1), cfg.weights_scale, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# RoPE / YaRN
# ----------------------------------------------------------------------------------------------

def test_yarn_with_factor_1_is_plain_rope(rng):
    pos = rng.integers(0, 100000, size=32)
    plain = ref.RopeParams(n_rot=64, freq_base=10000.0)
    yarn = replace(plain, scaling="yarn", factor=1.0, n_ctx_orig=4096, mscale_all_dim=0.707)
    np.testing.assert_allclose(yarn.angles(pos), plain.angles(pos), rtol=1e-15)
    assert yarn.attention_mscale() == 1.0 and yarn.rotation_magnitude() == 1.0


def test_yarn_ramp_endpoints_and_scales():
    p = ref.RopeParams(n_rot=64, freq_base=10000.0, scaling="yarn", factor=40.0,
                       n_ctx_orig=4096, mscale_all_dim=0.707)
    low, high = p.corr_dims()
    # DeepSeek-V2's numbers (rope 64, base 1e4, 4096 ctx, beta 32/1): pairs <= low keep the
    # original frequency, pairs >= high are fully interpolated (divided by the factor)
    assert (low, high) == (10.0, 23.0)
    th_plain = ref.RopeParams(n_rot=64).angles(np.array([1000]))[0]
    th = p.angles(np.array([1000]))[0]
    np.testing.assert_allclose(th[: int(low) + 1], th_plain[: int(low) + 1], rtol=1e-15)
    np.testing.assert_allclose(th[int(high):], th_plain[int(high):] / 40.0, rtol=1e-15)
    assert math.isclose(p.attention_mscale(), 1 + 0.1 * 0.707 * math.log(40.0))
    assert p.rotation_magnitude() == 1.0


def test_yarn_metadata_roundtrip():
    m = golden_model("ds2_lite_yarn")
    cfg = ref.deepseek_config(m)
    assert cfg.rope.scaling == "yarn" and cfg.rope.factor == 4.0 and cfg.rope.n_ctx_orig == 64
    assert math.isclose(cfg.rope.mscale_all_dim, 0.707, rel_tol=1e-6)
    mscale = 1 + 0.1 * 0.707 * math.log(4.0)
    assert math.isclose(cfg.kq_scale, mscale ** 2 / math.sqrt(16 + 8), rel_tol=1e-6)


def rotate_half_rope(x, theta):
    """HF Llama's rope: pairs (i, i + d/2), cos/sin repeated over both halves."""
    half = x.shape[-1] // 2
    cos = np.concatenate([np.cos(theta)] * 2, -1)[:, None, :]
    sin = np.concatenate([np.sin(theta)] * 2, -1)[:, None, :]
    rot = np.concatenate([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin


def test_llama_gguf_permutation_makes_norm_rope_equal_hf_rope(rng):
    """llama.cpp's converter reorders each head's Q/K rows (i, i+d/2) -> (2i, 2i+1) so that
    NORM rope on the GGUF weights gives the same scores as HF's rotate_half on the originals."""
    H, d, n_embd, T = 4, 8, 32, 6
    w_hf = rng.standard_normal((H * d, n_embd))
    # GGUF row 2i+j of a head holds HF row j*d/2 + i
    w_gguf = w_hf.reshape(H, 2, d // 2, n_embd).swapaxes(1, 2).reshape(H * d, n_embd)
    x = rng.standard_normal((T, n_embd))
    theta = ref.RopeParams(n_rot=d).angles(np.arange(T) + 7)
    q_hf = rotate_half_rope((x @ w_hf.T).reshape(T, H, d), theta)
    q_gg = ref.apply_rope((x @ w_gguf.T).reshape(T, H, d), theta)
    s_hf = np.einsum("thd,shd->hts", q_hf, q_hf)
    s_gg = np.einsum("thd,shd->hts", q_gg, q_gg)
    np.testing.assert_allclose(s_gg, s_hf, rtol=1e-12, atol=1e-12)


def test_deepseek_hf_rope_equals_norm_rope_without_permutation(rng):
    """DeepSeek's HF code de-interleaves q_pe/k_pe ((2i, 2i+1) -> (i, i+d/2)) before
    rotate_half, which is NORM rope up to a shared reordering: scores agree, so the converter
    needs no permutation (and does none)."""
    T, H, d = 7, 3, 8
    theta = ref.RopeParams(n_rot=d).angles(np.arange(T) + 3)
    q = rng.standard_normal((T, H, d))
    k = rng.standard_normal((T, 1, d))

    def hf(x):
        deint = x.reshape(*x.shape[:-1], d // 2, 2).swapaxes(-1, -2).reshape(x.shape)
        return rotate_half_rope(deint, theta)

    s_hf = np.einsum("thd,sd->hts", hf(q), hf(k)[:, 0])
    s_ref = np.einsum("thd,sd->hts", ref.apply_rope(q, theta), ref.apply_rope(k, theta)[:, 0])
    np.testing.assert_allclose(s_ref, s_hf, rtol=1e-12, atol=1e-12)


def test_rope_is_a_rotation(rng):
    x = rng.standard_normal((5, 2, 8))
    th = ref.RopeParams(n_rot=8).angles(np.arange(5))
    y = ref.apply_rope(x, th)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(y[0], x[0])  # position 0 is the identity


# ----------------------------------------------------------------------------------------------
# Goldens
# ----------------------------------------------------------------------------------------------

def test_goldens_match_reference_and_manifest():
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    assert manifest["tokens"] == TOKENS
    total = 0
    for entry in manifest["models"]:
        for fname, digest in entry["sha256"].items():
            data = (GOLDEN / fname).read_bytes()
            total += len(data)
            assert hashlib.sha256(data).hexdigest() == digest, fname
        logits = ref.forward(GOLDEN / entry["model"], TOKENS)
        golden = np.load(GOLDEN / entry["logits"])
        assert golden.dtype == np.float32 and golden.shape == (len(TOKENS), logits.shape[1])
        np.testing.assert_array_equal(logits, golden)
        assert 0.5 < float(golden.std()) < 2.0, entry["name"]   # non-degenerate activations
        if "min_routing_margin" in entry:
            assert entry["min_routing_margin"] >= make_goldens.MIN_ROUTING_MARGIN
    assert total < 2_000_000


def test_tiny_models_regenerate_identically(tmp_path):
    for s in tiny.SPECS:
        if getattr(s, "quant", "F32") == "Q4_K_MIX":
            continue  # needs ktx.quantize; see test_q4_k_bytes_decode_to_the_intended_weights
        b = tiny.build(s, tmp_path)
        assert b.path.read_bytes() == (GOLDEN / f"{s.name}.gguf").read_bytes(), s.name
