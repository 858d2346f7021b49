"""Caption decoding: greedy and beam search, incremental with cached keys and values.

The decoder's encoder stack runs once per pair and the cross-attention keys/values are computed once;
each step then feeds only the newest token, keeping per-layer self-attention caches. Because the decoder
is post-LN and causal, this gives the same logits as re-running the whole prefix (what the original
does each step, see :func:`greedy_decode_reference`) up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..tokenizer import EOT_ID, PAD_ID, SOT_ID
from .decoder import CaptionDecoder

_INT8_MM = hasattr(torch, "_weight_int8pack_mm")  # torch's int8-weight matrix-vector kernel


@dataclass
class _LayerCache:
    self_k: torch.Tensor | None
    self_v: torch.Tensor | None
    cross_k: torch.Tensor
    cross_v: torch.Tensor

    def select(self, index: torch.Tensor) -> None:
        """Reorder the batch (beam search keeps the caches of the surviving beams)."""
        self.self_k = self.self_k.index_select(0, index) if self.self_k is not None else None
        self.self_v = self.self_v.index_select(0, index) if self.self_v is not None else None
        self.cross_k = self.cross_k.index_select(0, index)
        self.cross_v = self.cross_v.index_select(0, index)


def init_caches(decoder: CaptionDecoder, visual: torch.Tensor) -> list[_LayerCache]:
    """Run the encoder stack once; precompute each decoder layer's cross-attention keys and values."""
    memory = decoder.encode_memory(visual)
    caches = []
    for layer, mem in zip(decoder.decoder.layer, memory):
        att = layer.enc_attn.att
        # contiguous once here, not copied by every step's matmul (the split is a strided view)
        k, v = att.split(att.key(mem)).contiguous(), att.split(att.value(mem)).contiguous()
        caches.append(_LayerCache(None, None, k, v))
    return caches


def decode_step(
    decoder: CaptionDecoder,
    tokens: torch.Tensor,
    position: int,
    caches: list[_LayerCache],
    keep_cross: bool = False,
    project: bool = True,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Feed one token per sequence (M,1) at ``position``; returns logits (M,V) (or, with ``project``
    off, the transformed states (M,E) that the vocabulary projection takes) and, if asked, each layer's
    cross-attention probabilities (M,H,2N)."""
    x = decoder.embeddings(tokens, start=position)
    crosses = []
    for layer, cache in zip(decoder.decoder.layer, caches):
        sa = layer.slf_attn
        k, v = sa.att.split(sa.att.key(x)), sa.att.split(sa.att.value(x))
        cache.self_k = k if cache.self_k is None else torch.cat([cache.self_k, k], dim=2)
        cache.self_v = v if cache.self_v is None else torch.cat([cache.self_v, v], dim=2)
        ctx, _ = sa.att.attend(sa.att.split(sa.att.query(x)), cache.self_k, cache.self_v, None)
        x = sa.output(ctx, x)
        ea = layer.enc_attn
        ctx, probs = ea.att.attend(ea.att.split(ea.att.query(x)), cache.cross_k, cache.cross_v, None)
        x = ea.output(ctx, x)
        x = layer.output(layer.intermediate(x), x)
        if keep_cross:
            crosses.append(probs[:, :, 0])
    predictions = decoder.classifier.cls.predictions
    states = predictions.transform(x[:, 0])
    return (predictions.decoder(states) + predictions.bias if project else states), crosses


class ScreenedArgmax:
    """Exact argmax of ``states @ W.T + bias`` over the 49,408-word vocabulary, reading less memory.

    For a few captions at a time the projection is a matrix-vector product bound by reading ``W``
    (100 MB at ViT-B/32 size in fp32, 50 MB in bf16), which is most of a decoding step. Here a cheaper
    copy of ``W`` gives approximate logits - int8 with one scale per word (25 MB) for up to
    ``INT8_ROWS`` states, where its matrix-vector kernel is fastest, else bf16 - and a rigorous bound on
    their error (rounding of the weights and of the states, fp32 accumulation, bf16 output rounding;
    doubled for safety) leaves every word that could still be the maximum. Only those are recomputed
    exactly in fp32 from ``W`` itself. The result is the argmax of the fp32 logits of ``W`` (for an fp32
    decoder: the reference path's tokens; for a bf16 one, its weights without the rounding of the logits
    to bf16), first index on ties.
    """

    U = 2.0**-8  # unit roundoff of bf16
    INT8_ROWS = 4

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight, self.bias = weight, bias
        w = weight.detach().float()
        self.weight_bf16 = weight.detach().to(torch.bfloat16)
        # scale rounded to bf16 first and chosen so |w / scale| <= 127 even after that rounding
        self.scale = (w.abs().amax(dim=1) / 126.0).clamp_min(1e-30).to(torch.bfloat16)
        self.q = (w / self.scale.float()[:, None]).round_().clamp_(-127, 127).to(torch.int8)
        self.half_step = self.scale.float() / 2  # the worst int8 rounding of one weight, per word
        self.max_norm = w.norm(dim=1).max() + (w.shape[1] ** 0.5) * self.half_step.max()
        self.bias_f = bias.detach().float()
        self.version = weight._version

    def is_current(self, weight: torch.Tensor) -> bool:
        return weight is self.weight and weight._version == self.version

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        u, (m, width) = self.U, states.shape
        x, xb = states.float(), states.to(torch.bfloat16)
        norm = x.norm(dim=1, keepdim=True)
        # |approx_j - exact_j| <= bound_j. Both screens: the states' bf16 rounding, fp32 accumulation,
        # bf16 rounding of the output (relative to the largest logit magnitude); the weights' rounding:
        # bf16 (relative, per element) or int8 (half a step of word j's scale per unit of |states|_1).
        if _INT8_MM and m <= self.INT8_ROWS:
            approx = torch._weight_int8pack_mm(xb, self.q, self.scale).float().add_(self.bias_f)
            weights = xb.float().abs().sum(dim=1, keepdim=True) * self.half_step
            rel = u + 1.01 * width * 2.0**-24
        else:
            approx = (xb @ self.weight_bf16.t()).float().add_(self.bias_f)
            weights = 0.0
            rel = 2 * u + u * u + 1.01 * width * 2.0**-24
        magnitude = approx.abs().amax(dim=1, keepdim=True) + self.bias_f.abs().max()
        bound = 2.0 * (rel * norm * self.max_norm + 1.01 * u * magnitude + weights)
        top = (approx - bound).max(dim=1, keepdim=True).values
        rows, cols = (approx + bound >= top).nonzero(as_tuple=True)
        exact = (self.weight[cols].float() * x[rows]).sum(dim=-1) + self.bias_f[cols]
        best = torch.full((m,), float("-inf"), dtype=exact.dtype).scatter_reduce(0, rows, exact, "amax")
        winner = exact == best[rows]
        first = torch.full((m,), self.weight.shape[0], dtype=torch.long)
        return first.scatter_reduce(0, rows[winner], cols[winner], "amin")


def greedy_head(decoder: CaptionDecoder, rows: int) -> ScreenedArgmax | None:
    """The screened argmax (cached on the decoder) where it reads less than the plain projection: an
    fp32 decoder on a CPU with native bf16, or a bf16 one for up to ``INT8_ROWS`` captions at a time."""
    from ..precision import cpu_has_native_bf16

    weight = decoder.classifier.cls.predictions.decoder.weight
    if weight.device.type != "cpu" or not cpu_has_native_bf16():
        return None
    if weight.dtype == torch.bfloat16:  # only the int8 screen reads less than the bf16 projection
        if rows > ScreenedArgmax.INT8_ROWS or not _INT8_MM:
            return None
    elif weight.dtype != torch.float32:
        return None
    head = getattr(decoder, "_screened_argmax", None)
    if head is None or not head.is_current(weight):
        head = ScreenedArgmax(weight, decoder.classifier.cls.predictions.bias)
        decoder._screened_argmax = head
    return head


@torch.no_grad()
def greedy_decode(
    decoder: CaptionDecoder,
    visual: torch.Tensor,
    max_words: int,
    stop_at_eot: bool = True,
    return_cross_attention: bool = False,
    screened: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Greedy ids (B, max_words), the original's tokens (first maximum on ties).

    With ``stop_at_eot`` decoding ends once every caption has produced ``<|endoftext|>`` and later places
    hold 0 (text is cut at the end token anyway); without it, exactly ``max_words`` steps run as in the
    original ``greedy_decode``. Cross-attention, if asked: (layers, B, heads, max_words, 2N).
    ``screened`` uses :class:`ScreenedArgmax` where it applies (same tokens, less memory traffic).
    """
    b = visual.shape[0]
    caches = init_caches(decoder, visual)
    out = torch.full((b, max_words), PAD_ID, dtype=torch.long, device=visual.device)
    cross_maps: list[torch.Tensor] = []
    token = torch.full((b, 1), SOT_ID, dtype=torch.long, device=visual.device)
    done = torch.zeros(b, dtype=torch.bool, device=visual.device)
    head = greedy_head(decoder, b) if screened else None
    for t in range(max_words):
        out_t, crosses = decode_step(decoder, token, t, caches, return_cross_attention, project=head is None)
        # argmax over float: exact for bf16/fp16 logits, and ~4x faster than the half-precision kernel
        nxt = out_t.float().argmax(dim=-1) if head is None else head(out_t)
        if stop_at_eot:
            nxt = nxt.masked_fill(done, PAD_ID)
        out[:, t] = nxt
        if return_cross_attention:
            cross_maps.append(torch.stack(crosses))
        done |= nxt == EOT_ID
        token = nxt[:, None]
        if stop_at_eot and bool(done.all()):
            break
    if not return_cross_attention:
        return out
    maps = torch.stack(cross_maps, dim=3)  # (layers, B, H, T', 2N)
    pad = max_words - maps.shape[3]
    if pad:
        maps = torch.cat([maps, maps.new_zeros(*maps.shape[:3], pad, maps.shape[4])], dim=3)
    return out, maps


@torch.no_grad()
def greedy_decode_reference(decoder: CaptionDecoder, visual: torch.Tensor, max_words: int) -> torch.Tensor:
    """The original's greedy decoding, step by step: re-run the full decoder on the prefix each step."""
    ids = torch.full((visual.shape[0], 1), SOT_ID, dtype=torch.long, device=visual.device)
    memory = decoder.encode_memory(visual)
    for _ in range(max_words):
        logits = decoder(visual, ids, torch.ones_like(ids), memory=memory)
        ids = torch.cat([ids, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return ids[:, 1:]


@torch.no_grad()
def beam_search(
    decoder: CaptionDecoder,
    visual: torch.Tensor,
    max_words: int,
    beam_size: int = 3,
    length_penalty: float = 0.0,
) -> torch.Tensor:
    """Beam search over all pairs at once. A hypothesis ends with (and keeps) ``<|endoftext|>``; the
    answer maximises ``sum log p / length ** length_penalty``. ``beam_size=1`` is greedy up to the end
    token, which is the original's ``beam_decode``. Returns ids (B, max_words), 0-padded."""
    b, k = visual.shape[0], beam_size
    device = visual.device
    caches = init_caches(decoder, visual.repeat_interleave(k, dim=0))
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    seqs = torch.zeros(b * k, 0, dtype=torch.long, device=device)
    token = torch.full((b * k, 1), SOT_ID, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    active = torch.ones(b, dtype=torch.bool, device=device)

    def norm(score: float, length: int) -> float:
        return score / (length**length_penalty) if length_penalty else score

    for t in range(max_words):
        logits, _ = decode_step(decoder, token, t, caches)
        logp = logits.float().log_softmax(dim=-1).view(b, k, -1)
        vocab = logp.shape[-1]
        cand = (scores[:, :, None] + logp).view(b, -1)
        top_scores, top_idx = cand.topk(2 * k, dim=-1)
        new_scores = torch.full((b, k), float("-inf"), device=device)
        origin = torch.arange(b * k, device=device).view(b, k).clone()
        new_tok = torch.full((b, k), PAD_ID, dtype=torch.long, device=device)
        for i in range(b):
            if not active[i]:
                continue
            kept = 0
            for s, idx in zip(top_scores[i].tolist(), top_idx[i].tolist()):
                beam, word = divmod(idx, vocab)
                if s == float("-inf"):
                    break
                if word == EOT_ID:
                    hyp = seqs[i * k + beam].tolist() + [EOT_ID]
                    finished[i].append((norm(s, len(hyp)), hyp))
                else:
                    new_scores[i, kept] = s
                    origin[i, kept] = i * k + beam
                    new_tok[i, kept] = word
                    kept += 1
                if kept == k or len(finished[i]) >= k:
                    break
            if len(finished[i]) >= k:
                active[i] = False
        if not bool(active.any()):
            break
        index = origin.view(-1)
        for cache in caches:
            cache.select(index)
        seqs = torch.cat([seqs.index_select(0, index), new_tok.view(-1, 1)], dim=1)
        scores = new_scores
        token = new_tok.view(-1, 1)
    out = torch.full((b, max_words), PAD_ID, dtype=torch.long, device=device)
    for i in range(b):
        hyps = list(finished[i])
        if active[i] or not hyps:
            for j in range(k):
                if scores[i, j] > float("-inf"):
                    seq = seqs[i * k + j].tolist()
                    hyps.append((norm(float(scores[i, j]), len(seq)), seq))
        best = max(hyps, key=lambda h: h[0])[1][:max_words]
        out[i, : len(best)] = torch.tensor(best, dtype=torch.long)
    return out
