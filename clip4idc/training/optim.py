"""The original's optimiser, made resumable: ``BertAdam`` as a torch optimizer plus a LambdaLR schedule.

BertAdam differs from AdamW in three ways that change results, so we keep them: no bias correction,
gradient clipping *per parameter tensor* (``clip_grad_norm_(p, 1.0)`` inside the step), and weight decay
added to the update. Learning rate follows ``warmup_linear``: linear warm-up over the first
``warmup`` fraction of steps, then linear decay to zero. CLIP's parameters train at ``lr * coef_lr``,
the new parts (pair embeddings are CLIP's; the decoder is new) at ``lr``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")


class BertAdam(torch.optim.Optimizer):
    def __init__(
        self,
        params,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        max_grad_norm: float = 1.0,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, max_grad_norm=max_grad_norm)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["max_grad_norm"] > 0:
                    torch.nn.utils.clip_grad_norm_(p, group["max_grad_norm"])
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["next_m"] = torch.zeros_like(p)
                    state["next_v"] = torch.zeros_like(p)
                m, v = state["next_m"], state["next_v"]
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                update = m / (v.sqrt() + group["eps"])
                if group["weight_decay"] > 0:
                    update += group["weight_decay"] * p
                p.add_(update, alpha=-group["lr"])
                state["step"] += 1


SHARED_EMBEDDINGS = ("clip.token_embedding.weight", "clip.positional_embedding")


def parameter_groups(
    model: nn.Module, lr: float, coef_lr: float, weight_decay: float, coef_lr_shared: float | None = None
) -> list[dict]:
    """The original's four groups: (CLIP | new) × (decay | no decay).

    ``coef_lr_shared`` (None = ``coef_lr``, as the original) gives CLIP's word and position embeddings,
    which the caption decoder shares, their own multiplier. A CLIP trained from scratch (the demo model)
    wants its vision tower to keep learning in stage 2 (``coef_lr`` near 1) while the embeddings that its
    text tower reads move slowly, or retrieval decays as the decoder pulls them."""
    groups: dict[tuple[bool, bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        shared = coef_lr_shared is not None and name in SHARED_EMBEDDINGS
        key = (name.startswith("clip."), not any(nd in name for nd in NO_DECAY), shared)
        groups.setdefault(key, []).append(p)
    out = []
    for (is_clip, decay, shared), params in sorted(groups.items()):
        coef = coef_lr_shared if shared else coef_lr
        out.append(
            {
                "params": params,
                "lr": lr * coef if is_clip else lr,
                "weight_decay": weight_decay if decay else 0.0,
            }
        )
    return out


def warmup_linear(total_steps: int, warmup: float):
    """The original schedule as a LambdaLR factor of the step index."""

    def factor(step: int) -> float:
        x = step / max(1, total_steps)
        if x < warmup:
            return x / warmup
        return max((x - 1.0) / (warmup - 1.0), 0.0)

    return factor


def build_optimizer(
    model: nn.Module,
    lr: float,
    coef_lr: float,
    weight_decay: float,
    warmup: float,
    total_steps: int,
    max_grad_norm: float = 1.0,
    coef_lr_shared: float | None = None,
) -> tuple[BertAdam, LambdaLR]:
    groups = parameter_groups(model, lr, coef_lr, weight_decay, coef_lr_shared)
    opt = BertAdam(groups, lr=lr, max_grad_norm=max_grad_norm)
    return opt, LambdaLR(opt, warmup_linear(total_steps, warmup))
