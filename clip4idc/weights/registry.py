"""Named weights and the one loader, :func:`load`: a name (``"demo"``), a folder, a file or a run folder.

Every caller (command line, app, evaluation, notebooks, tests) loads through here, so "demo" is resolved in
one place and what a user must be told about the loaded weights (``model.notes``) is written once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..errors import fail
from ..network.config import ModelConfig, get_config
from ..network.model import CLIP4IDC
from .domain import read_domain
from .formats import CONFIG_NAME, WEIGHTS_NAME, build_from_state, read_state_dict

WEIGHTS_DIR = Path(__file__).parent
# Named weights shipped with the package: name -> save_pretrained folder under WEIGHTS_DIR.
# Each has the demo architecture; "clip-standin" is a single-image CLIP (OpenAI's layout), what stage 1 starts
# from when no OpenAI CLIP is at hand: loaded, its pair parts and caption decoder are fresh.
NAMED_WEIGHTS = {"demo": "demo", "clip-standin": "clip_standin"}
# What each load layout means for the captions and maps (``model.load_layout`` -> note).
LAYOUT_NOTES = {
    "openai": "single-image CLIP weights (OpenAI's layout): the caption decoder and the pair-specific encoder parts are untrained, "
    "so captions are meaningless; encoder maps show CLIP's own attention",
    "clip4idc-adapt": "adaptation-stage checkpoint: the caption decoder is untrained, so captions are "
    "meaningless; retrieval scores and encoder maps are meaningful",
}
RANDOM_NOTE = (
    "the bundled {name} weights are not installed: this is a random-weight model with the demo "
    "architecture, so its captions are gibberish and its maps show no learned attention"
)


def named_path(name: str) -> Path | None:
    """The folder of named weights ``name`` (``None`` when ``name`` is not a registered name)."""
    return WEIGHTS_DIR / NAMED_WEIGHTS[name] if name in NAMED_WEIGHTS else None


def installed(name: str = "demo") -> bool:
    """Whether the named weights are present (the bundled demo ships with the package)."""
    path = named_path(name)
    return path is not None and (path / WEIGHTS_NAME).exists()


def resolve_checkpoint(checkpoint: str) -> tuple[str, str | None]:
    """A ``clip4idc train`` run folder means its ``best/`` model; returns ``(path, note for the user)``."""
    path = Path(checkpoint)
    if checkpoint not in NAMED_WEIGHTS and path.is_dir() and not (path / WEIGHTS_NAME).exists():
        best = path / "best"
        if (best / WEIGHTS_NAME).exists():
            return str(best), f"{path} is a training run folder; evaluating its best model {best}"
        if best.is_dir() or (path / "checkpoint.pt").exists():
            raise fail(path, f"training run folder without a saved best model ({best / WEIGHTS_NAME})")
    return checkpoint, None


def load(
    source: str | Path = "demo",
    config: ModelConfig | dict | str | None = None,
    device: str | torch.device = "cpu",
    **overrides: object,
) -> CLIP4IDC:
    """Build a model and load weights: a registered name (``"demo"``, bundled), a ``save_pretrained``
    directory, a ``clip4idc train`` run folder (its ``best/``), an OpenAI CLIP file or an original CLIP4IDC
    checkpoint. The architecture comes from ``config`` (a :class:`ModelConfig`, a dict, or a named config),
    else from the directory's ``config.json``, else from the tensor shapes (``overrides`` set what shapes
    cannot show, e.g. ``intra_layers``).

    ``model.load_layout`` says what was loaded (``clip4idc``, ``clip4idc-adapt``, ``openai``, or ``random``
    for ``demo`` before its weights are installed) and ``model.notes`` what makes its captions meaningless;
    captions are meaningful only when ``load_layout == "clip4idc"``. ``model.domain`` holds the folder's
    training-domain statistics (:mod:`.domain`), ``None`` when it carries none.
    """
    name = str(source)
    if name in NAMED_WEIGHTS and not installed(name):
        torch.manual_seed(0)
        model = CLIP4IDC(get_config("demo")).eval()
        model.load_layout = "random"
        model.notes = [RANDOM_NOTE.format(name=name)]
        model.domain = None
        return model.to(device)
    named = named_path(name)
    resolved, run_note = resolve_checkpoint(name) if named is None else (str(named), None)
    path = Path(resolved)
    raw = read_state_dict(path)
    cfg = None
    if isinstance(config, str):
        cfg = get_config(config, **overrides)
    elif isinstance(config, dict):
        cfg = ModelConfig.from_dict({**config, **overrides})
    elif isinstance(config, ModelConfig):
        cfg = config
    elif path.is_dir() and (path / CONFIG_NAME).exists():
        cfg = ModelConfig.load(path / CONFIG_NAME)
        if overrides:
            cfg = ModelConfig.from_dict({**cfg.to_dict(), **overrides}, strict=True)
    model = build_from_state(path, raw, cfg, **overrides)
    # What the model knows (weights/domain.py); None for folders without it and for single files.
    model.domain = read_domain(path, model.config.vision_width) if path.is_dir() else None
    model.notes = ([run_note] if run_note else []) + (
        [LAYOUT_NOTES[model.load_layout]] if model.load_layout in LAYOUT_NOTES else []
    )
    return model.to(device).eval()


def print_notes(model: CLIP4IDC, source: object) -> None:
    """Tell the user, on stderr, what :func:`load` noted about ``source`` (one line per note)."""
    for note in getattr(model, "notes", []):
        print(f"warning: {source}: {note}", file=sys.stderr)


__all__ = ["NAMED_WEIGHTS", "installed", "load", "named_path", "print_notes", "resolve_checkpoint"]
