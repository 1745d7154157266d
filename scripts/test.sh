#!/usr/bin/env bash
# Runs every test: builds ./build (warnings are errors), runs ctest (Catch2 unit tests, the CUDA
# checks — skipped without a GPU —, the Python suite), then installs ktx into a scratch prefix and
# builds a consumer against it with find_package(ktx), and finally pip-installs the Python package
# into a scratch virtual environment and runs its tests and the example notebook against it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh  # the Python that scripts/setup.sh installed into
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKTX_WERROR=ON ${KTX_CMAKE_ARGS:-}
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== install + find_package(ktx) consumer"
prefix=$(mktemp -d)
venv=$(mktemp -d)
trap 'rm -rf "$prefix" "$venv"' EXIT
cmake --install build --prefix "$prefix" >/dev/null
cmake -S tests/consumer -B "$prefix/consumer-build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" >/dev/null
"$prefix/consumer-build/consumer" "$prefix/consumer-test.gguf"

echo "== pip install . into a scratch venv; the package's tests and examples against it"
# --system-site-packages: numpy, pytest, mypy, nbclient … come from the setup. No build
# isolation: scikit-build-core and pybind11 are there too, and nothing is downloaded. The wheel's
# CMake build lives in build/wheel/ (pyproject.toml), so a rerun compiles only what changed.
python3 -m venv --system-site-packages "$venv"
# When the setup's Python is itself a virtual environment (.venv), a venv made from it sees the
# system's packages, not that environment's: a .pth file adds them.
if [ -n "${VIRTUAL_ENV:-}" ]; then
  python3 -c 'import sysconfig; print(sysconfig.get_path("purelib"))' \
    >"$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/ktx_setup_env.pth"
fi
CMAKE_BUILD_PARALLEL_LEVEL="$jobs" "$venv/bin/python" -m pip install -q --no-build-isolation \
  --no-deps --disable-pip-version-check .
# From outside the checkout, without PYTHONPATH: `import ktx` must find the installed package
# (test_package_model.py checks that it did, and what the package holds).
root=$PWD
(cd "$venv" && env -u PYTHONPATH KTX_EXPECT_INSTALLED=1 "$venv/bin/python" -m pytest -q \
  -p no:cacheprovider "$root"/tests/python/test_package_*.py)
