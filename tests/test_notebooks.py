"""The notebooks run top to bottom in quick mode (``MOTIONKIT_QUICK=1``) on the tiny family (the shipped
one, or a random stand-in with its layout), in a kernel of this interpreter, and are stored without outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest


NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def kernel_home(tmp_path_factory) -> Path:
    """A ``python3`` kernelspec that runs this interpreter: nothing needs registering on the machine, and a
    ``python`` on PATH (another environment) can never be picked up instead."""
    home = tmp_path_factory.mktemp("jupyter")
    spec = home / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    return home


def test_notebooks_are_stored_clean():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_train_custom_adapter.ipynb", "03_convert_formats.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, family_dir, kernel_home, tmp_path, monkeypatch):
    # JUPYTER_PATH comes first in the kernelspec search: our python3 shadows any registered one.
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_home))
    monkeypatch.setenv("MOTIONKIT_QUICK", "1")
    monkeypatch.setenv("MOTIONKIT_MODELS_DIR", str(family_dir))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny models on a shared CPU
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    text = "\n".join(
        output.get("text", "") for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "Traceback" not in text
    assert (tmp_path / "motionkit-out" / "notebooks").is_dir()
