#!/usr/bin/env bash
# The reference benchmark workload: a random-weight model of DeepSeek-V2-Lite's full width
# (hidden 2048, 16 heads, 64 experts of 1408, 6 used + 2 shared, vocabulary 102400) cut to a few
# layers, quantized with llama.cpp's Q4_K_M mix (Q4_K, Q5_0, Q6_K, Q8_0 as a real Lite file).
# Written once into a cache folder and reused; prints the model's path on stdout.
#
# usage: bench/make_reference_model.sh [--layers N] [--out DIR] [--ktx PATH]
#   --layers N   blocks (default 8: ~3 GB, a few minutes and ~3 GB of RAM to write; 2 for a
#                quick ~0.7 GB one — layer 0 is dense, the rest MoE, as in the real model)
#   --out DIR    cache folder (default build/bench-models)
#   --ktx PATH   the ktx tool (default build/bin/ktx)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
layers=8
out="$root/build/bench-models"
ktx="$root/build/bin/ktx"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --layers) layers=${2:?--layers needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --ktx) ktx=${2:?--ktx needs a value}; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make_reference_model.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$layers" =~ ^[1-9][0-9]*$ ]] || { echo "make_reference_model.sh: --layers must be a positive whole number, not '$layers'" >&2; exit 2; }
[[ -x "$ktx" ]] || { echo "make_reference_model.sh: no ktx tool at $ktx; build it first or give --ktx" >&2; exit 1; }

model="$out/deepseek-v2-lite-${layers}l-q4_k_m.gguf"
if [[ -s "$model" ]]; then
  echo "make_reference_model.sh: $model exists, reusing it" >&2
else
  mkdir -p "$out"
  # make-model writes through a temporary file renamed at the end: an interrupted run leaves
  # no half-written model behind to be reused.
  "$ktx" make-model "$model" --model deepseek-v2-lite --layers "$layers" --preset Q4_K_M >&2
fi
echo "$model"
