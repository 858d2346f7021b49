"""Preprocessing: any PIL mode → RGB, square bicubic resize, CLIP normalisation; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clip4idc.errors import Clip4idcError
from clip4idc.preprocess import CLIP_MEAN, CLIP_STD, load_image, preprocess


def reference(img: Image.Image, size: int) -> torch.Tensor:
    arr = np.asarray(img.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float64) / 255.0
    arr = (arr - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    return torch.from_numpy(arr).permute(2, 0, 1).float()


def test_rgb_matches_reference(tmp_path):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    path = tmp_path / "x.png"
    img.save(path)
    x = preprocess(path, 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x, reference(img, 32), atol=1e-5)
    assert torch.equal(x, preprocess(img, 32))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK", "1"])
def test_modes_become_rgb(mode):
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).convert(mode)
    x = preprocess(img, 16)
    assert x.shape == (3, 16, 16)
    assert torch.allclose(x, reference(img, 16), atol=1e-5)


def test_sixteen_bit_is_rescaled_not_clipped(tmp_path):
    arr = np.full((10, 10), 32768, dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    rgb = np.asarray(load_image(path))
    assert rgb.shape == (10, 10, 3) and abs(int(rgb[0, 0, 0]) - 128) <= 1


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(Clip4idcError, match="nope.png: image file not found"):
        load_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(Clip4idcError, match="bad.png: not a readable image"):
        load_image(bad)
    good = tmp_path / "trunc.png"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8) + 7).save(good)
    good.write_bytes(good.read_bytes()[:60])
    with pytest.raises(Clip4idcError, match="trunc.png"):
        load_image(good)


def test_decompression_bomb(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "big.png"
    Image.new("RGB", (50, 50)).save(path)
    with pytest.raises(Clip4idcError, match="big.png: image too large"):
        load_image(path)
