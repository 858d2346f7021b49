"""Lone-clone check: the tests may read only what a clone with nothing beside it has.

Our own machines keep reference data beside the checkout (``../shared``); a user's clone has nothing
there. An audit hook on ``open``, ``os.listdir`` and ``os.scandir`` records every path the tests touch
inside the checkout's parent folder but outside the checkout (so ``site-packages``, ``/tmp`` and ``/usr``
stay allowed), and the session fails if there is any. ``sitecustomize.py`` beside this file installs the
same hook in the Python subprocesses the tests start (CLI runs, notebook kernels): ``tests/conftest.py``
puts this folder on their ``PYTHONPATH`` and names the checkout and a log file in the environment.

Allowed even inside the parent: hidden entries (a home folder's ``.cache``, ``.config``), the Python
installation, the temp folder and the file that ``CLIP4IDC_PARITY_FIXTURE`` names on purpose (unless one
of them holds the whole parent, as the temp folder does for a clone made in ``/tmp/x/clip4idc``). The
check is off where the parent is the file-system root or the temp folder itself: there, "beside" means
the whole system or other programs' temporary files.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading

ROOT_ENV = "CLIP4IDC_LONE_CLONE_ROOT"
LOG_ENV = "CLIP4IDC_LONE_CLONE_LOG"
ALLOW_ENV = "CLIP4IDC_PARITY_FIXTURE"
EVENTS = ("open", "os.listdir", "os.scandir")


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class Rule:
    """Which paths count as "beside the checkout" for one checkout."""

    def __init__(self, checkout: str | os.PathLike[str], allowed: list[str] | None = None) -> None:
        self.checkout = os.path.realpath(checkout)
        self.parent = os.path.dirname(self.checkout)
        temp = os.path.realpath(tempfile.gettempdir())
        self.off_reason = ""
        if self.parent == os.path.dirname(self.parent):
            self.off_reason = f"the checkout's parent {self.parent} is the file-system root"
        elif self.parent == temp:
            self.off_reason = f"the checkout's parent {self.parent} is the temp folder"
        if allowed is None:
            allowed = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, temp]
            allowed += [os.environ[ALLOW_ENV]] if os.environ.get(ALLOW_ENV) else []
        # a root that holds the whole parent (the temp folder of a clone made in /tmp) would allow everything
        roots = {os.path.realpath(p) for p in allowed}
        self.allowed = sorted(r for r in roots if not _inside(self.parent, r))

    def beside(self, path: str) -> bool:
        """True for a path inside the parent folder, outside the checkout and not allowed above."""
        if self.off_reason or not _inside(os.path.abspath(path), self.parent):
            return False  # cheap string test first: most paths are nowhere near the parent
        real = os.path.realpath(path)  # a symlink in the checkout may point beside it
        if not _inside(real, self.parent) or _inside(real, self.checkout):
            return False
        rel = os.path.relpath(real, self.parent)
        if rel != "." and rel.startswith("."):
            return False  # hidden entries: per-user caches and settings, not project data
        return not any(_inside(real, a) for a in self.allowed)


class Recorder:
    """An audit hook that collects paths beside the checkout (and appends them to ``log`` if given)."""

    def __init__(self, rule: Rule, log: str | None = None) -> None:
        self.rule, self.log = rule, log
        self.seen: list[str] = []
        self._busy = threading.local()  # the hook's own file access must not re-enter it

    def __call__(self, event: str, args: tuple) -> None:
        if event not in EVENTS or getattr(self._busy, "on", False):
            return
        path = args[0] if args else None
        if path is None:
            path = "."
        if isinstance(path, int):
            return  # an already-open file descriptor
        self._busy.on = True
        try:
            path = os.fsdecode(os.fspath(path))
            if path not in self.seen and self.rule.beside(path):
                self.seen.append(path)
                if self.log:
                    line = f"{os.getpid()} {os.path.abspath(path)}\n".encode()
                    fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                    try:
                        os.write(fd, line)
                    finally:
                        os.close(fd)
        except (TypeError, ValueError, OSError):
            pass  # an odd argument (e.g. a path with a NUL byte) is the caller's error to raise
        finally:
            self._busy.on = False


def install(checkout: str | os.PathLike[str], log: str | None = None) -> Recorder:
    """Start recording in this process (an audit hook cannot be removed; it stays until exit)."""
    recorder = Recorder(Rule(checkout), log)
    sys.addaudithook(recorder)
    return recorder


def read_log(log: str) -> list[str]:
    """Paths that subprocesses recorded, each once, in the order first seen."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    paths = [line.split(" ", 1)[1] for line in lines if " " in line]
    return list(dict.fromkeys(paths))
