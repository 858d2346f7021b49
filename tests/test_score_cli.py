"""``clip4idc score`` prints pycocoevalcap's numbers; ``clip4idc report`` summarises runs; bad files give
one ``error: <file>: <problem>`` line and exit code 2. Also the shared JSON helpers in ``clip4idc.io``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clip4idc.cli import main
from clip4idc.errors import Clip4idcError
from clip4idc.evaluation import metrics as M
from clip4idc.io import read_json, write_json_atomic

REPO = Path(__file__).resolve().parents[1]
REFS = {
    "1": ["the red cube has moved", "the red cube changed its location", "someone moved the red cube"],
    "2": [
        "the blue sphere became shiny",
        "the blue ball changed to metal",
        "the blue sphere is now metallic",
    ],
    "3": ["someone added a green cylinder", "a green cylinder has appeared", "the green cylinder is new"],
    "4_n": ["there is no change", "nothing has changed", "the scene is the same as before"],
    "5_n": ["the two scenes seem identical", "there is no difference", "no change was made"],
}
PREDS = {
    "1": "the red cube moved",
    "2": "the blue sphere became metal",
    "3": "a green cylinder appeared",
    "4_n": "there is no change",
    "5_n": "the scenes are identical",
}
KEYS = ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr")


def _coco_gt() -> dict:
    images = [{"id": int(k) if k.isdigit() else k} for k in REFS]
    anns, n = [], 0
    for img in images:
        for cap in REFS[str(img["id"])]:
            n += 1
            anns.append({"image_id": img["id"], "caption": cap, "id": n})
    return {"images": images, "annotations": anns}


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    pred = tmp_path / "pred.json"
    gt = tmp_path / "gt.json"
    pred.write_text(json.dumps(PREDS))
    gt.write_text(json.dumps(_coco_gt()))
    return pred, gt


@pytest.fixture(scope="module")
def direct() -> dict:
    return M.score_captions(PREDS, REFS, spice=False)


def test_score_prints_the_library_numbers(files, tmp_path, capsys, direct, monkeypatch):
    monkeypatch.delenv(M.SPICE_ENV, raising=False)
    pred, gt = files
    out, per = tmp_path / "out" / "metrics.json", tmp_path / "per_sample.json"
    out.parent.mkdir()
    out.write_text("old content")
    assert main(["score", str(pred), str(gt), "--out", str(out), "--per-sample", str(per)]) == 0
    printed = json.loads(capsys.readouterr().out)
    for key in KEYS:
        assert printed[key] == pytest.approx(direct[key], abs=1e-12)
    assert printed["SPICE"] is None and printed["SPICE_status"].startswith("unavailable:")
    assert json.loads(out.read_text()) == printed
    records = json.loads(per.read_text())
    assert set(records) == set(REFS)
    assert records["1"]["caption"] == PREDS["1"] and records["1"]["references"] == REFS["1"]
    assert isinstance(records["4_n"]["CIDEr"], float)
    assert sorted(p.name for p in out.parent.iterdir()) == ["metrics.json"]  # no temp files left behind


def test_score_accepts_coco_results_list(files, capsys, direct):
    pred, gt = files
    pred.write_text(
        json.dumps([{"image_id": int(k) if k.isdigit() else k, "caption": v} for k, v in PREDS.items()])
    )
    assert main(["score", str(pred), str(gt), "--no-spice"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["CIDEr"] == pytest.approx(direct["CIDEr"], abs=1e-12)
    assert printed["SPICE_status"] == "unavailable: SPICE disabled by the caller"


def test_score_subprocess(files, direct):
    pred, gt = files
    env = {k: v for k, v in os.environ.items() if k != M.SPICE_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "clip4idc.cli", "score", str(pred), str(gt)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    for key in KEYS:
        assert printed[key] == pytest.approx(direct[key], abs=1e-12)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


@pytest.mark.parametrize(
    ("which", "content", "problem"),
    [
        ("pred", None, "file not found"),
        ("pred", '{"1": "a",\n  "2": }', "malformed JSON at line 2 column"),
        ("pred", '"just a string"', "expected {pair_id: caption}"),
        ("pred", '{"1": 3}', "caption for '1' is int"),
        ("pred", '[{"image_id": 1}]', "entry 0 of the results list"),
        ("pred", json.dumps({"1": "x", "2": "y"}), "predictions missing for 3 of 5"),
        ("gt", '{"images": []}', "no 'annotations' list"),
        ("gt", json.dumps({"images": [{"id": 9}], "annotations": []}), "have no captions"),
        ("gt", "", "malformed JSON at line 1 column 1"),
    ],
)
def test_bad_files_give_one_line_errors(files, capsys, which, content, problem):
    pred, gt = files
    target = pred if which == "pred" else gt
    if content is None:
        target.unlink()
    else:
        target.write_text(content)
    assert main(["score", str(pred), str(gt), "--no-spice"]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: {target}: ")
    assert problem in line


def test_bad_spice_lib_folder(files, tmp_path, capsys):
    pred, gt = files
    assert main(["score", str(pred), str(gt), "--spice-lib", str(tmp_path)]) == 2
    assert "lacks stanford-corenlp-3.6.0.jar" in _error_line(capsys)


# ------------------------------------------------------------------------------------------------ report


def _run(tmp_path: Path, name: str, metrics: dict) -> str:
    run = tmp_path / name
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(metrics))
    return str(run)


def test_report_mean_std_and_missing_metrics(tmp_path, capsys):
    runs = [
        _run(tmp_path, "seed0", {"CIDEr": 1.0, "test": {"R@1": 10.0, "note": "text"}, "SPICE": None}),
        _run(tmp_path, "seed1", {"CIDEr": 2.0, "test": {"R@1": 20.0}}),
        _run(tmp_path, "seed2", {"CIDEr": 3.0, "test": {"R@1": 30.0, "extra": 5}}),
    ]
    out = tmp_path / "summary.json"
    assert main(["report", *runs, "--json", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {
        "CIDEr": {"mean": 2.0, "std": 1.0, "n": 3},
        "test/R@1": {"mean": 20.0, "std": 10.0, "n": 3},
        "test/extra": {"mean": 5.0, "std": 0.0, "n": 1},
    }
    assert json.loads(out.read_text()) == summary
    assert main(["report", *runs]) == 0
    table = capsys.readouterr().out
    assert "3 run(s)" in table
    assert "test/R@1" in table and "20.0000 \u00b1 10.0000" in table
    assert "1 (of 3)" in table  # test/extra is missing from two runs


def test_report_single_run_and_errors(tmp_path, capsys):
    run = _run(tmp_path, "only", {"CIDEr": 1.5})
    assert main(["report", run, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"CIDEr": {"mean": 1.5, "std": 0.0, "n": 1}}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", run, str(empty)]) == 2
    assert _error_line(capsys) == f"error: {empty}: no metrics.json in this run folder"
    (empty / "metrics.json").write_text("[1, 2]")
    assert main(["report", str(empty)]) == 2
    assert "expected a JSON object" in _error_line(capsys)


# -------------------------------------------------------------------------------------------------- io


def test_io_helpers(tmp_path):
    import numpy as np

    path = tmp_path / "a" / "b.json"
    write_json_atomic(path, {"x": np.float64(1.5), "y": np.arange(3), "z": [np.int64(2)]})
    assert read_json(path) == {"x": 1.5, "y": [0, 1, 2], "z": [2]}
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert read_json(path) == {"x": 1.5, "y": [0, 1, 2], "z": [2]}  # the old file survives a failed write
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.json"]
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "a": 1,\n  "b" 2\n}')
    with pytest.raises(Clip4idcError, match=r"bad.json: malformed JSON at line 3 column 7"):
        read_json(bad)
    with pytest.raises(Clip4idcError, match="file not found"):
        read_json(tmp_path / "missing.json")
    with pytest.raises(Clip4idcError, match="is a directory"):
        read_json(tmp_path)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(Clip4idcError, match="not UTF-8"):
        read_json(bad)
