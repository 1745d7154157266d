"""The package's type hints: mypy --strict accepts typed use of ktx and rejects misuse, and the
stubs (ktx/_ktx.pyi) name exactly what the extension defines (mypy's stubtest)."""

import os
import pathlib
import re
import site
import subprocess
import sys
import sysconfig

import pytest

import ktx

pytest.importorskip("mypy", reason="mypy is in scripts/requirements.txt")

TYPED = pathlib.Path(__file__).resolve().parent / "typed"


def mypy_env(tmp_path):
    """Where mypy finds ktx: an installed package (with py.typed) by itself, a build tree's through
    MYPYPATH."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    parent = pathlib.Path(ktx.__file__).resolve().parent.parent
    installed = {pathlib.Path(p).resolve() for p in site.getsitepackages()
                 + [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]}
    if parent not in installed:
        env["MYPYPATH"] = str(parent)
        env["PYTHONPATH"] = str(parent)  # for stubtest, which imports the module
    env["MYPY_CACHE_DIR"] = str(tmp_path / "mypy-cache")
    return env


def run(args, env, cwd):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env,
                          cwd=cwd)


def test_typed_use_passes_strict_mypy(tmp_path):
    r = run(["mypy", "--strict", str(TYPED / "typed_usage.py")], mypy_env(tmp_path), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_misuse_is_caught(tmp_path):
    r = run(["mypy", "--strict", str(TYPED / "typed_misuse.py")], mypy_env(tmp_path), tmp_path)
    lines = [line for line in r.stdout.splitlines() if ": error:" in line]
    # One error per wrong line of typed_misuse.py (lines 6-9).
    assert sorted({int(re.search(r":(\d+): error", line).group(1)) for line in lines}) == \
        [6, 7, 8, 9], r.stdout


def test_the_stubs_match_the_extension(tmp_path):
    r = run(["mypy.stubtest", "ktx._ktx", "--allowlist", str(TYPED / "stubtest_allowlist.txt")],
            mypy_env(tmp_path), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
