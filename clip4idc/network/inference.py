"""Batched inference over a dataset: pair embeddings, text embeddings, captions.

Shared by training (validation each epoch) and ``clip4idc eval``; images are decoded by the dataset's
loader workers, the pair encoder and the decoder's encoder stack run once per pair.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import Clip4idcError
from ..precision import autocast, cast_for_inference
from ..preprocess import ImageLike, preprocess_pairs
from ..tokenizer import default_tokenizer, trim_padding
from .model import CLIP4IDC


def _loader(dataset: Dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, persistent_workers=False
    )


@torch.no_grad()
def encode_pairs(
    model: CLIP4IDC,
    dataset: Dataset,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    workers: int = 0,
) -> torch.Tensor:
    """Pooled pair embeddings (P, E), in dataset order (items need ``before`` and ``after``)."""
    model.eval()
    out = []
    for batch in _loader(dataset, batch_size, workers):
        with autocast(device, precision):
            pooled = model.encode_pair(batch["before"].to(device), batch["after"].to(device)).pooled
        out.append(pooled.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def encode_texts(
    model: CLIP4IDC,
    texts: Sequence[str],
    max_words: int = 32,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> torch.Tensor:
    """Pooled caption embeddings (T, E). Each batch is cut after its longest text: the causal text tower
    pools at the end token, so trailing padding changes nothing but the cost (long scene descriptions)."""
    model.eval()
    tok = default_tokenizer()
    out = []
    for i in range(0, len(texts), batch_size):
        ids, _ = tok.batch(texts[i : i + batch_size], max_words)
        with autocast(device, precision):
            pooled, _ = model.encode_text(trim_padding(ids).to(device))
        out.append(pooled.float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.embed_dim)


@torch.no_grad()
def retrieval_similarity(
    model: CLIP4IDC,
    dataset: Dataset,
    captions: Sequence[Sequence[str]],
    max_words: int = 32,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    workers: int = 0,
) -> tuple[torch.Tensor, list[int]]:
    """Similarity (texts × pairs) for every reference caption of every pair; ``text_to_pair`` maps rows
    to their pair index."""
    pairs = encode_pairs(model, dataset, batch_size, device, precision, workers)
    texts = [c for caps in captions for c in caps]
    text_to_pair = [i for i, caps in enumerate(captions) for _ in caps]
    emb = encode_texts(model, texts, max_words, 4 * batch_size, device, precision)
    with torch.no_grad():
        sim = model.retrieval_logits(emb.to(device), pairs.to(device)).float().cpu()
    return sim, text_to_pair


@torch.no_grad()
def generate_captions(
    model: CLIP4IDC,
    dataset: Dataset,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    beam_size: int = 1,
    max_words: int | None = None,
    length_penalty: float = 0.0,
    workers: int = 0,
    progress: bool = False,
) -> list[str]:
    """One caption per dataset item, in order (items need ``before`` and ``after``)."""
    model.eval()
    runner = cast_for_inference(model, precision)  # weights cast once: cheaper than per-step autocast
    tok = default_tokenizer()
    loader = _loader(dataset, batch_size, workers)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="captioning", leave=False)
    texts: list[str] = []
    for batch in loader:
        bef, aft = (batch[k].to(device, runner.dtype) for k in ("before", "after"))
        ids = runner.generate(bef, aft, max_words, beam_size, length_penalty)
        texts += [tok.caption_text(row) for row in ids.cpu()]
    return texts


PairInput = ImageLike | torch.Tensor


def pair_tensors(
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
        bef, aft = preprocess_pairs([before], [after], res, orient=True)
    return bef.to(device), aft.to(device)


@torch.no_grad()
def retrieval_scores(
    model: torch.nn.Module, before: PairInput, after: PairInput, captions: Sequence[str]
) -> list[float]:
    """Retrieval scores (scaled cosine similarity, stage-1 head) of candidate captions for one pair."""
    texts = [c.strip() for c in captions if c.strip()]
    if not texts:
        return []

    bef, aft = pair_tensors(model, before, after)
    pair = model.encode_pair(bef, aft).pooled
    text = encode_texts(model, texts, model.config.max_words, device=pair.device)
    return model.retrieval_logits(text.to(pair.device), pair.float())[:, 0].tolist()
