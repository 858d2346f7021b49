"""Training throughput (pairs/s) per stage, fp32 vs bf16 autocast, on random data.

    python benchmarks/train_speed.py --model ViT-B-32 --batch 16 --steps 3
    python benchmarks/train_speed.py --model demo --batch 64 --steps 8 --compile   # + torch.compile

Prints one line per (stage, precision) and the bf16/fp32 speed ratio; with ``--compile``, also the same
step through ``torch.compile`` (training's ``compile=true``) and its ratio to eager (compilation itself,
the first two steps, is not timed). bf16 runs only where the device supports it (CPU: AVX512-BF16/AMX;
see clip4idc.precision). With ``--frozen``, also stage 2 with a frozen vision tower (the demo recipe's and
the lessons'), encoding every batch against reading tokens encoded once before training
(:meth:`clip4idc.training.losses.CaptionLoss.encode_frozen`), and their ratio. Random captions fill all
``max_words`` tokens, so the decoder's share is at its largest and the ratio at its smallest.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import clip4idc
from clip4idc.precision import autocast, cpu_has_native_bf16
from clip4idc.training.config import FinetuneOptions
from clip4idc.training.optim import build_optimizer
from clip4idc.training.train import STAGE_PARTS, Dist


def batch_for(stage: str, cfg: clip4idc.ModelConfig, n: int, device: torch.device) -> dict[str, torch.Tensor]:
    r = cfg.resolution
    b = {"before": torch.randn(n, 3, r, r), "after": torch.randn(n, 3, r, r)}
    ids = torch.randint(1, 49000, (n, cfg.max_words))
    ids[:, 0], ids[:, -1] = 49406, 49407
    if stage == "adapt":
        b["text_ids"] = ids
    else:
        b.update(input_ids=ids, output_ids=ids.roll(-1, 1), decoder_mask=torch.ones_like(ids))
        b.update(
            distractor=torch.randn(n, 3, r, r),
            nc_input_ids=ids,
            nc_output_ids=ids.roll(-1, 1),
            nc_decoder_mask=torch.ones_like(ids),
        )
    return {k: v.to(device) for k, v in b.items()}


def measure(
    stage: str,
    precision: str,
    args: argparse.Namespace,
    device: torch.device,
    compiled: bool = False,
    frozen: str | None = None,
) -> float:
    """Pairs/s of one training step; ``frozen`` ("encode" or "read"): stage 2 with a frozen vision tower."""
    torch.manual_seed(0)
    overrides = {"decoder_layers": 0} if stage == "adapt" else {}
    model = clip4idc.build_model(args.model, **overrides).to(device).train()
    options = FinetuneOptions(freeze_vision=True) if frozen else None
    step = STAGE_PARTS[stage].loss(model, Dist(), options)
    opt, sched = build_optimizer(model, 1e-4, 1e-3, 0.01, 0.1, 100)
    if compiled:
        step = torch.compile(step)
    batch = batch_for(stage, model.config, args.batch, device)
    if frozen:
        batch["index"] = torch.arange(args.batch, device=device)
    if frozen == "read":  # the batch is the whole training set
        items = [{k: batch[k][i] for k in ("before", "after", "distractor")} for i in range(args.batch)]
        with autocast(device, precision):
            step.encode_frozen(items, device)

    def one() -> None:
        with autocast(device, precision):
            loss = step(batch)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)

    one()  # warm-up (and compilation)
    one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(args.steps):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.batch * args.steps / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--stages", default="adapt,finetune")
    p.add_argument("--compile", action="store_true", help="also time the torch.compile'd step")
    p.add_argument("--frozen", action="store_true", help="also stage 2 with a frozen vision tower")
    args = p.parse_args()
    device = torch.device(args.device)
    bf16 = device.type == "cuda" or cpu_has_native_bf16()
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(f"device: {name}; model {args.model}; batch {args.batch}; torch {torch.__version__}")
    for stage in args.stages.split(","):
        fp32 = measure(stage, "fp32", args, device)
        line = f"{stage:9s} fp32 {fp32:8.2f} pairs/s"
        if bf16:
            b = measure(stage, "bf16", args, device)
            line += f" | bf16 {b:8.2f} pairs/s | bf16/fp32 {b / fp32:5.2f}x"
        else:
            line += " | bf16 not supported natively on this device"
        print(line, flush=True)
        if args.compile:  # against the faster eager path this device has
            precision, eager = ("bf16", b) if bf16 else ("fp32", fp32)
            c = measure(stage, precision, args, device, compiled=True)
            print(
                f"{stage:9s} {precision} compiled {c:8.2f} pairs/s | compiled/eager {c / eager:5.2f}x",
                flush=True,
            )

    if args.frozen:
        precision = "bf16" if bf16 else "fp32"
        rates: dict[str, list[float]] = {"encode": [], "read": []}
        for _ in range(3):  # interleaved: a busy machine slows both alike
            for mode, seen in rates.items():
                seen.append(measure("finetune", precision, args, device, frozen=mode))
        encode, read = (statistics.median(rates[m]) for m in ("encode", "read"))
        print(
            f"finetune  {precision} frozen tower: encoding each batch {encode:8.2f} pairs/s | tokens encoded "
            f"once {read:8.2f} pairs/s | {read / encode:5.2f}x (medians of 3)",
            flush=True,
        )


if __name__ == "__main__":
    main()
