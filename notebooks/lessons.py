"""The notebooks' lesson plan: a synthetic CLEVR-Change set and a tiny two-stage model, trained on a CPU.

Why: the notebooks (and anyone trying the toolkit on a laptop) need the same three things - data, a
retrieval-adapted checkpoint, a captioning checkpoint - without a GPU, in seconds (``CLIP4IDC_QUICK=1``, for
CI) or minutes (default). This module sits beside the notebooks, not in the package: it only *composes* the
library (:func:`clip4idc.data.synthetic.generate` makes the data, ordinary
:class:`~clip4idc.training.config.TrainConfig` runs of :func:`clip4idc.training.train.train` train) and
re-implements no model, loss or metric. Nothing here trains unless asked to by name: :func:`train_epochs`
and :func:`train_or_reuse` are the calls that train.

* :func:`lesson_plan` - every size in one place (pairs, image size, model, epochs, seeds), quick or full;
  :func:`setup` - the plan and work folder every lesson starts with.
* :func:`work_dir` - where runs go (``$CLIP4IDC_WORK`` or a default), one sub-folder per plan so quick and
  full runs never mix.
* :func:`synthetic_dataset` / :func:`plan_dataset` - generate once, reuse while the same dataset is on disk.
* :func:`adapt_config`, :func:`finetune_config`, :func:`ablation_config` - the runs the notebooks build on
  each other (notebook 2's adaptation, notebook 3's finetuning, notebook 4's runs with and without
  adaptation), as training configs; :func:`train_config` is their common part.
* :func:`train_epochs` - train and hand over each epoch's record as it is written (for live plots);
  :func:`train_or_reuse` - train, or reuse a finished run of exactly that config;
  :func:`student_model` - notebook 3's model (trained now if missing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clip4idc.training.config import FinetuneOptions, TrainConfig
from clip4idc.training.train import train_by_epoch

__all__ = [
    "QUICK_ENV",
    "WORK_ENV",
    "LessonPlan",
    "ablation_config",
    "adapt_config",
    "finetune_config",
    "lesson_plan",
    "plan_dataset",
    "quick_mode",
    "setup",
    "start_checkpoint",
    "student_model",
    "synthetic_dataset",
    "train_config",
    "train_epochs",
    "train_or_reuse",
    "work_dir",
]

QUICK_ENV = "CLIP4IDC_QUICK"
WORK_ENV = "CLIP4IDC_WORK"


def quick_mode() -> bool:
    """True when ``$CLIP4IDC_QUICK`` is set to 1/true/yes (CI sizes)."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class LessonPlan:
    """Sizes of the tutorial data and runs. ``model`` is a named config; ``model_overrides`` change it
    (the tiny model with 8-pixel patches: an 8×8 grid, so attention maps show where things are).

    ``start`` is where stage 1 begins: ``None`` (random weights) or ``"demo"``, the bundled demo model's
    CLIP without its decoder - offline, the stand-in for the pretrained OpenAI CLIP that real runs start
    from. ``coef_lr`` / ``coef_lr_shared`` scale CLIP's learning rate as in :class:`~clip4idc.training.config.TrainConfig`.
    """

    quick: bool
    pairs: int
    image_size: tuple[int, int]
    data_seed: int
    model: str
    model_overrides: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 16
    adapt_epochs: int = 10
    adapt_lr: float = 2e-4
    finetune_epochs: int = 8
    finetune_lr: float = 2e-3
    max_words: int = 20
    seeds: tuple[int, ...] = (0, 1)
    threads: int | None = None
    # processes that render the synthetic set (scenes are seeded one by one: the same files for any number)
    data_workers: int = 1
    val_frac: float = 0.1
    test_frac: float = 0.15
    start: str | None = None
    coef_lr: float = 1.0
    coef_lr_shared: float | None = None
    freeze_vision: bool = False  # stage 2 (see projects/demo_model/journal.md for why the demo recipe does)
    center_visual: int = 0

    @property
    def name(self) -> str:
        return "quick" if self.quick else "full"


def lesson_plan(quick: bool | None = None) -> LessonPlan:
    """The plan for ``quick`` (default: :func:`quick_mode`). Quick: ~200 pairs, runs of seconds, one torch
    thread (small models gain little from more, and a shared CI machine loses a lot). Full: ~1,500 pairs,
    minutes on a laptop CPU.

    With the bundled demo model installed, the lessons start from its CLIP (``start="demo"``) as real work
    starts from OpenAI's: stage 1 adapts it gently, stage 2 trains a fresh decoder on it. Without it they
    fall back to the tiny model trained from random weights, which runs but learns little in minutes.
    """
    from clip4idc.weights.registry import installed as demo_installed

    quick = quick_mode() if quick is None else quick
    scenes = dict(quick=False, pairs=1500, image_size=(160, 120), data_seed=0, seeds=(0, 1))
    scenes["data_workers"] = max(1, min(4, os.cpu_count() or 1))
    if demo_installed():
        full = LessonPlan(
            **scenes,
            model="demo",
            start="demo",
            batch_size=16,
            adapt_epochs=3,
            adapt_lr=5e-5,
            finetune_epochs=3,  # a fresh decoder leaves the language prior in the first (CPU minutes)
            finetune_lr=1e-3,
            coef_lr=0.1,
            coef_lr_shared=0.05,
            freeze_vision=True,
            center_visual=256,
        )
        small = dict(pairs=200, batch_size=16, adapt_epochs=2, finetune_epochs=1, seeds=(0, 1))
    else:
        full = LessonPlan(
            **scenes,
            model="tiny",
            model_overrides={"patch": 8},
            adapt_epochs=15,
            finetune_epochs=12,
        )
        small = dict(pairs=200, adapt_epochs=8, finetune_epochs=6, seeds=(0, 1))
    if not quick:
        return full
    return dataclasses.replace(full, quick=True, threads=1, data_workers=1, **small)


def work_dir(default: str | Path = "_work", plan: LessonPlan | None = None) -> Path:
    """``$CLIP4IDC_WORK`` (else ``default``) / ``quick`` or ``full``; created if missing."""
    plan = plan or lesson_plan()
    path = Path(os.environ.get(WORK_ENV) or default) / plan.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def setup(default: str | Path = "_work") -> tuple[LessonPlan, Path]:
    """Every lesson's first call: the plan (:func:`lesson_plan`), its work folder (:func:`work_dir`), torch's
    thread count when the plan sets one (tiny models run fastest on one thread of a busy CPU), and one
    line saying which sizes this run uses."""
    import torch

    plan = lesson_plan()
    work = work_dir(default, plan)
    if plan.threads:
        torch.set_num_threads(plan.threads)
    w, h = plan.image_size
    print(
        f"plan '{plan.name}': {plan.pairs} synthetic scenes at {w}x{h}, model '{plan.model}' {plan.model_overrides}"
    )
    print("work folder:", work)
    return plan, work


# ----------------------------------------------------------------------------------------------------
# data


def _same_dataset(
    root: Path, pairs: int, size: tuple[int, int], seed: int, val_frac: float, test_frac: float
) -> bool:
    """Does ``root`` hold the complete output of ``generate`` with these settings?"""
    from clip4idc.data.synthetic.writer import make_splits

    try:
        meta = json.loads((root / "scenes.json").read_text(encoding="utf-8"))
        splits = json.loads((root / "splits.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return (
        meta.get("seed") == seed
        and list(meta.get("image_size", [])) == list(size)
        and len(meta.get("scenes", {})) == pairs
        and splits == make_splits(pairs, seed, val_frac, test_frac)
    )


def synthetic_dataset(
    root: str | Path,
    pairs: int,
    size: tuple[int, int] = (160, 120),
    seed: int = 0,
    val_frac: float = 0.1,
    test_frac: float = 0.15,
    workers: int = 1,
    progress: bool = False,
) -> Path:
    """A synthetic CLEVR-Change set at ``root``: generated with :func:`clip4idc.data.synthetic.generate`
    unless ``root`` already holds one with the same seed, size and number of pairs (then reused)."""
    from clip4idc.data.synthetic import generate

    root = Path(root)
    if not _same_dataset(root, pairs, size, seed, val_frac, test_frac):
        generate(root, pairs, size, seed, workers, val_frac, test_frac, progress)
    return root


def plan_dataset(plan: LessonPlan, work: Path) -> Path:
    """The plan's synthetic dataset in ``work/synth`` (see :func:`synthetic_dataset`)."""
    return synthetic_dataset(
        work / "synth",
        plan.pairs,
        plan.image_size,
        plan.data_seed,
        plan.val_frac,
        plan.test_frac,
        workers=plan.data_workers,
    )


# ----------------------------------------------------------------------------------------------------
# training


def train_config(
    plan: LessonPlan, stage: str, data: str | Path, out: str | Path, **overrides: Any
) -> TrainConfig:
    """A :class:`~clip4idc.training.config.TrainConfig` with the plan's sizes (every option can be overridden).

    Random-init tiny models train every part at the full learning rate (``coef_lr=1``); no loader workers
    (the images are small and cached as uint8 under ``data/.cache``); no progress bars.
    """
    data = Path(data)
    base: dict[str, Any] = dict(
        stage=stage,
        dataset="clevr",
        data=str(data),
        out=str(out),
        model=plan.model,
        model_overrides={**plan.model_overrides, "max_words": plan.max_words},
        epochs=plan.adapt_epochs if stage == "adapt" else plan.finetune_epochs,
        batch_size=plan.batch_size,
        batch_size_val=64,
        lr=plan.adapt_lr if stage == "adapt" else plan.finetune_lr,
        coef_lr=plan.coef_lr,
        coef_lr_shared=plan.coef_lr_shared,
        warmup_proportion=0.1,
        seed=0,
        workers=0,
        threads=plan.threads,
        cache_dir=str(data / ".cache"),
        progress=False,
    )
    if stage == "finetune":
        base["finetune"] = FinetuneOptions(freeze_vision=plan.freeze_vision, center_visual=plan.center_visual)
    base.update(overrides)
    return TrainConfig(**base)


def _finished(cfg: TrainConfig) -> bool:
    """Does ``cfg.out`` hold a finished run of exactly ``cfg``?"""
    out = Path(cfg.out)
    try:
        saved = json.loads((out / "config.json").read_text())
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except (OSError, json.JSONDecodeError):
        return False
    want = json.loads(json.dumps(dataclasses.asdict(cfg)))
    done = len(lines) >= (cfg.stop_after or cfg.epochs)
    return saved == want and done and (out / "last" / "model.safetensors").exists()


def _model_dir(cfg: TrainConfig) -> Path:
    out = Path(cfg.out)
    return out / "best" if (out / "best" / "model.safetensors").exists() else out / "last"


def train_epochs(cfg: TrainConfig, fresh: bool = True, quiet: bool = True) -> Iterator[dict[str, Any]]:
    """Train ``cfg`` and yield each epoch's record (``epoch``, ``train_loss``, ``val`` ...) as soon as it is
    written - for a live loss plot (:func:`clip4idc.training.train.train_by_epoch`, one run in memory).

    ``fresh`` deletes an existing ``cfg.out`` first; ``quiet`` keeps the per-epoch log lines off stderr.
    """
    out = Path(cfg.out)
    if fresh and out.exists():
        shutil.rmtree(out)
    run = train_by_epoch(cfg)
    while True:
        sink = io.StringIO()
        with contextlib.redirect_stderr(sink) if quiet else contextlib.nullcontext():
            record = next(run, None)  # quiet while it trains, not while the caller draws
        if record is None:
            return
        yield record


def train_or_reuse(
    cfg: TrainConfig, quiet: bool = True, on_epoch: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """Train ``cfg`` from scratch in ``cfg.out``, unless it already holds a finished run of exactly ``cfg``;
    returns the run's model folder (``best/``, else ``last/``). ``on_epoch`` gets each epoch's record as it
    is written (progress for a long cell)."""
    if _finished(cfg):
        print(f"reusing the finished {cfg.stage} run in {cfg.out}")
    else:
        print(f"training a {cfg.stage} run in {cfg.out} ({cfg.epochs} epochs) ...")
        for record in train_epochs(cfg, fresh=True, quiet=quiet):
            if on_epoch is not None:
                on_epoch(record)
    return _model_dir(cfg)


def start_checkpoint(plan: LessonPlan, work: Path) -> Path | None:
    """Where stage 1 starts: ``None`` for random weights, else a checkpoint folder. For ``start="demo"``
    it is the bundled demo model's CLIP saved without its decoder (``work/start_demo_<hash>``), so that
    stage 2 really trains a decoder of its own."""
    if plan.start is None:
        return None
    if plan.start != "demo":
        return Path(plan.start)
    import hashlib

    from clip4idc.weights.formats import WEIGHTS_NAME
    from clip4idc.weights.registry import load, named_path

    # named by the demo weights' hash: new bundled weights make a new start, and the runs built on the
    # old one no longer match their configs (``init``), so they are retrained rather than reused
    digest = hashlib.sha256((named_path("demo") / WEIGHTS_NAME).read_bytes()).hexdigest()[:10]
    out = work / f"start_demo_{digest}"
    if not (out / "model.safetensors").exists():
        from clip4idc.network.model import CLIP4IDC
        from clip4idc.weights.formats import save_pretrained

        demo = load("demo")
        clip_only = CLIP4IDC(dataclasses.replace(demo.config, decoder_layers=0))
        clip_only.clip.load_state_dict(demo.clip.state_dict())
        save_pretrained(clip_only, out)
    return out


def adapt_config(plan: LessonPlan, work: Path, **overrides: Any) -> TrainConfig:
    """Notebook 2's stage-1 config: the plan's data, ``work/adapt``, starting from :func:`start_checkpoint`."""
    start = start_checkpoint(plan, work)
    overrides.setdefault("init", str(start) if start else None)
    return train_config(plan, "adapt", plan_dataset(plan, work), work / "adapt", **overrides)


def finetune_config(plan: LessonPlan, work: Path, init: str | Path, **overrides: Any) -> TrainConfig:
    """Notebook 3's stage-2 config: ``work/finetune``, from ``init`` (notebook 2's adapted model)."""
    return train_config(
        plan, "finetune", plan_dataset(plan, work), work / "finetune", init=str(init), **overrides
    )


def ablation_config(
    lesson: TrainConfig, plan: LessonPlan, work: Path, adapted: bool, seed: int
) -> TrainConfig:
    """One run of notebook 4's ablation: notebook 3's stage 2 (``lesson``, its recipe and schedule) with
    ``seed``, on notebook 2's adapted encoder (``adapted``) or straight on the encoder stage 1 started from
    (:func:`start_checkpoint`; random weights without the demo model). The adapted run with notebook 3's
    seed *is* notebook 3's run folder, so it is trained once."""
    if adapted and seed == lesson.seed:
        return lesson
    name = f"{'adapted' if adapted else 'start'}_seed{seed}"
    start = start_checkpoint(plan, work)
    init = lesson.init if adapted else (str(start) if start else None)
    return dataclasses.replace(lesson, out=str(work / "ablation" / name), init=init, seed=seed)


def student_model(plan: LessonPlan, work: Path) -> Path:
    """Notebook 3's finetuned model folder (the student's own), trained now - notebooks 2 and 3's runs,
    :func:`train_or_reuse` - when ``work`` lacks it."""
    adapted = train_or_reuse(adapt_config(plan, work))
    return train_or_reuse(finetune_config(plan, work, init=adapted))
