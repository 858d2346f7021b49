"""What a CUDA run must agree with, checked next to the speed benchmarks (CI has no GPU).

    python benchmarks/cuda_checks.py [--work DIR]

1. Captions: the bundled demo model on the test pairs of a small synthetic set, on the CPU and on CUDA.
   fp32 on CUDA must give the CPU's tokens (the patch embedding keeps cuDNN off TF32); bf16 says how many
   captions match fp32.
   Beam size 1 must equal greedy.
2. Resume: 2 epochs straight vs 1 epoch + resume + 1 epoch on CUDA (tiny model, both stages), weight for
   weight, and the same straight run twice (how deterministic CUDA's kernels are here).

Prints one line per check; exits non-zero if any exactness check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # lets deterministic mode cover cuBLAS

import torch  # noqa: E402

import clip4idc  # noqa: E402
from clip4idc.data.datasets import CaptionDataset  # noqa: E402
from clip4idc.data.synthetic import generate  # noqa: E402
from clip4idc.network.inference import generate_captions  # noqa: E402
from clip4idc.training.train import train  # noqa: E402
from clip4idc.weights.formats import read_state_dict  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_train import run_cfg  # noqa: E402  (the CPU resume test's run, here on CUDA)

FAILED: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        FAILED.append(name)


def captions(work: Path) -> None:
    data = work / "synth_demo"
    generate(
        data, pairs=200, size=(160, 120), seed=4242, workers=8, val_frac=0.0, test_frac=0.5, progress=False
    )
    model = clip4idc.load("demo").eval()
    ds = CaptionDataset(data, split="test", resolution=model.config.resolution)
    n = len(ds)
    cpu = generate_captions(model, ds, 64, "cpu", "fp32")
    gpu_model = clip4idc.load("demo").eval().cuda()
    fp32 = generate_captions(gpu_model, ds, 64, "cuda", "fp32")  # torch's default flags
    same = sum(a == b for a, b in zip(cpu, fp32))
    check("fp32 on CUDA captions == CPU fp32", same == n, f"{same}/{n} captions equal to the CPU's")
    torch.backends.cuda.matmul.allow_tf32 = True  # a user's choice, not ours: how much TF32 matmuls move
    tf32 = generate_captions(gpu_model, ds, 64, "cuda", "fp32")
    torch.backends.cuda.matmul.allow_tf32 = False
    print(
        f"info fp32 with TF32 matmuls allowed: {sum(a == b for a, b in zip(cpu, tf32))}/{n} equal", flush=True
    )
    bf16 = generate_captions(gpu_model, ds, 64, "cuda", "bf16")
    print(
        f"info bf16 on CUDA: {sum(a == b for a, b in zip(cpu, bf16))}/{n} captions equal to fp32", flush=True
    )
    beam1 = generate_captions(gpu_model, ds, 64, "cuda", "fp32", beam_size=1)
    check("beam size 1 == greedy on CUDA", beam1 == fp32)
    beam3 = generate_captions(gpu_model, ds, 64, "cuda", "fp32", beam_size=3)
    beam3_cpu = generate_captions(model, ds, 64, "cpu", "fp32", beam_size=3)
    same = sum(a == b for a, b in zip(beam3, beam3_cpu))
    check("beam size 3 on CUDA == CPU", same == n, f"{same}/{n}")
    print(f"info sample: {cpu[0]!r} | {cpu[1]!r}", flush=True)


def resume(work: Path) -> None:
    data = work / "synth_tiny"
    generate(data, pairs=40, size=(64, 48), seed=3, workers=4, val_frac=0.2, test_frac=0.2, progress=False)
    for stage, precision in (("adapt", "fp32"), ("finetune", "fp32"), ("finetune", "bf16")):
        for deterministic in (False, True):
            torch.use_deterministic_algorithms(deterministic)
            tag = f"{stage}-{precision}-{'det' if deterministic else 'default'}"
            root = work / tag

            on_cuda = {"device": "cuda", "precision": precision}
            train(run_cfg(data, root / "a", stage, **on_cuda))
            train(run_cfg(data, root / "b", stage, **on_cuda))
            train(run_cfg(data, root / "split", stage, stop_after=1, **on_cuda))
            train(run_cfg(data, root / "split", stage, **on_cuda), resume=True)
            a, b, s = (read_state_dict(root / x / "last") for x in ("a", "b", "split"))
            rerun = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
            res = max((a[k].float() - s[k].float()).abs().max().item() for k in a)
            print(f"info {tag}: straight run twice, largest weight difference {rerun:.3g}", flush=True)
            if deterministic or rerun == 0:
                check(
                    f"{tag}: resume == straight, weight for weight", res == 0, f"largest difference {res:.3g}"
                )
            else:
                print(f"info {tag}: resume vs straight, largest weight difference {res:.3g}", flush=True)
    torch.use_deterministic_algorithms(False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("cuda_checks.py needs a CUDA device")
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        for step in (captions, resume):
            try:
                step(work)
            except Exception as e:  # report and go on: one failed check must not hide the others
                check(step.__name__, False, f"{type(e).__name__}: {e}")
    if FAILED:
        raise SystemExit(f"{len(FAILED)} check(s) failed: {', '.join(FAILED)}")


if __name__ == "__main__":
    main()
