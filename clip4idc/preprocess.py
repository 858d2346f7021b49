"""Image loading and CLIP preprocessing with PIL and torch only (no torchvision, no OpenCV).

As the original loader: any mode → RGB, a direct square bicubic resize to the model's resolution (no
aspect-ratio preservation, no crop), scale to [0, 1], normalise with CLIP's mean and std. One deliberate
difference: 16-bit and 32-bit integer images are scaled to 8 bits first (PIL's plain ``convert("RGB")``
would clip them to white).

Images a user brings (the API, the CLI, the app) are turned upright by their EXIF orientation
(``orient=True``): a phone stores a portrait photo sideways plus a tag. Dataset images are read as the
original code reads them, tag ignored, so that results match it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import Clip4idcError, fail

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ImageLike = str | Path | Image.Image | np.ndarray


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; high-bit-depth integer images are rescaled, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if image.mode == "I" and arr.max() > 65535:
            peak = float(arr.max())
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        image = Image.fromarray(arr, mode="L")
    elif image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        top = arr.max() if arr.max() > 1.0 else 1.0
        image = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def load_image(source: ImageLike, orient: bool = False) -> Image.Image:
    """A path, PIL image or uint8 array (HxW, HxWx3, HxWx4) as RGB; bad input raises one clear error.

    ``orient`` applies the EXIF orientation tag (for images a user brings; see the module docstring).
    """
    if isinstance(source, np.ndarray):
        if (
            source.dtype != np.uint8
            or source.ndim not in (2, 3)
            or source.ndim == 3
            and source.shape[2] not in (3, 4)
        ):
            raise Clip4idcError(
                f"an image array must be HxWx3 (or HxW, HxWx4) uint8, got shape {source.shape} {source.dtype}"
            )
        return to_rgb(Image.fromarray(source))
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source) if orient else source)
    if not isinstance(source, (str, Path)):
        raise Clip4idcError(
            f"expected an image: a file path, a PIL image or an HxWx3 uint8 array, got {type(source).__name__}"
        )
    path = Path(source)
    if not path.exists():
        raise fail(path, "image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return to_rgb(ImageOps.exif_transpose(img) if orient else img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise fail(path, f"image too large ({err})") from None
    except UnidentifiedImageError:
        raise fail(path, "not a readable image") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise fail(path, f"corrupt or truncated image ({err})") from None


def as_image_lists(
    before: ImageLike | Sequence[ImageLike], after: ImageLike | Sequence[ImageLike]
) -> tuple[list[ImageLike], list[ImageLike], bool]:
    """``(before list, after list, single)``: one pair, or two equal-length lists (a string is one path)."""
    single_kinds = (str, Path, Image.Image, np.ndarray)
    lists = []
    for value, which in ((before, "before"), (after, "after")):
        if isinstance(value, single_kinds):
            lists.append(([value], True))
        elif isinstance(value, (list, tuple)):
            lists.append((list(value), False))
        else:
            raise Clip4idcError(
                f"{which}: expected a file path, a PIL image or an HxWx3 uint8 array, or a list of them; "
                f"got {type(value).__name__}"
            )
    (bef, bef_single), (aft, aft_single) = lists
    if bef_single != aft_single:
        raise Clip4idcError(
            f"before is {'one image' if bef_single else f'a list of {len(bef)}'} but after is "
            f"{'one image' if aft_single else f'a list of {len(aft)}'}: give one of each or two equal lists"
        )
    if len(bef) != len(aft):
        raise Clip4idcError(f"{len(bef)} before images but {len(aft)} after images")
    return bef, aft, bef_single


def preprocess(image: ImageLike, resolution: int = 224, orient: bool = False) -> torch.Tensor:
    """One image → normalised float32 tensor (3, resolution, resolution)."""
    img = load_image(image, orient).resize((resolution, resolution), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (x - mean) / std


def preprocess_pairs(
    before: Sequence[ImageLike], after: Sequence[ImageLike], resolution: int = 224, orient: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists of before and after images → two (B, 3, R, R) tensors."""
    if len(before) != len(after):
        raise ValueError(f"{len(before)} before images but {len(after)} after images")
    bef = torch.stack([preprocess(b, resolution, orient) for b in before])
    aft = torch.stack([preprocess(a, resolution, orient) for a in after])
    return bef, aft


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Undo CLIP normalisation (for display); returns values clipped to [0, 1]."""
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1)
