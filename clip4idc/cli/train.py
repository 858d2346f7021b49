"""``clip4idc train --stage pretrain|adapt|finetune --config FILE [key=value ...]``: one training stage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..training.config import STAGES, TrainConfig
from ..training.train import train


def run(args: argparse.Namespace) -> int:
    config = args.config
    if args.resume and not config:  # resume from the run's own settings, changed only by the overrides
        named = [o.split("=", 1)[1] for o in args.overrides if o.startswith("out=")]
        out = args.out or (named[-1] if named else None)
        config = Path(out) / "config.json" if out else None
    cfg = TrainConfig.from_file(config, args.overrides, args.stage)
    if args.out:
        cfg.out = args.out
    result = train(cfg, resume=args.resume)
    print(json.dumps({"best": result["best"], "out": cfg.out}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a stage: pretrain (a single-image CLIP), adapt (retrieval) or finetune (captioning)",
    )
    p.add_argument("--stage", choices=STAGES, default=None)
    p.add_argument("--config", default=None, help="JSON training config (see configs/)")
    p.add_argument("--out", default=None, help="run folder (overrides out= in the config)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.pt (settings from OUT/config.json unless --config is given)",
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=3 model.intra_layers=6")
    p.set_defaults(func=run)
