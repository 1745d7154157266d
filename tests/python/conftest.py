"""Shared fixtures: where the built tools are, and a fresh random seed per run (printed)."""

import os
import pathlib
import secrets

import numpy as np
import pytest

BIN = pathlib.Path(os.environ.get("KTX_BIN", "build/bin/ktx"))


@pytest.fixture
def ktx_bin():
    if not BIN.exists():
        pytest.fail(f"ktx tool not found at {BIN}; build first or set KTX_BIN")
    return BIN


@pytest.fixture
def rng(request):
    seed = secrets.randbits(32)
    # Printed on failure by pytest, so a failing draw can be replayed.
    print(f"{request.node.name}: seed {seed}")
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def default_model_path():
    """SmolLM2-135M-Instruct (scripts/default_model.py says where the setup put it)."""
    import subprocess
    import sys

    script = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "default_model.py"
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(r.stderr)
    return r.stdout.strip()
