#!/usr/bin/env bash
# The README's main job, for as long as ktx cannot generate yet: write a small random llama-shaped
# model with ktx's GGUF writer, quantize it with the Q4_K_M preset (llama.cpp's per-tensor rules),
# and inspect the result. Expects ./build from scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${KTX_OUT:-build/main-job}
mkdir -p "$out"
build/bin/write_tiny_model "$out/tiny-f32.gguf"
build/bin/ktx quantize "$out/tiny-f32.gguf" "$out/tiny-q4_k_m.gguf" Q4_K_M
build/bin/ktx inspect "$out/tiny-q4_k_m.gguf"
