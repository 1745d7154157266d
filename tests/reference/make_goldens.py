"""Regenerates ktx's whole-model golden files in tests/data/golden/.

For every tiny model of make_tiny_models.py: writes <name>.gguf, runs the independent NumPy
reference (deepseek_numpy.forward) on the fixed prompt and writes <name>.logits.npy
(float32, [n_tokens, n_vocab]); then writes manifest.json with tokens, descriptions,
tolerances, routing margins and sha256 of every file. Reruns are byte-identical.

    python tests/reference/make_goldens.py [--out tests/data/golden] [--check]

--check regenerates into a temporary folder and fails if any byte differs from --out.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deepseek_numpy as ref  # noqa: E402
import make_tiny_models as tiny  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "golden"

# Fixed prompt, positions 0..6; token 17 repeats so one token id is seen at two positions.
TOKENS = [1, 17, 42, 60, 5, 17, 33]

# Smallest allowed gap (selection-score units) between the last expert / group kept and the
# first one dropped, over all routing decisions of a golden. Keeps small numeric differences
# in an implementation under test from flipping an expert choice.
MIN_ROUTING_MARGIN = 0.01

# Logit tolerances (logits have std ~1). F32 files: an fp32 implementation vs this float64
# reference. Quantized files: the reference keeps activations exact, an implementation that
# quantizes activations (Q8_0 / Q8_K, as llama.cpp does) differs by ~1e-2.
TOLERANCE = {
    "F32": {"max_abs": 2e-3, "rms": 5e-4},
    "Q8_0": {"max_abs": 0.1, "rms": 0.03},
    "Q4_K_MIX": {"max_abs": 0.1, "rms": 0.03},
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def spec_summary(spec) -> dict:
    if isinstance(spec, tiny.LlamaSpec):
        return {"arch": "llama", "n_layer": spec.n_layer, "n_embd": spec.n_embd,
                "n_head": spec.n_head, "n_head_kv": spec.n_head_kv, "n_ff": spec.n_ff,
                "n_vocab": spec.n_vocab, "tied_output": spec.tied_output}
    s = spec
    return {
        "arch": "deepseek2", "n_layer": s.n_layer, "n_dense_lead": s.n_dense_lead,
        "n_embd": s.n_embd, "n_head": s.n_head, "q_lora_rank": s.q_lora_rank,
        "kv_lora_rank": s.kv_lora_rank, "qk_nope_head_dim": s.qk_nope,
        "qk_rope_head_dim": s.qk_rope, "v_head_dim": s.v_head, "n_ff": s.n_ff,
        "n_expert": s.n_expert, "n_expert_used": s.n_expert_used,
        "n_expert_shared": s.n_expert_shared, "n_ff_exp": s.n_ff_exp, "n_vocab": s.n_vocab,
        "gating": {1: "softmax", 2: "sigmoid"}[s.gating], "exp_probs_b": s.probs_bias,
        "expert_weights_norm": s.weights_norm, "expert_weights_scale": s.weights_scale,
        "expert_group_count": s.n_group, "expert_group_used_count": s.n_group_used,
        "attn_flavour": "attn_k_b/attn_v_b" if s.mla_split else "attn_kv_b",
        "yarn": None if s.yarn is None else
        {"factor": s.yarn[0], "original_context_length": s.yarn[1], "mscale_all_dim": s.yarn[2]},
    }


def generate(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    ktx_q = tiny._ktx_quantize()
    entries = []
    for spec in tiny.SPECS:
        built = tiny.build(spec, out, ktx_q)
        if built.skipped:
            if not built.path.exists():
                print(f"{spec.name}: skipped ({built.skipped})", file=sys.stderr)
                continue
            # keep the committed file: the reference below reads it independently anyway
            print(f"{spec.name}: {built.skipped}; reusing existing {built.path.name}",
                  file=sys.stderr)
        model = ref.GGUFModel(built.path)
        trace: dict = {}
        logits = ref.forward(model, TOKENS, trace=trace)
        npy = out / f"{spec.name}.logits.npy"
        np.save(npy, logits)

        types = collections.Counter(model.tensor_type(n).name for n in model.tensor_names())
        entry = {
            "name": spec.name,
            "model": built.path.name,
            "logits": npy.name,
            "description": spec.description,
            "variant": spec_summary(spec),
            "weights": getattr(spec, "quant", "F32"),
            "tensor_types": dict(sorted(types.items())),
            "tolerance": TOLERANCE[getattr(spec, "quant", "F32")],
            "argmax": [int(i) for i in logits.argmax(-1)],
            "sha256": {built.path.name: sha256(built.path), npy.name: sha256(npy)},
        }
        if model.arch == "deepseek2":
            cfg = ref.deepseek_config(model)
            margins = [min(float(r["expert_margin"].min()), float(r["group_margin"].min()))
                       for r in trace["routing"]]
            margin = min(margins)
            if margin < MIN_ROUTING_MARGIN:
                raise SystemExit(f"{spec.name}: routing margin {margin:.4g} < "
                                 f"{MIN_ROUTING_MARGIN}; pick another seed")
            entry["group_score"] = cfg.group_score if cfg.n_group > 1 else None
            if cfg.n_group > 1:
                other = "top2sum" if cfg.group_score == "max" else "max"
                alt = ref.forward(model, TOKENS, group_score=other)
                # True: an implementation using the other group rule fails this golden
                entry["group_score_sensitive"] = bool(np.abs(alt - logits).max() > 0.05)
            entry["min_routing_margin"] = round(margin, 6)
            entry["experts"] = {f"blk.{r['layer']}": r["ids"].tolist() for r in trace["routing"]}
        entries.append(entry)
        print(f"{spec.name:16s} {built.path.stat().st_size:8d} B  argmax {entry['argmax']}")

    manifest = {
        "about": "Golden logits from tests/reference/deepseek_numpy.py (independent float64 "
                 "NumPy reference). Regenerate with tests/reference/make_goldens.py; see "
                 "docs/REFERENCE-MODEL.md.",
        "tokens": TOKENS,
        "positions": "0..n_tokens-1, one sequence, causal, logits for every position",
        "logits_layout": "float32 [n_tokens, n_vocab]",
        "tolerance_note": "max_abs and rms of (logits - golden); quantized models assume the "
                          "implementation may quantize activations",
        "group_score_note": "'max' = DeepSeek-V2 (HF group_limited_greedy), 'top2sum' = "
                            "DeepSeek-V3 (noaux_tc); llama.cpp uses top2sum for every "
                            "deepseek2 file. group_score_sensitive: the other rule fails "
                            "this golden",
        "models": entries,
    }
    path = out / "manifest.json"
    text = json.dumps(manifest, indent=2)
    # keep lists of numbers on one line
    text = re.sub(r"\[\s+([-0-9.,\s]+?)\s+\]",
                  lambda mt: "[" + ", ".join(x.strip() for x in mt.group(1).split(",")) + "]", text)
    path.write_text(text + "\n")
    return manifest


def check(out: Path) -> int:
    """Regenerate into a temp dir and compare bytes with `out`."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp)
        for p in out.glob("*.gguf"):      # lets a Q4_K file be reused when ktx is absent
            shutil.copy(p, tmp_out / p.name)
        generate(tmp_out)
        bad = [p.name for p in sorted(tmp_out.iterdir())
               if not (out / p.name).exists() or (out / p.name).read_bytes() != p.read_bytes()]
    if bad:
        print("differs from committed goldens: " + ", ".join(bad), file=sys.stderr)
        return 1
    print("goldens reproduce byte-for-byte")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if args.check:
        sys.exit(check(args.out))
    generate(args.out)


if __name__ == "__main__":
    main()
