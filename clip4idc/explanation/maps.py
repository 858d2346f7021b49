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
  changed object's box (:func:`clip4idc.explanation.pointing.pointing_hit`). For ``drop`` changes the object is gone from the after image, so
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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import Clip4idcError
from ..network.inference import PairInput, pair_tensors
from ..tokenizer import EOT_ID, PAD_ID, SOT_ID, default_tokenizer
from ..training.guidance import pixel_change_map
from ..weights.domain import DomainCheck, domain_score

# ------------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------------


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
    bef, aft = pair_tensors(model, before, after)
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
    bef, aft = pair_tensors(model, before, after)
    hidden = model.encode_pair(bef, aft).hidden
    return caption_from_hidden(model, hidden, beam_size, max_words, length_penalty)


@dataclass
class PairExplanation:
    """Caption, decoder maps and encoder maps of one pair from a single encoder pass (what the app shows),
    and whether the pair looks like the model's training domain (``None``: the model carries no statistics)."""

    caption: CaptionAttention
    encoder: EncoderAttention
    domain: DomainCheck | None = None


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
    """:func:`caption_with_attention` and :func:`encoder_attention` sharing one encoder pass, with the
    domain check (:func:`clip4idc.weights.domain.domain_score`)."""
    bef, aft = pair_tensors(model, before, after)
    enc = model.encode_pair(bef, aft, need_weights=True)
    cfg = model.config
    encoder = encoder_maps([a.cpu() for a in enc.attentions], cfg.intra_layers, cfg.grid, rollout)
    return PairExplanation(
        caption_from_hidden(model, enc.hidden, beam_size, max_words, length_penalty),
        encoder,
        domain_score(model, bef, aft),
    )


# ------------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------------
# localisation: the pointing game
# ------------------------------------------------------------------------------------------------------


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
