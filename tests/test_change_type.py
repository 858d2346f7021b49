"""The caption -> change-type classifier on CLEVR-Change-style captions, and the accuracy/confusion helpers."""

from __future__ import annotations

import pytest

from clip4idc.errors import Clip4idcError
from clip4idc.evaluation.change_types import CHANGE_LABELS, classify_change, confusion, type_accuracy

CASES = [
    # move
    (
        "the tiny green rubber cube that was in front of the big brown metal cylinder has been moved to a different location in the scene",
        "move",
    ),
    ("the big gray sphere changed its location", "move"),
    ("someone moved the small red cylinder", "move"),
    ("the cyan block is in a different position", "move"),
    ("the large purple metal ball was relocated", "move"),
    ("the small brown cube moved to a new position", "move"),
    ("the yellow rubber sphere has been shifted", "move"),
    ("the blue cylinder that is now behind the red cube has moved", "move"),
    # add
    ("the big gray rubber sphere that is behind the tiny cyan cylinder has been newly placed", "add"),
    ("someone added a small red sphere", "add"),
    ("a new green cylinder appeared", "add"),
    ("the tiny metal cube has appeared", "add"),
    ("there is a new large blue sphere", "add"),
    ("a small purple rubber block has been added to the scene", "add"),
    ("someone put a large shiny cylinder behind the gray cube", "add"),
    # drop
    ("the blue block is missing", "drop"),
    ("the small red metal sphere has disappeared", "drop"),
    ("the large cyan cube is gone", "drop"),
    ("someone removed the tiny yellow cylinder", "drop"),
    ("the big brown rubber ball is no longer there", "drop"),
    ("the small purple cube that was placed in front of the cylinder is missing", "drop"),
    ("the green cylinder has disappeared from its original location", "drop"),
    ("the gray metal block is now gone", "drop"),
    # color
    ("the small yellow metal ball changed to purple", "color"),
    ("the large cube that was red has changed to blue", "color"),
    ("the big red cube turned blue", "color"),
    ("the tiny gray cylinder became a cyan one", "color"),
    ("the small rubber sphere changed its color to green", "color"),
    ("the big cube changed from red to blue", "color"),
    ("the metal cylinder is now brown", "color"),
    ("the rubber cube changed color", "color"),
    ("the small shiny ball is yellow now, it changed", "color"),
    # material
    ("the small red rubber cube changed to metal", "material"),
    ("the large red matte cylinder became shiny", "material"),
    ("the tiny blue sphere turned into a metal one", "material"),
    ("the big green block is now rubber", "material"),
    ("the yellow metal cylinder became matte", "material"),
    ("the small purple cube changed its material", "material"),
    ("the gray shiny ball changed from metal to rubber", "material"),
    ("the cyan cube became metallic", "material"),
    # no change
    ("there is no change", "no_change"),
    ("the scene is the same as before", "no_change"),
    ("the two scenes seem identical", "no_change"),
    ("nothing has changed", "no_change"),
    ("no change was made", "no_change"),
    ("there is no difference", "no_change"),
    ("the scene remains the same", "no_change"),
    ("nothing was modified.", "no_change"),
    ("The scene did NOT change!", "no_change"),
    ("the scene is unchanged", "no_change"),
    ("nothing has moved", "no_change"),
    # unknown
    ("", "unknown"),
    ("a red cube and a blue sphere", "unknown"),
    ("the cube became smaller", "unknown"),
]


def test_case_list_is_big_and_covers_all_labels():
    assert len(CASES) >= 40
    assert {label for _, label in CASES} == {*CHANGE_LABELS, "unknown"}


@pytest.mark.parametrize(("caption", "expected"), CASES)
def test_classify_change(caption: str, expected: str):
    assert classify_change(caption) == expected


TRUE = {
    "1": "color",
    "2": "material",
    "3": "move",
    "4": "add",
    "5": "drop",
    "6_n": "no_change",
    "7_n": "no_change",
}
PRED = {
    "1": "the cube changed to red",  # right
    "2": "the cube changed to blue",  # color instead of material
    "3": "the cube has been moved",  # right
    "4": "add",  # a label is taken as is
    "5": "a red cube",  # unknown
    "6_n": "there is no change",  # right
    "7_n": "the cube moved",  # move instead of no change
    "8": "extra predictions are ignored",
}


def test_type_accuracy():
    acc = type_accuracy(PRED, TRUE)
    assert acc["overall"] == pytest.approx(100 * 4 / 7)
    assert acc["change"] == pytest.approx(100 * 3 / 5)
    assert acc["no_change"] == 50.0
    assert acc["color"] == 100.0 and acc["material"] == 0.0 and acc["drop"] == 0.0 and acc["add"] == 100.0
    assert list(acc)[:2] == ["overall", "change"] and set(acc) == {"overall", "change", *CHANGE_LABELS}
    assert type_accuracy({"1": "the cube moved"}, {"1": "move"})["color"] is None


def test_confusion():
    table = confusion(PRED, TRUE)
    assert table == {
        "color": {"color": 1},
        "material": {"color": 1},
        "move": {"move": 1},
        "add": {"add": 1},
        "drop": {"unknown": 1},
        "no_change": {"no_change": 1, "move": 1},
    }


def test_missing_predictions():
    with pytest.raises(Clip4idcError, match="missing for 1 of 7 .*'7_n'"):
        type_accuracy({k: v for k, v in PRED.items() if k != "7_n"}, TRUE)


def test_result_verbs_put_the_new_value_last():
    assert classify_change("someone made the big brown metallic ball rubber") == "material"
    assert classify_change("the brown ball was made matte") == "material"
    assert classify_change("someone painted the big green matte cylinder blue") == "color"


def test_every_synthetic_reference_is_classified_as_its_type(tmp_path):
    from clip4idc.data import load_pairs
    from clip4idc.data.synthetic import generate

    generate(tmp_path, pairs=40, size=(48, 36), seed=5, workers=1, progress=False)
    pairs = load_pairs(tmp_path, "clevr", "all")
    wrong = [(p.change_type, c) for p in pairs for c in p.captions if classify_change(c) != p.change_type]
    assert not wrong, wrong[:5]
