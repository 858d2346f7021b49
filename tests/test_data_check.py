"""``clip4idc data check``: a clean dataset passes; each kind of breakage gives its own one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_data_readers import make_clevr, make_ier, make_spot

from clip4idc.cli import main
from clip4idc.data.check import check_dataset


def _run(capsys, root: Path, dataset: str) -> tuple[int, list[str]]:
    rc = main(["data", "check", str(root), "--dataset", dataset])
    out = capsys.readouterr().out.splitlines()
    return rc, out


@pytest.mark.parametrize("dataset,maker", [("clevr", make_clevr), ("spot", make_spot), ("ier", make_ier)])
def test_clean_datasets_pass(tmp_path: Path, capsys, dataset: str, maker) -> None:
    root = maker(tmp_path / dataset)
    rc, out = _run(capsys, root, dataset)
    assert rc == 0, out
    assert "no problems" in out


def test_clevr_summary(tmp_path: Path, capsys) -> None:
    rc, out = _run(capsys, make_clevr(tmp_path), "clevr")
    text = "\n".join(out)
    assert rc == 0
    assert "train        4       2         2" in text
    assert "captions per change pair: min 2, mean 2.0, max 2" in text
    assert "pairs per change type: color 1, material 1, add 1, drop 1, move 0" in text
    assert "images checked: 12" in text


def _break_clevr(kind: str, root: Path) -> str:
    """Apply one kind of breakage; return a fragment the single error line must contain."""
    if kind == "missing image":
        (root / "sc_images" / "CLEVR_semantic_000001.png").unlink()
        return "sc_images/CLEVR_semantic_000001.png: missing image"
    if kind == "unreadable image":
        (root / "nsc_images" / "CLEVR_nonsemantic_000002.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        return "nsc_images/CLEVR_nonsemantic_000002.png: unreadable image"
    if kind == "no captions":
        caps = json.loads((root / "change_captions.json").read_text())
        del caps["CLEVR_default_000003.png"]
        (root / "change_captions.json").write_text(json.dumps(caps))
        return "change_captions.json: id 3 (CLEVR_default_000003.png) has no change captions"
    if kind == "no no-change captions":
        caps = json.loads((root / "no_change_captions.json").read_text())
        caps["CLEVR_default_000000.png"] = []
        (root / "no_change_captions.json").write_text(json.dumps(caps))
        return (
            "no_change_captions.json: id 0 (CLEVR_default_000000.png) has an empty or malformed caption list"
        )
    if kind == "malformed JSON":
        (root / "type_mapping.json").write_text('{"color": [0, 1')
        return "type_mapping.json: malformed JSON"
    if kind == "unknown type":
        m = json.loads((root / "type_mapping.json").read_text())
        m["colour"] = m.pop("color")
        (root / "type_mapping.json").write_text(json.dumps(m))
        return "type_mapping.json: unknown change type 'colour'"
    raise AssertionError(kind)


CLEVR_BREAKS = ["missing image", "unreadable image", "no captions", "no no-change captions", "malformed JSON"]


@pytest.mark.parametrize("kind", CLEVR_BREAKS)
def test_clevr_breakage_gives_one_line(tmp_path: Path, capsys, kind: str) -> None:
    root = make_clevr(tmp_path)
    fragment = _break_clevr(kind, root)
    rc, out = _run(capsys, root, "clevr")
    assert rc == 1
    problems = out[out.index("1 problem(s):") + 1 :]
    assert len(problems) == 1, out
    assert fragment in problems[0] and problems[0].startswith(str(root))


def test_unknown_change_type_is_reported(tmp_path: Path) -> None:
    root = make_clevr(tmp_path)
    fragment = _break_clevr("unknown type", root)
    report = check_dataset(root, "clevr")
    assert any(fragment in p for p in report.problems)


def test_spot_breakages(tmp_path: Path, capsys) -> None:
    root = make_spot(tmp_path / "a")
    (root / "resized_images" / "11_2.png").unlink()
    rc, out = _run(capsys, root, "spot")
    assert rc == 1 and out[-1].endswith("resized_images/11_2.png: missing image (pair 11, train)")
    root = make_spot(tmp_path / "b")
    (root / "reformat_test.json").write_text("[{")
    rc, out = _run(capsys, root, "spot")
    assert rc == 1 and "reformat_test.json: malformed JSON" in out[-1] and out[-2].endswith("1 problem(s):")
    root = make_spot(tmp_path / "c")
    (root / "reformat_train.json").write_text(json.dumps([{"img_id": "10", "sentences": []}]))
    rc, out = _run(capsys, root, "spot")
    assert rc == 1 and out[-1].endswith("reformat_train.json: img_id 10 has no sentences")


def test_ier_breakages(tmp_path: Path, capsys) -> None:
    root = make_ier(tmp_path / "a")
    (root / "images" / "d.png").write_bytes(b"garbage")
    rc, out = _run(capsys, root, "ier")
    assert rc == 1 and "images/d.png: unreadable image" in out[-1]
    root = make_ier(tmp_path / "b")
    (root / "test.json").write_text(
        json.dumps([{"img0": "a.jpg", "img1": "zz.jpg", "sents": ["x"], "uid": 1}])
    )
    rc, out = _run(capsys, root, "ier")
    assert rc == 1 and out[-1].endswith("images/zz.jpg: missing image (pair 1, test)")


def test_missing_folder_is_a_cli_error(tmp_path: Path, capsys) -> None:
    rc = main(["data", "check", str(tmp_path / "nope"), "--dataset", "clevr"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "dataset folder not found" in err
