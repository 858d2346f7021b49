"""CLIP4IDC: the image-pair encoder, CLIP's text encoder for retrieval, and the caption decoder.

Stage 1 (*adaptation*) trains pair ↔ caption retrieval with a symmetric contrastive loss; stage 2
(*finetuning*) trains the decoder to write the change caption by teacher forcing. Parameter names are
those of the original checkpoints, so ``state_dict()`` of this module is a released-checkpoint layout
(tied entries included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..preprocess import ImageLike, as_image_lists, preprocess_pairs
from .clip import CLIP
from .config import ModelConfig
from .decoder import CaptionDecoder

# Keys that alias another tensor in the original layout: alias → canonical key.
TIED_KEYS = {
    "decoder.embeddings.word_embeddings.weight": "clip.token_embedding.weight",
    "decoder.classifier.cls.predictions.decoder.weight": "clip.token_embedding.weight",
    "decoder.embeddings.position_embeddings.weight": "clip.positional_embedding",
}


@dataclass
class PairEncoding:
    """What the pair encoder gives: pooled (B,E), all tokens (B,2N,E), and attention if asked."""

    pooled: torch.Tensor
    hidden: torch.Tensor
    attentions: list[torch.Tensor] = field(default_factory=list)


def contrastive_loss(
    logits: torch.Tensor,
    negatives: torch.Tensor | None = None,
    pair_negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """The original's ``CrossEn`` over both directions: mean of text→pair and pair→text cross-entropy.

    ``negatives`` (pairs × extra texts, ``-inf`` where absent): logits of caption-only negatives (texts
    that describe no pair in the batch), appended to each pair's pair→text row. ``pair_negatives`` (texts ×
    extra pairs): logits of pair-only negatives (pairs no caption of the batch describes, e.g. unchanged
    scenes), appended to each caption's text→pair row.
    """
    targets = torch.arange(logits.shape[0], device=logits.device)
    text_to_pair = logits if pair_negatives is None else torch.cat([logits, pair_negatives], dim=1)
    pair_to_text = logits.t() if negatives is None else torch.cat([logits.t(), negatives], dim=1)
    return (F.cross_entropy(text_to_pair, targets) + F.cross_entropy(pair_to_text, targets)) / 2


def sequence_sums(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per-row sums (B,) of ``values``, given for the ``True`` places of ``keep`` (B, L) in row order."""
    rows = keep.nonzero(as_tuple=True)[0]
    return values.new_zeros(keep.shape[0]).index_add(0, rows, values)


def caption_loss(logits: torch.Tensor, output_ids: torch.Tensor) -> torch.Tensor:
    """Token cross-entropy ignoring id 0 (padding; the original's ``ignore_index=0``)."""
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), output_ids.reshape(-1), ignore_index=0
    )


class CLIP4IDC(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.clip = CLIP(config)
        self.decoder = (
            CaptionDecoder(config, self.clip.token_embedding, self.clip.positional_embedding)
            if config.decoder_layers
            else None
        )

    # -- encoders -------------------------------------------------------------------------------------
    def encode_pair(
        self, before: torch.Tensor, after: torch.Tensor, need_weights: bool = False
    ) -> PairEncoding:
        pooled, hidden, attentions = self.clip.encode_pair(before, after, need_weights)
        return PairEncoding(pooled, hidden, attentions)

    def encode_text(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.clip.encode_text(ids)

    # -- stage 1: retrieval ---------------------------------------------------------------------------
    def retrieval_logits(self, text_pooled: torch.Tensor, pair_pooled: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities, text rows × pair columns (no eps in the norms, as the original)."""
        t = text_pooled / text_pooled.norm(dim=-1, keepdim=True)
        v = pair_pooled / pair_pooled.norm(dim=-1, keepdim=True)
        return self.clip.logit_scale.exp() * t @ v.t()

    def retrieval_loss(
        self, before: torch.Tensor, after: torch.Tensor, text_ids: torch.Tensor
    ) -> torch.Tensor:
        pair = self.encode_pair(before, after).pooled
        text, _ = self.encode_text(text_ids)
        return contrastive_loss(self.retrieval_logits(text.float(), pair.float()))

    # -- stage 2: captioning --------------------------------------------------------------------------
    def _require_decoder(self) -> CaptionDecoder:
        if self.decoder is None:
            raise RuntimeError("this model has no caption decoder (decoder_layers = 0)")
        return self.decoder

    def caption_logits(
        self, visual_hidden: torch.Tensor, input_ids: torch.Tensor, decoder_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self._require_decoder()(visual_hidden, input_ids, decoder_mask)

    def caption_loss(
        self,
        before: torch.Tensor,
        after: torch.Tensor,
        input_ids: torch.Tensor,
        output_ids: torch.Tensor,
        decoder_mask: torch.Tensor,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """Teacher-forcing cross-entropy, equal to ``caption_loss(caption_logits(...))`` but projecting onto
        the vocabulary only where the target is a real token (id ≠ 0): the 49,408-way projection is
        most of the step's cost, and padded places contribute nothing to the loss."""
        hidden = self.encode_pair(before, after).hidden
        return self.caption_loss_from_hidden(hidden, input_ids, output_ids, decoder_mask, reduction)

    def caption_loss_from_hidden(
        self,
        hidden: torch.Tensor,
        input_ids: torch.Tensor,
        output_ids: torch.Tensor,
        decoder_mask: torch.Tensor,
        reduction: str = "mean",
        return_cross_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """:meth:`caption_loss` given the pair encoder's tokens (B, 2N, E); with ``return_cross_attention``
        also the decoder's cross-attention per layer (B, H, L, 2N), for :mod:`clip4idc.training.guidance`."""
        states, crosses = self._require_decoder().hidden_states(hidden, input_ids, decoder_mask)
        keep = output_ids != 0
        logits = self._require_decoder().classifier(states[keep])
        loss = F.cross_entropy(logits.float(), output_ids[keep], reduction=reduction)
        return (loss, crosses) if return_cross_attention else loss

    def caption_log_likelihood(
        self,
        hidden: torch.Tensor,
        input_ids: torch.Tensor,
        output_ids: torch.Tensor,
        decoder_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Each caption's log-likelihood (B,) under teacher forcing: the sum of its real tokens' log p."""
        token_loss = self.caption_loss_from_hidden(hidden, input_ids, output_ids, decoder_mask, "none")
        return sequence_sums(-token_loss, output_ids != 0)

    @torch.no_grad()
    def generate(
        self,
        before: torch.Tensor,
        after: torch.Tensor,
        max_words: int | None = None,
        beam_size: int = 1,
        length_penalty: float = 0.0,
    ) -> torch.Tensor:
        """Caption token ids (B, T) for preprocessed pairs (greedy when ``beam_size`` is 1)."""
        from .decoding import beam_search, greedy_decode

        hidden = self.encode_pair(before, after).hidden
        steps = max_words or self.config.max_words
        if beam_size == 1:
            return greedy_decode(self._require_decoder(), hidden, steps)
        return beam_search(self._require_decoder(), hidden, steps, beam_size, length_penalty)

    @torch.no_grad()
    def caption(
        self,
        before: ImageLike | Sequence[ImageLike],
        after: ImageLike | Sequence[ImageLike],
        max_words: int | None = None,
        beam_size: int = 1,
        length_penalty: float = 0.0,
        batch_size: int = 32,
    ) -> str | list[str]:
        """Describe what changed between ``before`` and ``after``: a path, PIL image or HxWx3 uint8 array
        each, or two equal-length lists of them (then a list of captions). EXIF orientation is applied."""
        from ..tokenizer import default_tokenizer

        bef_list, aft_list, single = as_image_lists(before, after)
        was_training = self.training
        self.eval()
        tok = default_tokenizer()
        device = next(self.parameters()).device
        texts: list[str] = []
        for i in range(0, len(bef_list), batch_size):
            bef, aft = preprocess_pairs(
                bef_list[i : i + batch_size],
                aft_list[i : i + batch_size],
                self.config.resolution,
                orient=True,
            )
            ids = self.generate(bef.to(device), aft.to(device), max_words, beam_size, length_penalty)
            texts += [tok.caption_text(row) for row in ids.cpu()]
        self.train(was_training)
        return texts[0] if single else texts

    @property
    def dtype(self) -> torch.dtype:
        return self.clip.visual.conv1.weight.dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
