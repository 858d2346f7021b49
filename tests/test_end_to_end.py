"""End to end on a fresh synthetic set: adaptation → finetuning → evaluation through the public entry
points (``clip4idc train`` twice, then ``clip4idc eval``).

As real use starts from pretrained CLIP weights, this starts from the bundled demo model's weights, adapts
and finetunes briefly on scenes it has never seen (another seed), and checks that what comes out is a
working captioner: retrieval far above chance and captions that beat the mean-sentence baseline.
"""

from __future__ import annotations

import json

from clip4idc.checkpoint import WEIGHTS_DIR
from clip4idc.cli import main as cli
from clip4idc.data.synthetic import generate


def test_adapt_finetune_eval(tmp_path):
    demo = WEIGHTS_DIR / "demo"
    assert (demo / "model.safetensors").exists(), "the bundled demo model is missing"
    data = tmp_path / "data"
    generate(
        data, pairs=80, size=(160, 120), seed=424242, workers=1, val_frac=0.1, test_frac=0.4, progress=False
    )
    common = [
        f"data={data}",
        "model=demo",
        "epochs=1",
        "batch_size=16",
        "batch_size_val=32",
        "workers=0",
        "lr=2e-5",
        "coef_lr=1",
        "val_every=0",
        "progress=false",
        "max_words=24",
    ]
    assert cli(["train", "--stage", "adapt", "--out", str(tmp_path / "adapt"), f"init={demo}", *common]) == 0
    assert (tmp_path / "adapt" / "last" / "model.safetensors").exists()
    assert (
        cli(
            [
                "train",
                "--stage",
                "finetune",
                "--out",
                str(tmp_path / "finetune"),
                f"init={tmp_path / 'adapt' / 'last'}",
                "freeze_vision=true",
                *common,
            ]
        )
        == 0
    )
    out = tmp_path / "eval"
    assert (
        cli(
            [
                "eval",
                "--checkpoint",
                str(tmp_path / "finetune" / "last"),
                "--data",
                str(data),
                "--split",
                "test",
                "--out",
                str(out),
                "--no-pointing",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    n = metrics["num_change_pairs"]
    chance = 100.0 / n
    assert n >= 20
    assert metrics["R@1"] > 5 * chance, (metrics["R@1"], chance)
    assert metrics["CIDEr"] > metrics["baseline"]["CIDEr"] + 0.2, (metrics["CIDEr"], metrics["baseline"])
    assert metrics["type_accuracy"] > 50
