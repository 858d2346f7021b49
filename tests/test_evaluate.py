"""``clip4idc eval`` on a tiny synthetic CLEVR-Change set with a random-weight tiny model.

One CLI run (module fixture) is shared by several checks, since every run starts Java for the scorers.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

import clip4idc
from clip4idc.cli import main
from clip4idc.data import load_pairs, make_coco_gt
from clip4idc.data.synthetic import generate
from clip4idc.evaluation.change_types import classify_change
from clip4idc.evaluation.evaluate import evaluate
from clip4idc.network import inference
from clip4idc.weights.registry import resolve_checkpoint

TYPES = ("color", "material", "add", "drop", "move")
PLAIN_KEYS = (
    "CIDEr",
    "BLEU_1",
    "BLEU_4",
    "METEOR",
    "ROUGE_L",
    "SPICE",
    "SPICE_status",
    "type_accuracy",
    "type_accuracy_change",
    "type_accuracy_no_change",
    "R@1",
    "pointing_game",
    "num_pairs",
)
ROW_KEYS = {"CIDEr", "BLEU_4", "METEOR", "ROUGE_L", "type_accuracy", "R@1", "pointing_game", "num_pairs"}


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "clevr"
    generate(root, pairs=16, size=(64, 48), seed=1, test_frac=0.5, val_frac=0.1, progress=False)
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    cfg = clip4idc.ModelConfig(
        vision_width=64,
        vision_layers=2,
        intra_layers=1,
        patch=16,
        resolution=64,
        embed_dim=64,
        text_width=64,
        text_layers=1,
        decoder_layers=1,
        decoder_heads=2,
        decoder_intermediate=128,
        vision_heads=2,
        text_heads=1,
    )
    path = tmp_path_factory.mktemp("model") / "tiny"
    clip4idc.save_pretrained(clip4idc.CLIP4IDC(cfg), path)
    return path


@pytest.fixture(scope="module")
def cli_run(data: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("eval") / "out"
    nospice = tmp_path_factory.mktemp("nospice")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLIP4IDC_SPICE_LIB", str(nospice))  # SPICE must say "unavailable", never a number
        rc, stdout, stderr = _cli(
            [
                "eval",
                "--checkpoint",
                str(model_dir),
                "--data",
                str(data),
                "--split",
                "test",
                "--out",
                str(out),
                "--no-baseline",
                "--max-words",
                "12",
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
    assert rc == 0, stderr
    return {
        "out": out,
        "stdout": stdout,
        "stderr": stderr,
        "metrics": json.loads((out / "metrics.json").read_text()),
        "predictions": json.loads((out / "predictions.json").read_text()),
    }


def test_cli_writes_metrics_with_plain_keys_and_per_type_table(cli_run: dict, data: Path) -> None:
    m = cli_run["metrics"]
    assert cli_run["stdout"].strip() == str(cli_run["out"] / "metrics.json")
    for key in PLAIN_KEYS:
        assert key in m, key
    assert m["dataset"] == "clevr" and m["split"] == "test"
    assert m["num_pairs"] == 16 and m["num_change_pairs"] == 8 and m["num_no_change_pairs"] == 8
    assert m["SPICE"] is None and m["SPICE_status"].startswith("unavailable")
    assert m["CIDEr"] == m["captioning"]["total"]["CIDEr"]
    for sub in ("total", "change", "no_change"):
        assert m["captioning"][sub]["num_pairs"] in (16, 8)
    assert set(m["per_type"]) >= {*TYPES, "no_change"}
    for typ in TYPES:
        row = m["per_type"][typ]
        assert set(row) >= ROW_KEYS
        assert row["num_pairs"] >= 1  # seed 1 puts every change type in the test split
        assert 0.0 <= row["R@1"] <= 100.0 and 0.0 <= row["pointing_game"] <= 100.0
    assert m["per_type"]["no_change"]["R@1"] is None
    ret = m["retrieval"]
    assert ret["num_pairs"] == 8 and m["R@1"] == ret["text_to_pair"]["R@1"]
    assert set(ret["pair_to_text"]) == {"R@1", "R@5", "R@10", "MedianR", "MeanR"}
    # per-type R@1 averages the type's texts, so their weighted mean is the overall R@1
    pairs = [p for p in load_pairs(data, "clevr", "test") if p.change_type != "no_change"]
    n_texts = {t: sum(len(p.captions) for p in pairs if p.change_type == t) for t in TYPES}
    weighted = sum(m["per_type"][t]["R@1"] * n for t, n in n_texts.items()) / sum(n_texts.values())
    assert math.isclose(weighted, m["R@1"], rel_tol=1e-9)
    assert m["pointing_game"] is not None, m["pointing_game_status"]
    assert m["pointing_game_detail"]["n"] == 8
    readouts = m["pointing_game_detail"]["readouts"]
    assert set(readouts) == {"difference", "pixels"} and 0.0 < m["pointing_game_detail"]["chance"] < 100.0
    assert 0.0 <= m["pointing_game_detail"]["after_image_only"]["overall"] <= 100.0
    assert all(0.0 <= r["overall"] <= 100.0 and set(r["per_type"]) == set(TYPES) for r in readouts.values())
    assert m["attribute_accuracy_status"].startswith("ok"), m["attribute_accuracy_status"]
    named = {a: v["named"] for a, v in m["attribute_accuracy"].items()}
    assert set(named) == {"size", "color", "material", "shape"} and all(0 <= n <= 8 for n in named.values())
    n_add_drop = sum(p.change_type in ("add", "drop") for p in pairs)
    assert m["direction_accuracy_status"].startswith("ok"), m["direction_accuracy_status"]
    assert m["direction_accuracy"]["all"]["n"] == n_add_drop
    assert m["detection_accuracy_status"].startswith("ok"), m["detection_accuracy_status"]
    ceiling = m["retrieval_ceiling"]
    assert m["retrieval_ceiling_status"].startswith("ok"), m["retrieval_ceiling_status"]
    assert ceiling["num_pairs"] == 8 and ceiling["num_texts"] == ret["num_texts"]
    assert 0.0 < ceiling["R@1"] <= ceiling["R@5"] <= ceiling["R@10"] <= 100.0
    assert m["detection_accuracy"]["all"]["n"] == sum(p.change_type != "no_change" for p in pairs)
    assert m["baseline"] is None and m["baseline_status"].startswith("skipped")
    assert m["settings"]["max_words"] == 12 and m["settings"]["beam_size"] == 1
    assert "subset" in cli_run["stderr"] and "no_change" in cli_run["stderr"]


def test_predictions_match_the_data_and_cider_matches_score(
    cli_run: dict, data: Path, tmp_path: Path
) -> None:
    preds = cli_run["predictions"]
    pairs = load_pairs(data, "clevr", "test")
    assert set(preds) == {p.pair_id for p in pairs}
    for p in pairs:
        rec = preds[p.pair_id]
        assert rec["references"] == p.captions
        assert rec["change_type"] == p.change_type
        assert rec["predicted_type"] == classify_change(rec["caption"])
        assert {"CIDEr", "BLEU_4", "METEOR", "ROUGE_L"} <= set(rec)
    pred_file, gt_file = tmp_path / "pred.json", tmp_path / "gt.json"
    pred_file.write_text(json.dumps({pid: r["caption"] for pid, r in preds.items()}))
    gt_file.write_text(json.dumps(make_coco_gt(pairs)))
    rc, stdout, stderr = _cli(["score", str(pred_file), str(gt_file), "--no-spice"])
    assert rc == 0, stderr
    scored = json.loads(stdout)
    for key in ("CIDEr", "BLEU_4", "METEOR", "ROUGE_L"):
        assert math.isclose(scored[key], cli_run["metrics"][key], rel_tol=1e-9, abs_tol=1e-12), key


def test_reference_captions_score_far_above_the_random_model(
    cli_run: dict, data: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forced(model, dataset, *args, **kwargs):  # one reference per pair, one the classifier reads right
        out = []
        for p in dataset.pairs:
            good = [c for c in p.captions if classify_change(c) == p.change_type]
            out.append(good[0] if good else p.captions[0])
        return out

    monkeypatch.setattr(inference, "generate_captions", forced)
    m = evaluate(
        clip4idc.load(model_dir), data, split="test", max_words=12, spice=False, baseline=True, pointing=False
    )
    assert m["type_accuracy"] == 100.0
    assert m["type_accuracy_change"] == 100.0 and m["type_accuracy_no_change"] == 100.0
    assert all(m["per_type"][t]["type_accuracy"] == 100.0 for t in (*TYPES, "no_change"))
    assert m["CIDEr"] > 1.0 and m["CIDEr"] > cli_run["metrics"]["CIDEr"] + 1.0
    assert m["pointing_game"] is None and m["pointing_game_status"].startswith("skipped")
    base = m["baseline"]
    assert base is not None and m["baseline_status"] == "ok"
    assert isinstance(base["sentence"], str) and base["sentence"]
    assert 0.0 < base["CIDEr"] < m["CIDEr"]
    assert base["num_train_captions"] > 0 and base["type_accuracy"] is not None


def test_non_clevr_dataset_reports_type_and_pointing_as_not_applicable(
    data: Path, model_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ier"
    (root / "images").mkdir(parents=True)
    entries = []
    for p in load_pairs(data, "clevr", "test")[::2][:3]:
        for img in (p.before, p.after):
            (root / "images" / img.name).write_bytes(img.read_bytes())
        entries.append(
            {"img0": p.before.name, "img1": p.after.name, "sents": p.captions[:3], "uid": p.pair_id}
        )
    (root / "test.json").write_text(json.dumps(entries))
    out = tmp_path / "out"
    m = evaluate(
        clip4idc.load(model_dir),
        root,
        split="test",
        out=out,
        max_words=8,
        spice=False,
        baseline=False,
        max_pairs=2,
    )
    assert m["dataset"] == "ier" and m["num_pairs"] == 2
    assert m["type_accuracy"] is None and m["type_accuracy_status"].startswith("not applicable")
    assert m["pointing_game"] is None and m["pointing_game_status"].startswith("not applicable")
    assert m["per_type"] is None and set(m["captioning"]) == {"total"}
    assert m["direction_accuracy"] is None and m["direction_accuracy_status"].startswith("not applicable")
    assert m["detection_accuracy"] is None and m["detection_accuracy_status"].startswith("not applicable")
    assert m["retrieval_ceiling"] is None and m["retrieval_ceiling_status"].startswith("unavailable")
    assert m["R@1"] is not None and m["retrieval"]["num_pairs"] == 2
    preds = json.loads((out / "predictions.json").read_text())
    assert len(preds) == 2 and all(r["change_type"] is None for r in preds.values())


@pytest.mark.parametrize(
    "case, problem",
    [
        ("missing_data", "dataset folder not found"),
        ("bad_split", "unknown split 'dev'"),
        ("bad_checkpoint", "checkpoint not found"),
        ("out_is_file", "is not a folder"),
        ("run_without_best", "without a saved best model"),
    ],
)
def test_bad_inputs_give_one_line_errors(
    case: str, problem: str, data: Path, model_dir: Path, tmp_path: Path
) -> None:
    args = {
        "--checkpoint": str(model_dir),
        "--data": str(data),
        "--split": "test",
        "--out": str(tmp_path / "o"),
    }
    if case == "missing_data":
        args["--data"] = str(tmp_path / "nope")
    elif case == "bad_split":
        args["--split"] = "dev"
    elif case == "bad_checkpoint":
        args["--checkpoint"] = str(tmp_path / "missing.pt")
    elif case == "out_is_file":
        (tmp_path / "o").write_text("x")
    elif case == "run_without_best":
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
        args["--checkpoint"] = str(tmp_path / "run")
    rc, stdout, stderr = _cli(["eval", *[x for kv in args.items() for x in kv], "--device", "cpu"])
    assert rc == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and problem in lines[0], stderr
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_run_folder_means_best_and_failures_leave_out_untouched(
    data: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    clip4idc.save_pretrained(clip4idc.load(model_dir), run / "best")
    path, note = resolve_checkpoint(str(run))
    assert path == str(run / "best") and note and "best" in note
    assert resolve_checkpoint(str(model_dir)) == (str(model_dir), None)
    assert resolve_checkpoint("demo") == ("demo", None)

    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"old": 1}')

    def broken(*args, **kwargs):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(inference, "generate_captions", broken)
    with pytest.raises(RuntimeError):
        evaluate(clip4idc.load(model_dir), data, out=out, spice=False, baseline=False, pointing=False)
    assert json.loads((out / "metrics.json").read_text()) == {"old": 1}
    assert not (out / "predictions.json").exists()


def test_pointing_reuses_its_greedy_captions_unchanged(data: Path, model_dir: Path, tmp_path: Path) -> None:
    """With the pointing game on, change pairs are decoded once (with attention) and those captions are
    the evaluated ones: the predictions must equal a run that decodes every pair without attention."""
    model = clip4idc.load(model_dir)
    runs = {}
    for pointing in (True, False):
        out = tmp_path / str(pointing)
        evaluate(
            model, data, split="test", max_words=12, spice=False, baseline=False, pointing=pointing, out=out
        )
        runs[pointing] = json.loads((out / "predictions.json").read_text())
    assert {k: v["caption"] for k, v in runs[True].items()} == {
        k: v["caption"] for k, v in runs[False].items()
    }


def test_attribute_accuracy_names_a_bad_scenes_file(tmp_path: Path) -> None:
    from clip4idc.evaluation.evaluate import _attributes

    assert _attributes(tmp_path, "clevr", {})[0] is None  # no scenes.json: unavailable, no error
    (tmp_path / "scenes.json").write_text("{not json", encoding="utf-8")
    result, status = _attributes(tmp_path, "clevr", {"0": "a red cube"})
    assert result is None and status.startswith("failed") and "scenes.json" in status
    (tmp_path / "scenes.json").write_text('{"scenes": {"0": {"objects": []}}}', encoding="utf-8")
    result, status = _attributes(tmp_path, "clevr", {"0": "a red cube"})
    assert result is None and "scenes.json" in status and "lacks" in status


def test_probes_can_be_skipped(data: Path, model_dir: Path) -> None:
    m = evaluate(
        clip4idc.load(model_dir), data, split="test", max_pairs=2, spice=False, baseline=False, pointing=False,
        probes=False,
    )  # fmt: skip
    for key in ("attribute_accuracy", "retrieval_ceiling", "direction_accuracy", "detection_accuracy"):
        assert m[key] is None and m[f"{key}_status"] == "skipped (probes=False)", key
