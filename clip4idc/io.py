"""Small JSON helpers shared by the CLI commands.

Why: every command reads user JSON (predictions, ground truth, metrics) and writes results. Reading must
turn any problem into the one-line :class:`~clip4idc.errors.Clip4idcError`, and writing must never leave a
half-written file behind (an interrupted run keeps the previous version intact).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any

from .errors import fail


def _to_builtin(obj: Any) -> Any:
    """``json.dump`` fallback for numpy / torch scalars and arrays (metrics are often numpy floats)."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


MAX_JSON_BYTES = 2 * 2**30  # COCO-style annotation files are a few hundred MB at most


def open_regular(path: str | os.PathLike[str], max_bytes: int, kind: str = "file") -> IO[bytes]:
    """Open ``path`` for reading only if it is a regular file of at most ``max_bytes``.

    Why: a device (``/dev/zero``), a named pipe or a symlink to either never ends or blocks. ``O_NONBLOCK``
    keeps the open itself from blocking on a pipe, and the type is checked on the opened descriptor.
    ``kind`` names the file in messages (``checkpoint not found``).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise fail(path, f"{kind} not found") from None
    except PermissionError:
        raise fail(path, "permission denied") from None
    except OSError as err:
        raise fail(path, f"cannot open ({err.strerror or err})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise fail(path, f"is a directory, expected a {kind}")
        raise fail(path, "not a regular file (a device, pipe or socket): refused")
    if info.st_size > max_bytes:
        os.close(fd)
        raise fail(path, f"file is {info.st_size:,} bytes, more than the {max_bytes:,} a {kind} may have")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Load a JSON file; any failure becomes one ``<path>: <problem>`` error line.

    Malformed JSON reports the line and column of the first problem so the user can fix it by hand.
    """
    p = Path(path)
    with open_regular(p, MAX_JSON_BYTES, "JSON file") as fh:
        try:
            text = fh.read().decode("utf-8")
        except UnicodeDecodeError as err:
            raise fail(p, f"not UTF-8 text (byte {err.start})") from None
        except OSError as err:
            raise fail(p, f"cannot read file ({err.strerror or err})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise fail(p, f"malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from None


def write_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON via a temporary file in the same folder and ``os.replace``.

    The target either keeps its old content or gets the complete new content, never a truncated file.
    Missing parent folders are created. numpy/torch scalars and arrays are converted to plain numbers/lists.
    Returns the path written.
    """
    target = Path(path)
    if target.is_dir():
        raise fail(target, "is a directory, cannot write JSON there")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise fail(target, f"cannot write file ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(obj, handle, indent=indent, ensure_ascii=False, default=_to_builtin)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as err:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise fail(target, f"cannot write file ({err.strerror or err})") from None
        raise
    return target


def check_writable_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and prove that a file can be written in it, before any long work starts.

    Why: a run or an evaluation that finds out at its end that it cannot save has wasted its time.
    """
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise fail(target, "exists and is not a folder")
    try:
        target.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=target, prefix=".clip4idc-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise fail(target, f"cannot write there ({err.strerror or err})") from None
    return target
