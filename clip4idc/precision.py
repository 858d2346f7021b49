"""Mixed precision as a switch: fp32 is the exact reference path; bf16/fp16 autocast where supported.

bf16 on a CPU is only worth it with native bf16 instructions (AVX512-BF16 or AMX), where a ViT-B block
stack runs several times faster; without them it is emulated and slower, so ``auto`` picks fp32 there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "auto")


@lru_cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises AVX512-BF16 or AMX-BF16 (Linux /proc/cpuinfo, else oneDNN's check)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = cpuinfo.read_text(errors="ignore")
        return "avx512_bf16" in flags or "amx_bf16" in flags
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """Map ``auto`` (and unsupported requests) to what this device can run: fp32, bf16 or fp16."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if device.type == "cuda":
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if precision == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if precision == "fp16":
        raise ValueError("fp16 autocast is for CUDA; use bf16 or fp32 on a CPU")
    return precision


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """An autocast context for ``precision`` (``fp32`` → a no-op context)."""
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def cast_for_inference(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The model itself for fp32; a bf16/fp16 copy of it otherwise.

    Casting the weights once beats autocast for decoding: autocast re-casts every weight matrix at every
    step, which for small batches costs more than the matmul saves. LayerNorms still compute in fp32.
    """
    device = next(model.parameters()).device
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return model
    import copy

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if all(p.dtype == dtype for p in model.parameters()):
        return model  # already cast (e.g. by a caller that shares one copy between steps)
    return copy.deepcopy(model).to(dtype).eval()


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count."""
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
