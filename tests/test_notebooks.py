"""The tutorial notebooks: committed without outputs, in sync with their builder, and each one runs top to
bottom (CLIP4IDC_QUICK=1 sizes) in a fresh ``python3`` kernel of this environment without a cell error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NAMES = [
    "01_data.ipynb",
    "02_adaptation.ipynb",
    "03_finetuning.ipynb",
    "04_evaluation.ipynb",
    "05_attention_and_errors.ipynb",
]


def test_all_five_notebooks_are_there():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_no_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: cell {cell.id} has outputs"
            assert cell.execution_count is None, f"{name}: cell {cell.id} has an execution count"
        assert "execution" not in cell.metadata, f"{name}: cell {cell.id} has execution timings"


def test_notebooks_match_their_builder():
    result = subprocess.run(
        [sys.executable, str(NOTEBOOKS / "build_notebooks.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_lists_every_notebook():
    readme = (NOTEBOOKS / "README.md").read_text()
    for name in NAMES:
        assert f"({name})" in readme, name


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """QUICK sizes, a scratch work folder shared by the five notebooks (run in order, each reuses what the
    previous one trained), and this interpreter first on PATH so the ``python3`` kernelspec
    (``python -m ipykernel_launcher``) starts this environment's Python."""
    work = tmp_path_factory.mktemp("notebook_work")
    saved = dict(os.environ)
    os.environ.update(
        CLIP4IDC_QUICK="1",
        CLIP4IDC_WORK=str(work),
        PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    )
    yield work
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, kernel_env):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    start = time.time()
    client.execute()  # raises CellExecutionError on the first cell that fails
    elapsed = time.time() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    figures = sum(
        "image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert figures >= 2, f"{name}: expected figures, got {figures}"
    print(f"{name}: {elapsed:.1f} s")
