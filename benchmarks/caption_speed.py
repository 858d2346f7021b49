"""Captioning speed (pairs/s) at ViT-B/32 size with random weights: fp32 and bf16, batch 1 and 64.

    python benchmarks/caption_speed.py [--model ViT-B-32] [--steps 32] [--repeats 3]

Each pair: encode the pair, run the decoder's encoder stack once, decode ``--steps`` tokens greedily with
cached keys/values (random weights never emit the end token, so every step runs: the worst case).
Also checks that the fp32 fast path gives the same tokens as the original's step-by-step recompute,
and prints the speed-up over that recompute; at batch 1 it also times the decoding with and without the
int8 vocabulary screen (interleaved, same tokens). Targets on a 2-core CPU: batch 1 ≤ 0.25 s fp32 and
≤ 0.08 s bf16; batch 64 ≥ 6 pairs/s fp32 and ≥ 25 pairs/s bf16.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import clip4idc
from clip4idc.network.decoding import ScreenedArgmax, greedy_decode, greedy_decode_reference
from clip4idc.precision import cast_for_inference, cpu_has_native_bf16


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def screen_ab(model, bef: torch.Tensor, aft: torch.Tensor, steps: int, repeats: int) -> None:
    """Decoding time with the int8 vocabulary screen vs without it (fp32: the bf16 screen; bf16: the
    plain projection), interleaved so that the machine's drift hits both alike."""
    with torch.no_grad():
        hidden = model.encode_pair(bef.to(model.dtype), aft.to(model.dtype)).hidden
    rows, times, tokens = ScreenedArgmax.INT8_ROWS, {True: [], False: []}, {}
    try:
        for _ in range(repeats + 1):
            for int8 in (True, False):
                ScreenedArgmax.INT8_ROWS = rows if int8 else 0
                t = time.perf_counter()
                tokens[int8] = greedy_decode(model.decoder, hidden, steps, stop_at_eot=False)
                times[int8].append(time.perf_counter() - t)
    finally:
        ScreenedArgmax.INT8_ROWS = rows
    with_, without = (statistics.median(times[k][1:]) for k in (True, False))
    print(
        f"  decoding only: {with_ * 1e3:.0f} ms with the int8 screen, {without * 1e3:.0f} ms without"
        f" ({without / with_:.2f}x); same tokens: {torch.equal(tokens[True], tokens[False])}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--steps", type=int, default=32, help="tokens per caption (the original's max_words)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batches", default="1,64")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = clip4idc.build_model(args.model).eval().to(device)
    r = model.config.resolution
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(f"device: {name}; model {args.model}; {args.steps} decoding steps; torch {torch.__version__}")

    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" or cpu_has_native_bf16() else [])
    for batch in [int(b) for b in args.batches.split(",")]:
        bef = torch.randn(batch, 3, r, r, device=device)
        aft = torch.randn(batch, 3, r, r, device=device)
        for precision in precisions:
            m = cast_for_inference(model, precision)

            def run(m=m, bef=bef, aft=aft) -> torch.Tensor:
                with torch.no_grad():
                    hidden = m.encode_pair(bef.to(m.dtype), aft.to(m.dtype)).hidden
                    out = greedy_decode(m.decoder, hidden, args.steps)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                return out

            sec = timed(run, args.repeats)
            print(
                f"batch {batch:3d} {precision}: {sec:7.3f} s per batch, {batch / sec:8.2f} pairs/s,"
                f" {sec / batch:7.4f} s per pair",
                flush=True,
            )
            if device.type == "cpu" and batch <= ScreenedArgmax.INT8_ROWS:
                screen_ab(m, bef, aft, args.steps, max(args.repeats, 5))
        with torch.no_grad():
            hidden = model.encode_pair(bef[:4], aft[:4]).hidden
            fast = greedy_decode(model.decoder, hidden, args.steps, stop_at_eot=False)
            slow_t = time.perf_counter()
            slow = greedy_decode_reference(model.decoder, hidden, args.steps)
            slow_t = time.perf_counter() - slow_t
            fast_t = time.perf_counter()
            greedy_decode(model.decoder, hidden, args.steps, stop_at_eot=False)
            fast_t = time.perf_counter() - fast_t
        same = torch.equal(fast, slow)
        print(
            f"  fp32 fast path == step-by-step recompute on 4 pairs: {same};"
            f" decoding speed-up over recompute {slow_t / fast_t:.2f}x"
        )
        if not same:
            raise SystemExit("fast decoding diverged from the reference")


if __name__ == "__main__":
    main()
