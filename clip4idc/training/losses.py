"""The stages' losses, computed over every rank's batch: :class:`PretrainLoss` (a single-image CLIP, the
stand-in's pretraining), :class:`AdaptLoss` (stage 1, contrastive) and :class:`CaptionLoss` (stage 2, the
caption decoder). Each wraps the model so that DDP sees one ``forward``
per step; with several processes (``Dist``) the contrastive loss sees the embeddings of every rank,
gradients included, so two processes compute the loss of one on the whole batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..network.model import CLIP4IDC, contrastive_loss
from ..tokenizer import trim_padding
from .config import AdaptOptions, FinetuneOptions, PretrainOptions
from .guidance import change_target, guidance_loss


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def gather_with_grad(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Concatenate every rank's rows; gradients flow back to each rank's own rows (summed over ranks)."""
    if d.world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


class PretrainLoss(nn.Module):
    """CLIP's own loss on single images and their descriptions over the global batch; each image's near-miss
    descriptions (``neg_text_ids``) extend its image→text row, so telling a cube from a cylinder pays even
    when no other image of the batch differs from this one only in that."""

    def __init__(self, model: CLIP4IDC, d: Dist, options: PretrainOptions | None = None) -> None:
        super().__init__()
        self.model, self.d = model, d
        visual = model.clip.visual  # the pair parts take no part in single images: frozen, so that DDP
        for part in (visual.joint_positional_embedding, visual.bef_embedding, visual.aft_embedding):
            part.requires_grad_(False)  # does not wait for their gradients
        visual.ln_mid.requires_grad_(False)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        m = self.model
        image = gather_with_grad(m.clip.encode_image(batch["image"]).float(), self.d)
        text, _ = m.encode_text(trim_padding(batch["text_ids"]))
        text = gather_with_grad(text.float(), self.d)
        negatives = None
        if "neg_text_ids" in batch:
            b, k = image.shape[0], batch["neg_text_ids"].shape[1]
            neg, _ = m.encode_text(trim_padding(batch["neg_text_ids"].flatten(0, 1)))
            neg = gather_with_grad(neg.float(), self.d).view(b, k, -1)
            rows = torch.arange(b, device=image.device)
            negatives = m.retrieval_logits(neg.flatten(0, 1), image).view(b, k, b)[rows, :, rows]
        return contrastive_loss(m.retrieval_logits(text, image), negatives)


class AdaptLoss(nn.Module):
    """Stage 1: the symmetric contrastive loss over the *global* batch; the harder negatives a batch may
    carry (``neg_text_ids``: each pair's false captions; ``still_before``/``still_after``: pairs no caption
    describes) extend its rows (:func:`clip4idc.network.model.contrastive_loss`)."""

    def __init__(self, model: CLIP4IDC, d: Dist, options: AdaptOptions | None = None) -> None:
        super().__init__()
        self.model, self.d = model, d

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        m = self.model
        pair = m.encode_pair(batch["before"], batch["after"]).pooled
        text, _ = m.encode_text(batch["text_ids"])
        pair, text = gather_with_grad(pair.float(), self.d), gather_with_grad(text.float(), self.d)
        negatives = None
        if "neg_text_ids" in batch:  # type_negatives: each pair's own false captions
            b, k = pair.shape[0], batch["neg_text_ids"].shape[1]
            neg, _ = m.encode_text(batch["neg_text_ids"].flatten(0, 1))
            neg = gather_with_grad(neg.float(), self.d)  # (b·k, E), pair i's k negatives together
            valid = gather_with_grad(batch["neg_valid"].float(), self.d).bool()
            rows = torch.arange(b, device=pair.device)
            negatives = m.retrieval_logits(neg, pair).view(b, k, b)[rows, :, rows]
            negatives = negatives.masked_fill(~valid, float("-inf"))
        pair_negatives = None
        if "still_before" in batch:  # unchanged_negatives: no caption of the batch describes these pairs
            still = m.encode_pair(batch["still_before"], batch["still_after"]).pooled
            pair_negatives = m.retrieval_logits(text, gather_with_grad(still.float(), self.d))
        return contrastive_loss(m.retrieval_logits(text, pair), negatives, pair_negatives)


class CaptionLoss(nn.Module):
    """Stage 2: token cross-entropy (padding ignored) normalised by the global token count, so the mean
    over ranks equals the loss of one process on the whole batch.

    For CLEVR-Change the distractor pair's no-change caption adds a second term, as the original's
    ``loss(bef, sc) + loss(bef, nsc)``; ``no_change_weight`` scales that term (1 = the original). Why: every
    scene gives one change and one no-change pair, and a move or a material change the decoder is unsure of
    costs less called "no change" than named wrong; a weight below 1 makes the decoder less quick to say
    nothing changed. ``attention_guidance`` adds that weight times
    :func:`clip4idc.training.guidance.guidance_loss` on the change pairs (not the no-change term, whose only
    differences are camera jitter); each rank averages over its own pairs. ``freeze_vision`` fixes the
    vision tower; then :meth:`encode_frozen` can encode every training pair once, and each step reads its
    pairs' tokens instead of running the encoder again (the same tokens every epoch: nothing in a stage-2
    item is random but its captions).
    """

    def __init__(self, model: CLIP4IDC, d: Dist, options: FinetuneOptions | None = None) -> None:
        super().__init__()
        options = options or FinetuneOptions()
        self.model, self.d, self.freeze_vision = model, d, options.freeze_vision
        self.no_change_weight, self.attention_guidance = options.no_change_weight, options.attention_guidance
        self.frozen: dict[str, torch.Tensor] = {}  # "after" / "distractor" -> (N, 2L, E), by dataset index
        if self.freeze_vision:
            model.clip.visual.requires_grad_(False)

    @torch.no_grad()
    def encode_frozen(self, dataset, device: torch.device, batch_size: int = 64) -> int:
        """Encode each of ``dataset``'s pairs (before/after and, where there is one, before/distractor) with
        the frozen encoder, in fixed chunks of the dataset's order, so that a resumed run reads exactly the
        tokens an uninterrupted one does. Call it after the weights are final (centred or loaded); returns
        the bytes held. Needs ``freeze_vision``."""
        if not self.freeze_vision:
            raise ValueError("encode_frozen needs freeze_vision: a training encoder changes every step")
        parts: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            before = torch.stack([it["before"] for it in items]).to(device)
            for key in ("after", "distractor"):
                if all(key in it for it in items):
                    other = torch.stack([it[key] for it in items]).to(device)
                    hidden = self.model.encode_pair(before, other).hidden
                    parts.setdefault(key, []).append(hidden.cpu())  # host memory, not a GPU's
        whole = {key: torch.cat(chunks) for key, chunks in parts.items()}
        self.frozen = {key: t for key, t in whole.items() if len(t) == len(dataset)}  # else encoded per step
        return sum(t.numel() * t.element_size() for t in self.frozen.values())

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        bef, out = batch["before"], batch["output_ids"]
        hidden = self._encode(bef, batch["after"], batch, "after")
        loss = self._caption_term(
            hidden,
            bef,
            batch["after"],
            batch["input_ids"],
            out,
            batch["decoder_mask"],
            self.attention_guidance,
        )
        if "distractor" not in batch:
            return loss
        still = self._encode(bef, batch["distractor"], batch, "distractor")
        nc = (batch["nc_input_ids"], batch["nc_output_ids"], batch["nc_decoder_mask"])
        nc_loss = self._caption_term(still, bef, batch["distractor"], *nc)
        return loss + self.no_change_weight * nc_loss

    def _encode(self, bef: torch.Tensor, aft: torch.Tensor, batch: dict, key: str) -> torch.Tensor:
        if key in self.frozen:
            return self.frozen[key][batch["index"].cpu()].to(bef.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_vision):
            return self.model.encode_pair(bef, aft).hidden

    def _caption_term(self, hidden, bef, aft, inp, out, mask, guidance: float = 0.0) -> torch.Tensor:
        """The caption loss (token mean over the global batch), plus ``guidance`` times the guidance loss."""
        token_loss, crosses = self.model.caption_loss_from_hidden(
            hidden, inp, out, mask, reduction="none", return_cross_attention=True
        )
        if self.d.world == 1:
            loss = token_loss.mean()
        else:
            total = (out != 0).sum().float()
            dist.all_reduce(total)
            loss = token_loss.sum() / total * self.d.world
        if guidance:
            cfg = self.model.config
            target, valid = change_target(bef, aft, cfg.patch)
            loss = loss + guidance * guidance_loss(crosses, out, target, valid, cfg.grid)
        return loss
