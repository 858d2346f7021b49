"""Where the model looked: encoder and decoder attention maps, heat-map overlays, and the pointing game.

Why this module exists: a change caption is only trustworthy if the words point at the change. Everything
the app shows (per-word maps, encoder maps) and the localisation score ``clip4idc eval`` reports is
computed here, so notebooks, the CLI and the app agree.

Conventions (any grid size; ``g = resolution // patch``, ``N = g² + 1`` tokens per image, token 0 the
class token, patches row-major):

* **Encoder.** Per-image (*intra*) blocks: class token → the ``g²`` patches of its own image. Joint blocks:
  the class token of each image → the patches of *both* images (so a joint map is a pair of ``g × g``
  maps). Maps are the mean over heads, with the class token's attention to class tokens dropped and the
  rest renormalised to sum to 1 (a probability distribution over patches). ``rollout=True`` gives
  attention rollout (Abnar & Zuidema, 2020): ``0.5·A + 0.5·I`` per block, rows renormalised, multiplied
  through the blocks; the intra stage rolls out per image, the joint stage continues from the
  block-diagonal result.
* **Decoder.** Cross-attention of each generated token over the ``2N`` visual tokens (mean over heads),
  per decoder layer and averaged over layers, split into a before map and an after map. These keep their
  raw probability mass (before + after + class tokens = 1), so comparing the two shows which image a
  word looked at. A word's map is the mean of its BPE tokens' maps.
* **Pointing game.** The "change map" of a caption is the mean over its words of the after-image map
  (layer mean): it needs no guess of which word names the change and is stable when the caption is long.
  A hit is when the peak cell of that map, mapped to the original image by its centre, falls inside the
  changed object's box (:func:`clip4idc.metrics.pointing_hit`). For ``drop`` changes the object is gone from the after image, so
  its box from the before image is used (same camera up to a small jitter).
* **Gradient maps** (:func:`gradient_maps`), a check on the attention: input × gradient (Shrikumar et al.,
  2016; Simonyan et al., 2014) of the caption's log-probability at each patch embedding, positive part, per
  image. Attention says where the decoder read; this says which patches the words depend on.
  ``pointing_game(method="gradient")`` plays the sum of the two images' maps (a change shows in either).
* **Difference maps** (:func:`difference_maps`), where the *encoder* sees a change: per patch, the cosine
  distance between the before and the after image's token at the output of one vision block (by default
  the last per-image block, before the two images mix). ``method="difference"`` plays it; ``"pixels"``
  plays the mean absolute pixel difference per patch, a baseline that needs no model. Comparing the three
  says where in the model the location of a change is kept and where it is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import Clip4idcError
from ..preprocess import ImageLike, load_image, preprocess_pairs
from ..tokenizer import EOT_ID, PAD_ID, SOT_ID, default_tokenizer
from ..training.guidance import pixel_change_map

PairInput = ImageLike | torch.Tensor


# ------------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------------
def _pair_tensors(
    model: torch.nn.Module, before: PairInput, after: PairInput
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pair as (1,3,R,R) tensors on the model's device: images/paths are preprocessed, tensors kept."""
    device = next(model.parameters()).device
    res = model.config.resolution
    if isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor):
        bef, aft = (t if t.dim() == 4 else t[None] for t in (before, after))
        if bef.shape[0] != 1 or aft.shape[0] != 1 or bef.shape[-1] != res or aft.shape[-1] != res:
            raise Clip4idcError(
                f"expected one preprocessed pair of shape (3,{res},{res}), got {tuple(before.shape)}"
            )
    else:
        bef, aft = preprocess_pairs([before], [after], res)
    return bef.to(device), aft.to(device)


# ------------------------------------------------------------------------------------------------------
# encoder attention
# ------------------------------------------------------------------------------------------------------
@dataclass
class EncoderAttention:
    """Class-token → patch maps of the pair encoder, one set per block (numpy, float32).

    ``intra[l, i]``: block ``l`` (< ``intra_layers``), image ``i`` (0 before, 1 after), a (g, g) map.
    ``joint[l, q, k]``: joint block ``l``, class token of image ``q`` over the patches of image ``k``;
    ``joint[l, q, 0] + joint[l, q, 1]`` sums to 1.
    """

    intra: np.ndarray  # (L_intra, 2, g, g)
    joint: np.ndarray  # (L_joint, 2, 2, g, g)
    rollout: bool
    grid: int

    @property
    def num_blocks(self) -> int:
        return self.intra.shape[0] + self.joint.shape[0]

    def block(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(before map, after map) for block ``index`` (0-based over all blocks). For a joint block this is
        the mean of both class tokens' maps, each image's map taken from the pair (sums to 1 together)."""
        n_intra = self.intra.shape[0]
        if index < n_intra:
            return self.intra[index, 0], self.intra[index, 1]
        j = self.joint[index - n_intra].mean(axis=0)
        return j[0], j[1]

    def block_name(self, index: int) -> str:
        n_intra = self.intra.shape[0]
        kind = "per-image" if index < n_intra else "joint"
        return f"block {index + 1}/{self.num_blocks} ({kind}{', rollout' if self.rollout else ''})"


def _rollout(mats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Cumulative rollout products of (…, T, T) head-mean attention matrices, one per block."""
    out: list[torch.Tensor] = []
    acc: torch.Tensor | None = None
    for a in mats:
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(dim=-1, keepdim=True)
        acc = a if acc is None else a @ acc
        out.append(acc)
    return out


def encoder_maps(
    attentions: Sequence[torch.Tensor], intra_layers: int, grid: int, rollout: bool = False
) -> EncoderAttention:
    """Turn ``encode_pair(..., need_weights=True).attentions`` of ONE pair into :class:`EncoderAttention`."""
    n = grid * grid + 1
    intra = [a.float().mean(dim=1)[:2] for a in attentions[:intra_layers]]  # (2, N, N) before, after
    joint = [a.float().mean(dim=1)[0] for a in attentions[intra_layers:]]  # (2N, 2N)
    if rollout:
        intra = _rollout(intra)
        if joint:
            base = torch.eye(2 * n)
            if intra:
                base = torch.block_diag(intra[-1][0], intra[-1][1])
            joint = [m @ base for m in _rollout(joint)]

    def patches(row: torch.Tensor) -> np.ndarray:
        return row.reshape(-1, grid, grid).numpy()

    intra_maps = np.zeros((len(intra), 2, grid, grid), dtype=np.float32)
    for layer, m in enumerate(intra):
        cls = m[:, 0, 1:]  # (2, g²)
        intra_maps[layer] = patches(cls / cls.sum(dim=-1, keepdim=True))
    joint_maps = np.zeros((len(joint), 2, 2, grid, grid), dtype=np.float32)
    for layer, m in enumerate(joint):
        for q in range(2):
            row = m[q * n]
            both = torch.stack([row[1:n], row[n + 1 :]])  # (2, g²)
            joint_maps[layer, q] = patches(both / both.sum())
    return EncoderAttention(intra_maps, joint_maps, rollout, grid)


@torch.no_grad()
def encoder_attention(
    model: torch.nn.Module, before: PairInput, after: PairInput, rollout: bool = False
) -> EncoderAttention:
    """Class-token → patch maps of every vision block for one pair (images, paths or preprocessed tensors)."""
    bef, aft = _pair_tensors(model, before, after)
    enc = model.encode_pair(bef, aft, need_weights=True)
    cfg = model.config
    return encoder_maps([a.cpu() for a in enc.attentions], cfg.intra_layers, cfg.grid, rollout)


# ------------------------------------------------------------------------------------------------------
# decoder attention
# ------------------------------------------------------------------------------------------------------
@dataclass
class CaptionAttention:
    """A generated caption with each token's and each word's cross-attention maps (numpy, float32).

    ``before_layers[l, t]`` / ``after_layers[l, t]``: decoder layer ``l``, generated token ``t``, (g, g)
    maps of head-mean attention mass on the patches of each image; ``cls_mass[l, t]`` is the mass on the two
    class tokens. Layer-mean maps: :attr:`before` / :attr:`after`; per word: :meth:`word_maps`.
    """

    caption: str
    token_ids: list[int]
    tokens: list[str]
    words: list[str]
    word_tokens: list[list[int]]
    before_layers: np.ndarray  # (layers, T, g, g)
    after_layers: np.ndarray  # (layers, T, g, g)
    cls_mass: np.ndarray  # (layers, T, 2)
    grid: int
    decoding: str = "greedy"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def before(self) -> np.ndarray:
        """(T, g, g) mean over decoder layers."""
        return self.before_layers.mean(axis=0)

    @property
    def after(self) -> np.ndarray:
        return self.after_layers.mean(axis=0)

    def word_maps(self, layer: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(W, g, g) before and after maps per word: mean of its tokens; ``layer=None`` → mean over layers."""
        bef = self.before if layer is None else self.before_layers[layer]
        aft = self.after if layer is None else self.after_layers[layer]
        if not self.words:
            empty = np.zeros((0, self.grid, self.grid), dtype=np.float32)
            return empty, empty.copy()
        wb = np.stack([bef[idx].mean(axis=0) for idx in self.word_tokens])
        wa = np.stack([aft[idx].mean(axis=0) for idx in self.word_tokens])
        return wb, wa

    def change_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """The pointing game's maps: (before, after), each the mean over words of that image's map (layer
        mean); zeros if no words."""
        wb, wa = self.word_maps()
        if not len(wa):
            zero = np.zeros((self.grid, self.grid), dtype=np.float32)
            return zero, zero.copy()
        return wb.mean(axis=0), wa.mean(axis=0)

    def change_map(self) -> np.ndarray:
        """The after image's half of :meth:`change_maps` (the pointing game's map before it played both)."""
        return self.change_maps()[1]


def _token_text(token: str) -> str:
    return token.replace("</w>", "")


def _caption_tokens(ids: Sequence[int]) -> list[int]:
    """Generated ids → the tokens the caption keeps (the tokenizer's stop rule: end token, then ``!``)."""
    tok = default_tokenizer()
    kept: list[int] = []
    for i in ids:
        i = int(i)
        if i in (EOT_ID, PAD_ID):
            break
        if "!" in tok.decode([i]):
            break
        kept.append(i)
    return kept


def group_words(token_ids: Sequence[int]) -> tuple[list[str], list[list[int]]]:
    """Merge BPE tokens into words (a word ends at a token carrying ``</w>``); returns words and the token
    indices of each word."""
    tok = default_tokenizer()
    words: list[str] = []
    groups: list[list[int]] = []
    current: list[int] = []
    for t, i in enumerate(token_ids):
        current.append(t)
        if tok.decoder[int(i)].endswith("</w>") or t == len(token_ids) - 1:
            words.append(tok.decode([token_ids[k] for k in current]).strip())
            groups.append(current)
            current = []
    return words, groups


def _split_cross(cross: torch.Tensor, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(layers, H, T, 2N) cross-attention → head-mean before/after (layers, T, g, g) and class mass."""
    n = grid * grid + 1
    m = cross.float().mean(dim=1).cpu()  # (layers, T, 2N)
    layers, t = m.shape[:2]
    bef = m[..., 1:n].reshape(layers, t, grid, grid).numpy()
    aft = m[..., n + 1 :].reshape(layers, t, grid, grid).numpy()
    cls = torch.stack([m[..., 0], m[..., n]], dim=-1).numpy()
    return bef, aft, cls


def _build_result(ids: Sequence[int], cross: torch.Tensor, grid: int, decoding: str) -> CaptionAttention:
    """One caption's ids and its (layers, H, T', 2N) cross-attention → :class:`CaptionAttention`."""
    tok = default_tokenizer()
    kept = _caption_tokens(ids)
    bef, aft, cls = _split_cross(cross[:, :, : len(kept)], grid)
    words, groups = group_words(kept)
    return CaptionAttention(
        caption=tok.caption_text(list(ids)),
        token_ids=kept,
        tokens=[_token_text(tok.decoder[i]) for i in kept],
        words=words,
        word_tokens=groups,
        before_layers=bef,
        after_layers=aft,
        cls_mass=cls,
        grid=grid,
        decoding=decoding,
    )


@torch.no_grad()
def captions_from_hidden(
    model: torch.nn.Module,
    hidden: torch.Tensor,
    beam_size: int = 1,
    max_words: int | None = None,
    length_penalty: float = 0.0,
) -> list[CaptionAttention]:
    """Decode a batch of visual tokens (B, 2N, E) and collect each caption's cross-attention. Greedy maps
    come from the decoding steps themselves; beam search gets them from one teacher-forced pass over the
    chosen captions (row t of that pass is the attention while producing token t)."""
    from ..network.decoding import beam_search, greedy_decode

    if model.decoder is None:
        raise Clip4idcError("this model has no caption decoder")
    steps = int(max_words or model.config.max_words)
    grid = model.config.grid
    if beam_size <= 1:
        ids, maps = greedy_decode(model.decoder, hidden, steps, return_cross_attention=True)
        return [_build_result(ids[b].tolist(), maps[:, b], grid, "greedy") for b in range(ids.shape[0])]
    ids = beam_search(model.decoder, hidden, steps, beam_size, length_penalty)
    out = []
    for b in range(ids.shape[0]):
        kept = _caption_tokens(ids[b].tolist())
        inp = torch.tensor([[SOT_ID] + kept], dtype=torch.long, device=hidden.device)
        _, crosses = model.decoder(hidden[b : b + 1], inp, torch.ones_like(inp), return_cross_attention=True)
        cross = torch.stack([c[0, :, : len(kept)] for c in crosses])
        out.append(_build_result(ids[b].tolist(), cross, grid, f"beam {beam_size}"))
    return out


def caption_from_hidden(
    model: torch.nn.Module,
    hidden: torch.Tensor,
    beam_size: int = 1,
    max_words: int | None = None,
    length_penalty: float = 0.0,
) -> CaptionAttention:
    """Decode ONE pair's visual tokens (1, 2N, E) with its cross-attention (see :func:`captions_from_hidden`)."""
    return captions_from_hidden(model, hidden[:1], beam_size, max_words, length_penalty)[0]


@torch.no_grad()
def caption_with_attention(
    model: torch.nn.Module,
    before: PairInput,
    after: PairInput,
    beam_size: int = 1,
    max_words: int | None = None,
    length_penalty: float = 0.0,
) -> CaptionAttention:
    """Caption one pair (images, paths or preprocessed tensors) with per-token and per-word cross-attention
    maps; beam search gets its maps from one teacher-forced pass over the chosen caption."""
    bef, aft = _pair_tensors(model, before, after)
    hidden = model.encode_pair(bef, aft).hidden
    return caption_from_hidden(model, hidden, beam_size, max_words, length_penalty)


@dataclass
class PairExplanation:
    """Caption, decoder maps and encoder maps of one pair from a single encoder pass (what the app shows)."""

    caption: CaptionAttention
    encoder: EncoderAttention


@torch.no_grad()
def explain_pair(
    model: torch.nn.Module,
    before: PairInput,
    after: PairInput,
    beam_size: int = 1,
    max_words: int | None = None,
    length_penalty: float = 0.0,
    rollout: bool = False,
) -> PairExplanation:
    """:func:`caption_with_attention` and :func:`encoder_attention` sharing one encoder pass."""
    bef, aft = _pair_tensors(model, before, after)
    enc = model.encode_pair(bef, aft, need_weights=True)
    cfg = model.config
    encoder = encoder_maps([a.cpu() for a in enc.attentions], cfg.intra_layers, cfg.grid, rollout)
    return PairExplanation(
        caption_from_hidden(model, enc.hidden, beam_size, max_words, length_penalty), encoder
    )


@torch.no_grad()
def score_captions(
    model: torch.nn.Module, before: PairInput, after: PairInput, captions: Sequence[str]
) -> list[float]:
    """Retrieval scores (scaled cosine similarity, stage-1 head) of candidate captions for one pair."""
    texts = [c.strip() for c in captions if c.strip()]
    if not texts:
        return []
    from ..network.inference import encode_texts

    bef, aft = _pair_tensors(model, before, after)
    pair = model.encode_pair(bef, aft).pooled
    text = encode_texts(model, texts, model.config.max_words, device=pair.device)
    return model.retrieval_logits(text.to(pair.device), pair.float())[:, 0].tolist()


# ------------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------------
def _as_rgb_array(image: ImageLike | np.ndarray) -> np.ndarray:
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        return arr[..., :3]
    return np.asarray(load_image(image))


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
    bef, aft = _pair_tensors(model, before, after)
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


# ------------------------------------------------------------------------------------------------------
# localisation: the pointing game
# ------------------------------------------------------------------------------------------------------
Box = Sequence[float]
NO_CHANGE = ("none", "no_change", "nochange", "no-change")  # spellings of "no change" in records


def after_peak_hit(after_map: np.ndarray, boxes: Iterable[Box], image_size: tuple[int, int]) -> bool:
    """Does the peak cell of ``after_map`` (g, g), mapped to ``image_size`` = (width, height) by its centre,
    fall inside one of ``boxes`` (pixel ``[x0, y0, x1, y1]``)? The toolkit-wide rule of
    :func:`clip4idc.metrics.pointing_hit`, so every pointing-game number is computed the same way."""
    from ..evaluation.metrics import pointing_hit

    return pointing_hit(np.asarray(after_map), [list(map(float, b)) for b in boxes], tuple(image_size))


def pair_boxes(boxes: Mapping[str, Sequence[Box]]) -> tuple[list[Box], list[Box]]:
    """(before, after) boxes a peak in each image must hit: the changed object's box in that image, or where
    it is absent there (before an add, after a drop) its box in the other image."""
    before = list(boxes.get("before") or boxes.get("after") or [])
    after = list(boxes.get("after") or boxes.get("before") or [])
    return before, after


def pair_peak_hit(
    before_map: np.ndarray,
    after_map: np.ndarray,
    boxes: Mapping[str, Sequence[Box]],
    image_size: tuple[int, int],
) -> bool:
    """The pointing game on a pair: the peak over the cells of *both* images' maps (a tie goes to the after
    image) must fall inside the changed object's box in the image it lies in. Where the object is absent
    from that image (before an add, after a drop) its box in the other image stands for the place (the
    camera is the same up to a small jitter). ``boxes``: ``{"before": [...], "after": [...]}``.

    Why both images: a dropped object is only in the before image, and a model that points at it there has
    found the change; a map that shows one place for both images (pixel or encoder differences) ties, and
    plays as :func:`after_peak_hit` with :func:`pointing_boxes`."""
    before_boxes, after_boxes = pair_boxes(boxes)
    if float(np.nanmax(before_map)) > float(np.nanmax(after_map)):
        return after_peak_hit(before_map, before_boxes, image_size)
    return after_peak_hit(after_map, after_boxes, image_size)


def pointing_boxes(change_type: str, boxes: Mapping[str, Sequence[Box]]) -> list[Box]:
    """Boxes the after-image peak may hit: the changed object's after-image box, or for ``drop`` (object gone
    from the after image) its before-image box, the camera being the same up to a small jitter."""
    if change_type in NO_CHANGE:
        return []
    if change_type == "drop" or not boxes.get("after"):
        return list(boxes.get("before", []))
    return list(boxes.get("after", []))


def scene_id_of(pair: Any) -> str | None:
    """A pair reference → scene id, or ``None`` for a no-change pair (nothing to point at).

    Accepts an int/str id (``"12"``; the readers' no-change ids ``"12_n"`` give ``None``), a CLEVR file
    name (``CLEVR_default_000012.png``), a record with ``id``/``image_id``/``pair_id``/``before``, or a
    reader ``Pair`` (its ``scene_id``)."""
    import re

    change = pair.get("change_type") if isinstance(pair, Mapping) else getattr(pair, "change_type", None)
    if change in NO_CHANGE:
        return None
    if not isinstance(pair, (str, int, Mapping)) and getattr(pair, "scene_id", None) is not None:
        return str(pair.scene_id)
    if isinstance(pair, Mapping):
        for key in ("scene_id", "id", "image_id", "pair_id", "before"):
            if key in pair:
                return scene_id_of(pair[key])
        raise Clip4idcError(f"pair record has no id: {dict(pair)}")
    text = str(pair)
    if re.fullmatch(r"\d+_n", text):
        return None
    if text.isdigit():
        return str(int(text))
    digits = re.findall(r"(\d+)", Path(text).name)
    if not digits:
        raise Clip4idcError(f"cannot tell the scene id of pair {text!r}")
    return str(int(digits[-1]))


def gradient_maps(
    model: torch.nn.Module, before: torch.Tensor, after: torch.Tensor, token_ids: Sequence[Sequence[int]]
) -> np.ndarray:
    """(B, 2, g, g) input × gradient maps of preprocessed pairs for their captions' token ids (without the
    start token, e.g. :attr:`CaptionAttention.token_ids`): for each patch of the before (0) and after (1)
    image, the positive part of ⟨patch embedding, ∂ log p(caption) / ∂ patch embedding⟩.

    Why: attention weights show where the decoder read, not what its words depend on (the joint blocks and
    the decoder's own encoder mix the tokens first). A patch scores high here only if changing its
    embedding would change the caption's probability.
    """
    if model.decoder is None:
        raise Clip4idcError("this model has no caption decoder")
    if len(token_ids) != before.shape[0]:
        raise ValueError(f"{len(token_ids)} captions for {before.shape[0]} pairs")
    grabbed: dict[str, torch.Tensor] = {}

    def keep(_module: Any, _inputs: Any, out: torch.Tensor) -> None:
        out.retain_grad()
        grabbed["patches"] = out

    handle = model.clip.visual.conv1.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            before = before.detach().requires_grad_(True)  # so the patch embeddings carry a gradient
            hidden = model.encode_pair(before, after.detach()).hidden
            total = hidden.new_zeros(())
            for b, ids in enumerate(token_ids):
                ids = [int(i) for i in ids]
                if not ids:
                    continue
                inp = torch.tensor([[SOT_ID, *ids[:-1]]], device=hidden.device)
                logp = model.decoder(hidden[b : b + 1], inp, torch.ones_like(inp)).float().log_softmax(-1)
                total = total + logp[0, torch.arange(len(ids)), torch.tensor(ids, device=hidden.device)].sum()
            patches = grabbed["patches"]
            grad = torch.autograd.grad(total, patches, allow_unused=True)[0] if total.requires_grad else None
    finally:
        handle.remove()
    if grad is None:
        grad = torch.zeros_like(patches)
    relevance = (patches.detach().float() * grad.float()).sum(dim=1).clamp(min=0)  # (2B, g, g)
    return relevance.view(before.shape[0], 2, *relevance.shape[1:]).cpu().numpy()


def difference_maps(
    model: torch.nn.Module, before: torch.Tensor, after: torch.Tensor, block: int | None = None
) -> np.ndarray:
    """(B, g, g): for each patch, 1 − cosine(before token, after token) at the output of vision block
    ``block`` (0-based; ``None`` = the last per-image block, ``intra_layers - 1``) of preprocessed pairs.

    Why: attention and gradient maps ask the captioner; this asks the encoder alone whether it represents
    the changed patches differently, block by block (camera jitter moves every patch a little).
    """
    index = model.config.intra_layers - 1 if block is None else block
    return _block_differences(model, before, after, [index])[index]


def _block_differences(
    model: torch.nn.Module, before: torch.Tensor, after: torch.Tensor, indices: Iterable[int]
) -> dict[int, np.ndarray]:
    """:func:`difference_maps` of several blocks from one encoder pass: block index → (B, g, g)."""
    blocks = model.clip.visual.transformer.resblocks
    indices = list(indices)
    for index in indices:
        if not 0 <= index < len(blocks):
            raise ValueError(f"block must lie in [0, {len(blocks)}), got {index}")
    grabbed: dict[int, torch.Tensor] = {}
    handles = [
        blocks[i].register_forward_hook(lambda _m, _i, out, i=i: grabbed.__setitem__(i, out[0]))
        for i in indices
    ]
    try:
        with torch.no_grad():
            model.encode_pair(before, after)
    finally:
        for handle in handles:
            handle.remove()
    n, g, intra = model.config.tokens_per_image, model.config.grid, model.config.intra_layers
    out = {}
    for index in indices:
        tokens = grabbed[index].float()
        if index < intra:  # per-image blocks run on (2B, N, W), rows before0, after0, before1, ...
            tokens = tokens.view(before.shape[0], 2, n, -1)
            bef, aft = tokens[:, 0, 1:], tokens[:, 1, 1:]
        else:  # joint blocks run on (B, 2N, W)
            bef, aft = tokens[:, 1:n], tokens[:, n + 1 :]
        distance = 1.0 - torch.nn.functional.cosine_similarity(bef, aft, dim=-1)
        out[index] = distance.view(-1, g, g).cpu().numpy()
    return out


def pixel_difference_maps(before: torch.Tensor, after: torch.Tensor, patch: int) -> np.ndarray:
    """(B, g, g) mean absolute difference of preprocessed pixels in each ``patch`` × ``patch`` cell: the
    pointing game's no-model baseline (a change that shows in the pixels is easy to find)."""
    return pixel_change_map(before, after, patch).cpu().numpy()


POINTING_METHODS = ("attention", "gradient", "difference", "pixels")


def pointing_game(
    model: torch.nn.Module,
    pairs: Iterable[Any] | None,
    scenes_root: str | Path,
    batch_size: int = 16,
    captions: dict[str, str] | None = None,
    max_words: int | None = None,
    method: str = "attention",
    block: int | None = None,
    readouts: Sequence[str] = (),
) -> dict[str, Any]:
    """Pointing-game accuracy (%) of a synthetic dataset, overall and per change type.

    ``scenes_root`` holds ``scenes.json`` (image paths are relative to it); ``pairs`` lists the scenes to
    play (ids, CLEVR file names, records or reader ``Pair`` objects; ``None`` = all). Every pair is judged
    by :func:`pair_peak_hit` (the peak over both images' maps). Captions are greedy; the maps played are
    :meth:`CaptionAttention.change_maps` (mean over words of each image's map), or with
    ``method="gradient"`` the sum of the before and after :func:`gradient_maps` as one map for both images;
    ``"difference"`` plays :func:`difference_maps` at vision block ``block`` and ``"pixels"``
    :func:`pixel_difference_maps`, one map for both images (no captions are written for these two);
    no-change scenes are skipped. Returns ``{"overall": %, "per_type": {type: %}, "counts": {type: n}, "n":
    n, "chance": %}`` (``chance``: :func:`clip4idc.analysis.pointing_chance` of a peak cell drawn from
    either image, over the played pairs); ``method="attention"`` adds ``"after_image_only"``
    (``{"overall", "per_type"}`` of the after image's map alone, :func:`after_peak_hit` with
    :func:`pointing_boxes`: the game as it was played before it looked at both images). ``readouts`` names further
    methods (``"difference"``, ``"pixels"``) to play on the same images, each decoded once; their
    ``{"overall", "per_type"}`` come back under ``"readouts"``. A dict passed as
    ``captions`` receives each played scene's greedy caption (scene id → text), so an evaluation need not
    decode those pairs a second time.
    """
    from ..data.synthetic import change_boxes, load_scenes
    from ..evaluation.analysis import pointing_chance

    for name in (method, *readouts):
        if name not in POINTING_METHODS:
            raise ValueError(f"method must be one of {', '.join(POINTING_METHODS)}; got {name!r}")
    if set(readouts) & {"attention", "gradient"}:
        raise ValueError("readouts plays the maps that need no caption: 'difference' and 'pixels'")
    root = Path(scenes_root)
    scenes = load_scenes(root)
    refs = list(scenes) if pairs is None else [scene_id_of(p) for p in pairs]
    jobs = []
    for sid in (r for r in refs if r is not None):
        scene = scenes.get(sid)
        if scene is None:
            raise Clip4idcError(f"{root / 'scenes.json'}: no scene {sid}")
        change = str(scene["change"]["type"])
        boxes = change_boxes(scene)
        if pointing_boxes(change, boxes):
            jobs.append(
                (root / scene["images"]["before"], root / scene["images"]["after"], change, boxes, sid)
            )
    device = next(model.parameters()).device
    hits: dict[str, list[bool]] = {}
    after_only: dict[str, list[bool]] = {}
    extra: dict[str, dict[str, list[bool]]] = {name: {} for name in readouts}
    chance: list[float] = []
    grid = model.config.grid

    def caption_free_maps(
        name: str, bef: torch.Tensor, aft: torch.Tensor
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        if name == "difference":
            return [(m, m) for m in difference_maps(model, bef, aft, block)]
        return [(m, m) for m in pixel_difference_maps(bef, aft, model.config.patch)]

    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        bef_imgs = [load_image(j[0]) for j in chunk]
        aft_imgs = [load_image(j[1]) for j in chunk]
        bef, aft = (t.to(device) for t in preprocess_pairs(bef_imgs, aft_imgs, model.config.resolution))
        results: list[CaptionAttention] = []
        if method in ("difference", "pixels"):
            maps = caption_free_maps(method, bef, aft)
        else:
            with torch.no_grad():
                hidden = model.encode_pair(bef, aft).hidden
            results = captions_from_hidden(model, hidden, max_words=max_words)
            if method == "gradient":
                sums = [g.sum(axis=0) for g in gradient_maps(model, bef, aft, [r.token_ids for r in results])]
                maps = [(m, m) for m in sums]
            else:
                maps = [r.change_maps() for r in results]
        for (bef_map, aft_map), (_, _, change, boxes, _), img in zip(maps, chunk, aft_imgs):
            hits.setdefault(change, []).append(pair_peak_hit(bef_map, aft_map, boxes, img.size))
            if method == "attention":
                played = pointing_boxes(change, boxes)
                after_only.setdefault(change, []).append(after_peak_hit(aft_map, played, img.size))
            chance.append(float(np.mean([pointing_chance([b], img.size, grid) for b in pair_boxes(boxes)])))
        for name, table in extra.items():
            for (bef_map, aft_map), (_, _, change, boxes, _), img in zip(
                caption_free_maps(name, bef, aft), chunk, aft_imgs
            ):
                table.setdefault(change, []).append(pair_peak_hit(bef_map, aft_map, boxes, img.size))
        if captions is not None:
            captions.update({job[4]: res.caption for job, res in zip(chunk, results)})

    def score(table: dict[str, list[bool]]) -> dict[str, Any]:
        every = [h for v in table.values() for h in v]
        return {
            "overall": 100.0 * float(np.mean(every)) if every else float("nan"),
            "per_type": {k: 100.0 * float(np.mean(v)) for k, v in sorted(table.items())},
        }

    result = {
        **score(hits),
        "counts": {k: len(v) for k, v in sorted(hits.items())},
        "n": sum(len(v) for v in hits.values()),
        "chance": float(np.mean(chance)) if chance else float("nan"),
    }
    if method == "attention":
        result["after_image_only"] = score(after_only)
    if readouts:
        result["readouts"] = {name: score(table) for name, table in extra.items()}
    return result
