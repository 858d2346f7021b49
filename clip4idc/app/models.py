"""The models the app offers: the bundled one and those its operator listed at start, nothing else.

Why: the app is shown to others. A visitor picks a name from this menu; a string that is not on it is
refused with the same answer whatever exists on the server's disk, so the checkpoint box is no window on
the disk and cannot make the server load a file a visitor uploaded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Clip4idcError

CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")


@dataclass
class LoadedModel:
    """A model ready for the app, with what the UI must say about it."""

    model: Any
    key: str
    label: str
    notes: list[str] = field(default_factory=list)
    decoder_trained: bool = True


def load_for_app(name: str, source: str | Path) -> LoadedModel:
    """Load one of the operator's checkpoints (``source``: a registered name or a path) as menu ``name``."""
    from ..weights.registry import NAMED_WEIGHTS, load

    model = load(source)
    notes = [f"{n[0].upper()}{n[1:]}.".replace("untrained", "**untrained**") for n in model.notes]
    layout, cfg = model.load_layout, model.config
    if str(source) in NAMED_WEIGHTS:
        label = "bundled demo model" if layout != "random" else "demo architecture, random weights"
    else:
        label = f"{name} ({layout} layout, {cfg.name}, {cfg.resolution}px / patch {cfg.patch})"
    return LoadedModel(model, name, label, notes, decoder_trained=layout == "clip4idc")


def _is_checkpoint(path: Path) -> bool:
    from ..weights.formats import WEIGHTS_NAME

    return (path / WEIGHTS_NAME).is_file() if path.is_dir() else path.suffix in CHECKPOINT_SUFFIXES


def offered_checkpoints(sources: Sequence[str | Path] = ()) -> dict[str, str]:
    """The menu of the app: ``name → source``, the bundled model first, then what the operator listed.

    Why: a visitor chooses only among these names. A folder that is not itself a checkpoint offers each
    checkpoint inside it (``save_pretrained`` folders and ``.bin``/``.pt``/``.pth``/``.safetensors`` files).
    A missing path is the operator's mistake and fails at start.
    """
    offered = {"demo": "demo"}
    for source in [sources] if isinstance(sources, (str, Path)) else sources:
        if str(source) == "demo":
            continue
        path = Path(source).expanduser()
        if not path.exists():
            raise Clip4idcError(f"{path}: checkpoint not found (given with --checkpoint)")
        found = (
            [path]
            if _is_checkpoint(path) or not path.is_dir()
            else sorted(p for p in path.iterdir() if _is_checkpoint(p))
        )
        if not found:
            raise Clip4idcError(f"{path}: folder holds no checkpoint (given with --checkpoint)")
        for item in found:
            name, n = item.name, 2
            while name in offered:
                name, n = f"{item.name} ({n})", n + 1
            offered[name] = str(item.resolve())
    return offered


class ModelCache:
    """Thread-safe LRU of loaded models, keyed by menu name; only the offered checkpoints can be loaded."""

    def __init__(self, offered: dict[str, str] | None = None, capacity: int = 2) -> None:
        self.offered = offered if offered is not None else offered_checkpoints()
        self.capacity = capacity
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, checkpoint: str | None) -> LoadedModel:
        key = (checkpoint or "demo").strip()
        if key not in self.offered:  # the same answer whatever exists on the server's disk
            shown = key if len(key) <= 60 else key[:57] + "..."
            raise Clip4idcError(
                f"{shown!r} is not a checkpoint this app offers (choose one of: {', '.join(self.offered)})"
            )
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            loaded = load_for_app(key, self.offered[key])
            self._models[key] = loaded
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return loaded
