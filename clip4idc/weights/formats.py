"""Loading and saving weights: OpenAI CLIP files, original CLIP4IDC checkpoints, and our own format.

* OpenAI CLIP (``ViT-B-32.pt``, a TorchScript archive, or a plain state dict): fills the ``clip.*`` part;
  the pair-specific parts (before/after and joint position embeddings, ``ln_mid``) and the decoder keep
  the original's fresh initialisation.
* Original CLIP4IDC (``pytorch_model.bin.clevr`` …): adaptation stage (``clip.*`` only; the decoder
  starts fresh, as the original's non-strict loader does) or finetuning stage; fp16 entries are cast to
  fp32; the tied keys must agree.
* Ours: a directory with ``config.json`` and ``model.safetensors`` (``save_pretrained``), or, for a
  single-image CLIP such as the bundled stand-in, the same directory holding OpenAI's keys (``save_clip``),
  which loads exactly as an OpenAI file does.

No code in a checkpoint ever runs: zip archives (``torch.save`` files and TorchScript archives) are
read as data by :mod:`clip4idc.archive`, older pickles with ``torch.load(weights_only=True)``, and only
regular files of bounded size are opened. Every problem is one :class:`~clip4idc.errors.Clip4idcError`
naming the file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

import torch

from ..errors import fail
from ..io import open_regular
from ..network.config import ModelConfig, infer_config
from ..network.model import CLIP4IDC, TIED_KEYS
from .archive import ArchiveError, read_archive

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
# Parts the original adds to CLIP: absent from an OpenAI file, initialised fresh.
PAIR_KEYS = (
    "clip.visual.joint_positional_embedding",
    "clip.visual.bef_embedding",
    "clip.visual.aft_embedding",
    "clip.visual.ln_mid.weight",
    "clip.visual.ln_mid.bias",
)
OPENAI_INT_ENTRIES = ("input_resolution", "context_length", "vocab_size")
MAX_CHECKPOINT_BYTES = 8 * 2**30  # the largest OpenAI CLIP file (ViT-L/14@336px) is under 1 GB


def _torch_load_problem(err: Exception) -> str:
    """torch's refusal in one line of ours (torch's own message advises running the file's code anyway)."""
    text = str(err)
    code = re.search(r"GLOBAL ([\w.]+)", text)
    if code:
        return f"it asks to run code ({code.group(1)}), and clip4idc never runs code from a checkpoint"
    detail = text.split("WeightsUnpickler error:", 1)[-1].strip() if "Weights only" in text else text
    detail = detail.splitlines()[0] if detail else type(err).__name__
    return f"truncated or another format? ({detail})"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read raw tensors from any supported file (or one of our directories), without building a model.

    Nothing in the file runs: safetensors is data by design, zip archives (``torch.save`` and TorchScript)
    go through :mod:`clip4idc.archive`, and older pickles through ``torch.load(weights_only=True)``.
    """
    path = Path(path)
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.exists():
            raise fail(path, f"directory has no {WEIGHTS_NAME} (expected a save_pretrained directory)")
        path = weights
    with open_regular(path, MAX_CHECKPOINT_BYTES, "checkpoint") as fh:
        if path.suffix == ".safetensors":
            from safetensors import SafetensorError
            from safetensors.torch import load as load_safetensors

            try:
                return load_safetensors(fh.read())
            except (SafetensorError, OSError, ValueError) as err:
                raise fail(path, f"not a readable safetensors file ({err})") from None
        is_zip = zipfile.is_zipfile(fh)
        fh.seek(0)
        if is_zip:
            try:
                obj = read_archive(fh, MAX_CHECKPOINT_BYTES)
            except ArchiveError as err:
                raise fail(path, f"not a readable PyTorch checkpoint: {err}") from None
        else:
            try:
                obj = torch.load(fh, map_location="cpu", weights_only=True)
            except Exception as err:  # pickle/EOF errors come in many types
                raise fail(path, f"not a readable PyTorch checkpoint: {_torch_load_problem(err)}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise fail(path, "file holds no state dict of tensors")
    return obj


def _normalise(raw: dict[str, object], path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Map any supported layout to ours (``clip.*`` / ``decoder.*``), fp32; returns (state, layout)."""
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        key = key.replace("module.", "", 1) if key.startswith("module.") else key
        key = key.replace("gamma", "weight").replace("beta", "bias")  # the original's init_preweight
        if key in OPENAI_INT_ENTRIES:  # OpenAI's file records these sizes (as ints or 0-d tensors)
            continue
        if not isinstance(value, torch.Tensor):
            raise fail(path, f"entry {key!r} is not a tensor")
        state[key] = value.float() if value.is_floating_point() else value
    if any(k.startswith("clip.") for k in state):
        layout = "clip4idc"
    elif "visual.conv1.weight" in state and "token_embedding.weight" in state:
        layout = "openai"
        state = {f"clip.{k}": v for k, v in state.items()}
    else:
        sample = ", ".join(sorted(state)[:5])
        raise fail(path, f"not a CLIP or CLIP4IDC checkpoint (first keys: {sample})")
    for alias, canonical in TIED_KEYS.items():
        if alias in state:
            value = state.pop(alias)
            if canonical in state:
                ref = state[canonical]
                if value.shape != ref.shape or not torch.allclose(value, ref, atol=1e-3, rtol=1e-3):
                    raise fail(path, f"tied entries {alias} and {canonical} hold different values")
            else:
                state[canonical] = value
    return state, layout


def load_into(model: CLIP4IDC, path: str | Path, raw: dict[str, torch.Tensor] | None = None) -> str:
    """Load a checkpoint file into ``model``; strict about unexpected and misshaped keys.

    Allowed to be missing: the pair-specific parts for an OpenAI CLIP file, and the whole decoder for an
    adaptation-stage file (they keep their fresh initialisation). Returns the detected layout:
    ``openai``, ``clip4idc-adapt`` or ``clip4idc``.
    """
    path = Path(path)
    state, layout = _normalise(raw if raw is not None else read_state_dict(path), path)
    expected = {k: v for k, v in model.state_dict().items() if k not in TIED_KEYS}
    has_decoder = any(k.startswith("decoder.") for k in state)
    allowed_missing = set()
    if layout == "openai":
        allowed_missing |= set(PAIR_KEYS)
    if not has_decoder:
        allowed_missing |= {k for k in expected if k.startswith("decoder.")}
        if layout == "clip4idc":
            layout = "clip4idc-adapt"
    missing = sorted(k for k in expected if k not in state and k not in allowed_missing)
    unexpected = sorted(k for k in state if k not in expected)
    misshaped = sorted(
        f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    )
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("misshaped", misshaped)):
        if items:
            shown = ", ".join(items[:8]) + (f", … ({len(items)} in all)" if len(items) > 8 else "")
            problems.append(f"{label} keys: {shown}")
    if problems:
        raise fail(path, "checkpoint does not match the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)
    return layout


def _raw_config(raw: dict[str, torch.Tensor], path: Path, **overrides: object) -> ModelConfig:
    state, _ = _normalise(raw, path)
    try:
        return infer_config(state, **overrides)
    except KeyError as err:
        raise fail(path, f"cannot infer the architecture: key {err} is missing") from None
    except ValueError as err:
        raise fail(path, str(err)) from None


def build_from_state(
    path: Path, raw: dict[str, torch.Tensor], config: ModelConfig | None, **overrides: object
) -> CLIP4IDC:
    """A model of ``config`` (else the architecture the tensor shapes show) holding ``raw``'s weights."""
    cfg = config if config is not None else _raw_config(raw, path, **overrides)
    model = CLIP4IDC(cfg)
    model.load_layout = load_into(model, path, raw)
    return model


def save_pretrained(model: CLIP4IDC, directory: str | Path, dtype: torch.dtype | None = None) -> None:
    """Write ``config.json`` + ``model.safetensors`` (tied aliases stored once), atomically per file."""
    state = {k: v for k, v in model.state_dict().items() if k not in TIED_KEYS}
    _write_folder(state, model.config, directory, dtype)


def save_clip(model: CLIP4IDC, directory: str | Path, dtype: torch.dtype | None = None) -> None:
    """Write the model's single-image CLIP in OpenAI's layout (``visual.*``, ``transformer.*``, …; no pair
    parts, no decoder) with its ``config.json``: what a pretrained CLIP file holds, loaded as one."""
    state = {
        k.removeprefix("clip."): v
        for k, v in model.state_dict().items()
        if k.startswith("clip.") and k not in PAIR_KEYS and k not in TIED_KEYS
    }
    _write_folder(state, model.config, directory, dtype)


def _write_folder(
    state: dict[str, torch.Tensor], config: ModelConfig, directory: str | Path, dtype: torch.dtype | None
) -> None:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().cpu()
        for k, v in state.items()
    }
    for stale in [*directory.glob(f".{WEIGHTS_NAME}.*.tmp"), *directory.glob("tmp*.tmp")]:
        stale.unlink(missing_ok=True)  # left by a save that was killed mid-write
    with tempfile.NamedTemporaryFile(
        dir=directory, prefix=f".{WEIGHTS_NAME}.", suffix=".tmp", delete=False
    ) as tmp:
        tmp_name = tmp.name
    try:
        save_file(state, tmp_name, metadata={"format": "pt", "clip4idc_config": json.dumps(config.to_dict())})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)  # tempfile creates 0600; a saved model is an ordinary file
        os.replace(tmp_name, directory / WEIGHTS_NAME)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    tmp_cfg = directory / (CONFIG_NAME + ".tmp")
    config.save(tmp_cfg)
    os.replace(tmp_cfg, directory / CONFIG_NAME)


__all__ = ["build_from_state", "load_into", "read_state_dict", "save_clip", "save_pretrained"]
