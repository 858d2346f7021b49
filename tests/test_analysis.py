"""Error-analysis helpers (clip4idc.evaluation.results, clip4idc.evaluation.probes)."""

from __future__ import annotations

import math

import pytest
import torch

from clip4idc.cli.score import summarise_runs
from clip4idc.data import Pair
from clip4idc.errors import Clip4idcError
from clip4idc.evaluation import probes, results
from clip4idc.explanation import pointing


def _pair(pid: str, typ: str) -> Pair:
    return Pair(pid, f"{pid}.png", f"{pid}_2.png", [f"caption {pid}"], typ, pid.split("_")[0])


def test_examples_per_type_keeps_order_and_limit():
    pairs = [_pair("1", "move"), _pair("1_n", "no_change"), _pair("2", "color"), _pair("3", "move")]
    out = results.examples_per_type(pairs, per_type=1)
    assert list(out) == ["color", "move", "no_change"]
    assert [p.pair_id for p in out["move"]] == ["1"]
    assert [p.pair_id for p in results.examples_per_type(pairs, 2, types=("move",))["move"]] == ["1", "3"]


def test_top_captions_ranks_and_dedups():
    texts = ["a", "b", "a", "c"]
    sim = torch.tensor([[0.1, 0.0], [0.9, 0.0], [0.5, 0.0], [0.3, 1.0]])
    top = results.top_captions(sim, texts, 0, k=3)
    assert [(t, r) for t, _, r in top] == [("b", 1), ("a", 2), ("c", 3)]
    assert top[1][1] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        results.top_captions(sim, texts[:2], 0)
    with pytest.raises(IndexError):
        results.top_captions(sim, texts, 2)


RECORDS = {
    "1": {"caption": "x", "CIDEr": 0.5, "change_type": "color", "predicted_type": "color"},
    "2": {"caption": "y", "CIDEr": 0.1, "change_type": "color", "predicted_type": "material"},
    "3": {"caption": "z", "CIDEr": None, "change_type": "move", "predicted_type": "no_change"},
    "3_n": {"caption": "w", "CIDEr": 2.0, "change_type": "no_change", "predicted_type": "no_change"},
}


def test_select_predictions_filters_and_sorts():
    ids = lambda rows: [pid for pid, _ in rows]  # noqa: E731
    assert ids(results.select_predictions(RECORDS)) == ["2", "1", "3_n", "3"]  # null CIDEr last
    assert ids(results.select_predictions(RECORDS, descending=True)) == ["3_n", "1", "2", "3"]
    assert ids(results.select_predictions(RECORDS, change_type="color")) == ["2", "1"]
    assert ids(results.select_predictions(RECORDS, change_type=["color", "move"], correct=False)) == [
        "2",
        "3",
    ]
    assert ids(results.select_predictions(RECORDS, predicted_type="no_change", sort_by=None)) == ["3", "3_n"]
    assert ids(results.select_predictions(RECORDS, limit=1)) == ["2"]


def test_confusion_matrix_and_top_confusions():
    conf = {
        "move": {"no_change": 3, "move": 1},
        "color": {"color": 2, "unknown": 1},
        "no_change": {"no_change": 4},
    }
    rows, cols, counts = results.confusion_matrix(conf)
    assert rows == ["color", "move", "no_change"]
    assert cols == ["color", "move", "no_change", "unknown"]
    assert counts == [[2, 0, 0, 1], [0, 1, 3, 0], [0, 0, 4, 0]]
    assert results.top_confusions(conf) == [("move", "no_change", 3), ("color", "unknown", 1)]


def _metrics() -> dict:
    sub = {"CIDEr": 1.0, "BLEU_4": 0.5, "METEOR": 0.3, "ROUGE_L": 0.6, "num_pairs": 4}
    return {
        "type_accuracy": 50.0,
        "type_accuracy_change": 25.0,
        "R@1": 10.0,
        "pointing_game": 20.0,
        "captioning": {"total": sub, "change": {**sub, "num_pairs": 2}},
        "per_type": {
            "color": {"CIDEr": 2.0, "BLEU_4": None, "type_accuracy": 100.0, "R@1": 5.0, "num_pairs": 1},
            "no_change": {"CIDEr": 0.2, "type_accuracy": 0.0, "R@1": None, "num_pairs": 2},
        },
    }


def test_per_type_rows_and_format():
    rows = results.per_type_rows(_metrics(), keys=("CIDEr", "type_accuracy", "R@1"))
    assert [r["subset"] for r in rows] == ["total", "change", "color", "no_change"]
    assert rows[0] == {"subset": "total", "n": 4, "CIDEr": 1.0, "type_accuracy": 50.0, "R@1": None}
    assert rows[1]["type_accuracy"] == 25.0 and rows[1]["R@1"] == 10.0 and rows[1]["n"] == 2
    assert rows[3]["R@1"] is None
    text = results.format_rows(rows, ["subset", "n", "CIDEr", "R@1"], digits=2)
    lines = text.splitlines()
    assert lines[0].split() == ["subset", "n", "CIDEr", "R@1"]
    assert lines[2].split() == ["total", "4", "1.00", "-"]
    assert results.format_rows([]) == "(no rows)"
    with pytest.raises(Clip4idcError):
        results.per_type_rows({"per_type": None})


def test_seed_spread_equals_report_summary():
    runs = [
        {"CIDEr": 1.0, "per_type": {"color": {"CIDEr": 2.0}}},
        {"CIDEr": 3.0, "per_type": {"color": {"CIDEr": 4.0}}},
    ]
    spread = results.seed_spread(runs, ["CIDEr", "per_type/color/CIDEr"])
    assert list(spread) == ["CIDEr", "per_type/color/CIDEr"]
    assert spread["CIDEr"]["mean"] == 2.0 and spread["CIDEr"]["values"] == [1.0, 3.0]
    assert spread["CIDEr"]["std"] == pytest.approx(math.sqrt(2))
    reference = summarise_runs([{"CIDEr": 1.0}, {"CIDEr": 3.0}])["CIDEr"]
    assert {k: spread["CIDEr"][k] for k in reference} == reference
    assert "per_type/color/CIDEr" in results.seed_spread(runs)


def test_pointing_chance():
    # a 2x2 grid on a 100x100 image: cell centres at 25 and 75; the left half holds two of four
    assert pointing.pointing_chance([[[0, 0, 50, 100]]], (100, 100), 2) == pytest.approx(50.0)
    assert pointing.pointing_chance([[[0, 0, 50, 100]], [[0, 0, 100, 100]]], (100, 100), 2) == pytest.approx(
        75.0
    )
    with pytest.raises(ValueError):
        pointing.pointing_chance([], (100, 100), 2)


def test_score_candidates_rewards_the_right_caption():
    refs = {
        "a": ["the red cube moved", "the red block was moved", "someone moved the red cube"],
        "b": ["there is no change", "nothing has changed"],
        "c": ["a blue sphere appeared", "someone added a blue ball"],
    }
    scores = results.score_candidates(
        "a", {"right": "the red cube was moved", "wrong": "there is no change"}, refs
    )
    assert set(scores) == {"right", "wrong"}
    for metric in ("BLEU_4", "METEOR", "ROUGE_L", "CIDEr"):
        assert scores["right"][metric] > scores["wrong"][metric], metric
    with pytest.raises(Clip4idcError):
        results.score_candidates("zz", {"x": "y"}, refs)


def test_attribute_accuracy_reads_the_named_values():
    scenes = {
        "0": {
            "change": {"type": "color", "object": 0, "after": {"color": "cyan", "shape": "cube"}},
            "objects": [{"size": "small", "color": "blue", "material": "metal", "shape": "cube"}],
        },
        "1": {
            "change": {"type": "add", "object": 1},
            "objects": [
                {"size": "large", "color": "red", "material": "rubber", "shape": "sphere"},
                {"size": "large", "color": "gray", "material": "rubber", "shape": "sphere"},
            ],
        },
    }
    predictions = {
        "0": {"caption": "the tiny blue shiny block turned cyan"},  # all right (colour before the change)
        "0_n": {"caption": "the big red cylinder"},  # no-change pairs are skipped
        "1": {"caption": "a big matte cylinder appeared"},  # size, material right; shape wrong; no colour
    }
    acc = probes.attribute_accuracy(predictions, scenes)
    assert acc["size"] == {"named": 2, "said": {"small": 1, "large": 1}, "correct": 100.0}
    assert acc["material"]["correct"] == 100.0 and acc["material"]["said"] == {"metal": 1, "rubber": 1}
    assert acc["shape"] == {"named": 2, "said": {"cube": 1, "cylinder": 1}, "correct": 50.0}
    assert acc["color"] == {"named": 1, "said": {"blue": 1}, "correct": 100.0}
    assert probes.attribute_accuracy({}, scenes)["shape"]["correct"] is None


def _object(size: str, color: str, material: str, shape: str, x: float = 0.0) -> dict:
    return {
        "size": size,
        "color": color,
        "material": material,
        "shape": shape,
        "position": [x, 0.0, 0.2],
        "rotation": 0.0,
    }


def _ceiling_pairs(captions: dict[str, list[str]], types: dict[str, str]) -> list[Pair]:
    return [Pair(pid, f"{pid}.png", f"{pid}_2.png", caps, types[pid], pid) for pid, caps in captions.items()]


def test_retrieval_ceiling_ranks_pairs_by_how_likely_they_are_named_so():
    cube, sphere = _object("small", "red", "rubber", "cube"), _object("large", "blue", "metal", "sphere", 2.0)
    twin = _object("small", "blue", "rubber", "cube", 2.0)  # only the colour tells the red cube apart
    scenes = {
        "0": {"change": {"type": "move", "object": 0}, "objects": [cube, sphere]},  # 15 unique subsets
        "1": {"change": {"type": "move", "object": 0}, "objects": [cube, sphere]},  # the same scene
        "2": {"change": {"type": "color", "object": 0, "to": "green"}, "objects": [cube, sphere]},
        "3": {"change": {"type": "move", "object": 0}, "objects": [cube, twin]},  # 8 subsets, all with colour
    }
    types = {pid: s["change"]["type"] for pid, s in scenes.items()}
    captions = {
        # full description: pair 3 names its cube so more often (0.5 + 0.5/8 vs 0.5 + 0.5/15), 0 and 1 tie
        "0": ["the small red rubber cube moved"],
        "1": ["the small object moved"],  # fits 0 and 1 alike; "small" does not single out 3's cube
        "2": ["the small object turned green"],  # the only colour change
        "3": ["the red cube moved"],  # fits 0, 1 and 3; most likely for 3 (0.5/8 vs 0.5/15)
    }
    out = probes.retrieval_ceiling(_ceiling_pairs(captions, types), scenes)
    assert out["R@1"] == pytest.approx(100 * (0 + 0.5 + 1 + 1) / 4)
    assert out["R@5"] == out["R@10"] == 100.0
    assert out["per_type"] == {"move": pytest.approx(50.0), "color": 100.0}
    assert (out["num_pairs"], out["num_texts"], out["relational"]) == (4, 4, 0.0)

    captions["1"] = ["the small red rubber cube that was behind the large sphere moved"]  # counted as found
    out = probes.retrieval_ceiling(_ceiling_pairs(captions, types), scenes)
    assert out["R@1"] == pytest.approx(100 * (0 + 1 + 1 + 1) / 4) and out["relational"] == 25.0
    for wrong in ("the large object moved", "nothing has changed", "the small object turned blue"):
        captions["1"] = [wrong]  # names another object, is not a change caption, or the wrong new colour
        with pytest.raises(ValueError, match="pair 1"):
            probes.retrieval_ceiling(_ceiling_pairs(captions, types), scenes)
    with pytest.raises(ValueError, match="needs change pairs"):
        probes.retrieval_ceiling([_pair("0_n", "no_change")], scenes)
