"""The caption decoder: a small BERT-style (post-LN) transformer over the pair encoder's tokens.

An *encoder* stack re-contextualises the 2N visual tokens and keeps every layer's output; decoder layer
``i`` cross-attends to encoder layer ``i``'s output. Word and position embeddings are CLIP's own
(``clip.token_embedding``, ``clip.positional_embedding``), and the output projection is the word
embedding transposed. LayerNorms use eps 1e-12 and GELU the erf form, as in the original.
Names mirror the original checkpoint keys (``decoder.decoder.layer.{i}.enc_attn.att.query`` ...).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

NEG = -10000.0  # the original's additive mask value (not -inf)


class BertLayerNorm(nn.LayerNorm):
    def __init__(self, width: int) -> None:
        super().__init__(width, eps=1e-12)


class MultiHeadAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        return x.view(b, n, self.heads, w // self.heads).transpose(1, 2)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Heads-split q/k/v (B,H,n,d) → merged context (B,n,W) and probabilities (B,H,n,m)."""
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores + mask
        probs = scores.softmax(dim=-1)
        ctx = self.dropout(probs) @ v
        return ctx.transpose(1, 2).flatten(2), probs

    def forward(
        self, q: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attend(
            self.split(self.query(q)), self.split(self.key(kv)), self.split(self.value(kv)), mask
        )


class SelfOutput(nn.Module):
    """``LN(dropout(dense(x)) + residual)``: BERT's post-LN residual."""

    def __init__(self, width: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(inner, width)
        self.LayerNorm = BertLayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class DecoderAttention(nn.Module):
    """Attention then post-LN residual on the *query-side* input (also for cross-attention)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.att = MultiHeadAttention(width, heads, dropout)
        self.output = SelfOutput(width, width, dropout)

    def forward(
        self, q: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx, probs = self.att(q, kv, mask)
        return self.output(ctx, q), probs


class Intermediate(nn.Module):
    def __init__(self, width: int, inner: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w, p = cfg.embed_dim, cfg.decoder_dropout
        self.slf_attn = DecoderAttention(w, cfg.decoder_heads, p)
        self.intermediate = Intermediate(w, cfg.decoder_intermediate)
        self.output = SelfOutput(w, cfg.decoder_intermediate, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.slf_attn(x, x, None)
        return self.output(self.intermediate(x), x)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w, p = cfg.embed_dim, cfg.decoder_dropout
        self.slf_attn = DecoderAttention(w, cfg.decoder_heads, p)
        self.enc_attn = DecoderAttention(w, cfg.decoder_heads, p)
        self.intermediate = Intermediate(w, cfg.decoder_intermediate)
        self.output = SelfOutput(w, cfg.decoder_intermediate, p)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = self.slf_attn(x, x, self_mask)
        x, cross = self.enc_attn(x, memory, None)
        return self.output(self.intermediate(x), x), cross


class Stack(nn.Module):
    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(layers)


class Embeddings(nn.Module):
    """Word + position embeddings (both CLIP's, shared) → LayerNorm → dropout."""

    def __init__(self, cfg: ModelConfig, word: nn.Embedding, positions: nn.Parameter) -> None:
        super().__init__()
        self.word_embeddings = word
        self.position_embeddings = nn.Embedding(cfg.context_length, cfg.embed_dim)
        self.position_embeddings.weight = positions
        self.LayerNorm = BertLayerNorm(cfg.embed_dim)
        self.dropout = nn.Dropout(cfg.decoder_dropout)

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        pos = self.position_embeddings.weight[start : start + ids.shape[1]]
        return self.dropout(self.LayerNorm(self.word_embeddings(ids) + pos))


class PredictionTransform(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.LayerNorm = BertLayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(x)))


class Predictions(nn.Module):
    """Hidden → vocabulary logits through the (tied) word embedding, plus its own bias."""

    def __init__(self, cfg: ModelConfig, word: nn.Embedding) -> None:
        super().__init__()
        self.transform = PredictionTransform(cfg.embed_dim)
        self.decoder = nn.Linear(cfg.embed_dim, cfg.vocab_size, bias=False)
        self.decoder.weight = word.weight
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x)) + self.bias


class _Cls(nn.Module):
    def __init__(self, cfg: ModelConfig, word: nn.Embedding) -> None:
        super().__init__()
        self.predictions = Predictions(cfg, word)


class Classifier(nn.Module):
    def __init__(self, cfg: ModelConfig, word: nn.Embedding) -> None:
        super().__init__()
        self.cls = _Cls(cfg, word)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls.predictions(x)


def causal_padding_mask(decoder_mask: torch.Tensor) -> torch.Tensor:
    """(B,L) 0/1 mask → (B,1,L,L) additive mask: future positions and padded keys get -10000."""
    length = decoder_mask.shape[1]
    future = torch.ones(length, length, device=decoder_mask.device).triu(1)
    blocked = ((1 - decoder_mask.float())[:, None, None, :] + future) > 0
    return blocked.float() * NEG


class CaptionDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig, word: nn.Embedding, positions: nn.Parameter) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg, word, positions)
        self.encoder = Stack([EncoderLayer(cfg) for _ in range(cfg.decoder_layers)])
        self.decoder = Stack([DecoderLayer(cfg) for _ in range(cfg.decoder_layers)])
        self.classifier = Classifier(cfg, word)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The original's BERT initialisation for the new parts: N(0, 0.02) weights, zero biases, LN 1/0.
        The shared CLIP embeddings are left alone."""
        shared = {id(self.embeddings.word_embeddings.weight), id(self.embeddings.position_embeddings.weight)}
        for module in self.modules():
            if isinstance(module, nn.Linear) and id(module.weight) not in shared:
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.classifier.cls.predictions.bias)

    def encode_memory(self, visual: torch.Tensor) -> list[torch.Tensor]:
        """Run the encoder stack once over the (B,2N,E) visual tokens; one output per layer."""
        outs = []
        for layer in self.encoder.layer:
            visual = layer(visual)
            outs.append(visual)
        return outs

    def forward(
        self,
        visual: torch.Tensor,
        input_ids: torch.Tensor,
        decoder_mask: torch.Tensor | None = None,
        memory: list[torch.Tensor] | None = None,
        return_cross_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Teacher-forced logits (B,L,V) for ``input_ids`` given the pair's visual tokens."""
        x, crosses = self.hidden_states(visual, input_ids, decoder_mask, memory)
        logits = self.classifier(x)
        return (logits, crosses) if return_cross_attention else logits

    def hidden_states(
        self,
        visual: torch.Tensor,
        input_ids: torch.Tensor,
        decoder_mask: torch.Tensor | None = None,
        memory: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Last decoder layer's states (B,L,E) before the vocabulary projection, and cross-attentions."""
        if memory is None:
            memory = self.encode_memory(visual)
        if decoder_mask is None:
            decoder_mask = torch.ones_like(input_ids)
        mask = causal_padding_mask(decoder_mask).to(visual.dtype)
        x = self.embeddings(input_ids)
        crosses = []
        for layer, mem in zip(self.decoder.layer, memory):
            x, cross = layer(x, mem, mask)
            crosses.append(cross)
        return x, crosses
