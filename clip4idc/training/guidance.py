"""Attention guidance: an optional stage-2 loss that teaches the caption decoder to look where the pair differs.

Why this exists: CLIP4IDC's captioning loss never asks *where* the decoder reads. On the bundled demo model
the per-image vision blocks still know where a change is (their before/after token difference points at
the changed object two times in three), yet the decoder's cross-attention peaks on it one time in ten, so
the attention maps the app shows say little about the change. This loss is **not part of CLIP4IDC**; it is
off unless ``finetune.attention_guidance`` (:class:`~clip4idc.training.config.FinetuneOptions`) is above 0, and a checkpoint trained with it has the same
architecture and keys.

The target needs no labels: per ``patch`` × ``patch`` cell, the mean absolute difference of the two
preprocessed images (:func:`pixel_change_map`), less its median over cells (camera jitter changes every
cell a little), clipped at 0 and normalised to a distribution over cells. The decoder's map is its
cross-attention averaged over heads, layers and the caption's tokens, summed over the two images per cell
(the images share a camera, so a cell is one place in the scene) and renormalised over the patches (the
class tokens may take any mass). The loss is KL(target ‖ map). It asks the caption as a whole, not every
word, to read the changed place, and leaves the decoder free to read it in either image: a dropped object
is only in the before image, an added one only in the after image. (A variant that asked the same of each
image's map alone pointed less often and named no more changes right; see the demo model card.) Pairs whose
cells all tie (no pixel changed beyond the median) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pixel_change_map(before: torch.Tensor, after: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, g, g) mean absolute difference of preprocessed pixels (B, 3, R, R) in each ``patch`` × ``patch``
    cell. Also the pointing game's no-model baseline (:func:`clip4idc.explanation.maps.pixel_difference_maps`)."""
    diff = (after.float() - before.float()).abs().mean(dim=1)  # (B, R, R)
    cells = diff.unfold(1, patch, patch).unfold(2, patch, patch)
    return cells.mean(dim=(-1, -2))


def change_target(before: torch.Tensor, after: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The guidance target: (B, g²) distribution over cells, and a (B,) bool mask of the pairs that have
    one (some cell differs more than the median cell)."""
    cells = pixel_change_map(before, after, patch).flatten(1)
    excess = (cells - cells.median(dim=1, keepdim=True).values).clamp(min=0)
    total = excess.sum(dim=1, keepdim=True)
    valid = total.squeeze(1) > 0
    return excess / total.clamp(min=1e-12), valid


def decoder_location_map(
    crosses: Sequence[torch.Tensor], output_ids: torch.Tensor, grid: int
) -> torch.Tensor:
    """(B, g²): the decoder's attention per cell over both images together (the two images share a camera,
    so a cell is one place in the scene), renormalised over patches."""
    n = grid * grid + 1
    att = torch.stack([c.float().mean(dim=1) for c in crosses]).mean(dim=0)  # (B, L, 2N)
    keep = (output_ids != 0).float().unsqueeze(-1)
    mean = (att * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)  # (B, 2N)
    loc = mean[:, 1:n] + mean[:, n + 1 :]
    return loc / loc.sum(dim=1, keepdim=True).clamp(min=1e-12)


def guidance_loss(
    crosses: Sequence[torch.Tensor],
    output_ids: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    grid: int,
) -> torch.Tensor:
    """Mean over valid pairs of KL(target ‖ :func:`decoder_location_map`); 0 when no pair is valid."""
    if not bool(valid.any()):
        return torch.zeros((), device=target.device)
    t = target[valid]
    located = decoder_location_map(crosses, output_ids, grid)[valid]
    return (t * (t.clamp(min=1e-12).log() - located.clamp(min=1e-12).log())).sum(dim=1).mean()
