"""The training config: everything a run depends on, saved as ``config.json`` in the run folder.

A config file lists only what differs: it may name a ``"base"`` config (a path relative to itself) whose
options it overrides, so a recipe's stages are small deltas on one base.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Clip4idcError, fail
from ..io import read_json
from ..network.config import ModelConfig, get_config

STAGES = ("adapt", "finetune")


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` in the run folder."""

    stage: str = "adapt"
    dataset: str = "clevr"  # clevr | spot | ier
    data: str = ""  # dataset root folder
    out: str = "runs/run"
    model: str = "ViT-B-32"  # named model config or a JSON file
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # OpenAI CLIP file, adaptation checkpoint (ours or original), or ours
    epochs: int = 12
    batch_size: int = 128  # global batch (all ranks, all accumulation steps)
    batch_size_val: int = 128
    grad_accum: int = 1
    lr: float = 1e-4
    coef_lr: float = 1e-3  # CLIP's parameters train at lr * coef_lr
    coef_lr_shared: float | None = (
        None  # CLIP's word/position embeddings (shared with the decoder); None: coef_lr
    )
    warmup_proportion: float = 0.1
    weight_decay: float | None = None  # None: the original's (0.2 adapt, 0.01 finetune)
    max_grad_norm: float = 1.0
    seed: int = 2021
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto
    device: str = "auto"
    workers: int = 2
    cache_dir: str | None = None  # cache resized images (uint8) here after the first epoch
    cache_in_memory: bool = False  # also keep them in RAM (3·R² bytes per image; best with workers=0)
    threads: int | None = None
    compile: bool = False  # torch.compile the training step: same maths, fused kernels; first steps slower
    max_train_pairs: int | None = None  # subsample for quick runs
    max_val_pairs: int | None = None
    val_every: int = 1  # 0: no validation (then no best/ either)
    stop_after: int | None = None  # stop after this many epochs (the schedule still spans `epochs`)
    val_beam_size: int = 1
    select_metric: str | None = None  # None: R@1 (adapt) or CIDEr (finetune)
    freeze_vision: bool = False  # finetune only the decoder (+ shared word embeddings): a cheap CPU recipe
    center_visual: int = (
        0  # finetune: centre the pair encoder's output tokens on this many training pairs first
    )
    reverse_twins: bool = False  # adapt: each add/drop pair also backwards, in its batch (data/rewrite.py)
    type_negatives: int = 0  # adapt: k captions of the same object with other changes, as negatives
    unchanged_negatives: bool = False  # adapt: each scene unchanged (before + distractor) as a negative pair
    no_change_weight: float = 1.0  # finetune, CLEVR-Change: weight of each scene's no-change caption term
    attention_guidance: float = (
        0.0  # finetune: weight of clip4idc.training.guidance's loss (not in CLIP4IDC; 0 = off)
    )
    progress: bool = True

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}")
        if self.weight_decay is None:
            self.weight_decay = 0.2 if self.stage == "adapt" else 0.01
        rewrites = self.reverse_twins or self.type_negatives
        if (rewrites or self.unchanged_negatives) and self.stage != "adapt":
            raise ValueError(
                "reverse_twins, type_negatives and unchanged_negatives are for stage adapt (the "
                "contrastive loss's negatives)"
            )
        if self.no_change_weight < 0:
            raise ValueError("no_change_weight must be at least 0")
        if self.no_change_weight != 1.0 and self.stage != "finetune":
            raise ValueError(
                "no_change_weight weighs the caption loss's no-change term: it is for stage finetune"
            )
        if self.attention_guidance < 0:
            raise ValueError("attention_guidance must be at least 0")
        if self.attention_guidance and self.stage != "finetune":
            raise ValueError(
                "attention_guidance guides the caption decoder's attention: it is for stage finetune"
            )
        if not 0 <= self.type_negatives <= 4:
            raise ValueError("type_negatives must be 0-4 (there are 4 other change types)")
        if self.select_metric is None:
            self.select_metric = "R@1" if self.stage == "adapt" else "CIDEr"

    @classmethod
    def from_file(
        cls, path: str | Path | None, overrides: list[str], stage: str | None = None
    ) -> TrainConfig:
        data: dict[str, Any] = {}
        if path:
            path = Path(path)
            data = read_config_file(path)
        if stage:
            data["stage"] = stage
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise Clip4idcError(f"override {item!r} is not key=value")
            if key.startswith("model."):
                try:
                    data.setdefault("model_overrides", {})[key[6:]] = json.loads(value)
                except json.JSONDecodeError:
                    raise Clip4idcError(f"override {item!r}: {value!r} is not a JSON value") from None
                continue
            if key not in types:
                raise Clip4idcError(f"unknown training option {key!r}; known: {', '.join(sorted(types))}")
            try:
                data[key] = _parse_value(value, str(types[key]))
            except ValueError:
                raise Clip4idcError(f"override {item!r}: {value!r} is not a valid {types[key]}") from None
        unknown = set(data) - set(types)
        if unknown:
            raise fail(path, f"unknown training options: {', '.join(sorted(unknown))}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise fail(path or "config", str(err)) from None


def read_config_file(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's options over those of its ``"base"`` (relative to the file), ``_comment`` keys dropped."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise fail(path, "a training config must be a JSON object")
    data = {k: v for k, v in data.items() if not k.startswith("_")}  # "_comment" keys
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise fail(path, f"base must be a config file name, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in seen or base_path == path.resolve():
        raise fail(path, f"base {base} leads back to this config")
    return {**read_config_file(base_path, (*seen, path.resolve())), **data}


def _parse_value(value: str, type_name: str) -> Any:
    if value.lower() in ("none", "null"):
        return None
    if type_name.startswith("int"):
        return int(value)
    if type_name.startswith("float"):
        return float(value)
    if type_name.startswith("bool"):
        if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
            raise ValueError(value)
        return value.lower() in ("1", "true", "yes")
    if type_name.startswith("dict"):
        return json.loads(value)
    return value


def model_config(cfg: TrainConfig, init_has_decoder: bool = False) -> ModelConfig:
    """The architecture; stage one has no decoder (as the original's retrieval model) unless the init
    checkpoint brings a trained one, which adaptation then carries through unchanged."""
    overrides = dict(cfg.model_overrides)  # e.g. max_words, the caption budget: the model config's own
    if cfg.stage == "adapt" and not init_has_decoder:
        overrides["decoder_layers"] = 0
    if cfg.model.endswith(".json"):
        base = ModelConfig.load(cfg.model)
        return ModelConfig.from_dict({**base.to_dict(), **overrides}, strict=True)
    return get_config(cfg.model, **overrides)
