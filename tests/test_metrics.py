"""Metrics layer: parity with pycocoevalcap's COCOEvalCap, CLEVR-Change subsets, SPICE detection, retrieval,
mean-sentence baseline and pointing game.

Java work (PTB tokenizer, METEOR) is slow here, so one module fixture scores the hand-made set once and
the other tests reuse it; the METEOR process is shared inside the test process by design.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.cider.cider_scorer import CiderScorer

from clip4idc.data import CHANGE_TYPES
from clip4idc.errors import Clip4idcError
from clip4idc.evaluation import baseline as B
from clip4idc.evaluation import metrics as M
from clip4idc.evaluation.retrieval import retrieval_metrics
from clip4idc.explanation import pointing as P

# 14 CLEVR-Change-like pairs, 3-5 references each; one empty prediction in the middle, ids mixed int/str.
REFS: dict[object, list[str]] = {
    "101": [
        "the small red rubber cube changed to metal.",
        "the tiny red cube became metallic",
        "the red rubber block is now shiny",
    ],
    "102": [
        "the big gray sphere has been moved to a different location",
        "the large gray ball changed its location",
        "someone moved the big gray sphere",
        "the gray sphere is in a different position",
    ],
    "103": [
        "the small yellow metal ball changed to purple",
        "the tiny yellow sphere became purple",
        "the yellow ball is now purple",
    ],
    "104": [
        "the blue block is missing",
        "the blue cube has disappeared",
        "the blue block is gone",
        "someone removed the blue cube",
        "the blue cube is no longer there",
    ],
    "105": [
        "someone added a small red sphere",
        "a tiny red ball has appeared",
        "the small red sphere has been newly placed",
    ],
    "106": [
        "the large cyan cylinder became shiny",
        "the big cyan cylinder changed to metal",
        "the cyan cylinder turned metallic",
    ],
    "107": [
        "the tiny green rubber cube has been moved",
        "the small green cube changed its location",
        "the green block moved to a new position",
    ],
    108: [
        "the large cube that was red has changed to blue",
        "the big red cube turned blue",
        "the large red block became blue",
        "the big cube changed from red to blue",
    ],
    "101_n": ["there is no change", "nothing has changed", "the scene is the same as before"],
    "102_n": [
        "the two scenes seem identical",
        "no change was made",
        "there is no difference",
        "nothing was modified",
    ],
    "103_n": ["the scene remains the same", "no change has occurred", "there is no change"],
    "104_n": ["nothing has changed", "the two scenes are identical", "there is no change"],
    "105_n": ["no change", "the scene did not change", "nothing changed in the scene"],
    "106_n": ["there is no change", "the scene is unchanged", "no difference between the scenes"],
}
PREDS: dict[str, str] = {
    "101": "the small red cube changed to metal",
    "102": "the big gray sphere has been moved",
    "103": "the yellow ball changed to purple",
    "104": "the blue cube is missing",
    "105": "",  # empty caption: must not crash or misalign the others
    "106": "the cyan cylinder became shiny",
    "107": "the green cube changed its location",
    "108": "the large cube changed to blue",
    "101_n": "there is no change",
    "102_n": "nothing has changed",
    "103_n": "the scene is the same",
    "104_n": "there is no change",
    "105_n": "the small cube moved",
    "106_n": "there is no change",
    "999": "an extra prediction with no reference",
}
TYPES = {
    "101": "material",
    "102": "move",
    "103": "color",
    "104": "drop",
    "105": "add",
    "106": "material",
    "107": "move",
    "108": "color",
}
METRIC_KEYS = ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr")
COCO_NAMES = {"BLEU_1": "Bleu_1", "BLEU_2": "Bleu_2", "BLEU_3": "Bleu_3", "BLEU_4": "Bleu_4"}


@pytest.fixture(scope="module")
def scored():
    """One scoring run of the hand-made set with SPICE in automatic mode (no jars on this machine)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(M.SPICE_ENV, raising=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            metrics, per_sample = M.score_captions_detailed(PREDS, REFS)
    return metrics, per_sample, [str(w.message) for w in caught]


class _StubSpice:
    """Stands in for pycocoevalcap's Spice inside COCOEvalCap, whose constructor would download jars."""

    def compute_score(self, gts, res):
        return 0.0, [0.0] * len(gts)

    def method(self):
        return "SPICE"


class _Coco:
    """The two members of a pycocotools COCO object that COCOEvalCap uses."""

    def __init__(self, img_to_anns):
        self.imgToAnns = img_to_anns

    def getImgIds(self):  # noqa: N802 - pycocotools' name
        return list(self.imgToAnns)


def test_equals_cocoevalcap_run_directly(scored, monkeypatch, capsys):
    import pycocoevalcap.eval as coco_eval

    monkeypatch.setattr(coco_eval, "Spice", _StubSpice)
    gt = _Coco({str(k): [{"caption": c} for c in caps] for k, caps in REFS.items()})
    res = _Coco({str(k): [{"caption": PREDS[str(k)]}] for k in REFS})
    evaluator = coco_eval.COCOEvalCap(gt, res)
    evaluator.evaluate()
    capsys.readouterr()
    metrics, per_sample, _ = scored
    for key in METRIC_KEYS:
        assert metrics[key] == pytest.approx(float(evaluator.eval[COCO_NAMES.get(key, key)]), abs=1e-9), key
    assert list(per_sample) == [str(k) for k in REFS]
    for pid, row in per_sample.items():
        theirs = evaluator.imgToEval[pid]
        for key in ("BLEU_4", "METEOR", "ROUGE_L", "CIDEr"):
            assert row[key] == pytest.approx(float(theirs[COCO_NAMES.get(key, key)]), abs=1e-9), (pid, key)
    assert all(type(metrics[k]) is float for k in METRIC_KEYS)


def test_output_shape_spice_unavailable_and_extra_warning(scored):
    metrics, per_sample, caught = scored
    assert set(metrics) == set(M.CAPTION_METRICS) | {"SPICE_status"}
    assert metrics["SPICE"] is None
    assert metrics["SPICE_status"].startswith("unavailable:")
    assert "stanford-corenlp-3.6.0.jar" in metrics["SPICE_status"]
    # nothing was downloaded into the installed package
    assert not (M._installed_spice_dir() / "lib" / "stanford-corenlp-3.6.0.jar").exists()
    assert any("ignoring 1 prediction" in m and "'999'" in m for m in caught)
    assert per_sample["105"]["CIDEr"] == 0.0  # the empty caption
    assert per_sample["101_n"]["CIDEr"] > 1.0


def test_missing_predictions_is_a_clear_error():
    preds = {k: v for k, v in PREDS.items() if k not in ("103", "104_n")}
    with pytest.raises(Clip4idcError, match=r"predictions missing for 2 of 14 .*'103'.*'104_n'"):
        M.score_captions(preds, REFS)


def test_bad_references_are_errors():
    with pytest.raises(Clip4idcError, match="no non-empty reference"):
        M.score_captions({"a": "x"}, {"a": ["", "  "]})
    with pytest.raises(Clip4idcError, match="no reference pairs"):
        M.score_captions({}, {})
    with pytest.raises(Clip4idcError, match="twice"):
        M.score_captions({"1": "x"}, {1: ["a"], "1": ["b"]})


def test_tokenizer_keeps_empty_and_odd_captions_aligned():
    out = M._ptb_tokenize(
        {
            "a": ["", "Hello, World."],
            "b": ["   ", "two\rlines", "the cube (red) moved!"],
            "c": ["last one", ""],
        }
    )
    assert out == {
        "a": ["", "hello world"],
        "b": ["", "two lines", "the cube -lrb- red -rrb- moved"],
        "c": ["last one", ""],
    }


def test_java_chatter_stays_off_stderr():
    """pycocoevalcap's PTB tokenizer child writes "PTBTokenizer tokenized N tokens ..." to our stderr (a red
    line per call in a notebook); the library keeps it off the process's stderr, which stays usable."""
    import subprocess
    import sys

    code = (
        "import sys; from clip4idc.evaluation.metrics import _ptb_tokenize\n"
        "print(_ptb_tokenize({'a': ['The red cube moved.']})['a'][0])\n"
        "print('still here', file=sys.stderr)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "the red cube moved"
    assert run.stderr.strip() == "still here"  # no tokenizer line, and stderr restored afterwards


def test_spice_detection(tmp_path, monkeypatch):
    monkeypatch.delenv(M.SPICE_ENV, raising=False)
    assert M.find_spice_lib(False) == (None, "unavailable: SPICE disabled by the caller")
    lib, status = M.find_spice_lib(None)
    assert lib is None and status.startswith("unavailable:")  # this machine has no CoreNLP jars
    with pytest.raises(Clip4idcError, match="SPICE required"):
        M.find_spice_lib(True)
    with pytest.raises(Clip4idcError, match="lacks stanford-corenlp"):
        M.find_spice_lib(tmp_path)
    with pytest.raises(Clip4idcError, match="not found"):
        M.find_spice_lib(tmp_path / "nope")
    monkeypatch.setenv(M.SPICE_ENV, str(tmp_path))
    lib, status = M.find_spice_lib(None)
    assert lib is None and M.SPICE_ENV in status
    for name in M.CORENLP_JARS:  # detection only: empty stand-in files are never run here
        (tmp_path / name).write_bytes(b"")
    assert M.find_spice_lib(None) == (tmp_path, "ok")
    assert M.find_spice_lib(str(tmp_path)) == (tmp_path, "ok")


def test_coco_gt_to_references():
    gt = {
        "images": [{"id": 1}, {"id": "2_n"}],
        "annotations": [
            {"image_id": 1, "caption": "a", "id": 1},
            {"image_id": "2_n", "caption": "b", "id": 2},
            {"image_id": 1, "caption": "c", "id": 3},
        ],
    }
    assert M.coco_gt_to_references(gt) == {"1": ["a", "c"], "2_n": ["b"]}
    assert M.coco_gt_to_references({"annotations": gt["annotations"]}) == {"1": ["a", "c"], "2_n": ["b"]}
    with pytest.raises(Clip4idcError, match="no captions"):
        M.coco_gt_to_references({"images": [{"id": 3}, *gt["images"]], "annotations": gt["annotations"]})
    with pytest.raises(Clip4idcError, match="not in 'images'"):
        M.coco_gt_to_references({"images": [{"id": 1}], "annotations": gt["annotations"]})
    with pytest.raises(Clip4idcError, match="annotations"):
        M.coco_gt_to_references({"images": []})
    with pytest.raises(Clip4idcError, match=r"annotations\[0\]"):
        M.coco_gt_to_references({"annotations": [{"caption": "x"}]})


@pytest.mark.filterwarnings("ignore:ignoring 1 prediction")
def test_clevr_change_subsets(scored, monkeypatch):
    calls: dict[tuple[str, ...], tuple] = {}
    original = M._score_subset

    def spy(data, ids):
        result = original(data, ids)
        calls[tuple(ids)] = (data, result)
        return result

    monkeypatch.setattr(M, "_score_subset", spy)
    out = M.score_clevr_change(PREDS, REFS, TYPES, spice=False)
    assert list(out)[:3] == ["total", "change", "no_change"]
    assert set(out) == {"total", "change", "no_change", *CHANGE_TYPES}
    change = [str(k) for k in REFS if not str(k).endswith("_n")]
    no_change = [str(k) for k in REFS if str(k).endswith("_n")]
    assert (
        out["total"]["num_pairs"] == 14
        and out["change"]["num_pairs"] == 8
        and out["no_change"]["num_pairs"] == 6
    )
    assert {ids for ids in calls} == {
        tuple(str(k) for k in REFS),
        tuple(change),
        tuple(no_change),
        ("101", "106"),
        ("102", "107"),
        ("103", "108"),
        ("104",),
        ("105",),
    }
    # total = the whole set scored together, exactly as score_captions does it
    for key in METRIC_KEYS:
        assert out["total"][key] == pytest.approx(scored[0][key], abs=1e-12)
    # each subset gets its own CIDEr IDF: check against pycocoevalcap's scorers on that subset alone
    data = calls[tuple(change)][0]
    gts = {pid: data.gts[pid] for pid in change}
    res = {pid: [data.res[pid]] for pid in change}
    assert out["change"]["CIDEr"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-12)
    assert out["change"]["BLEU_4"] == pytest.approx(
        Bleu(4).compute_score(gts, res, verbose=0)[0][3], abs=1e-12
    )
    assert out["change"]["CIDEr"] != pytest.approx(np.mean([scored[1][p]["CIDEr"] for p in change]))
    assert out["color"]["num_pairs"] == 2 and out["add"]["num_pairs"] == 1


def test_clevr_change_type_problems():
    with pytest.raises(Clip4idcError, match=r"no change type for 1 .*'108'"):
        M.score_clevr_change(PREDS, REFS, {k: v for k, v in TYPES.items() if k != "108"})
    with pytest.raises(Clip4idcError, match="ends with '_n'"):
        M.score_clevr_change(PREDS, REFS, {**TYPES, "101_n": "color"})


def test_constant_cider_matches_cider_scorer():
    refs = [
        ["the red cube moved", "the red cube has moved", "someone moved the red cube"],
        ["there is no change", "nothing has changed"],
        ["the blue ball became shiny", "the blue sphere changed to metal", "a b"],
        ["x"],
    ]
    candidates = ["the red cube moved", "there is no change", "the cube", "z", "the the the the blue"]
    fast = B._constant_cider(candidates, refs)
    for cand, value in zip(candidates, fast):
        scorer = CiderScorer(n=4, sigma=6.0)
        for pair_refs in refs:
            scorer += (cand, pair_refs)
        assert value == pytest.approx(scorer.compute_score()[0], abs=1e-12), cand


def test_mean_sentence_baseline_picks_obvious_best():
    refs = {
        "1_n": ["there is no change", "nothing has changed", "there is no change"],
        "2_n": ["there is no change", "the scene is the same"],
        "3_n": ["there is no change", "no change was made"],
        "4": ["the red cube moved", "the red cube has been moved"],
    }
    train = [
        "There is no change.",
        "there is no change",
        "the red cube moved",
        "a purple cylinder appeared",
    ] * 3
    sentence, metrics = B.mean_sentence_baseline(train, refs, max_candidates=3)
    assert sentence == "there is no change"
    assert metrics["CIDEr"] > 0 and metrics["SPICE"] is None
    direct = M.score_captions({k: sentence for k in refs}, refs, spice=False)
    for key in METRIC_KEYS:
        assert metrics[key] == pytest.approx(direct[key], abs=1e-12)
    with pytest.raises(Clip4idcError):
        B.mean_sentence_baseline(["", "  "], refs)


def test_per_sample_records():
    records = M.per_sample_records({1: "a"}, {"1": ["b", "c"]}, {"1": {"CIDEr": 0.5}})
    assert records == {"1": {"caption": "a", "references": ["b", "c"], "CIDEr": 0.5}}


# ---------------------------------------------------------------------------------------------- retrieval


def test_retrieval_one_caption_per_pair():
    sim = np.array(
        [
            [0.9, 0.1, 0.2],  # text 0 -> pair 0: rank 1
            [0.8, 0.5, 0.1],  # text 1 -> pair 1: rank 2
            [0.7, 0.6, 0.3],  # text 2 -> pair 2: rank 3
        ]
    )
    out = retrieval_metrics(sim, [0, 1, 2])
    t2p = out["text_to_pair"]
    assert t2p["R@1"] == pytest.approx(100 / 3) and t2p["R@5"] == 100.0
    assert t2p["MedianR"] == 2.0 and t2p["MeanR"] == 2.0
    # pair 0: column [0.9, 0.8, 0.7] -> rank 1; pair 1: [0.1, 0.5, 0.6] -> rank 2; pair 2: [0.2, 0.1, 0.3] -> 1
    p2t = out["pair_to_text"]
    assert p2t["R@1"] == pytest.approx(200 / 3) and p2t["MeanR"] == pytest.approx(4 / 3)
    assert p2t["MedianR"] == 1.0


def test_retrieval_several_captions_per_pair_and_distractor_pair():
    # 5 texts, 3 pairs; pair 2 has no text (a gallery distractor)
    sim = np.array(
        [
            [0.9, 0.2, 0.95],  # t0 (pair 0): pair 2 above -> rank 2
            [0.3, 0.4, 0.1],  # t1 (pair 0): pair 1 above -> rank 2
            [0.5, 0.8, 0.0],  # t2 (pair 1): rank 1
            [0.6, 0.7, 0.0],  # t3 (pair 1): rank 1
            [0.1, 0.9, 0.0],  # t4 (pair 1): rank 1
        ]
    )
    out = retrieval_metrics(sim, [0, 0, 1, 1, 1])
    assert out["text_to_pair"]["R@1"] == pytest.approx(60.0)
    assert out["text_to_pair"]["MeanR"] == pytest.approx(7 / 5)
    # pair 0: best own text t0 = 0.9, no other text above -> rank 1
    # pair 1: best own text t4 = 0.9, no negative (t0 0.2, t1 0.4) above -> rank 1; pair 2 skipped
    assert out["pair_to_text"] == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "MedianR": 1.0, "MeanR": 1.0}
    sim2 = sim.copy()
    sim2[2:, 0] = 0.95  # pair 1's texts now beat pair 0's best text (0.9) in column 0
    assert retrieval_metrics(sim2, [0, 0, 1, 1, 1])["pair_to_text"]["MeanR"] == pytest.approx((4 + 1) / 2)


def test_retrieval_ties_are_pessimistic_and_torch_input():
    sim = torch.zeros(4, 4, dtype=torch.bfloat16)
    out = retrieval_metrics(sim, [0, 1, 2, 3])
    assert out["text_to_pair"]["R@1"] == 0.0 and out["text_to_pair"]["MeanR"] == 4.0
    assert out["pair_to_text"]["MeanR"] == 4.0
    sim = np.array([[0.5, 0.5, 0.1], [0.2, 0.7, 0.7], [0.1, 0.1, 0.3]])
    out = retrieval_metrics(sim, [0, 1, 2])
    assert out["text_to_pair"]["MeanR"] == pytest.approx((2 + 2 + 1) / 3)
    # ties between two texts of the same pair do not hurt it
    out = retrieval_metrics(np.array([[0.5, 0.1], [0.5, 0.2], [0.4, 0.9]]), [0, 0, 1])
    assert out["pair_to_text"]["MeanR"] == 1.0
    # ... but a tie with another pair's text does
    out = retrieval_metrics(np.array([[0.5, 0.1], [0.5, 0.2], [0.5, 0.9]]), [0, 0, 1])
    assert out["pair_to_text"]["MeanR"] == pytest.approx((2 + 1) / 2)


def test_retrieval_rejects_bad_input():
    with pytest.raises(ValueError):
        retrieval_metrics(np.zeros(3), [0, 1, 2])
    with pytest.raises(ValueError):
        retrieval_metrics(np.zeros((2, 2)), [0])
    with pytest.raises(ValueError):
        retrieval_metrics(np.zeros((2, 2)), [0, 2])
    with pytest.raises(ValueError):
        retrieval_metrics(np.array([[math.nan, 0.0], [0.0, 1.0]]), [0, 1])


# ----------------------------------------------------------------------------------------------- pointing


def test_pointing_hit_maps_cell_centres_to_pixels():
    heat = np.zeros((7, 7))
    heat[2, 5] = 1.0  # centre at x = 5.5 * 224 / 7 = 176, y = 2.5 * 224 / 7 = 80
    assert P.pointing_hit(heat, [[170, 70, 180, 90]], (224, 224))
    assert P.pointing_hit(heat, [[0, 0, 10, 10], [176, 80, 200, 100]], (224, 224))  # inclusive edges
    assert not P.pointing_hit(heat, [[0, 0, 175, 224]], (224, 224))
    assert not P.pointing_hit(heat, [], (224, 224))
    heat2 = torch.zeros(2, 4)
    heat2[1, 0] = 3.0  # non-square image: x = 0.5 * 320 / 4 = 40, y = 1.5 * 240 / 2 = 180
    assert P.pointing_hit(heat2, [[30, 170, 50, 190]], (320, 240))
    assert P.hit_rate([True, False, True, True]) == 75.0
    with pytest.raises(ValueError):
        P.hit_rate([])
