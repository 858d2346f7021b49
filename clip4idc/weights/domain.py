"""What a model knows: its training domain, and a check of whether a pair looks like it.

Why: a captioner trained on synthetic scenes answers just as confidently on a photograph, and its caption
then means nothing. A saved model folder may carry ``domain.safetensors`` (data only, never code): a short
description of the training domain, and the mean and shrunk covariance of its patch embeddings (the vision
tower's ``conv1`` output: what the pixels look like to the model) on the model's own validation scenes.

An image's distance is the root of a low quantile (the 25th percentile) over its patches of the squared
Mahalanobis distance divided by the width: most of a training scene is its floor, so at least a quarter
of an in-domain image's patches look like the training patches, while a photograph, a texture or a scene
under a colour cast has almost none that do; an object painted on a scene does not move it. The pair's
**domain score** is the larger distance of its two images, in units of the typical (median) distance of
in-domain pairs, so a typical in-domain pair scores about 1; above the stored threshold it is outside the
domain. Folders without the file (OpenAI's CLIP, the original checkpoints) skip the check.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import fail
from ..network.inference import PairInput, pair_tensors

DOMAIN_NAME = "domain.safetensors"
VIEW = "patch_embedding"
QUANTILE = 0.25  # of the patches' squared distances
FORMAT = "clip4idc-domain/1"
MAX_DOMAIN_BYTES = 16 * 2**20


@dataclass(frozen=True)
class DomainStats:
    """A model's training domain: description, patch-embedding mean and covariance, the score's unit
    (``typical``: the median distance of in-domain pairs) and the threshold above which a pair is outside."""

    description: str
    threshold: float
    mean: torch.Tensor
    covariance: torch.Tensor
    typical: float
    quantile: float = QUANTILE
    calibration: dict = field(default_factory=dict)
    path: Path | None = None
    _precision: list[torch.Tensor] = field(default_factory=list, repr=False, compare=False)

    @property
    def precision(self) -> torch.Tensor:
        """Inverse of the (shrunk) covariance, from its Cholesky factor (computed once)."""
        if not self._precision:
            factor = torch.linalg.cholesky(self.covariance.double())
            self._precision.append(torch.cholesky_inverse(factor).float())
        return self._precision[0]


@dataclass(frozen=True)
class DomainCheck:
    """One pair's domain score against its model's threshold."""

    score: float
    threshold: float
    description: str

    @property
    def inside(self) -> bool:
        return self.score <= self.threshold

    def summary(self) -> str:
        """One line: the score, what it is compared with, and the verdict."""
        verdict = "inside" if self.inside else "OUTSIDE"
        return (
            f"domain score {self.score:.2f}: {verdict} the training domain (a typical training-domain pair "
            f"scores about 1.0; pairs above {self.threshold:.2f} are flagged)"
        )

    def notice(self) -> str | None:
        """What a user must read beside the caption when the pair is outside the domain (else ``None``)."""
        if self.inside:
            return None
        return (
            f"This pair is outside what the model knows: its domain score is {self.score:.2f}, against "
            f"about 1.0 for a typical training pair and at most {self.threshold:.2f} for a pair the check "
            f"accepts (trained on {self.description}). The caption is probably wrong; the pixel-difference "
            "map shows where the images differ without the model."
        )


# ------------------------------------------------------------------------------------------------------
# features and scores
# ------------------------------------------------------------------------------------------------------
@torch.no_grad()
def patch_embeddings(model: torch.nn.Module, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """The vision tower's patch embeddings (B, 2, P, W) of preprocessed pairs (index 1: before 0, after 1)."""
    conv1 = model.clip.visual.conv1
    grid = conv1(torch.cat([before, after]).to(conv1.weight.dtype))  # (2B, W, g, g)
    patches = grid.float().flatten(2).transpose(1, 2)  # (2B, P, W): befores then afters
    return patches.reshape(2, before.shape[0], *patches.shape[1:]).transpose(0, 1)


def image_distances(stats: DomainStats, patches: torch.Tensor) -> torch.Tensor:
    """Each image's distance (..., ) from patch embeddings (..., P, W), in units of ``stats.typical``."""
    x = patches - stats.mean
    squared = torch.einsum("...i,ij,...j->...", x, stats.precision, x) / x.shape[-1]
    return squared.clamp(min=0).quantile(stats.quantile, dim=-1).sqrt() / stats.typical


def pair_scores(
    model: torch.nn.Module, stats: DomainStats, before: torch.Tensor, after: torch.Tensor
) -> torch.Tensor:
    """Domain scores (B,) of preprocessed pairs: the larger distance of each pair's two images."""
    return image_distances(stats, patch_embeddings(model, before, after)).max(dim=1).values


def domain_score(model: torch.nn.Module, before: PairInput, after: PairInput) -> DomainCheck | None:
    """Whether one pair (images, paths or preprocessed tensors) looks like the model's training domain;
    ``None`` when the model carries no domain statistics (then nothing can be said)."""
    stats: DomainStats | None = getattr(model, "domain", None)
    if stats is None:
        return None
    bef, aft = pair_tensors(model, before, after)
    return DomainCheck(float(pair_scores(model, stats, bef, aft)[0]), stats.threshold, stats.description)


# ------------------------------------------------------------------------------------------------------
# fitting, choosing the threshold
# ------------------------------------------------------------------------------------------------------
def shrunk_covariance(x: torch.Tensor, shrinkage: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of rows ``x`` (M, W), shrunk towards its mean variance: with ``shrinkage`` α,
    (1 − α) Σ + α tr(Σ)/W · I, so that directions the validation scenes never vary in still have a scale."""
    x = x.double()
    mean = x.mean(dim=0)
    centred = x - mean
    cov = centred.T @ centred / max(1, x.shape[0] - 1)
    target = torch.eye(cov.shape[0], dtype=cov.dtype) * cov.diagonal().mean()
    return mean.float(), ((1 - shrinkage) * cov + shrinkage * target).float()


def fit_domain(patches: torch.Tensor, description: str, shrinkage: float = 0.1) -> DomainStats:
    """Statistics from in-domain pairs' patch embeddings (B, 2, P, W); the score's unit is the median
    distance of these same pairs. The threshold is set afterwards (:func:`choose_threshold`)."""
    mean, cov = shrunk_covariance(patches.flatten(0, 2), shrinkage)
    raw = DomainStats(description, math.inf, mean, cov, 1.0)
    typical = float(image_distances(raw, patches).max(dim=1).values.median())
    return DomainStats(description, math.inf, mean, cov, typical, calibration={"shrinkage": shrinkage})


def choose_threshold(inside: Sequence[float], outside: Sequence[float], max_false_alarms: float) -> float:
    """The threshold that makes fewest mistakes on held-out in-domain (``inside``) and out-of-domain
    (``outside``) scores while flagging at most ``max_false_alarms`` of the in-domain ones; among equally good
    thresholds, the geometric middle of their interval (the widest margin on both sides)."""
    ins, outs = sorted(inside), sorted(outside)
    floor = ins[min(len(ins) - 1, math.ceil((1 - max_false_alarms) * len(ins)) - 1)]
    candidates = sorted({s for s in ins + outs if s >= floor})
    best, interval = None, (floor, floor)
    for lo, hi in zip(candidates, candidates[1:] + [candidates[-1] * 2]):
        errors = sum(s > lo for s in ins) + sum(s <= lo for s in outs)
        if best is None or errors < best:
            best, interval = errors, (lo, hi)
        elif errors == best and lo == interval[1]:
            interval = (interval[0], hi)
    return math.sqrt(interval[0] * interval[1])


# ------------------------------------------------------------------------------------------------------
# the file
# ------------------------------------------------------------------------------------------------------
def save_domain(stats: DomainStats, folder: str | Path) -> Path:
    """Write ``domain.safetensors`` into a saved model folder: two tensors, the rest as text metadata."""
    from safetensors.torch import save_file

    path = Path(folder) / DOMAIN_NAME
    tensors = {
        f"{VIEW}.mean": stats.mean.float().contiguous(),
        f"{VIEW}.covariance": stats.covariance.float(),
    }
    meta = {
        "format": FORMAT,
        "description": stats.description,
        "threshold": repr(float(stats.threshold)),
        "typical": repr(float(stats.typical)),
        "quantile": repr(float(stats.quantile)),
        "calibration": json.dumps(stats.calibration),
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # an ordinary file, like the weights beside it
    return path


def _parse(path: Path, meta: dict[str, str], tensors: dict[str, torch.Tensor]) -> DomainStats:
    """Checked :class:`DomainStats` from the file's parts; each problem raises one line naming the file."""
    if meta.get("format") != FORMAT:
        raise fail(path, f"not a domain statistics file (format {meta.get('format')!r}, expected {FORMAT!r})")
    description = meta.get("description", "").strip()
    if not description:
        raise fail(path, "domain statistics without a description of the domain")
    try:
        threshold, typical, quantile = (float(meta[key]) for key in ("threshold", "typical", "quantile"))
        calibration = json.loads(meta.get("calibration", "{}"))
    except (KeyError, ValueError, TypeError) as err:
        raise fail(path, f"malformed domain metadata ({type(err).__name__}: {err})") from None
    if not all(math.isfinite(v) and v > 0 for v in (threshold, typical)) or not 0 <= quantile <= 1:
        raise fail(path, "domain threshold and typical distance must be positive numbers, quantile in [0, 1]")
    mean, cov = tensors.get(f"{VIEW}.mean"), tensors.get(f"{VIEW}.covariance")
    if mean is None or cov is None:
        raise fail(path, f"domain statistics lack {VIEW}.mean or {VIEW}.covariance")
    width = mean.shape[0] if mean.dim() == 1 else -1
    if width < 1 or tuple(cov.shape) != (width, width):
        raise fail(path, f"mean {tuple(mean.shape)} and covariance {tuple(cov.shape)} do not match")
    if not (torch.isfinite(mean).all() and torch.isfinite(cov).all()):
        raise fail(path, "domain statistics hold NaN or infinite values")
    if torch.linalg.cholesky_ex(cov.double()).info != 0:
        raise fail(path, "the covariance is not positive definite")
    return DomainStats(
        description, threshold, mean.float(), cov.float(), typical, quantile, calibration, path
    )


def read_domain(
    folder: str | Path, vision_width: int | None = None, layers: int | None = None
) -> DomainStats | None:
    """The domain statistics of a saved model folder, or ``None`` when it carries none (the check is then
    skipped). Read as data; a malformed file is one :class:`~clip4idc.errors.Clip4idcError` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    from .formats import open_regular

    path = Path(folder) / DOMAIN_NAME
    if not Path(folder).is_dir() or not path.exists():
        return None
    with open_regular(path, MAX_DOMAIN_BYTES) as fh:
        data = fh.read()
    try:  # safetensors: an 8-byte little-endian header length, a JSON header, then raw tensor bytes
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size]) if 0 < size <= len(data) - 8 else None
        if not isinstance(header, dict):
            raise ValueError("no safetensors header")
        meta = header.get("__metadata__") or {}
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise fail(path, f"not a readable safetensors file ({detail})") from None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise fail(path, "safetensors metadata must map names to text")
    stats = _parse(path, meta, tensors)
    if vision_width is not None and stats.mean.shape[0] != vision_width:
        raise fail(
            path,
            f"domain statistics of width {stats.mean.shape[0]} do not fit this model (vision width {vision_width})",
        )
    return stats


__all__ = [
    "DOMAIN_NAME",
    "DomainCheck",
    "DomainStats",
    "choose_threshold",
    "domain_score",
    "fit_domain",
    "pair_scores",
    "patch_embeddings",
    "read_domain",
    "save_domain",
]
