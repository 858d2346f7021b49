"""The attention-guidance loss (clip4idc.training.guidance): its target, the decoder's map and the KL, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clip4idc.explanation.maps import pixel_difference_maps
from clip4idc.training.guidance import change_target, decoder_location_map, guidance_loss, pixel_change_map


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 3×8×8 images, patch 4 (a 2×2 grid): only the bottom-right cell changes much, the top-left a bit."""
    before = torch.zeros(1, 3, 8, 8)
    after = before.clone()
    after[:, :, 4:, 4:] = 2.0  # cell (1, 1): mean |diff| 2
    after[:, 0, 0, 0] = 3.0  # cell (0, 0): one pixel of one channel, mean |diff| 3 / 48
    return before, after


def test_pixel_change_map_is_the_mean_absolute_difference_per_cell():
    before, after = _pair()
    cells = pixel_change_map(before, after, 4)
    assert cells.shape == (1, 2, 2)
    assert torch.allclose(cells[0], torch.tensor([[3 / 48, 0.0], [0.0, 2.0]]))
    assert np.allclose(pixel_difference_maps(before, after, 4), cells.numpy())  # the pointing baseline


def test_change_target_subtracts_the_median_cell_and_normalises():
    before, after = _pair()
    target, valid = change_target(torch.cat([before, before]), torch.cat([after, before]), 4)
    # torch's median of an even count is the lower middle value: 0 here, so the excess is the map itself
    want = torch.tensor([3 / 48, 0.0, 0.0, 2.0])
    assert torch.allclose(target[0], want / want.sum())
    assert valid.tolist() == [True, False]  # identical images: nothing to guide towards
    assert torch.all(target[1] == 0)


def _crosses(
    before_map: torch.Tensor, after_map: torch.Tensor, cls: float, layers: int = 2
) -> list[torch.Tensor]:
    """Cross-attentions (B=1, H=2, L=3, 2N) whose before/after patch parts are the given (4,) maps times
    (1 − cls)/2 and whose class tokens hold ``cls``/2 each, identical over heads, positions and layers (a
    row sums to 1 when the two maps together sum to 2)."""
    row = torch.cat(
        [
            torch.tensor([cls / 2]),
            before_map * (1 - cls) / 2,
            torch.tensor([cls / 2]),
            after_map * (1 - cls) / 2,
        ]
    )
    return [row.expand(1, 2, 3, 10).clone() for _ in range(layers)]


def test_decoder_location_map_averages_real_positions_and_sums_the_two_images():
    bef = torch.tensor([0.1, 0.2, 0.3, 0.4])
    aft = torch.tensor([0.4, 0.3, 0.2, 0.1])
    crosses = _crosses(bef, aft, cls=0.5)
    crosses[0][0, :, 2] = 1.0 / 10  # a padded position's row: must not count
    output_ids = torch.tensor([[7, 8, 0]])
    got = decoder_location_map(crosses, output_ids, grid=2)
    assert torch.allclose(got[0], (bef + aft) / 2)


def test_guidance_loss_is_the_kl_from_the_target_to_the_location_map():
    target = torch.tensor([[0.7, 0.1, 0.1, 0.1]])
    valid = torch.tensor([True])
    out = torch.tensor([[5, 6, 9]])
    assert guidance_loss(_crosses(target[0], target[0], cls=0.3), out, target, valid, 2).abs() < 1e-6
    # the object read in one image only (a drop: before; an add: after) costs nothing either
    zero = torch.zeros(4)
    assert guidance_loss(_crosses(2 * target[0], zero, cls=0.3), out, target, valid, 2).abs() < 1e-6
    assert guidance_loss(_crosses(zero, 2 * target[0], cls=0.3), out, target, valid, 2).abs() < 1e-6
    uniform = torch.full((4,), 0.25)
    got = guidance_loss(_crosses(target[0], uniform, cls=0.3), out, target, valid, 2)
    located = (target[0] + uniform) / 2
    want = sum(t * math.log(t / q) for t, q in zip(target[0].tolist(), located.tolist()))
    assert got.item() == pytest.approx(want, rel=1e-5)
    assert guidance_loss(_crosses(uniform, uniform, 0.3), out, target, torch.tensor([False]), 2) == 0
