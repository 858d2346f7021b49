"""CLIP's two towers, with the vision tower turned into CLIP4IDC's *pair encoder*.

Module and parameter names mirror OpenAI CLIP and the original CLIP4IDC checkpoints (``visual.conv1``,
``transformer.resblocks.{i}.attn.in_proj_weight``, ``ln_mid``, ...), so released weights load with no
renaming. Activations are batch-first here; the maths is CLIP's sequence-first maths.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class LayerNorm(nn.LayerNorm):
    """CLIP's LayerNorm: computed in float32 whatever the input dtype, cast back (eps 1e-5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        return F.layer_norm(
            x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        ).to(dtype)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return x * torch.sigmoid(1.702 * x)
        # inference: the same three roundings in place (bit-identical), ~4x less memory traffic on a CPU
        return (x * 1.702).sigmoid_().mul_(x)


class MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, width * 4)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(width * 4, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Attention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s packed parameter layout.

    Returns the attention probabilities too when asked (for attention maps); otherwise uses the fused
    ``scaled_dot_product_attention`` kernel.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, w = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        if need_weights:
            scores = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-1, -2)
            if mask is not None:
                scores = scores + mask
            probs = scores.softmax(dim=-1)
            out = probs @ v
        else:
            probs = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(b, n, w)
        return self.out_proj(out), probs


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = Attention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = MLP(width)
        self.ln_2 = LayerNorm(width)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, probs = self.attn(self.ln_1(x), mask, need_weights)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, probs


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])


class PairVisionTransformer(nn.Module):
    """CLIP's ViT as CLIP4IDC's image-pair encoder.

    Blocks ``0 .. intra_layers-1`` see each image alone (*intra* stage); then the two token sequences get
    before/after embeddings, a joint position embedding over ``2N`` tokens and ``ln_mid``, and the
    remaining blocks attend across both images (*inter* stage).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        width, n = cfg.vision_width, cfg.tokens_per_image
        self.intra_layers = cfg.intra_layers
        self.conv1 = nn.Conv2d(3, width, kernel_size=cfg.patch, stride=cfg.patch, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(n, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, cfg.vision_layers, cfg.vision_heads)
        self.joint_positional_embedding = nn.Parameter(scale * torch.randn(2 * n, width))
        self.bef_embedding = nn.Parameter(scale * torch.randn(width))
        self.aft_embedding = nn.Parameter(scale * torch.randn(width))
        self.ln_mid = LayerNorm(width)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, cfg.embed_dim))

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        """(M, 3, R, R) images → (M, N, W) tokens after class token, positions and ``ln_pre``."""
        x = images.to(self.conv1.weight.dtype)
        if not (x.is_cuda and x.dtype == torch.float32):
            x = self.conv1(x)
        else:
            # cuDNN convolves fp32 in TF32 by default, which changed 2 of 200 demo captions on an H200; the
            # fp32 path is the exact one, so the patch embedding opts out (bf16/fp16 are unaffected).
            tf32 = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = False
            try:
                x = self.conv1(x)
            finally:
                torch.backends.cudnn.allow_tf32 = tf32
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.ln_pre(x)

    def forward(
        self, before: torch.Tensor, after: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B,3,R,R) ×2 → hidden (B, 2N, E) for all tokens, and per-block attention if asked.

        Intra-block attentions have shape (2B, H, N, N) with rows ordered before0, after0, before1, …;
        joint-block attentions (B, H, 2N, 2N).
        """
        x, attentions = self.joint_tokens(before, after, need_weights)
        return self.ln_post(x) @ self.proj.to(x.dtype), attentions

    def joint_tokens(
        self, before: torch.Tensor, after: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The last block's (B, 2N, W) tokens, before ``ln_post`` and the projection."""
        b = before.shape[0]
        x = self.embed_patches(torch.stack([before, after], dim=1).flatten(0, 1))
        attentions: list[torch.Tensor] = []
        blocks = self.transformer.resblocks
        for block in blocks[: self.intra_layers]:
            x, probs = block(x, None, need_weights)
            if probs is not None:
                attentions.append(probs)
        x = x.view(b, 2, x.shape[1], x.shape[2])
        x = torch.cat(
            [x[:, 0] + self.bef_embedding.to(x.dtype), x[:, 1] + self.aft_embedding.to(x.dtype)], dim=1
        )
        x = self.ln_mid(x + self.joint_positional_embedding.to(x.dtype))
        for block in blocks[self.intra_layers :]:
            x, probs = block(x, None, need_weights)
            if probs is not None:
                attentions.append(probs)
        return x, attentions

    @torch.no_grad()
    def center_tokens_(self, before: torch.Tensor, after: torch.Tensor) -> float:
        """Fold the mean ``ln_post`` output of these pairs' tokens into ``ln_post.bias`` so the tokens come
        out centred; returns the share of the tokens' mean square that the mean token was (1 = all alike).

        Why: a pair encoder trained from scratch by stage 1 alone can leave every token in a narrow cone,
        one common vector plus a tiny pair-specific part (enough for cosine retrieval, which normalises).
        The caption decoder then cross-attends to a nearly constant memory and learns only the language
        prior. Subtracting the common vector is an exact affine re-parameterisation of ``ln_post``.
        """
        x, _ = self.joint_tokens(before, after)
        outs = self.ln_post(x).float().flatten(0, 1)
        mean = outs.mean(dim=0)
        share = float(mean.pow(2).sum() / outs.pow(2).sum(dim=1).mean())
        self.ln_post.bias.sub_(mean.to(self.ln_post.bias.dtype))
        return share


class CLIP(nn.Module):
    """CLIP with the pair encoder as its visual tower (keys as ``clip.*`` in CLIP4IDC checkpoints)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual = PairVisionTransformer(cfg)
        self.transformer = Transformer(cfg.text_width, cfg.text_layers, cfg.text_heads)
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.text_width))
        self.ln_final = LayerNorm(cfg.text_width)
        self.text_projection = nn.Parameter(torch.empty(cfg.text_width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.initialize_parameters()

    def initialize_parameters(self) -> None:
        """OpenAI CLIP's initialisation (used when training from scratch, e.g. the demo model)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        for tower in (self.transformer, self.visual.transformer):
            proj_std = (tower.width**-0.5) * ((2 * tower.layers) ** -0.5)
            attn_std = tower.width**-0.5
            fc_std = (2 * tower.width) ** -0.5
            for block in tower.resblocks:
                nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
                nn.init.zeros_(block.attn.in_proj_bias)
                nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
                nn.init.zeros_(block.attn.out_proj.bias)
                nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
                nn.init.zeros_(block.mlp.c_fc.bias)
                nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
                nn.init.zeros_(block.mlp.c_proj.bias)
        nn.init.normal_(self.text_projection, std=self.transformer.width**-0.5)

    def encode_pair(
        self, before: torch.Tensor, after: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Pair embedding: ``pooled`` (B,E) = mean of the two class tokens, ``hidden`` (B,2N,E)."""
        hidden, attentions = self.visual(before, after, need_weights)
        n = self.cfg.tokens_per_image
        pooled = (hidden[:, 0] + hidden[:, n]) / 2
        return pooled, hidden, attentions

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Single-image embedding (B,E), as OpenAI's CLIP computes it: every block on the image alone, the
        class token through ``ln_post`` and the projection. The pair parts are not used; this is how the
        CLIP a pair encoder starts from is pretrained (stage ``pretrain``)."""
        v = self.visual
        x = v.embed_patches(images)
        for block in v.transformer.resblocks:
            x, _ = block(x, None, False)
        return v.ln_post(x[:, 0]) @ v.proj.to(x.dtype)

    def encode_text(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Caption embedding: ``pooled`` (B,E) at the end-of-text token (the largest id), ``hidden`` (B,L,E)."""
        length = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:length]
        mask = torch.full((length, length), float("-inf"), device=ids.device).triu(1).to(x.dtype)
        for block in self.transformer.resblocks:
            x, _ = block(x, mask)
        hidden = self.ln_final(x) @ self.text_projection.to(x.dtype)
        pooled = hidden[torch.arange(ids.shape[0], device=ids.device), ids.argmax(dim=-1)]
        return pooled, hidden
