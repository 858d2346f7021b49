"""Mixed precision as a switch: fp32 is the exact reference path; bf16/fp16 autocast where supported.

On a CPU, native bf16 instructions (AVX512-BF16 or AMX) are needed for bf16 to pay, but they do not
promise it: on one AVX512-BF16 CPU a ViT-B/32 batch ran ~3x faster in bf16, on another (AVX512-BF16 and
-FP16, no AMX) every training step ran 1.4-1.8x *slower* (``benchmarks/RESULTS.md``). So ``auto`` on a CPU
times one linear layer both ways (:func:`cpu_bf16_is_faster`) instead of trusting the flags.
"""

from __future__ import annotations

import contextlib
import time
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


# the probe: a ViT MLP-sized linear layer under autocast (a few ms each way); bf16 must win by this margin
_PROBE_SHAPE = (512, 768, 3072)  # rows, in features, out features
_PROBE_MARGIN = 1.2


@lru_cache
def cpu_bf16_is_faster() -> bool:
    """Does bf16 autocast run a linear layer ``_PROBE_MARGIN`` times faster than fp32 on this CPU? Measured
    once per process (~0.2 s, best of 5 each way) and only where :func:`cpu_has_native_bf16`."""
    if not cpu_has_native_bf16():
        return False
    rows, d_in, d_out = _PROBE_SHAPE
    gen = torch.Generator().manual_seed(0)  # torch's global generator is left alone
    x, w = torch.randn(rows, d_in, generator=gen), torch.randn(d_out, d_in, generator=gen)

    def best_of(dtype: torch.dtype | None, repeats: int = 5) -> float:
        ctx = torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()
        times = []
        with torch.no_grad(), ctx:
            for _ in range(repeats + 1):  # the first call warms the kernels up and is not counted
                start = time.perf_counter()
                torch.nn.functional.linear(x, w)
                times.append(time.perf_counter() - start)
        return min(times[1:])

    return best_of(None) > _PROBE_MARGIN * best_of(torch.bfloat16)


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
        return "bf16" if cpu_bf16_is_faster() else "fp32"
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
