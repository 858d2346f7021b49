"""The CLIP stand-in: scene descriptions, the single-image pretraining stage, its export in OpenAI's layout,
and the recipe's chain (stand-in -> stage 1 -> stage 2 -> exports that load through ``clip4idc.load``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import clip4idc
from clip4idc.data.pretraining import DescriptionDataset
from clip4idc.data.readers import load_pairs
from clip4idc.data.synthetic.describe import (
    ATTRIBUTES,
    SeenObject,
    describe,
    false_objects,
    image_objects,
)
from clip4idc.tokenizer import trim_padding
from clip4idc.weights.formats import PAIR_KEYS, read_state_dict
from clip4idc.weights.registry import installed

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from clip4idc.data.synthetic import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, pairs=30, size=(64, 48), seed=4, workers=1, val_frac=0.2, test_frac=0.2, progress=False)
    return root


def _objects() -> list[SeenObject]:
    return [
        SeenObject("large", "red", "metal", "cube", (0, 0, 10, 10)),
        SeenObject("small", "blue", "rubber", "sphere", (40, 30, 50, 40)),
        SeenObject("small", "red", "rubber", "cylinder", (20, 14, 30, 24)),
    ]


def test_description_names_every_object_with_its_place():
    text = describe(_objects(), 60, 45)
    assert text == (
        "large red metal cube back left, small blue rubber sphere front right, "
        "small red rubber cylinder middle center"
    )
    rng = np.random.default_rng(0)
    words = {describe(_objects(), 60, 45, rng) for _ in range(20)}
    assert len(words) > 1 and all("cylinder" in w for w in words)  # synonyms drawn, meaning kept


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_a_near_miss_differs_in_one_attribute(attribute):
    rng = np.random.default_rng(1)
    for _ in range(30):
        wrong = false_objects(_objects(), rng, attribute)
        assert wrong is not None
        changed = [(a, b) for a, b in zip(_objects(), wrong) if a != b]
        assert 1 <= len(changed) <= 2  # one object changed, or one attribute exchanged between two
        for a, b in changed:
            assert [x for x in ATTRIBUTES if a.value(x) != b.value(x)] == [attribute]
        assert describe(wrong, 60, 45) != describe(_objects(), 60, 45)


def test_each_image_is_described_as_it_looks(synth):
    scenes = json.loads((synth / "scenes.json").read_text())["scenes"]
    for scene in scenes.values():
        change = scene["change"]
        before, after = image_objects(scene, "before"), image_objects(scene, "after")
        if change["type"] == "add":
            assert len(after) == len(before) + 1
        if change["type"] == "drop":
            assert len(after) == len(before) - 1
        if change["type"] in ("color", "material"):
            key = change["type"]
            new = change["after"][key]
            old = scene["objects"][change["object"]][key]
            count = {v: sum(o.value(key) == new for o in objs) for v, objs in (("b", before), ("a", after))}
            assert count["a"] == count["b"] + 1, (old, new)
        assert [o.box[0] + o.box[2] for o in before] == sorted(o.box[0] + o.box[2] for o in before)


def test_description_dataset_items(synth):
    pairs = load_pairs(synth, "clevr", "train")
    scenes = {p.scene_id for p in pairs}
    train = DescriptionDataset(pairs, resolution=32, train=True, seed=3, hard_negatives=2)
    assert len(train) == 3 * len(scenes)  # before, after, distractor: each a scene of its own
    item = train[0]
    assert item["image"].shape == (3, 32, 32) and item["neg_text_ids"].shape == (2, 77)
    assert not torch.equal(item["neg_text_ids"][0], item["text_ids"])
    again = DescriptionDataset(pairs, resolution=32, train=True, seed=3, hard_negatives=2)[0]
    assert torch.equal(again["neg_text_ids"], item["neg_text_ids"])  # (seed, epoch, index) decide
    val = DescriptionDataset(load_pairs(synth, "clevr", "val"), resolution=32)
    assert "neg_text_ids" not in val[0]
    ids = trim_padding(torch.stack([train[i]["text_ids"] for i in range(4)]))
    assert (ids[:, -1] != 0).any() and ids.shape[1] < 77


def test_two_shape_negatives_give_one_object_each_other_shape(synth):
    pairs = load_pairs(synth, "clevr", "train")
    data = DescriptionDataset(pairs, resolution=32, train=True, hard_negatives=3, shape_negatives=2)
    rng = np.random.default_rng(0)
    for index in range(len(data)):
        _, objects = data.items[index]
        first, second, third = data.near_misses(objects, rng)
        changed = [k for k, (a, b, c) in enumerate(zip(objects, first, second)) if a != b or a != c]
        assert len(changed) == 1  # the same object, twice
        k = changed[0]
        assert {objects[k].shape, first[k].shape, second[k].shape} == {"cube", "sphere", "cylinder"}
        assert third is not None and third != list(objects)


def _run_recipe(tmp_path: Path, synth_scenes: int) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        WORK=str(tmp_path / "work"),
        EXPORT=str(tmp_path / "weights"),
        DEMO_EXPORT=str(tmp_path / "weights" / "demo"),
        SCENES=str(synth_scenes),
        TEST_SCENES="12",
        MODEL="tiny",
        EVAL_ARGS="--no-spice --batch-size 8",
        SKIP_DOMAIN="1",
    )
    overrides = [
        "model=tiny", "epochs=1", "batch_size=8", "batch_size_val=8", "max_val_pairs=4",
        "precision=fp32",
    ]  # fmt: skip
    return subprocess.run(
        ["bash", str(REPO / "projects" / "demo_model_v2" / "train.sh"), *overrides],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_recipe_chains_its_stages_and_its_exports_load(tmp_path):
    """The whole recipe at toy size: each stage starts from what the previous one wrote, the stand-in
    loads through the OpenAI-CLIP path, the demo export through ``clip4idc.load``, and a second run of the
    script finds every step done."""
    run = _run_recipe(tmp_path, 100)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    work, weights = tmp_path / "work", tmp_path / "weights"
    standin = read_state_dict(weights / "clip_standin")
    assert "visual.conv1.weight" in standin and not any(k.startswith(("clip.", "decoder.")) for k in standin)
    assert not {k.removeprefix("clip.") for k in PAIR_KEYS} & set(standin)
    assert all(v.dtype == torch.float16 for v in standin.values() if v.is_floating_point())
    model = clip4idc.load(weights / "clip_standin")
    assert model.load_layout == "openai" and model.notes  # pair parts and decoder fresh, and said so
    pretrained = read_state_dict(work / "runs" / "v2_standin" / "best")
    assert torch.equal(standin["visual.conv1.weight"], pretrained["clip.visual.conv1.weight"].half())
    adapt_log = json.loads((work / "runs" / "v2_adapt_plain" / "config.json").read_text())
    assert adapt_log["init"] == str(weights / "clip_standin")
    hard_log = json.loads((work / "runs" / "v2_adapt" / "config.json").read_text())
    assert hard_log["init"] == "runs/v2_adapt_plain/best" and hard_log["adapt"]["unchanged_negatives"]
    assert "initialised from" in run.stderr and "(openai)" in run.stderr
    finetune = json.loads((work / "runs" / "v2_finetune" / "config.json").read_text())
    assert finetune["init"] == "runs/v2_adapt/best"
    demo = clip4idc.load(weights / "demo")
    assert demo.load_layout == "clip4idc"
    assert isinstance(demo.caption(np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64, 3), np.uint8)), str)
    for name in ("v2_eval", "v2_eval_seed2", "v2_eval_ablation", "v2_eval_ablation_seed2"):
        assert (work / "runs" / name / "metrics.json").is_file(), name
    assert "recipe finished" in run.stdout
    again = _run_recipe(tmp_path, 100)  # a second run finds every step done and trains nothing
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already trained") == 7 and "epoch 1" not in again.stderr


def test_bundled_standin_is_a_clip_that_sees_shape(tmp_path):
    """Zero-shot on fresh scenes at the generator's default size: descriptions retrieved, and the true shape
    of an object preferred to the other two, well above chance."""
    from clip4idc.data.synthetic import generate
    from clip4idc.evaluation.descriptions import description_accuracy

    assert installed("clip-standin"), "the bundled stand-in (clip4idc/weights/clip_standin) is missing"
    model = clip4idc.load("clip-standin")
    assert model.load_layout == "openai"
    generate(tmp_path, pairs=100, seed=2209, workers=2, val_frac=0, test_frac=0.99, progress=False)
    data = DescriptionDataset(load_pairs(tmp_path, "clevr", "test"), resolution=model.config.resolution)
    scores = description_accuracy(model, data)  # 297 images; on the 3,036 of the card's test set: R@1 53.7 %,
    chance = scores["chance"]  # size 96.2, colour 93.2, material 87.0, shape 56.5 % (chance 33.3 %)
    assert scores["R@1"] > 50 * chance["R@1"]
    for attribute, floor in (("size", 85), ("color", 80), ("material", 75), ("shape", 45)):
        assert scores[attribute] > floor > chance[attribute] + 10, (attribute, scores)
