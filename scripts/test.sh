#!/usr/bin/env bash
# Runs every test: builds ./build (warnings are errors), runs ctest (Catch2 unit tests, the CUDA
# checks — skipped without a GPU —, the Python suite), then installs ktx into a scratch prefix and
# builds a consumer against it with find_package(ktx).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKTX_WERROR=ON ${KTX_CMAKE_ARGS:-}
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== install + find_package(ktx) consumer"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install build --prefix "$prefix" >/dev/null
cmake -S tests/consumer -B "$prefix/consumer-build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" >/dev/null
"$prefix/consumer-build/consumer" "$prefix/consumer-test.gguf"
