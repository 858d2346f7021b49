"""The lessons: one jupytext source each, an executed copy beside it that is not stale and shows its outputs,
and each source runs top to bottom (CLIP4IDC_QUICK=1 sizes) in a fresh ``python3`` kernel of this
environment without a cell error."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
STEMS = ["01_data", "02_adaptation", "03_finetuning", "04_evaluation", "05_attention_and_errors"]


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOKS / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _builder()


def _figures(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_one_source_and_one_executed_copy_per_lesson():
    assert [p.stem for p in build.sources()] == STEMS
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == STEMS


def test_executed_copies_are_not_stale():
    assert build.stale() == [], "run: python notebooks/build_notebooks.py"


def test_staleness_check_sees_an_edit(tmp_path, monkeypatch):
    """The check above can fail: a copy whose code differs from its source is reported."""
    for stem in STEMS[:1]:
        (tmp_path / f"{stem}.py").write_text((NOTEBOOKS / f"{stem}.py").read_text() + "\n# %%\nprint(1)\n")
        (tmp_path / f"{stem}.ipynb").write_bytes((NOTEBOOKS / f"{stem}.ipynb").read_bytes())
    monkeypatch.setattr(build, "HERE", tmp_path)
    assert build.stale() == [f"{STEMS[0]}.ipynb"]


@pytest.mark.parametrize("stem", STEMS)
def test_executed_copy_shows_a_full_run(stem):
    """Readable on GitHub: executed top to bottom in one kernel at normal sizes, no error, figures, small."""
    path = NOTEBOOKS / f"{stem}.ipynb"
    assert path.stat().st_size <= build.SIZE_LIMIT
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "not one top-to-bottom run"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"], "red noise"
    assert _figures(nb) >= 2
    first = "".join(o.get("text", "") for o in code[0].outputs)
    assert "plan 'full'" in first, "executed in quick mode"


def test_readme_lists_every_lesson():
    readme = (NOTEBOOKS / "README.md").read_text()
    for stem in STEMS:
        assert f"({stem}.ipynb)" in readme, stem


@pytest.fixture(scope="module")
def quick_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("lessons_quick")


@pytest.mark.parametrize("stem", STEMS)
def test_lesson_runs_top_to_bottom(stem, quick_dir):
    """Quick sizes, one shared work folder (in order: each lesson reuses what the previous trained)."""
    out = quick_dir / f"{stem}.ipynb"
    env = build.lesson_env(quick_dir / "_work")
    seconds = build.execute(NOTEBOOKS / f"{stem}.py", out, env, timeout=600)
    nb = nbformat.read(out, as_version=4)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert _figures(nb) >= 2, f"{stem}: expected figures"
    print(f"{stem}: {seconds:.1f} s")


def test_one_command_opens_the_lessons():
    """`bash scripts/lessons.sh` (named in the README beside the other two commands) sets up the notebooks
    extra - which carries what the lessons and their build need - and starts Jupyter Lab on notebooks/."""
    import re
    import subprocess

    import tomllib

    script = (REPO / "scripts" / "lessons.sh").read_text()
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "lessons.sh")]).returncode == 0
    assert re.search(r"^source scripts/setup\.sh notebooks$", script, re.M)
    assert re.search(r"^exec jupyter lab notebooks/ ", script, re.M)
    assert "bash scripts/lessons.sh" in (REPO / "README.md").read_text()
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for need in ("jupyter", "jupytext", "ipykernel", "ipywidgets", "nbclient", "nbformat"):
        assert need in extras["notebooks"] and need in extras["test"], need
