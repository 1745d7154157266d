"""Independent float64 NumPy forward pass for `deepseek2` and `llama` GGUF files.

This is the yardstick ktx's whole-model outputs are checked against. It shares no code with
ktx: weights are read with the `gguf` PyPI package and dequantized with `gguf.quants`, and every
formula was written from the DeepSeek-V2/V3 papers and the Hugging Face / llama.cpp sources
(see docs/REFERENCE-MODEL.md for the formulas and where each comes from).

Public entry point:

    logits = forward(gguf_path, token_ids)   # np.ndarray [n_tokens, n_vocab], float32

Attention is computed in the plain multi-head form (latent expanded per head through
W_UK / W_UV); ktx's absorbed kernels are tested against this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import gguf
import numpy as np

# llama.cpp clamps the sum of the selected expert weights from below before dividing by it
# (build_moe_ffn, expert_weights_norm); HF adds 1e-20 instead. The two only differ when the
# weights are all ~0, which the goldens avoid; we follow the GGUF runtime.
EXPERT_WEIGHT_SUM_MIN = 6.103515625e-5

GATING_SOFTMAX = 1
GATING_SIGMOID = 2


# ----------------------------------------------------------------------------------------------
# GGUF access
# ----------------------------------------------------------------------------------------------

class GGUFModel:
    """Metadata and dequantized float64 tensors of one GGUF file.

    Tensors are returned in NumPy order, i.e. with GGUF's ne[] reversed: a GGUF matrix with
    ne = [n_in, n_out] comes back as shape (n_out, n_in), the orientation of a torch Linear
    weight, so y = W @ x.
    """

    def __init__(self, path: str):
        self.path = str(path)
        reader = gguf.GGUFReader(self.path)
        self.meta: dict[str, Any] = {}
        for key, fld in reader.fields.items():
            self.meta[key] = fld.contents()
        self._raw = {t.name: t for t in reader.tensors}
        self._cache: dict[str, np.ndarray] = {}
        self.arch: str = self.meta["general.architecture"]

    def has(self, name: str) -> bool:
        return name in self._raw

    def tensor_type(self, name: str) -> gguf.GGMLQuantizationType:
        return self._raw[name].tensor_type

    def tensor_names(self) -> list[str]:
        return list(self._raw)

    def ne(self, name: str) -> tuple[int, ...]:
        return tuple(int(x) for x in self._raw[name].shape)

    def tensor(self, name: str) -> np.ndarray:
        if name not in self._cache:
            if name not in self._raw:
                raise KeyError(f"{self.path}: tensor '{name}' not found")
            t = self._raw[name]
            values = gguf.quants.dequantize(t.data, t.tensor_type)
            expected = tuple(int(x) for x in reversed(t.shape))
            values = np.asarray(values, dtype=np.float64).reshape(expected)
            self._cache[name] = values
        return self._cache[name]

    def key(self, suffix: str, default: Any = KeyError) -> Any:
        """Architecture-scoped key, e.g. key('block_count') -> '<arch>.block_count'."""
        full = f"{self.arch}.{suffix}"
        if full in self.meta:
            return self.meta[full]
        if default is KeyError:
            raise KeyError(f"{self.path}: metadata key '{full}' is required")
        return default


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------

def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(mean(x^2) + eps) * weight over the last axis."""
    ms = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(ms + eps) * weight


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def swiglu_ffn(x: np.ndarray, w_gate: np.ndarray, w_up: np.ndarray,
               w_down: np.ndarray) -> np.ndarray:
    """down( silu(gate x) * up x ); weights in (out, in) orientation, x is [..., n_in]."""
    return (silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class RopeParams:
    """Rotary embedding settings as llama.cpp derives them from GGUF metadata.

    `scaling` is 'none', 'linear' or 'yarn'. For YaRN the per-frequency blend, the rotation
    magnitude and the attention-scale correction follow ggml's rope_yarn and llama.cpp's
    deepseek2 graph (see docs/REFERENCE-MODEL.md, "RoPE and YaRN").
    """

    n_rot: int
    freq_base: float = 10000.0
    scaling: str = "none"
    factor: float = 1.0
    n_ctx_orig: int = 0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    ext_factor: float = 1.0
    # mscale_all_dim as DeepSeek's config states it (GGUF stores 0.1x this); None if absent.
    mscale_all_dim: Optional[float] = None

    def corr_dims(self) -> tuple[float, float]:
        """First and last rotary pair index of YaRN's blend ramp (floor/ceil, clamped)."""

        def corr_dim(n_rotations: float) -> float:
            # pair index whose wavelength fits n_rotations times into the original context
            return (self.n_rot * math.log(self.n_ctx_orig / (n_rotations * 2.0 * math.pi))
                    / (2.0 * math.log(self.freq_base)))

        low = max(0.0, math.floor(corr_dim(self.beta_fast)))
        high = min(float(self.n_rot - 1), math.ceil(corr_dim(self.beta_slow)))
        return low, high

    def angles(self, positions: np.ndarray) -> np.ndarray:
        """theta[t, i] for rotary pair i at position positions[t]; shape [n_pos, n_rot/2]."""
        half = self.n_rot // 2
        i = np.arange(half, dtype=np.float64)
        inv_freq = self.freq_base ** (-2.0 * i / self.n_rot)
        extrap = positions.astype(np.float64)[:, None] * inv_freq[None, :]
        if self.scaling == "none":
            return extrap
        interp = extrap / self.factor
        if self.scaling == "linear":
            return interp
        if self.scaling != "yarn":
            raise NotImplementedError(f"rope scaling '{self.scaling}'")
        low, high = self.corr_dims()
        y = (i - low) / max(0.001, high - low)
        keep_extrap = (1.0 - np.clip(y, 0.0, 1.0)) * self.ext_factor  # 1 = high-frequency pair
        return interp * (1.0 - keep_extrap) + extrap * keep_extrap

    def rotation_magnitude(self) -> float:
        """Factor ggml's rope multiplies the rotated values by, after llama.cpp's cancellation.

        With a yarn_log_multiplier in the file the context cancels ggml's built-in
        (1 + 0.1 ln factor) exactly, so the rotation is norm-preserving. Without it the
        built-in factor survives (current llama.cpp behaviour).
        """
        if self.scaling != "yarn" or self.factor <= 1.0 or self.ext_factor == 0.0:
            return 1.0
        if self.mscale_all_dim:
            return 1.0
        return 1.0 + 0.1 * math.log(self.factor)

    def attention_mscale(self) -> float:
        """m in kq_scale = m^2 / sqrt(head_dim) (DeepSeek-V2 paper / HF yarn_get_mscale)."""
        if self.scaling != "yarn" or self.factor <= 1.0:
            return 1.0
        if self.mscale_all_dim:
            return 1.0 + 0.1 * self.mscale_all_dim * math.log(self.factor)
        return 1.0 + 0.1 * math.log(self.factor)


def rope_params_from_gguf(m: GGUFModel, n_rot: int) -> RopeParams:
    p = RopeParams(n_rot=n_rot, freq_base=float(m.key("rope.freq_base", 10000.0)))
    stype = m.key("rope.scaling.type", "none")
    factor = float(m.key("rope.scaling.factor", 0.0) or 0.0)
    if stype in ("none", "") or factor in (0.0, 1.0):
        return p
    attn_factor = float(m.key("rope.scaling.attn_factor", 1.0))
    if attn_factor != 1.0:
        raise NotImplementedError(f"{m.path}: rope.scaling.attn_factor={attn_factor}")
    p.scaling = stype
    p.factor = factor
    if stype == "yarn":
        p.n_ctx_orig = int(m.key("rope.scaling.original_context_length"))
        p.beta_fast = float(m.key("rope.scaling.yarn_beta_fast", 32.0))
        p.beta_slow = float(m.key("rope.scaling.yarn_beta_slow", 1.0))
        p.ext_factor = float(m.key("rope.scaling.yarn_ext_factor", 1.0))
        log_mul = float(m.key("rope.scaling.yarn_log_multiplier", 0.0))
        # The converter writes 0.1 * mscale_all_dim; llama.cpp divides the 0.1 back out.
        p.mscale_all_dim = (log_mul / 0.1) if log_mul != 0.0 else None
    return p


def apply_rope(x: np.ndarray, theta: np.ndarray, magnitude: float = 1.0) -> np.ndarray:
    """Rotate consecutive pairs (x[2i], x[2i+1]) by theta[t, i] (ggml 'NORM' rope).

    x: [n_tok, ..., n_rot]; theta: [n_tok, n_rot/2].
    """
    extra = x.ndim - 2
    th = theta.reshape(theta.shape[0], *([1] * extra), theta.shape[1])
    cos, sin = np.cos(th) * magnitude, np.sin(th) * magnitude
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def causal_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """q: [T, H, dk], k: [T, H, dk], v: [T, H, dv] -> [T, H, dv] with a causal mask."""
    scores = np.einsum("thd,shd->hts", q, k) * scale
    n = q.shape[0]
    mask = np.triu(np.ones((n, n), dtype=bool), k=1)
    scores = np.where(mask[None, :, :], -np.inf, scores)
    probs = softmax(scores, axis=-1)
    return np.einsum("hts,shd->thd", probs, v)


# ----------------------------------------------------------------------------------------------
# deepseek2
# ----------------------------------------------------------------------------------------------

@dataclass
class DeepseekConfig:
    n_layer: int
    n_embd: int
    n_head: int
    n_vocab: int
    eps: float
    q_lora_rank: int            # 0: plain attn_q (V2-Lite)
    kv_lora_rank: int
    qk_nope: int
    qk_rope: int
    v_head: int
    mla_split: bool             # attn_k_b / attn_v_b instead of attn_kv_b
    n_ff: int
    n_dense_lead: int
    n_expert: int
    n_expert_used: int
    n_expert_shared: int
    n_ff_exp: int
    gating: int                 # GATING_SOFTMAX / GATING_SIGMOID
    weights_norm: bool
    weights_scale: float
    n_group: int
    n_group_used: int
    group_score: str            # 'max' (DeepSeek-V2) or 'top2sum' (DeepSeek-V3)
    rope: RopeParams = field(default_factory=lambda: RopeParams(n_rot=0))

    @property
    def kq_scale(self) -> float:
        m = self.rope.attention_mscale()
        return m * m / math.sqrt(self.qk_nope + self.qk_rope)


def deepseek_config(m: GGUFModel, group_score: Optional[str] = None) -> DeepseekConfig:
    k = m.key
    n_head = int(k("attention.head_count"))
    n_rot = int(k("rope.dimension_count"))
    kv_lora = int(k("attention.kv_lora_rank"))
    mla_split = m.has("blk.0.attn_k_b.weight")
    if mla_split:
        # newer files: key_length = kv_lora + rope (the MQA view), *_mla = per-head sizes
        head_k = int(k("attention.key_length_mla"))
        v_head = int(k("attention.value_length_mla"))
    else:
        head_k = int(k("attention.key_length_mla", 0)) or int(k("attention.key_length"))
        v_head = int(k("attention.value_length_mla", 0)) or int(k("attention.value_length"))
    gating = int(k("expert_gating_func", GATING_SOFTMAX)) or GATING_SOFTMAX
    scale = float(k("expert_weights_scale", 0.0)) or 1.0  # absent/0 means "do not scale"
    n_group = int(k("expert_group_count", 0)) or 1
    if group_score is None:
        group_score = "top2sum" if gating == GATING_SIGMOID else "max"
    if group_score not in ("max", "top2sum"):
        raise ValueError(f"group_score '{group_score}'")
    n_embd = int(k("embedding_length"))
    return DeepseekConfig(
        n_layer=int(k("block_count")),
        n_embd=n_embd,
        n_head=n_head,
        n_vocab=int(m.ne("token_embd.weight")[1]),
        eps=float(k("attention.layer_norm_rms_epsilon")),
        q_lora_rank=int(k("attention.q_lora_rank", 0)),
        kv_lora_rank=kv_lora,
        qk_nope=head_k - n_rot,
        qk_rope=n_rot,
        v_head=v_head,
        mla_split=mla_split,
        n_ff=int(k("feed_forward_length")),
        n_dense_lead=int(k("leading_dense_block_count", 0)),
        n_expert=int(k("expert_count", 0)),
        n_expert_used=int(k("expert_used_count", 0)),
        n_expert_shared=int(k("expert_shared_count", 0)),
        n_ff_exp=int(k("expert_feed_forward_length", 0)),
        gating=gating,
        weights_norm=bool(k("expert_weights_norm", False)),
        weights_scale=scale,
        n_group=n_group,
        n_group_used=int(k("expert_group_used_count", 0)) or n_group,
        group_score=group_score,
        rope=rope_params_from_gguf(m, n_rot),
    )


def kv_up_projections(m: GGUFModel, cfg: DeepseekConfig, il: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-head W_UK [H, nope, kv_lora] and W_UV [H, v, kv_lora] for layer il.

    attn_kv_b (older files), ne = [kv_lora, H*(nope+v)]: rows grouped by head, each head's
    rows are [k_nope (nope) | v (v)] -- the HF kv_b_proj layout.
    attn_k_b, ne = [nope, kv_lora, H] (NumPy (H, kv_lora, nope)): W_UK transposed per head.
    attn_v_b, ne = [kv_lora, v, H] (NumPy (H, v, kv_lora)): W_UV as is.
    """
    H, nope, v, r = cfg.n_head, cfg.qk_nope, cfg.v_head, cfg.kv_lora_rank
    if cfg.mla_split:
        k_b = m.tensor(f"blk.{il}.attn_k_b.weight")
        v_b = m.tensor(f"blk.{il}.attn_v_b.weight")
        if k_b.shape != (H, r, nope) or v_b.shape != (H, v, r):
            raise ValueError(f"blk.{il}: attn_k_b {k_b.shape} / attn_v_b {v_b.shape} unexpected")
        return np.transpose(k_b, (0, 2, 1)), v_b
    kv_b = m.tensor(f"blk.{il}.attn_kv_b.weight")
    if kv_b.shape != (H * (nope + v), r):
        raise ValueError(f"blk.{il}: attn_kv_b {kv_b.shape} unexpected")
    per_head = kv_b.reshape(H, nope + v, r)
    return per_head[:, :nope, :], per_head[:, nope:, :]


@dataclass
class MlaPieces:
    """Intermediate values of one MLA layer, shared by the naive and absorbed formulations."""
    q_nope: np.ndarray   # [T, H, nope]
    q_pe: np.ndarray     # [T, H, rope]   (after RoPE)
    c_kv: np.ndarray     # [T, kv_lora]   (after kv_a_norm)
    k_pe: np.ndarray     # [T, rope]      (after RoPE)
    w_uk: np.ndarray     # [H, nope, kv_lora]
    w_uv: np.ndarray     # [H, v, kv_lora]
    w_o: np.ndarray      # [n_embd, H*v]


def mla_pieces(m: GGUFModel, cfg: DeepseekConfig, il: int, x: np.ndarray,
               positions: np.ndarray) -> MlaPieces:
    """Projections, norms and RoPE of an MLA layer; x is the attn_norm output [T, n_embd]."""
    T, H = x.shape[0], cfg.n_head
    pre = f"blk.{il}."
    if cfg.q_lora_rank:
        cq = x @ m.tensor(pre + "attn_q_a.weight").T
        cq = rms_norm(cq, m.tensor(pre + "attn_q_a_norm.weight"), cfg.eps)
        q = cq @ m.tensor(pre + "attn_q_b.weight").T
    else:
        q = x @ m.tensor(pre + "attn_q.weight").T
    q = q.reshape(T, H, cfg.qk_nope + cfg.qk_rope)
    q_nope, q_pe = q[..., :cfg.qk_nope], q[..., cfg.qk_nope:]

    ckv_pe = x @ m.tensor(pre + "attn_kv_a_mqa.weight").T
    c_kv, k_pe = ckv_pe[:, :cfg.kv_lora_rank], ckv_pe[:, cfg.kv_lora_rank:]
    c_kv = rms_norm(c_kv, m.tensor(pre + "attn_kv_a_norm.weight"), cfg.eps)

    theta = cfg.rope.angles(positions)
    mag = cfg.rope.rotation_magnitude()
    q_pe = apply_rope(q_pe, theta, mag)
    k_pe = apply_rope(k_pe, theta, mag)

    w_uk, w_uv = kv_up_projections(m, cfg, il)
    return MlaPieces(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv, m.tensor(pre + "attn_output.weight"))


def mla_attention_naive(p: MlaPieces, kq_scale: float) -> np.ndarray:
    """Plain MHA: expand the latent into per-head keys/values, then softmax attention."""
    T, H = p.q_nope.shape[0], p.q_nope.shape[1]
    k_nope = np.einsum("tc,hdc->thd", p.c_kv, p.w_uk)
    v = np.einsum("tc,hdc->thd", p.c_kv, p.w_uv)
    k_pe = np.broadcast_to(p.k_pe[:, None, :], (T, H, p.k_pe.shape[-1]))
    q_full = np.concatenate([p.q_nope, p.q_pe], axis=-1)
    k_full = np.concatenate([k_nope, k_pe], axis=-1)
    o = causal_attention(q_full, k_full, v, kq_scale)
    return o.reshape(T, -1) @ p.w_o.T


def route_experts(logits: np.ndarray, cfg: DeepseekConfig,
                  bias: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Pick experts for each token.

    logits: [T, n_expert] router outputs. Returns (ids [T, k], weights [T, k], info) where
    ids are ordered by descending selection score and info holds margins for diagnostics:
      'expert_margin' [T]: k-th selected minus best rejected selection score,
      'group_margin'  [T]: last kept minus best dropped group score (inf if no grouping),
      'kept_groups'   [T, n_group_used].
    """
    T, E = logits.shape
    k = cfg.n_expert_used
    scores = softmax(logits, -1) if cfg.gating == GATING_SOFTMAX else sigmoid(logits)
    select = scores + bias[None, :] if bias is not None else scores.copy()

    group_margin = np.full(T, np.inf)
    kept_groups = np.tile(np.arange(cfg.n_group), (T, 1))
    if cfg.n_group > 1:
        per = E // cfg.n_group
        g = select.reshape(T, cfg.n_group, per)
        if cfg.group_score == "max":
            gscore = g.max(axis=-1)
        else:
            gscore = np.sort(g, axis=-1)[..., -2:].sum(axis=-1)
        order = np.argsort(-gscore, axis=-1, kind="stable")
        kept_groups = order[:, :cfg.n_group_used]
        if cfg.n_group_used < cfg.n_group:
            rows = np.arange(T)
            group_margin = (gscore[rows, order[:, cfg.n_group_used - 1]]
                            - gscore[rows, order[:, cfg.n_group_used]])
        allowed = np.zeros((T, cfg.n_group), dtype=bool)
        np.put_along_axis(allowed, kept_groups, True, axis=-1)
        select = np.where(np.repeat(allowed, per, axis=-1), select, -np.inf)

    order = np.argsort(-select, axis=-1, kind="stable")
    ids = order[:, :k]
    rows = np.arange(T)[:, None]
    if k < E:
        nxt = select[rows[:, 0], order[:, k]]
        expert_margin = select[rows[:, 0], order[:, k - 1]] - nxt
    else:
        expert_margin = np.full(T, np.inf)
    w = scores[rows, ids]
    if cfg.weights_norm:
        w = w / np.maximum(w.sum(axis=-1, keepdims=True), EXPERT_WEIGHT_SUM_MIN)
    w = w * cfg.weights_scale
    info = {"expert_margin": expert_margin, "group_margin": group_margin,
            "kept_groups": kept_groups}
    return ids, w, info


def moe_ffn(m: GGUFModel, cfg: DeepseekConfig, il: int, x: np.ndarray,
            trace: Optional[dict] = None) -> np.ndarray:
    pre = f"blk.{il}."
    logits = x @ m.tensor(pre + "ffn_gate_inp.weight").T
    bias = m.tensor(pre + "exp_probs_b.bias") if m.has(pre + "exp_probs_b.bias") else None
    ids, w, info = route_experts(logits, cfg, bias)
    gate = m.tensor(pre + "ffn_gate_exps.weight")   # [E, n_ff_exp, n_embd]
    up = m.tensor(pre + "ffn_up_exps.weight")       # [E, n_ff_exp, n_embd]
    down = m.tensor(pre + "ffn_down_exps.weight")   # [E, n_embd, n_ff_exp]
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        for j, e in enumerate(ids[t]):
            out[t] += w[t, j] * swiglu_ffn(x[t], gate[e], up[e], down[e])
    if cfg.n_expert_shared > 0:
        out += swiglu_ffn(x, m.tensor(pre + "ffn_gate_shexp.weight"),
                          m.tensor(pre + "ffn_up_shexp.weight"),
                          m.tensor(pre + "ffn_down_shexp.weight"))
    if trace is not None:
        trace.setdefault("routing", []).append({"layer": il, "ids": ids, "weights": w, **info})
    return out


def deepseek2_forward(m: GGUFModel, tokens: np.ndarray, group_score: Optional[str] = None,
                      trace: Optional[dict] = None,
                      kv_cache: Optional[list] = None) -> np.ndarray:
    """kv_cache, if given, receives each layer's (c_kv [T, kv_lora], k_pe [T, rope]): what MLA
    caches, the latent after kv_a_norm and the rotary key after RoPE."""
    cfg = deepseek_config(m, group_score)
    tokens = np.asarray(tokens, dtype=np.int64)
    positions = np.arange(tokens.shape[0])
    h = m.tensor("token_embd.weight")[tokens]
    for il in range(cfg.n_layer):
        pre = f"blk.{il}."
        x = rms_norm(h, m.tensor(pre + "attn_norm.weight"), cfg.eps)
        pieces = mla_pieces(m, cfg, il, x, positions)
        if kv_cache is not None:
            kv_cache.append((pieces.c_kv, pieces.k_pe))
        h = h + mla_attention_naive(pieces, cfg.kq_scale)
        x = rms_norm(h, m.tensor(pre + "ffn_norm.weight"), cfg.eps)
        if il < cfg.n_dense_lead:
            h = h + swiglu_ffn(x, m.tensor(pre + "ffn_gate.weight"),
                               m.tensor(pre + "ffn_up.weight"), m.tensor(pre + "ffn_down.weight"))
        else:
            h = h + moe_ffn(m, cfg, il, x, trace)
    return output_head(m, h, cfg.eps)


def output_head(m: GGUFModel, h: np.ndarray, eps: float) -> np.ndarray:
    x = rms_norm(h, m.tensor("output_norm.weight"), eps)
    w_out = m.tensor("output.weight") if m.has("output.weight") else m.tensor("token_embd.weight")
    return x @ w_out.T


# ----------------------------------------------------------------------------------------------
# llama (dense GQA)
# ----------------------------------------------------------------------------------------------

def llama_forward(m: GGUFModel, tokens: np.ndarray,
                  kv_cache: Optional[list] = None) -> np.ndarray:
    """Llama decoder as llama.cpp runs GGUF files: Q/K rows are stored permuted by the
    converter so that NORM (consecutive-pair) rope reproduces HF's rotate_half. kv_cache, if
    given, receives each layer's (K after RoPE, V), both [T, n_head_kv * head_dim]."""
    k = m.key
    n_layer, n_embd = int(k("block_count")), int(k("embedding_length"))
    n_head = int(k("attention.head_count"))
    n_head_kv = int(k("attention.head_count_kv", n_head))
    head_dim = int(k("attention.key_length", n_embd // n_head))
    eps = float(k("attention.layer_norm_rms_epsilon"))
    rope = rope_params_from_gguf(m, int(k("rope.dimension_count", head_dim)))
    if rope.scaling == "yarn":
        raise NotImplementedError("llama with YaRN is not covered by the reference")
    tokens = np.asarray(tokens, dtype=np.int64)
    T = tokens.shape[0]
    theta = rope.angles(np.arange(T))
    group = n_head // n_head_kv
    h = m.tensor("token_embd.weight")[tokens]
    for il in range(n_layer):
        pre = f"blk.{il}."
        x = rms_norm(h, m.tensor(pre + "attn_norm.weight"), eps)
        q = (x @ m.tensor(pre + "attn_q.weight").T).reshape(T, n_head, head_dim)
        kk = (x @ m.tensor(pre + "attn_k.weight").T).reshape(T, n_head_kv, head_dim)
        v = (x @ m.tensor(pre + "attn_v.weight").T).reshape(T, n_head_kv, head_dim)
        n_rot = rope.n_rot
        q = np.concatenate([apply_rope(q[..., :n_rot], theta), q[..., n_rot:]], axis=-1)
        kk = np.concatenate([apply_rope(kk[..., :n_rot], theta), kk[..., n_rot:]], axis=-1)
        if kv_cache is not None:
            kv_cache.append((kk.reshape(T, -1), v.reshape(T, -1)))
        # query head j reads kv head j // group (ggml broadcast == HF repeat_kv)
        kk = np.repeat(kk, group, axis=1)
        v = np.repeat(v, group, axis=1)
        o = causal_attention(q, kk, v, 1.0 / math.sqrt(head_dim))
        h = h + o.reshape(T, -1) @ m.tensor(pre + "attn_output.weight").T
        x = rms_norm(h, m.tensor(pre + "ffn_norm.weight"), eps)
        h = h + swiglu_ffn(x, m.tensor(pre + "ffn_gate.weight"), m.tensor(pre + "ffn_up.weight"),
                           m.tensor(pre + "ffn_down.weight"))
    return output_head(m, h, eps)


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------

def forward(gguf_path, token_ids, *, group_score: Optional[str] = None,
            trace: Optional[dict] = None, kv_cache: Optional[list] = None) -> np.ndarray:
    """Logits [n_tokens, n_vocab] (float32, computed in float64) for tokens at positions 0..n-1.

    group_score overrides the group-limited routing rule of deepseek2 files: by default
    'max' for softmax-gated (DeepSeek-V2) and 'top2sum' for sigmoid-gated (DeepSeek-V3)
    models; llama.cpp uses 'top2sum' for both. `trace`, if given, receives routing details;
    `kv_cache`, if given, each layer's cached values (deepseek2_forward, llama_forward).
    """
    m = gguf_path if isinstance(gguf_path, GGUFModel) else GGUFModel(gguf_path)
    if m.arch == "deepseek2":
        logits = deepseek2_forward(m, token_ids, group_score=group_score, trace=trace,
                                   kv_cache=kv_cache)
    elif m.arch == "llama":
        logits = llama_forward(m, token_ids, kv_cache=kv_cache)
    else:
        raise NotImplementedError(f"{m.path}: architecture '{m.arch}'")
    return logits.astype(np.float32)


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 3:
        print("usage: deepseek_numpy.py MODEL.gguf TOKEN [TOKEN ...]", file=sys.stderr)
        sys.exit(2)
    out = forward(sys.argv[1], [int(t) for t in sys.argv[2:]])
    np.set_printoptions(precision=4, suppress=True, linewidth=120)
    print(out)
