"""Lone-clone check in the Python subprocesses that the tests start (see ``lone_clone.py``).

Only this folder is on their ``PYTHONPATH`` for that purpose; without ``CLIP4IDC_LONE_CLONE_ROOT`` it
does nothing. It then runs the ``sitecustomize`` it shadows (the interpreter's own, if any), so the
subprocess starts as it would without the check.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.realpath(__file__))

if os.environ.get("CLIP4IDC_LONE_CLONE_ROOT"):
    sys.path.insert(0, _HERE)
    try:
        import lone_clone

        lone_clone.install(os.environ[lone_clone.ROOT_ENV], os.environ.get(lone_clone.LOG_ENV))
    finally:
        sys.path.remove(_HERE)


def _run_shadowed() -> None:
    """Execute the next ``sitecustomize`` on ``sys.path`` after this one."""
    rest = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_run_shadowed()
