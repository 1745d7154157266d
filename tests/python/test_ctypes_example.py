"""examples/ctypes_generate.py: the C ABI from another language's FFI alone (ctypes, no binding)."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))


@pytest.fixture
def libktx():
    path = pathlib.Path(os.environ.get("KTX_LIB", ROOT / "build" / "abi" / "libktx.so"))
    if not path.exists():
        pytest.fail(f"libktx.so not found at {path}; build first or set KTX_LIB")
    return str(path)


def test_generates_through_the_c_abi(libktx):
    import ctypes_generate

    model = subprocess.run([sys.executable, str(ROOT / "scripts" / "default_model.py")],
                           capture_output=True, text=True, check=True).stdout.strip()
    text = ctypes_generate.generate(libktx, model, "The capital of France is", 6)
    assert "Paris" in text


def test_errors_cross_the_abi_as_messages(libktx, tmp_path):
    import ctypes_generate

    missing = tmp_path / "missing.gguf"
    with pytest.raises(RuntimeError, match=str(missing)):
        ctypes_generate.generate(libktx, str(missing), "x", 1)
