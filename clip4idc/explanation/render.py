"""Heat-map overlays and figures of the maps in :mod:`.maps` (what the app and the notebooks show)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..network.inference import pair_tensors
from ..preprocess import ImageLike, load_image
from .maps import CaptionAttention, EncoderAttention, _block_differences, pixel_difference_maps


def _as_rgb_array(image: ImageLike | np.ndarray) -> np.ndarray:
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        return arr[..., :3]
    return np.asarray(load_image(image, orient=True))


def upsample(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic upsampling of a (g, g) map to ``size`` = (width, height) with PIL (float image, no OpenCV)."""
    img = Image.fromarray(np.ascontiguousarray(heatmap, dtype=np.float32))  # mode F
    return np.asarray(img.resize(size, Image.BICUBIC), dtype=np.float32)


def overlay(
    image: ImageLike | np.ndarray,
    heatmap: np.ndarray,
    alpha: float = 0.55,
    cmap: str = "jet",
    vmin: float | None = None,
    vmax: float | None = None,
    as_pil: bool = False,
) -> np.ndarray | Image.Image:
    """The image with a smooth heat map on top: the (g, g) map is upsampled bicubically to the image size,
    scaled to [0, 1] between ``vmin`` and ``vmax`` (default: the map's own min and max, so colours are
    relative), coloured with a matplotlib colormap and blended with an opacity that grows with the heat, so
    cold regions keep the photo visible. Returns uint8 RGB (or a PIL image)."""
    import matplotlib

    rgb = _as_rgb_array(image)
    h, w = rgb.shape[:2]
    grid = np.asarray(heatmap, dtype=np.float32)
    lo = float(grid.min()) if vmin is None else float(vmin)
    hi = float(grid.max()) if vmax is None else float(vmax)
    heat = upsample(grid, (w, h))
    heat = np.clip((heat - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(heat)
    colours = matplotlib.colormaps[cmap](heat)[..., :3]
    a = alpha * (0.3 + 0.7 * heat)[..., None]
    out = (1 - a) * (rgb.astype(np.float32) / 255.0) + a * colours
    arr = np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(arr) if as_pil else arr


def pair_overlay(
    before_img: ImageLike | np.ndarray,
    after_img: ImageLike | np.ndarray,
    before_map: np.ndarray,
    after_map: np.ndarray,
    vertical: bool = False,
    gap: int = 6,
) -> np.ndarray:
    """Before and after overlays side by side (or stacked) on ONE colour scale, so the image that got more
    attention is the hotter one. The after image is resized to the before image's size if they differ."""
    bef_rgb, aft_rgb = _as_rgb_array(before_img), _as_rgb_array(after_img)
    if aft_rgb.shape != bef_rgb.shape:
        aft_rgb = np.asarray(
            Image.fromarray(aft_rgb).resize((bef_rgb.shape[1], bef_rgb.shape[0]), Image.BICUBIC)
        )
    lo = float(min(before_map.min(), after_map.min()))
    hi = float(max(before_map.max(), after_map.max()))
    left = overlay(bef_rgb, before_map, vmin=lo, vmax=hi)
    right = overlay(aft_rgb, after_map, vmin=lo, vmax=hi)
    if vertical:
        sep = np.full((gap, left.shape[1], 3), 255, dtype=np.uint8)
        return np.concatenate([left, sep, right], axis=0)
    sep = np.full((left.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([left, sep, right], axis=1)


def word_panels(
    result: CaptionAttention,
    before_img: ImageLike | np.ndarray,
    after_img: ImageLike | np.ndarray,
    layer: int | None = None,
    vertical: bool = False,
) -> list[tuple[np.ndarray, str]]:
    """One before/after overlay per word (see :func:`pair_overlay`), labelled with the word and its share
    of attention on each image."""
    bef_rgb, aft_rgb = _as_rgb_array(before_img), _as_rgb_array(after_img)
    wb, wa = result.word_maps(layer)
    panels = []
    for i, (word, mb, ma) in enumerate(zip(result.words, wb, wa)):
        total = float(mb.sum() + ma.sum()) or 1.0
        label = f"{i + 1}. {word}  (before {mb.sum() / total:.0%} | after {ma.sum() / total:.0%})"
        panels.append((pair_overlay(bef_rgb, aft_rgb, mb, ma, vertical), label))
    return panels


def encoder_panels(
    maps: EncoderAttention,
    before_img: ImageLike | np.ndarray,
    after_img: ImageLike | np.ndarray,
    vertical: bool = True,
) -> list[tuple[np.ndarray, str]]:
    """One before/after overlay per vision block (class-token maps), labelled with the block's kind."""
    bef_rgb, aft_rgb = _as_rgb_array(before_img), _as_rgb_array(after_img)
    return [
        (pair_overlay(bef_rgb, aft_rgb, *maps.block(b), vertical), maps.block_name(b))
        for b in range(maps.num_blocks)
    ]


def difference_panels(
    model: torch.nn.Module, before: ImageLike, after: ImageLike
) -> list[tuple[np.ndarray, str]]:
    """One overlay per vision block of :func:`difference_maps` on the after image, labelled with the block's
    kind: where the encoder's tokens for the two images differ (one colour scale per block)."""
    bef, aft = pair_tensors(model, before, after)
    after_rgb = _as_rgb_array(after)
    intra, blocks = model.config.intra_layers, len(model.clip.visual.transformer.resblocks)
    maps = _block_differences(model, bef, aft, range(blocks))  # one encoder pass for every block
    return [
        (
            overlay(after_rgb, maps[block][0]),
            f"block {block + 1}/{blocks} ({'per-image' if block < intra else 'joint'})",
        )
        for block in range(blocks)
    ]


def pixel_difference_panel(
    model: torch.nn.Module, before: ImageLike, after: ImageLike
) -> tuple[np.ndarray, str]:
    """The model-free view: :func:`pixel_difference_maps` (mean absolute pixel change per patch, as the
    model sees the images) on the after image. Why: where the images differ, whatever the model knows."""
    bef, aft = pair_tensors(model, before, after)
    cells = pixel_difference_maps(bef, aft, model.config.patch)[0]
    label = "pixel difference (no model): mean absolute change per patch"
    return overlay(_as_rgb_array(after), cells), label


def plot_word_maps(
    result: CaptionAttention,
    before_img: ImageLike | np.ndarray,
    after_img: ImageLike | np.ndarray,
    path: str | Path | None = None,
    layer: int | None = None,
    dpi: int = 100,
) -> Any:
    """A matplotlib figure with one column per word (before on top, after below; a shared scale per word);
    saved as PNG when ``path`` is given. Uses the object-oriented API (no pyplot state, thread-safe)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bef_rgb, aft_rgb = _as_rgb_array(before_img), _as_rgb_array(after_img)
    wb, wa = result.word_maps(layer)
    cols = max(1, len(result.words))
    fig = Figure(figsize=(2.2 * cols, 4.6), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, cols, squeeze=False)
    for c in range(cols):
        for r in range(2):
            axes[r, c].axis("off")
        if c >= len(result.words):
            axes[0, c].set_title("(empty caption)", fontsize=9)
            continue
        lo, hi = float(min(wb[c].min(), wa[c].min())), float(max(wb[c].max(), wa[c].max()))
        axes[0, c].imshow(overlay(bef_rgb, wb[c], vmin=lo, vmax=hi))
        axes[1, c].imshow(overlay(aft_rgb, wa[c], vmin=lo, vmax=hi))
        axes[0, c].set_title(result.words[c], fontsize=11)
    axes[0, 0].text(
        -0.08, 0.5, "before", transform=axes[0, 0].transAxes, rotation=90, va="center", ha="right"
    )
    axes[1, 0].text(-0.08, 0.5, "after", transform=axes[1, 0].transAxes, rotation=90, va="center", ha="right")
    fig.suptitle(result.caption or "(empty caption)", fontsize=12)
    fig.tight_layout()
    if path is not None:
        fig.savefig(str(path), format="png")
    return fig


def plot_encoder_maps(
    maps: EncoderAttention,
    before_img: ImageLike | np.ndarray,
    after_img: ImageLike | np.ndarray,
    path: str | Path | None = None,
    dpi: int = 100,
) -> Any:
    """A figure with one column per vision block (class-token maps; before on top, after below)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bef_rgb, aft_rgb = _as_rgb_array(before_img), _as_rgb_array(after_img)
    cols = maps.num_blocks
    fig = Figure(figsize=(2.2 * cols, 4.6), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, cols, squeeze=False)
    for c in range(cols):
        mb, ma = maps.block(c)
        lo, hi = float(min(mb.min(), ma.min())), float(max(mb.max(), ma.max()))
        axes[0, c].imshow(overlay(bef_rgb, mb, vmin=lo, vmax=hi))
        axes[1, c].imshow(overlay(aft_rgb, ma, vmin=lo, vmax=hi))
        axes[0, c].set_title(maps.block_name(c).replace(" (", "\n("), fontsize=9)
        axes[0, c].axis("off")
        axes[1, c].axis("off")
    fig.tight_layout()
    if path is not None:
        fig.savefig(str(path), format="png")
    return fig


def figure_to_image(fig: Any) -> Image.Image:
    """Render a matplotlib figure to a PIL RGB image."""
    fig.canvas.draw()
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
