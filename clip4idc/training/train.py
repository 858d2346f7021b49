"""CLIP4IDC training: ``clip4idc train --stage pretrain|adapt|finetune --config FILE [key=value ...]``.

Read top to bottom: config → distributed setup → model → data → optimiser → (resume) → epochs of
train steps, each followed by validation and an atomic checkpoint. One process by default; several GPUs
or nodes under ``torchrun`` (DDP, with the contrastive loss computed on embeddings gathered from every
rank, gradients included; the losses are in :mod:`.losses`). Stage ``pretrain`` makes the single-image CLIP
that stage 1 (``adapt``) starts from, when no pretrained CLIP is at hand. Where the stages differ - the loss, the data
its batches hold, the validation - is one table, ``STAGE_PARTS``; a stage's options are its group of the
config (:mod:`.config`). The best epoch is chosen on **val**, never on test.

Run folder: ``config.json``, ``checkpoint.pt`` (everything needed to resume bit-exactly), ``best/`` and
``last/`` (``save_pretrained`` model directories), ``metrics.jsonl`` and ``curves.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler

from ..data import AdaptationDataset, CaptionDataset
from ..data.pretraining import DescriptionDataset
from ..errors import Clip4idcError, fail
from ..io import check_writable_folder, open_regular, write_json_atomic
from ..network.model import CLIP4IDC
from ..precision import autocast, resolve_precision
from ..weights.formats import MAX_CHECKPOINT_BYTES, load_into, read_state_dict, save_pretrained
from ..weights.registry import named_path
from .config import TrainConfig, flat_options, model_config
from .losses import AdaptLoss, CaptionLoss, Dist, PretrainLoss
from .memory import RELEASE_EVERY, release_free_memory
from .optim import build_optimizer

# ----------------------------------------------------------------------------------------------------
# distributed helpers


def setup_distributed(device: torch.device) -> Dist:
    """Join a torchrun group when launched by torchrun (``WORLD_SIZE`` > 1); otherwise one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class GlobalBatchSampler(Sampler[list[int]]):
    """Deterministic batches: a permutation per (seed, epoch); global batch ``i`` is split into equal
    contiguous shards per rank and accumulation step, so any world size sees the same global batches."""

    def __init__(
        self,
        n: int,
        global_batch: int,
        d: Dist,
        accum: int,
        seed: int,
        shuffle: bool = True,
        groups: list[list[int]] | None = None,
    ) -> None:
        if global_batch % (d.world * accum):
            raise ValueError(f"batch_size {global_batch} is not divisible by world size × grad_accum")
        self.n, self.global_batch, self.d, self.accum, self.seed, self.shuffle = (
            n,
            global_batch,
            d,
            accum,
            seed,
            shuffle,
        )
        self.micro = global_batch // (d.world * accum)
        self.epoch = 0
        # Index groups kept adjacent in the order (a pair and its reversed twin); None: plain permutation.
        self.groups = groups

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.n // self.global_batch) * self.accum

    def __iter__(self):
        if not self.shuffle:
            order = list(range(self.n))
        else:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            if self.groups is None:
                order = torch.randperm(self.n, generator=g).tolist()
            else:
                perm = torch.randperm(len(self.groups), generator=g).tolist()
                order = [i for j in perm for i in self.groups[j]]
        for b in range(self.n // self.global_batch):
            batch = order[b * self.global_batch : (b + 1) * self.global_batch]
            rank_part = batch[
                self.d.rank * self.micro * self.accum : (self.d.rank + 1) * self.micro * self.accum
            ]
            for a in range(self.accum):
                yield rank_part[a * self.micro : (a + 1) * self.micro]


# ----------------------------------------------------------------------------------------------------
# data


def make_datasets(cfg: TrainConfig, resolution: int, max_words: int):
    """The stage's training set (with its group's options) and validation set; ``max_words`` is the
    text length (the caption budget, or for ``pretrain`` the text tower's context: descriptions are long)."""
    from ..data import first_scenes, load_pairs

    kind = STAGE_PARTS[cfg.stage].dataset
    train_pairs = load_pairs(cfg.data, cfg.dataset, "train")
    val_pairs = load_pairs(cfg.data, cfg.dataset, "val")
    if cfg.max_train_pairs:
        train_pairs = first_scenes(train_pairs, cfg.max_train_pairs)
    if cfg.max_val_pairs:
        val_pairs = first_scenes(val_pairs, cfg.max_val_pairs)
    common = dict(
        resolution=resolution,
        max_words=max_words,
        seed=cfg.seed,
        cache_dir=cfg.cache_dir,
        in_memory=cfg.cache_in_memory,
    )
    train_set = kind(train_pairs, train=True, **common, **cfg.options.dataset_options())
    return train_set, kind(val_pairs, train=False, **common)


def center_visual_tokens(model: CLIP4IDC, train_set, pairs: int, device: torch.device, verbose: bool) -> None:
    """Before stage 2 from a CLIP trained from scratch: centre the pair encoder's output tokens on the first
    ``pairs`` training pairs (see :meth:`clip4idc.network.clip.PairVisionTransformer.center_tokens_`). Every rank
    uses the same pairs, so the models stay identical."""
    n = min(pairs, len(train_set))
    items = [train_set[i] for i in range(n)]
    before = torch.stack([it["before"] for it in items]).to(device)
    after = torch.stack([it["after"] for it in items]).to(device)
    share = model.clip.visual.center_tokens_(before, after)
    if verbose:
        print(
            f"centred the visual tokens on {n} training pairs (the mean token was {100 * share:.1f}% of "
            "their mean square)",
            file=sys.stderr,
        )


FROZEN_TOKENS_LIMIT = 4 * 2**30  # bytes of encoder tokens a frozen stage 2 may keep (fp32, two pairs a scene)


def encode_frozen_pairs(
    loss: CaptionLoss, train_set, device: torch.device, precision: str, verbose: bool
) -> None:
    """Stage 2 with a frozen encoder: encode every training pair once (:meth:`CaptionLoss.encode_frozen`)
    when their tokens fit in :data:`FROZEN_TOKENS_LIMIT` (a size fixed by the config and the data, so
    every machine trains the same way); otherwise each step encodes its own pairs."""
    c = loss.model.config
    need = len(train_set) * 2 * 2 * (c.grid**2 + 1) * c.embed_dim * 4
    if need > FROZEN_TOKENS_LIMIT:
        if verbose:
            print(
                f"frozen encoder: {need / 2**30:.1f} GiB of tokens, each step encodes its pairs",
                file=sys.stderr,
            )
        return
    t0 = time.time()
    with autocast(device, precision):
        held = loss.encode_frozen(train_set, device)
    if verbose:
        print(
            f"frozen encoder: encoded the {len(train_set)} training pairs once ({held / 2**20:.0f} MiB, "
            f"{time.time() - t0:.0f} s)",
            file=sys.stderr,
        )


# ----------------------------------------------------------------------------------------------------
# validation


def validate_retrieval(
    model: CLIP4IDC, val_set, cfg: TrainConfig, device: torch.device, precision: str
) -> dict[str, Any]:
    """Stage 1: R@K both ways over the validation pairs' captions; ``R@1`` is text→pair's."""
    from ..evaluation import retrieval
    from ..network import inference

    pairs = val_set.pairs
    sim, text_to_pair = inference.retrieval_similarity(
        model,
        val_set,
        [p.captions for p in pairs],
        model.config.max_words,
        cfg.batch_size_val,
        device,
        precision,
        cfg.workers,
    )
    ret = retrieval.retrieval_metrics(sim, text_to_pair)
    flat = {f"{d}/{k}": v for d, vals in ret.items() for k, v in vals.items()}
    flat["R@1"] = ret["text_to_pair"]["R@1"]
    return flat


def validate_descriptions(
    model: CLIP4IDC, val_set, cfg: TrainConfig, device: torch.device, precision: str
) -> dict[str, Any]:
    """Stage ``pretrain``: zero-shot R@1 image→description and attribute accuracies on val images."""
    from ..evaluation.descriptions import description_accuracy

    scores = description_accuracy(model, val_set, cfg.batch_size_val, device, precision)
    scores.pop("chance")
    return scores


def validate_captions(
    model: CLIP4IDC, val_set, cfg: TrainConfig, device: torch.device, precision: str
) -> dict[str, Any]:
    """Stage 2: caption metrics of the validation pairs' captions, and a few examples."""
    from ..evaluation import metrics
    from ..network import inference

    captions = inference.generate_captions(
        model,
        val_set,
        cfg.batch_size_val,
        device,
        precision,
        cfg.finetune.val_beam_size,
        model.config.max_words,
        workers=cfg.workers,
    )
    preds = {p.pair_id: c for p, c in zip(val_set.pairs, captions)}
    refs = {p.pair_id: p.captions for p in val_set.pairs}
    scores = metrics.score_captions(preds, refs)
    scores = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
    scores["examples"] = [{"pair_id": k, "caption": preds[k]} for k in list(preds)[:4]]
    return scores


# ----------------------------------------------------------------------------------------------------
# where the two stages differ: the loss, the data its batches hold, the validation


@dataclass(frozen=True)
class StageParts:
    """A stage's own parts; its options and defaults are its group of the config (``cfg.options``)."""

    loss: type[PretrainLoss] | type[AdaptLoss] | type[CaptionLoss]  # loss(model, dist, the stage's group)
    dataset: type[DescriptionDataset] | type[AdaptationDataset] | type[CaptionDataset]  # + dataset_options()
    validate: Callable[[CLIP4IDC, Any, TrainConfig, torch.device, str], dict[str, Any]]


STAGE_PARTS = {
    "pretrain": StageParts(PretrainLoss, DescriptionDataset, validate_descriptions),
    "adapt": StageParts(AdaptLoss, AdaptationDataset, validate_retrieval),
    "finetune": StageParts(CaptionLoss, CaptionDataset, validate_captions),
}


# ----------------------------------------------------------------------------------------------------
# checkpoints


def _rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain values, so the run checkpoint loads as data."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, **state: Any) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact (and its ``.tmp`` is
    overwritten by the next save)."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The run checkpoint, read as data like any other checkpoint (nothing in it runs)."""
    with open_regular(path, MAX_CHECKPOINT_BYTES, "run checkpoint") as fh:
        try:
            state = torch.load(fh, map_location="cpu", weights_only=True)
        except Exception as err:
            detail = str(err).split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
            reason = detail[0] if detail else type(err).__name__
            raise fail(path, f"cannot resume: unreadable run checkpoint ({reason})") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "epoch", "config"} <= set(state):
        raise fail(path, "cannot resume: not a clip4idc run checkpoint")
    return state


# Settings a resumed run may change; every other one is fixed when the run starts.
RESUMABLE = (
    "out", "epochs", "stop_after", "progress", "workers", "threads", "device",
    "val_every", "batch_size_val", "cache_dir", "cache_in_memory",
)  # fmt: skip


def check_resume(cfg: TrainConfig, saved: dict[str, Any], path: Path) -> list[str]:
    """Refuse, by name, settings that differ from the run's and cannot change; returns the changes made."""
    now, saved = flat_options(dataclasses.asdict(cfg)), flat_options(saved)
    changed = {k: (saved.get(k), v) for k, v in now.items() if k in saved and saved[k] != v}
    fixed = [f"{k} ({old!r} -> {new!r})" for k, (old, new) in changed.items() if k not in RESUMABLE]
    if fixed:
        raise fail(
            path,
            f"cannot resume with changed {', '.join(fixed)}: these are fixed once a run starts "
            f"(a resumed run may change only {', '.join(RESUMABLE)}); start a new run to change them",
        )
    return [f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items() if k != "out"]


# ----------------------------------------------------------------------------------------------------
# the run


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def init_model(cfg: TrainConfig) -> CLIP4IDC:
    """Model for the stage, initialised from ``cfg.init`` when given (fresh parts keep their init)."""
    init = str(named_path(cfg.init) or cfg.init) if cfg.init else None  # "clip-standin", "demo": bundled
    raw = read_state_dict(init) if init else None
    has_decoder = raw is not None and any(k.startswith("decoder.") for k in raw)
    torch.manual_seed(cfg.seed)
    model = CLIP4IDC(model_config(cfg, has_decoder))
    if raw is not None:
        layout = load_into(model, init, raw)
        print(f"initialised from {cfg.init} ({layout})", file=sys.stderr)
    if not cfg.options.trains_decoder and model.decoder is not None:
        for name, p in model.decoder.named_parameters():
            if not name.startswith("embeddings.word_embeddings") and not name.startswith(
                "embeddings.position"
            ):
                p.requires_grad_(False)  # adaptation trains retrieval only; the decoder rides along
    return model


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run one stage; returns ``{"best": the best validation score, "history": each epoch's record}``.
    See the module docstring for the outputs."""
    run = train_by_epoch(cfg, resume)
    while True:
        try:
            next(run)
        except StopIteration as end:
            return end.value


def train_by_epoch(cfg: TrainConfig, resume: bool = False) -> Generator[dict[str, Any], None, dict[str, Any]]:
    """:func:`train`, yielding each epoch's record as soon as it is written (a live plot's feed: the run
    stays in memory between epochs, a frozen stage 2's encoded pairs included). The random generators are
    restored after each yield, so the weights are :func:`train`'s whatever the caller does meanwhile."""
    device = pick_device(cfg.device)
    d = setup_distributed(device)
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    precision = resolve_precision(cfg.precision, device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    state: dict[str, Any] | None = None
    if resume:  # everything is checked before anything in the run folder is written
        state = load_checkpoint(ckpt_path)
        applied = check_resume(cfg, state["config"], ckpt_path)
        if d.main and applied:
            print(f"resuming with changed settings: {'; '.join(applied)}", file=sys.stderr)
    elif ckpt_path.exists():
        raise fail(ckpt_path, "run folder already has a checkpoint; pass --resume or choose another out=")
    if d.main:
        check_writable_folder(out)
        write_json_atomic(out / "config.json", dataclasses.asdict(cfg))

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = init_model(cfg).to(device)
    text_length = model.config.context_length if cfg.stage == "pretrain" else model.config.max_words
    train_set, val_set = make_datasets(cfg, model.config.resolution, text_length)
    groups = train_set.batch_groups() if hasattr(train_set, "batch_groups") else None
    sampler = GlobalBatchSampler(len(train_set), cfg.batch_size, d, cfg.grad_accum, cfg.seed, groups=groups)
    loader = DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=cfg.workers,
        persistent_workers=False,
        pin_memory=device.type == "cuda",
    )
    steps_per_epoch = len(sampler) // cfg.grad_accum
    if steps_per_epoch == 0:
        raise Clip4idcError(f"{cfg.data}: {len(train_set)} training pairs < batch_size {cfg.batch_size}")
    if cfg.finetune.center_visual and not resume:
        center_visual_tokens(model, train_set, cfg.finetune.center_visual, device, d.main)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer, scheduler = build_optimizer(
        model,
        cfg.lr,
        cfg.coef_lr,
        cfg.weight_decay,
        cfg.warmup_proportion,
        total_steps,
        cfg.max_grad_norm,
        cfg.coef_lr_shared,
    )
    loss_fn = STAGE_PARTS[cfg.stage].loss(model, d, cfg.options)
    step_fn: nn.Module = loss_fn
    if cfg.compile:  # the model's own modules stay uncompiled, so checkpoints keep their keys
        step_fn = torch.compile(step_fn)  # type: ignore[assignment]
    if d.world > 1:
        step_fn = nn.parallel.DistributedDataParallel(
            step_fn,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=model.decoder is not None,  # a frozen or an idle part
        )

    start_epoch, step, best, history = 0, 0, -math.inf, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step, best, history = state["epoch"] + 1, state["step"], state["best"], state["history"]
        _set_rng_state(state["rng"][d.rank] if isinstance(state["rng"], list) else state["rng"])
        if d.main:
            print(f"resumed {ckpt_path} after epoch {state['epoch'] + 1}", file=sys.stderr)
    else:
        torch.manual_seed(cfg.seed + d.rank)
    if isinstance(loss_fn, CaptionLoss) and loss_fn.freeze_vision:  # after the weights are final
        encode_frozen_pairs(loss_fn, train_set, device, precision, d.main)

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        t0, losses = time.time(), []
        bar = loader
        if cfg.progress and d.main:
            from tqdm import tqdm

            bar = tqdm(loader, desc=f"{cfg.stage} epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for i, batch in enumerate(bar):
            batch = {
                k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)
            }
            with autocast(device, precision):
                loss = step_fn(batch) / cfg.grad_accum
            loss.backward()
            losses.append(loss.item() * cfg.grad_accum)
            if (i + 1) % cfg.grad_accum:
                continue
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                model.clip.logit_scale.clamp_(max=math.log(100))
            step += 1
            if step % RELEASE_EVERY == 0:
                release_free_memory()  # else glibc's heap grows with every new activation size (.memory)
            if cfg.progress and d.main and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{scheduler.get_last_lr()[-1]:.2e}")
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": float(np.mean(losses)),
            "epoch_seconds": round(time.time() - t0, 1),
            "pairs_per_second": round(len(losses) * sampler.micro * d.world / (time.time() - t0), 2),
        }
        is_best = False
        if d.main and cfg.val_every and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            val = STAGE_PARTS[cfg.stage].validate(model, val_set, cfg, device, precision)
            release_free_memory()
            record["val"] = val
            score = float(val.get(cfg.select_metric, -math.inf))
            if score > best:
                best, is_best = score, True
        history.append(record)
        rng = _rng_state()
        if d.world > 1:
            gathered: list[Any] = [None] * d.world
            dist.all_gather_object(gathered, rng)
            rng = gathered
        if d.main:
            if is_best:
                save_pretrained(model, out / "best")
            save_pretrained(model, out / "last")
            save_checkpoint(
                ckpt_path,
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                epoch=epoch,
                step=step,
                best=best,
                history=history,
                rng=rng,
                config=dataclasses.asdict(cfg),
            )
            with open(out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            plot_history(history, out / "curves.png", cfg.select_metric)
            msg = f"epoch {epoch + 1}: loss {record['train_loss']:.4f}"
            if "val" in record:
                msg += f", val {cfg.select_metric} {record['val'].get(cfg.select_metric, float('nan')):.4f}"
            print(msg + (" (best)" if is_best else ""), file=sys.stderr)
        if d.world > 1:
            dist.barrier()
        paused = _rng_state()  # what the caller draws between epochs leaves the run as train() runs it
        yield record
        _set_rng_state(paused)
        if cfg.stop_after and epoch + 1 >= cfg.stop_after:
            break
    return {"best": best, "history": history}


def plot_history(history: list[dict[str, Any]], path: Path, metric: str) -> None:
    """Loss and the selection metric per epoch, as a PNG (matplotlib's object API: no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    axes[0].plot(epochs, [h["train_loss"] for h in history], marker="o")
    axes[0].set(title="training loss", xlabel="epoch")
    val = [(h["epoch"], h["val"][metric]) for h in history if "val" in h and metric in h["val"]]
    if val:
        axes[1].plot(*zip(*val), marker="o", color="C1")
    axes[1].set(title=f"val {metric}", xlabel="epoch")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)
