"""The notebooks run headlessly (nbclient, the venv's python3 kernel) on the shipped example file,
are committed without outputs, and the example file is what `python -m scaling synth` writes."""

import os
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from scaling.synthetic import example_results

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = ["compute_optimal.ipynb", "diffusion_vs_ar.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_are_stripped(name):
    nb = nbformat.read(NB_DIR / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs not stripped"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, monkeypatch):
    monkeypatch.setenv("MDM_BOOTSTRAP", "20")  # small bootstrap keeps the suite fast
    monkeypatch.delenv("MDM_RESULTS", raising=False)  # the notebook's default: example_results.csv
    nb = nbformat.read(NB_DIR / name, as_version=4)
    NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(NB_DIR)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # the kernel is this interpreter (jupyter_client maps the spec's "python" to sys.executable)
    assert (
        f"kernel python: {sys.executable}" in text
        or f"kernel python: {os.path.realpath(sys.executable)}" in text
    )
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2


def test_example_file_matches_its_generator():
    shipped = pd.read_csv(NB_DIR / "example_results.csv")
    regenerated = example_results(["mdlm", "ar"], seed=0)
    assert list(shipped.columns) == list(regenerated.columns)
    assert shipped["name"].tolist() == regenerated["name"].tolist()
    for c in ("params", "tokens", "flops", "loss"):
        assert np.allclose(shipped[c], regenerated[c], rtol=1e-9)
