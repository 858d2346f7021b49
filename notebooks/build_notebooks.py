"""Execute the lesson sources into the notebooks people open, with their outputs.

    python notebooks/build_notebooks.py              # run every lesson (normal sizes) into NN_*.ipynb
    python notebooks/build_notebooks.py 02 04        # only these lessons (the ones after reuse _work/)
    python notebooks/build_notebooks.py --quick DIR  # CI sizes (CLIP4IDC_QUICK=1), copies into DIR
    python notebooks/build_notebooks.py --check      # exit 1 if an .ipynb's cells differ from its source
    python notebooks/build_notebooks.py --prose      # copy edited markdown only (the code cells unchanged)

Each lesson has one source, ``NN_name.py`` in jupytext's percent format (a plain Python file: ruff lints it,
diffs read like code); the ``.ipynb`` beside it is that source executed top to bottom in a fresh
``python3`` kernel, so that its figures, captions and numbers can be read on GitHub without running
anything. The lessons run in order in one work folder (``$CLIP4IDC_WORK`` or ``notebooks/_work``), each
reusing what the previous one trained. This prints each lesson's time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}
SIZE_LIMIT = 3_000_000  # bytes per executed notebook: figures at a sensible size


def sources() -> list[Path]:
    """The lesson sources in order: ``NN_name.py``."""
    return sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))


def notebook_from_source(source: Path) -> nbformat.NotebookNode:
    """The unexecuted notebook of ``source``: its cells with ids ``NN-cc`` (stable diffs), the python3 kernel."""
    nb = jupytext.read(source)
    nb.metadata = {"kernelspec": dict(KERNEL), "language_info": {"name": "python"}}
    stem = source.stem.split("_")[0]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{stem}-{i:02d}"
        cell.metadata = {}
    return nb


def cell_sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def lesson_env(quick_work: Path | None = None) -> dict[str, str]:
    """The kernels' environment: this one with this interpreter first on PATH (the ``python3`` kernelspec
    starts ``python``); with ``quick_work``, the CI sizes and their runs in that folder."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    if quick_work is not None:
        env.update(CLIP4IDC_QUICK="1", CLIP4IDC_WORK=str(quick_work))
    return env


def execute(source: Path, out: Path, env: dict[str, str], timeout: int = 1800) -> float:
    """Run ``source`` in a fresh kernel with environment ``env`` (:func:`lesson_env`) and write it with its
    outputs to ``out``; returns the seconds it took. A failing cell stops the build with the cell's error."""
    from nbclient import NotebookClient

    nb = notebook_from_source(source)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        coalesce_streams=True,  # a progress bar's updates end as one line, not hundreds of outputs
        resources={"metadata": {"path": str(HERE)}},
    )
    start = time.time()
    client.execute(env=env)  # passed on to the kernel's start
    elapsed = time.time() - start
    for cell in nb.cells:  # no timestamps: a rebuild with the same outputs gives the same file
        cell.metadata.pop("execution", None)
    nbformat.validate(nb)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return elapsed


def stale() -> list[str]:
    """The lessons whose committed ``.ipynb`` is missing or whose cells differ from the source's."""
    out = []
    for source in sources():
        ipynb = source.with_suffix(".ipynb")
        if not ipynb.exists():
            out.append(ipynb.name)
            continue
        committed = nbformat.read(ipynb, as_version=4)
        if cell_sources(committed) != cell_sources(notebook_from_source(source)):
            out.append(ipynb.name)
    return out


def _code_layout(nb: nbformat.NotebookNode) -> list[str | None]:
    """Each cell's code, ``None`` for a markdown cell: what must match for outputs to stay valid."""
    return [c.source if c.cell_type == "code" else None for c in nb.cells]


def update_prose(source: Path) -> bool:
    """Copy ``source``'s markdown cells into its executed copy, keeping the outputs, when the code cells are
    unchanged (so the outputs are still what that code prints); returns whether it did."""
    ipynb = source.with_suffix(".ipynb")
    fresh = notebook_from_source(source)
    if not ipynb.exists():
        return False
    executed = nbformat.read(ipynb, as_version=4)
    if _code_layout(fresh) != _code_layout(executed):
        return False
    for old, new in zip(executed.cells, fresh.cells):
        if new.cell_type != "code":
            old.source = new.source
    nbformat.write(executed, ipynb)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers (default: all)")
    parser.add_argument(
        "--check", action="store_true", help="only check the .ipynb copies against the sources"
    )
    parser.add_argument("--quick", metavar="DIR", help="CI sizes; write the executed copies into DIR")
    parser.add_argument(
        "--prose", action="store_true", help="only copy edited markdown into the copies (code unchanged)"
    )
    args = parser.parse_args(argv)
    if args.prose:
        refused = [s.name for s in sources() if not update_prose(s)]
        if refused:
            print("code changed, run them again:", ", ".join(refused))
        return 1 if refused else 0
    if args.check:
        bad = stale()
        if bad:
            print("out of date (run python notebooks/build_notebooks.py):", ", ".join(bad))
        return 1 if bad else 0
    chosen = [s for s in sources() if not args.lessons or s.name[:2] in args.lessons]
    env = lesson_env(Path(args.quick) / "_work" if args.quick else None)
    total = 0.0
    for source in chosen:
        out = (
            Path(args.quick) / source.with_suffix(".ipynb").name
            if args.quick
            else source.with_suffix(".ipynb")
        )
        print(f"{source.name}: running ...", flush=True)
        seconds = execute(source, out, env)
        total += seconds
        size = out.stat().st_size
        note = "" if size <= SIZE_LIMIT else f"  (over {SIZE_LIMIT / 1e6:.0f} MB)"
        print(f"{out.name}: {seconds:.0f} s, {size / 1e6:.2f} MB{note}", flush=True)
    print(f"{len(chosen)} lessons in {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
