"""Read the tensors of a PyTorch zip archive as data: ``torch.save`` files and TorchScript archives alike.

Why: OpenAI's ``ViT-B-32.pt`` is a TorchScript archive, and ``torch.jit.load`` compiles and runs the code
inside it (a scripted ``__setstate__`` runs at load time). A zip archive is a pickle (``data.pkl``) plus one
raw record per storage (``data/<key>``). This module unpickles ``data.pkl`` with an unpickler that knows
only how to rebuild tensors from those records and how to hold a TorchScript object's attributes; any
other global in the pickle is refused. TorchScript source under ``code/`` is parsed with :mod:`ast`,
never executed, only to learn which attributes of each class are parameters or buffers (the rest, such
as CLIP's causal ``attn_mask``, are not part of a state dict). Every size is checked before it is read.
"""

from __future__ import annotations

import ast
import collections
import io
import pickle
import zipfile
from typing import IO, Any

import torch

# The storage classes a pickle may name, and the dtype each stands for.
STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
MAX_PICKLE_BYTES = 256 * 2**20  # data.pkl of a 900 MB ViT-L/14 archive is a few hundred KB
MAX_CODE_BYTES = 16 * 2**20  # all TorchScript source files together


class ArchiveError(ValueError):
    """The archive cannot be read as data; the message is one line without the file name."""


class ScriptObject:
    """Stands in for a TorchScript class instance: holds its pickled attributes, runs none of its code."""

    qualified_name = ""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Storage:
    """What a ``torch.<Type>Storage`` global unpickles to: the dtype of the records that name it."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(
    storage: torch.Tensor, offset: int, size: tuple, stride: tuple, requires_grad: bool = False, *_: Any
) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise ArchiveError("a tensor is rebuilt from something that is not a storage record")
    if not all(isinstance(v, int) and v >= 0 for v in (offset, *size, *stride)):
        raise ArchiveError("a tensor has a negative or non-integer offset, size or stride")
    if all(size):
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if len(size) != len(stride) or last >= storage.numel():
            raise ArchiveError("a tensor reaches past the end of its storage record")
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = False, *_: Any) -> torch.Tensor:
    return data


class _DataUnpickler(pickle.Unpickler):
    def __init__(self, archive: _Archive, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.classes: dict[str, type[ScriptObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name in STORAGE_DTYPES:
            return _Storage(STORAGE_DTYPES[name])
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self.classes:
                self.classes[qualified] = type(name, (ScriptObject,), {"qualified_name": qualified})
            return self.classes[qualified]
        raise ArchiveError(
            f"it asks to run code ({module}.{name}), and clip4idc never runs code from a checkpoint"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ArchiveError(f"unknown record reference {str(pid)[:60]}")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _Storage) or not isinstance(key, str) or not isinstance(numel, int):
            raise ArchiveError("malformed storage reference")
        return self.archive.storage(key, kind.dtype, numel)


class _Archive:
    """A zip archive with one top-level folder holding ``data.pkl``; reads records within a byte budget."""

    def __init__(self, handle: IO[bytes], max_bytes: int) -> None:
        try:
            self.zip = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            raise ArchiveError(f"not a readable zip archive ({err})") from None
        names = self.zip.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ArchiveError("zip archive without exactly one <folder>/data.pkl: not a PyTorch archive")
        self.prefix = pickles[0][: -len("data.pkl")]
        self.budget = max_bytes
        self.storages: dict[str, torch.Tensor] = {}
        order = self.read_text("byteorder", 16, default="little").strip()
        if order != "little":
            raise ArchiveError(f"byte order {order!r} is not supported (little-endian archives only)")

    def info(self, name: str) -> zipfile.ZipInfo | None:
        try:
            return self.zip.getinfo(self.prefix + name)
        except KeyError:
            return None

    def read(self, name: str, limit: int) -> bytes:
        info = self.info(name)
        if info is None:
            raise ArchiveError(f"record {name} is missing")
        if info.file_size > limit or info.file_size > self.budget:
            raise ArchiveError(f"record {name} declares {info.file_size:,} bytes, more than allowed")
        self.budget -= info.file_size
        try:
            with self.zip.open(info) as fh:
                data = fh.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise ArchiveError(f"record {name} is unreadable ({err})") from None
        if len(data) != info.file_size:
            raise ArchiveError(
                f"record {name} holds {len(data):,} bytes, not the {info.file_size:,} declared"
            )
        return data

    def read_text(self, name: str, limit: int, default: str) -> str:
        if self.info(name) is None:
            return default
        return self.read(name, limit).decode("utf-8", errors="replace")

    def storage(self, key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        if key not in self.storages:
            itemsize = torch.empty((), dtype=dtype).element_size()
            info = self.info(f"data/{key}")
            if numel < 0 or info is None or info.file_size != numel * itemsize:
                raise ArchiveError(f"storage record data/{key} does not hold {numel} {dtype} values")
            raw = bytearray(self.read(f"data/{key}", numel * itemsize))
            self.storages[key] = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        stored = self.storages[key]
        if stored.dtype != dtype or stored.numel() != numel:
            raise ArchiveError(f"storage record data/{key} is named with two different types or sizes")
        return stored

    def declared_tensors(self) -> dict[str, set[str]] | None:
        """Per TorchScript class, its ``__parameters__`` + ``__buffers__``; ``None`` if there is no code."""
        sources = [
            n for n in self.zip.namelist() if n.startswith(self.prefix + "code/") and n.endswith(".py")
        ]
        if not sources:
            return None
        declared: dict[str, set[str]] = {}
        budget = MAX_CODE_BYTES
        for name in sources:
            text = self.read(name[len(self.prefix) :], budget).decode("utf-8", errors="replace")
            budget -= len(text)
            module = name[len(self.prefix + "code/") : -len(".py")].replace("/", ".")
            try:
                tree = ast.parse(text)
            except (SyntaxError, ValueError, RecursionError):
                raise ArchiveError(f"TorchScript source {name} does not parse") from None
            for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
                names: set[str] = set()
                for stmt in cls.body:
                    if isinstance(stmt, ast.FunctionDef) and stmt.name == "__setstate__":
                        raise ArchiveError(
                            f"TorchScript class {module}.{cls.name} defines __setstate__: loading it would "
                            "run that code, so the file is refused"
                        )
                    if (
                        isinstance(stmt, ast.Assign)
                        and len(stmt.targets) == 1
                        and isinstance(stmt.targets[0], ast.Name)
                        and stmt.targets[0].id in ("__parameters__", "__buffers__")
                        and isinstance(stmt.value, ast.List)
                    ):
                        names |= {e.value for e in stmt.value.elts if isinstance(e, ast.Constant)}
                declared[f"{module}.{cls.name}"] = names
        return declared


def _flatten_script_object(
    obj: ScriptObject, declared: dict[str, set[str]] | None, prefix: str = "", depth: int = 0
) -> dict[str, torch.Tensor]:
    if depth > 64:
        raise ArchiveError("TorchScript modules nested deeper than 64 levels")
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        raise ArchiveError(
            f"TorchScript object {obj.qualified_name} has custom state that needs code to read"
        )
    wanted = None if declared is None else declared.get(obj.qualified_name)
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if isinstance(value, ScriptObject):
            out.update(_flatten_script_object(value, declared, f"{prefix}{name}.", depth + 1))
        elif isinstance(value, torch.Tensor) and (wanted is None or name in wanted):
            out[f"{prefix}{name}"] = value
    return out


def read_archive(handle: IO[bytes], max_bytes: int) -> Any:
    """The object pickled in a PyTorch zip archive, with tensors rebuilt from its records.

    A TorchScript module comes back as its state dict (``{"visual.conv1.weight": tensor, …}``); a
    ``torch.save`` archive as the object it holds (dicts, lists, tensors, numbers, strings).
    Raises :class:`ArchiveError` with a one-line reason for anything else.
    """
    archive = _Archive(handle, max_bytes)
    data = archive.read("data.pkl", MAX_PICKLE_BYTES)
    try:
        obj = _DataUnpickler(archive, data).load()
    except ArchiveError:
        raise
    except RecursionError:
        raise ArchiveError("the pickle is nested too deeply") from None
    except Exception as err:  # pickle raises many types on a malformed stream
        raise ArchiveError(f"malformed pickle ({type(err).__name__}: {str(err)[:100]})") from None
    if isinstance(obj, ScriptObject):
        return _flatten_script_object(obj, archive.declared_tensors())
    return obj
