"""The Python examples run as a user would run them: examples/generate.py as a script, and
examples/notebook.ipynb executed top to bottom in a Jupyter kernel (nbclient), both with the
ktx this interpreter imports (the installed package when scripts/test.sh runs this file in its
scratch environment)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_generate_script(default_model_path):
    r = subprocess.run([sys.executable, str(EXAMPLES / "generate.py"), default_model_path,
                        "What is the capital of France?", "--max-tokens", "24"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) >= 3, r.stdout  # model text, not a fixed answer
    assert "tok/s" in r.stderr and "generated" in r.stderr


def test_the_notebook_is_stored_without_outputs():
    nb = json.loads((EXAMPLES / "notebook.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_the_notebook_runs(default_model_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="in scripts/requirements.txt")
    nbclient = pytest.importorskip("nbclient", reason="in scripts/requirements.txt")
    pytest.importorskip("ipykernel", reason="in scripts/requirements.txt")
    nb = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    # The kernel is this interpreter with this environment, started in examples/: it must
    # import the same ktx (a relative PYTHONPATH to a build tree would no longer lead there).
    import ktx

    package_parent = str(pathlib.Path(ktx.__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    monkeypatch.setenv("KTX_MODEL", default_model_path)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "tok/s" in outputs and "Paris" in outputs
