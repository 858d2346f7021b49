"""``clip4idc train --stage adapt|finetune --config FILE [key=value ...]``: one training stage."""

from __future__ import annotations

import argparse
import json

from ..training.config import STAGES, TrainConfig
from ..training.train import train


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig.from_file(args.config, args.overrides, args.stage)
    if args.out:
        cfg.out = args.out
    result = train(cfg, resume=args.resume)
    print(json.dumps({"best": result["best"], "out": cfg.out}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a stage: adapt (retrieval) or finetune (captioning)")
    p.add_argument("--stage", choices=STAGES, default=None)
    p.add_argument("--config", default=None, help="JSON training config (see configs/)")
    p.add_argument("--out", default=None, help="run folder (overrides out= in the config)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=3 model.intra_layers=6")
    p.set_defaults(func=run)
