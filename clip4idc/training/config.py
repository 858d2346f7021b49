"""The training config: everything a run depends on, saved as ``config.json`` in the run folder.

Options every stage shares sit at the top level; those of one stage sit in its group, ``pretrain``
(:class:`PretrainOptions`, the CLIP stand-in's single-image pretraining), ``adapt`` (:class:`AdaptOptions`,
stage 1) or ``finetune`` (:class:`FinetuneOptions`, stage 2), and only the group of the run's stage
may differ from its defaults. A group also holds its stage's defaults (weight decay, selection metric) and
says what its stage's training set is given, so the training loop reads them instead of asking the stage::

    {"stage": "finetune", "epochs": 5, "finetune": {"freeze_vision": true, "attention_guidance": 0.5}}

    clip4idc train --config FILE epochs=3 finetune.attention_guidance=0.5 model.max_words=24

A config file lists only what differs: it may name a ``"base"`` config (a path relative to itself) whose
options it overrides (a group key by key), so a recipe's stages are small deltas on one base.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import Clip4idcError, fail
from ..io import read_json
from ..network.config import ModelConfig, get_config


@dataclass
class PretrainOptions:
    """Before stage 1: a single-image CLIP learns from images and their descriptions, as OpenAI's did from
    alt-texts (the CLIP stand-in; :mod:`clip4idc.data.pretraining`). ``hard_negatives`` near-miss
    descriptions per image join its image→text row; the first ``shape_negatives`` give one object each
    other shape (a cube is told from a cylinder only by its shape)."""

    weight_decay: ClassVar[float] = 0.2  # CLIP's
    select_metric: ClassVar[str] = "attributes"  # mean zero-shot attribute accuracy on val
    trains_decoder: ClassVar[bool] = False

    hard_negatives: int = 2
    shape_negatives: int = 1  # the first of them about one object's shape; 2: each other shape

    def check(self) -> None:
        if not 0 <= self.hard_negatives <= 8:
            raise ValueError("hard_negatives must be 0-8")
        if not 0 <= self.shape_negatives <= 2:
            raise ValueError("shape_negatives must be 0-2 (there are 2 other shapes)")

    def dataset_options(self) -> dict[str, Any]:
        """Keyword arguments for the training set (:class:`clip4idc.data.pretraining.DescriptionDataset`)."""
        return dataclasses.asdict(self)


@dataclass
class AdaptOptions:
    """Stage 1, contrastive pair↔caption retrieval. The options are harder negatives for its loss, drawn by
    the training set (:mod:`clip4idc.data.rewrite`, not in CLIP4IDC)."""

    weight_decay: ClassVar[float] = 0.2  # the original's default for this stage
    select_metric: ClassVar[str] = "R@1"  # val metric that picks best/
    trains_decoder: ClassVar[bool] = False  # no decoder; one an init brings rides along frozen

    reverse_twins: bool = False  # each add/drop pair also backwards, in its batch
    type_negatives: int = 0  # k captions of the same object with other changes, as negatives
    unchanged_negatives: bool = False  # each scene unchanged (before + distractor) as a negative pair

    def check(self) -> None:
        if not 0 <= self.type_negatives <= 4:
            raise ValueError("type_negatives must be 0-4 (there are 4 other change types)")

    def dataset_options(self) -> dict[str, Any]:
        """Keyword arguments for the training set (:class:`clip4idc.data.AdaptationDataset`)."""
        return dataclasses.asdict(self)


@dataclass
class FinetuneOptions:
    """Stage 2, the caption decoder. ``no_change_weight`` scales the CLEVR-Change no-change caption term
    (1 = the original); ``attention_guidance`` weighs :mod:`clip4idc.training.guidance`'s loss (not in
    CLIP4IDC; 0 = off)."""

    weight_decay: ClassVar[float] = 0.01
    select_metric: ClassVar[str] = "CIDEr"
    trains_decoder: ClassVar[bool] = True

    val_beam_size: int = 1
    freeze_vision: bool = False  # train only the decoder (+ shared word embeddings): a cheap CPU recipe
    center_visual: int = 0  # first centre the pair encoder's output tokens on this many training pairs
    no_change_weight: float = 1.0
    attention_guidance: float = 0.0

    def check(self) -> None:
        if self.no_change_weight < 0:
            raise ValueError("no_change_weight must be at least 0")
        if self.attention_guidance < 0:
            raise ValueError("attention_guidance must be at least 0")
        if self.val_beam_size < 1 or self.center_visual < 0:
            raise ValueError("val_beam_size must be at least 1 and center_visual at least 0")

    def dataset_options(self) -> dict[str, Any]:
        """Keyword arguments for the training set (:class:`clip4idc.data.CaptionDataset`): none."""
        return {}


# The stages, each with its option group (``TrainConfig.pretrain``, ``.adapt``, ``.finetune``).
GROUPS: dict[str, type[PretrainOptions] | type[AdaptOptions] | type[FinetuneOptions]] = {
    "pretrain": PretrainOptions,
    "adapt": AdaptOptions,
    "finetune": FinetuneOptions,
}
STAGES = tuple(GROUPS)


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` in the run folder."""

    stage: str = "adapt"  # pretrain | adapt | finetune
    dataset: str = "clevr"  # clevr | spot | ier
    data: str = ""  # dataset root folder
    out: str = "runs/run"
    model: str = "ViT-B-32"  # named model config or a JSON file
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # named weights, OpenAI CLIP file, adaptation checkpoint (ours or original), ours
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
    weight_decay: float | None = None  # None: the stage group's default
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
    select_metric: str | None = None  # None: the stage group's default
    progress: bool = True
    pretrain: PretrainOptions = field(default_factory=PretrainOptions)
    adapt: AdaptOptions = field(default_factory=AdaptOptions)
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)

    def __post_init__(self) -> None:
        if self.stage not in GROUPS:
            raise ValueError(f"stage must be one of {STAGES}")
        for name, kind in GROUPS.items():
            group = getattr(self, name)
            if name != self.stage and group != kind():
                names = [f.name for f in dataclasses.fields(kind)]
                changed = [f"{name}.{n}" for n in names if getattr(group, n) != getattr(kind(), n)]
                listed = f"{', '.join(names[:-1])} and {names[-1]}"
                raise ValueError(
                    f"{', '.join(changed)} set for stage {self.stage}: {listed} are for stage {name}"
                )
        self.options.check()
        if self.weight_decay is None:
            self.weight_decay = self.options.weight_decay
        if self.select_metric is None:
            self.select_metric = self.options.select_metric

    @property
    def options(self) -> PretrainOptions | AdaptOptions | FinetuneOptions:
        """The option group of this run's stage."""
        return getattr(self, self.stage)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A config from plain values, as ``config.json`` holds them; an unknown option is a ValueError
        naming it (and its group, when it is a stage's option given at the top level)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [_unknown_name(k) for k in data if k not in known]
        groups = {}
        for name, kind in GROUPS.items():
            options = data.get(name, {})
            if not isinstance(options, dict):
                raise ValueError(f"{name} must be a JSON object of stage {name}'s options, got {options!r}")
            names = {f.name for f in dataclasses.fields(kind)}
            unknown += [f"{name}.{k}" for k in options if k not in names]
            groups[name] = options
        if unknown:
            raise ValueError(f"unknown training options: {', '.join(sorted(unknown))}")
        return cls(**{**data, **{name: GROUPS[name](**options) for name, options in groups.items()}})

    @classmethod
    def from_file(
        cls, path: str | Path | None, overrides: list[str], stage: str | None = None
    ) -> TrainConfig:
        """``path``'s options (over its bases), then ``stage``, then ``key=value`` overrides: ``KEY`` for a
        top-level option, ``pretrain.KEY`` / ``adapt.KEY`` / ``finetune.KEY`` for a stage's, ``model.KEY`` for the model's."""
        data: dict[str, Any] = read_config_file(Path(path)) if path else {}
        if stage:
            data["stage"] = stage
        types = option_types()
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise Clip4idcError(f"override {item!r} is not key=value")
            group, dot, name = key.partition(".")
            if group == "model" and dot:
                try:
                    data.setdefault("model_overrides", {})[name] = json.loads(value)
                except json.JSONDecodeError:
                    raise Clip4idcError(f"override {item!r}: {value!r} is not a JSON value") from None
                continue
            if key not in types:
                known = ", ".join([*sorted(types), "model.KEY"])
                raise Clip4idcError(f"unknown training option {_unknown_name(key)!r}; known: {known}")
            try:
                parsed = _parse_value(value, types[key])
            except ValueError:
                raise Clip4idcError(f"override {item!r}: {value!r} is not a valid {types[key]}") from None
            if not dot:
                data[key] = parsed
            elif isinstance(data.setdefault(group, {}), dict):
                data[group][name] = parsed
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise fail(path or "config", str(err)) from None


def option_types() -> dict[str, str]:
    """Every option an override may set (``GROUP.KEY`` for a stage's), with its type's name."""
    types = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig) if f.name not in GROUPS}
    for name, kind in GROUPS.items():
        types.update({f"{name}.{f.name}": str(f.type) for f in dataclasses.fields(kind)})
    return types


def _unknown_name(key: str) -> str:
    """``key``, with where it belongs when it is a stage's option given without its group."""
    for name, kind in GROUPS.items():
        if key in {f.name for f in dataclasses.fields(kind)}:
            return f"{key} (a {name} option: {name}.{key})"
    return key


def flat_options(config: dict[str, Any]) -> dict[str, Any]:
    """A config's values (as ``dataclasses.asdict`` gives them) by option name, a stage's as ``GROUP.KEY``."""
    flat = {k: v for k, v in config.items() if k not in GROUPS}
    for name in GROUPS:
        flat.update({f"{name}.{k}": v for k, v in (config.get(name) or {}).items()})
    return flat


def read_config_file(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's options over those of its ``"base"`` (relative to the file; a stage's group merges
    key by key), ``_comment`` keys dropped."""
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
    merged = read_config_file(base_path, (*seen, path.resolve()))
    for name in GROUPS:
        if isinstance(merged.get(name), dict) and isinstance(data.get(name), dict):
            data[name] = {**merged[name], **data[name]}
    return {**merged, **data}


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
    """The architecture; a stage that trains no decoder (stage 1, as the original's retrieval model) has
    none unless the init checkpoint brings a trained one, which it then carries through unchanged."""
    overrides = dict(cfg.model_overrides)  # e.g. max_words, the caption budget: the model config's own
    if not cfg.options.trains_decoder and not init_has_decoder:
        overrides["decoder_layers"] = 0
    if cfg.model.endswith(".json"):
        base = ModelConfig.load(cfg.model)
        return ModelConfig.from_dict({**base.to_dict(), **overrides}, strict=True)
    return get_config(cfg.model, **overrides)
