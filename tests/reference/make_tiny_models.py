"""Writes tiny random `deepseek2` / `llama` GGUF models for ktx's golden tests.

Written with gguf.GGUFWriter only (no ktx code), with the tensor names, GGUF shapes (ne[0]
first) and metadata keys that llama.cpp's convert_hf_to_gguf.py produces for real DeepSeek and
Llama checkpoints. The one exception: Q4_K bytes come from `ktx.quantize`, because gguf-py
cannot quantize Q4_K; the reference still dequantizes them independently with gguf.quants.

Every model is a pure function of its spec and seed, so regeneration is byte-identical.

    python tests/reference/make_tiny_models.py --out DIR [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType
REPO_ROOT = Path(__file__).resolve().parents[2]


# Dimensions: all distinct where a mix-up would go unnoticed otherwise (n_embd 32, kv_lora 24,
# q_lora 40, qk_nope 16, qk_rope 8, dense ff 48, expert ff 16), small enough that the committed
# goldens stay under 2 MB. Q8_0/Q4_K apply only where ne[0] fits the block size; the rest stays
# F32, as llama-quantize falls back on odd rows too.
@dataclass(frozen=True)
class DeepseekSpec:
    name: str
    description: str
    seed: int
    n_layer: int = 3
    n_dense_lead: int = 1
    n_embd: int = 32
    n_head: int = 4
    q_lora_rank: int = 0              # 0: plain attn_q (V2-Lite style)
    kv_lora_rank: int = 24
    qk_nope: int = 16
    qk_rope: int = 8
    v_head: int = 8
    n_ff: int = 48                    # leading dense layers
    n_expert: int = 8
    n_expert_used: int = 2
    n_expert_shared: int = 2
    n_ff_exp: int = 16
    n_vocab: int = 64
    gating: int = 1                   # 1 softmax, 2 sigmoid
    probs_bias: bool = False          # exp_probs_b (V3)
    weights_norm: bool = False
    weights_scale: float = 1.0
    n_group: int = 0                  # 0: no group keys written
    n_group_used: int = 0
    mla_split: bool = False           # attn_k_b/attn_v_b (newer llama.cpp files)
    yarn: Optional[tuple[float, int, float]] = None   # (factor, original ctx, mscale_all_dim)
    rope_base: float = 10000.0
    eps: float = 1e-6
    quant: str = "F32"                # F32, Q8_0, Q4_K_MIX
    router_gain: float = 2.0


@dataclass(frozen=True)
class LlamaSpec:
    name: str
    description: str
    seed: int
    n_layer: int = 2
    n_embd: int = 32
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 48
    n_vocab: int = 64
    tied_output: bool = True
    rope_base: float = 10000.0
    eps: float = 1e-5
    quant: str = "F32"


# Seeds were chosen (first that passes, searching upward) so that every routing decision on the
# golden prompt has a selection-score margin >= 0.012 between the last expert/group kept and the
# first one dropped, also for the quantized twins; make_goldens.py checks this again. ds2_v2's
# seed also makes the V2 group rule (max) pick different experts than V3's (sum of top-2) on
# the golden prompt, so the golden tells the two rules apart.
LITE = DeepseekSpec(
    name="ds2_lite",
    description="DeepSeek-V2-Lite style: no q compression, softmax gating, 1 dense + 2 MoE "
                "layers, 8 experts top-2, 2 shared, attn_kv_b flavour",
    seed=1008)

V2 = DeepseekSpec(
    name="ds2_v2",
    description="DeepSeek-V2 style: q_lora, softmax gating, group-limited routing "
                "(4 groups, 2 kept, group score = max), top-3, expert_weights_scale 4.0",
    seed=1357, q_lora_rank=40, n_expert_used=3, weights_scale=4.0, n_group=4, n_group_used=2)

V3 = DeepseekSpec(
    name="ds2_v3",
    description="DeepSeek-V3 style: q_lora, sigmoid gating + exp_probs_b (selection only), "
                "12 experts in 4 groups (2 kept, group score = sum of top-2), top-3, "
                "weights normalised, scale 2.5, 1 shared",
    seed=1015, q_lora_rank=40, n_expert=12, n_expert_used=3, n_expert_shared=1, gating=2,
    probs_bias=True, weights_norm=True, weights_scale=2.5, n_group=4, n_group_used=2)

LLAMA = LlamaSpec(
    name="llama_gqa",
    description="Llama: 4 query heads / 2 kv heads (GQA), NORM rope, tied output",
    seed=1006)

SPECS: list = [
    LITE,
    V2,
    V3,
    replace(LITE, name="ds2_lite_yarn",
            description="ds2_lite dims, 2 layers (1 dense + 1 MoE), YaRN: factor 4, original "
                        "context 64, mscale_all_dim 0.707 (yarn_log_multiplier 0.0707); same "
                        "weights as ds2_lite_mla",
            seed=1013, n_layer=2, yarn=(4.0, 64, 0.707)),
    replace(LITE, name="ds2_lite_mla",
            description="ds2_lite dims, 2 layers (1 dense + 1 MoE), converted the newer llama.cpp "
                        "way: attn_kv_b split into attn_k_b / attn_v_b, head_count_kv 1, "
                        "key_length kv_lora+rope, value_length kv_lora, *_mla keys",
            seed=1013, n_layer=2, mla_split=True),
    LLAMA,
    replace(LITE, name="ds2_lite_q8_0",
            description="ds2_lite weights quantized to Q8_0 where ne[0] % 32 == 0 "
                        "(others, router and norms stay F32)",
            quant="Q8_0"),
    replace(V3, name="ds2_v3_q8_0",
            description="ds2_v3 weights quantized to Q8_0 where ne[0] % 32 == 0 "
                        "(others, router, exp_probs_b and norms stay F32)",
            quant="Q8_0"),
    DeepseekSpec(
        name="ds2_lite_q4_k",
        description="Lite-style, 2 layers (1 dense + 1 MoE), n_embd 256 so rows fit Q4_K: "
                    "Q4_K where ne[0] % 256 == 0, Q8_0 where ne[0] % 32 == 0, else F32 "
                    "(router, norms F32), like a real mixed Q4_K_M file",
        seed=1010, n_layer=2, n_embd=256, kv_lora_rank=32, n_ff=64, n_ff_exp=32,
        n_expert_shared=1, quant="Q4_K_MIX"),
]


# ----------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------

class WeightMaker:
    """Deterministic random weights in NumPy order (GGUF ne reversed)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def matrix(self, *shape: int, gain: float = 1.0) -> np.ndarray:
        fan_in = shape[-1]
        return (self.rng.standard_normal(shape) * (gain / np.sqrt(fan_in))).astype(np.float32)

    def norm(self, n: int) -> np.ndarray:
        return (1.0 + 0.1 * self.rng.standard_normal(n)).astype(np.float32)

    def normal(self, *shape: int, std: float = 1.0) -> np.ndarray:
        return (self.rng.standard_normal(shape) * std).astype(np.float32)


def deepseek_tensors(s: DeepseekSpec) -> dict[str, np.ndarray]:
    """All tensors of a deepseek2 model. The weights depend only on the seed and the dims;
    the attn_kv_b -> attn_k_b/attn_v_b split is applied to the same draws."""
    w = WeightMaker(s.seed)
    H, nope, rope, v, r = s.n_head, s.qk_nope, s.qk_rope, s.v_head, s.kv_lora_rank
    t: dict[str, np.ndarray] = {}
    t["token_embd.weight"] = w.normal(s.n_vocab, s.n_embd)
    for il in range(s.n_layer):
        p = f"blk.{il}."
        t[p + "attn_norm.weight"] = w.norm(s.n_embd)
        if s.q_lora_rank:
            t[p + "attn_q_a.weight"] = w.matrix(s.q_lora_rank, s.n_embd)
            t[p + "attn_q_a_norm.weight"] = w.norm(s.q_lora_rank)
            t[p + "attn_q_b.weight"] = w.matrix(H * (nope + rope), s.q_lora_rank)
        else:
            t[p + "attn_q.weight"] = w.matrix(H * (nope + rope), s.n_embd)
        t[p + "attn_kv_a_mqa.weight"] = w.matrix(r + rope, s.n_embd)
        t[p + "attn_kv_a_norm.weight"] = w.norm(r)
        kv_b = w.matrix(H * (nope + v), r)
        if s.mla_split:
            # what convert_hf_to_gguf.py does: view (H, nope+v, r), split on dim 1,
            # transpose k_b's last two dims. GGUF ne: k_b [nope, r, H], v_b [r, v, H].
            per_head = kv_b.reshape(H, nope + v, r)
            k_b = per_head[:, :nope, :].transpose(0, 2, 1)
            t[p + "attn_k_b.weight"] = np.ascontiguousarray(k_b)
            t[p + "attn_v_b.weight"] = np.ascontiguousarray(per_head[:, nope:, :])
        else:
            t[p + "attn_kv_b.weight"] = kv_b
        t[p + "attn_output.weight"] = w.matrix(s.n_embd, H * v)
        t[p + "ffn_norm.weight"] = w.norm(s.n_embd)
        if il < s.n_dense_lead:
            t[p + "ffn_gate.weight"] = w.matrix(s.n_ff, s.n_embd)
            t[p + "ffn_up.weight"] = w.matrix(s.n_ff, s.n_embd)
            t[p + "ffn_down.weight"] = w.matrix(s.n_embd, s.n_ff)
        else:
            t[p + "ffn_gate_inp.weight"] = w.matrix(s.n_expert, s.n_embd, gain=s.router_gain)
            if s.probs_bias:
                t[p + "exp_probs_b.bias"] = w.normal(s.n_expert, std=0.15)
            # GGUF ne: gate/up [n_embd, n_ff_exp, n_expert], down [n_ff_exp, n_embd, n_expert]
            t[p + "ffn_gate_exps.weight"] = w.matrix(s.n_expert, s.n_ff_exp, s.n_embd)
            t[p + "ffn_up_exps.weight"] = w.matrix(s.n_expert, s.n_ff_exp, s.n_embd)
            t[p + "ffn_down_exps.weight"] = w.matrix(s.n_expert, s.n_embd, s.n_ff_exp)
            if s.n_expert_shared:
                ff_sh = s.n_ff_exp * s.n_expert_shared
                t[p + "ffn_gate_shexp.weight"] = w.matrix(ff_sh, s.n_embd)
                t[p + "ffn_up_shexp.weight"] = w.matrix(ff_sh, s.n_embd)
                t[p + "ffn_down_shexp.weight"] = w.matrix(s.n_embd, ff_sh)
    t["output_norm.weight"] = w.norm(s.n_embd)
    t["output.weight"] = w.matrix(s.n_vocab, s.n_embd)
    return t


def llama_tensors(s: LlamaSpec) -> dict[str, np.ndarray]:
    w = WeightMaker(s.seed)
    hd = s.n_embd // s.n_head
    # tied output reuses token_embd as the LM head: scale it like a projection so logits ~ 1
    embd_std = 1.0 / np.sqrt(s.n_embd) if s.tied_output else 1.0
    t: dict[str, np.ndarray] = {"token_embd.weight": w.normal(s.n_vocab, s.n_embd, std=embd_std)}
    for il in range(s.n_layer):
        p = f"blk.{il}."
        t[p + "attn_norm.weight"] = w.norm(s.n_embd)
        # Q/K rows as they sit in a GGUF (already permuted for NORM rope by the converter)
        t[p + "attn_q.weight"] = w.matrix(s.n_head * hd, s.n_embd)
        t[p + "attn_k.weight"] = w.matrix(s.n_head_kv * hd, s.n_embd)
        t[p + "attn_v.weight"] = w.matrix(s.n_head_kv * hd, s.n_embd)
        t[p + "attn_output.weight"] = w.matrix(s.n_embd, s.n_head * hd)
        t[p + "ffn_norm.weight"] = w.norm(s.n_embd)
        t[p + "ffn_gate.weight"] = w.matrix(s.n_ff, s.n_embd)
        t[p + "ffn_up.weight"] = w.matrix(s.n_ff, s.n_embd)
        t[p + "ffn_down.weight"] = w.matrix(s.n_embd, s.n_ff)
    t["output_norm.weight"] = w.norm(s.n_embd)
    if not s.tied_output:
        t["output.weight"] = w.matrix(s.n_vocab, s.n_embd)
    return t


# ----------------------------------------------------------------------------------------------
# Quantization
# ----------------------------------------------------------------------------------------------

def _ktx_quantize() -> Optional[Callable[[np.ndarray, str], np.ndarray]]:
    """ktx.quantize if the binding can be imported (installed, or in the build tree)."""
    try:
        import ktx  # type: ignore
        return ktx.quantize
    except ImportError:
        pass
    candidate = REPO_ROOT / "build" / "python"
    if (candidate / "ktx").is_dir():
        sys.path.insert(0, str(candidate))
        try:
            import ktx  # type: ignore
            return ktx.quantize
        except ImportError:
            pass
        finally:
            sys.path.remove(str(candidate))
    return None


def choose_type(name: str, arr: np.ndarray, quant: str) -> Q:
    """Per-tensor type for a quantized variant; 1-D tensors and the router stay F32
    (llama-quantize never quantizes ffn_gate_inp)."""
    if quant == "F32" or arr.ndim < 2 or "ffn_gate_inp" in name:
        return Q.F32
    ne0 = arr.shape[-1]
    if quant == "Q4_K_MIX" and ne0 % 256 == 0:
        return Q.Q4_K
    if quant in ("Q8_0", "Q4_K_MIX") and ne0 % 32 == 0:
        return Q.Q8_0
    return Q.F32


def encode(arr: np.ndarray, qtype: Q, ktx_quantize) -> np.ndarray:
    if qtype == Q.F32:
        return np.ascontiguousarray(arr, dtype=np.float32)
    if qtype == Q.Q8_0:
        return gguf.quants.quantize(arr.astype(np.float32), qtype)
    if qtype == Q.Q4_K:
        raw = np.asarray(ktx_quantize(np.ascontiguousarray(arr.reshape(-1), np.float32), "Q4_K"),
                         dtype=np.uint8)
        bytes_per_row = arr.shape[-1] // 256 * 144
        return raw.reshape(*arr.shape[:-1], bytes_per_row)
    raise ValueError(qtype)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

def _write(path: Path, arch: str, name: str, kv: Callable[[gguf.GGUFWriter], None],
           tensors: dict[str, np.ndarray], quant: str, ktx_quantize) -> dict[str, str]:
    types: dict[str, str] = {}
    tmp = path.with_suffix(".gguf.tmp")
    w = gguf.GGUFWriter(str(tmp), arch)
    w.add_name(name)
    ftype = {"F32": gguf.LlamaFileType.ALL_F32, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
             "Q4_K_MIX": gguf.LlamaFileType.MOSTLY_Q4_K_M}[quant]
    w.add_file_type(int(ftype))
    kv(w)
    for tname, arr in tensors.items():
        qtype = choose_type(tname, arr, quant)
        data = encode(arr, qtype, ktx_quantize)
        if qtype == Q.F32:
            w.add_tensor(tname, data)
        else:
            w.add_tensor(tname, data, raw_dtype=qtype)
        types[tname] = qtype.name
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)
    return types


def deepseek_kv(s: DeepseekSpec) -> Callable[[gguf.GGUFWriter], None]:
    def kv(w: gguf.GGUFWriter) -> None:
        w.add_block_count(s.n_layer)
        ctx = 256 if s.yarn is None else int(s.yarn[0] * s.yarn[1])
        w.add_context_length(ctx)
        w.add_embedding_length(s.n_embd)
        w.add_feed_forward_length(s.n_ff)
        w.add_head_count(s.n_head)
        w.add_layer_norm_rms_eps(s.eps)
        if s.q_lora_rank:
            w.add_q_lora_rank(s.q_lora_rank)
        w.add_kv_lora_rank(s.kv_lora_rank)
        if s.mla_split:
            # newer converter: MLA as MQA over the latent, true head sizes in *_mla
            w.add_head_count_kv(1)
            w.add_key_length(s.kv_lora_rank + s.qk_rope)
            w.add_value_length(s.kv_lora_rank)
            w.add_key_length_mla(s.qk_nope + s.qk_rope)
            w.add_value_length_mla(s.v_head)
        else:
            w.add_head_count_kv(s.n_head)
            w.add_key_length(s.qk_nope + s.qk_rope)
            w.add_value_length(s.v_head)
        w.add_rope_dimension_count(s.qk_rope)
        w.add_rope_freq_base(s.rope_base)
        if s.yarn is not None:
            factor, n_orig, mscale_all_dim = s.yarn
            w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            w.add_rope_scaling_factor(factor)
            w.add_rope_scaling_orig_ctx_len(n_orig)
            w.add_rope_scaling_yarn_log_mul(0.1 * mscale_all_dim)
        w.add_leading_dense_block_count(s.n_dense_lead)
        w.add_vocab_size(s.n_vocab)
        w.add_expert_feed_forward_length(s.n_ff_exp)
        w.add_expert_count(s.n_expert)
        w.add_expert_used_count(s.n_expert_used)
        w.add_expert_shared_count(s.n_expert_shared)
        w.add_expert_weights_scale(s.weights_scale)
        w.add_expert_weights_norm(s.weights_norm)
        w.add_expert_gating_func(gguf.ExpertGatingFuncType(s.gating))
        if s.n_group:
            w.add_expert_group_count(s.n_group)
            w.add_expert_group_used_count(s.n_group_used)
    return kv


def llama_kv(s: LlamaSpec) -> Callable[[gguf.GGUFWriter], None]:
    def kv(w: gguf.GGUFWriter) -> None:
        hd = s.n_embd // s.n_head
        w.add_block_count(s.n_layer)
        w.add_context_length(256)
        w.add_embedding_length(s.n_embd)
        w.add_feed_forward_length(s.n_ff)
        w.add_head_count(s.n_head)
        w.add_head_count_kv(s.n_head_kv)
        w.add_layer_norm_rms_eps(s.eps)
        w.add_rope_dimension_count(hd)
        w.add_rope_freq_base(s.rope_base)
        w.add_vocab_size(s.n_vocab)
    return kv


@dataclass
class Built:
    spec: object
    path: Path
    tensor_types: dict[str, str] = field(default_factory=dict)
    skipped: Optional[str] = None


def build(spec, out_dir: Path, ktx_quantize=None) -> Built:
    path = out_dir / f"{spec.name}.gguf"
    if getattr(spec, "quant", "F32") == "Q4_K_MIX" and ktx_quantize is None:
        return Built(spec, path, skipped="ktx.quantize unavailable (needed for Q4_K bytes)")
    if isinstance(spec, DeepseekSpec):
        types = _write(path, "deepseek2", spec.name, deepseek_kv(spec), deepseek_tensors(spec),
                       spec.quant, ktx_quantize)
    else:
        types = _write(path, "llama", spec.name, llama_kv(spec), llama_tensors(spec),
                       spec.quant, ktx_quantize)
    return Built(spec, path, types)


def build_all(out_dir: Path, only: Optional[list[str]] = None) -> list[Built]:
    out_dir.mkdir(parents=True, exist_ok=True)
    ktx_q = _ktx_quantize()
    return [build(s, out_dir, ktx_q) for s in SPECS if not only or s.name in only]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    for b in build_all(args.out, args.only):
        status = f"skipped: {b.skipped}" if b.skipped else f"{b.path.stat().st_size} bytes"
        print(f"{b.spec.name:16s} {status}")


if __name__ == "__main__":
    main()
