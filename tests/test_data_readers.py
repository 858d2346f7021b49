"""Readers on small hand-made fixtures of each official format; datasets; COCO ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clip4idc.data import (
    AdaptationDataset,
    CaptionDataset,
    Pair,
    detect_dataset,
    load_pairs,
    make_coco_gt,
    merge_spot_annotations,
    write_gt,
)
from clip4idc.errors import Clip4idcError
from clip4idc.preprocess import preprocess
from clip4idc.tokenizer import default_tokenizer


def _png(path: Path, seed: int, size: tuple[int, int] = (24, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def make_clevr(root: Path, ids=(0, 1, 2, 3), splits=None, str_ids: bool = False) -> Path:
    """A tiny CLEVR-Change in the official layout (type mapping with int or str ids)."""
    for n in ids:
        _png(root / "images" / f"CLEVR_default_{n:06d}.png", 3 * n)
        _png(root / "sc_images" / f"CLEVR_semantic_{n:06d}.png", 3 * n + 1)
        _png(root / "nsc_images" / f"CLEVR_nonsemantic_{n:06d}.png", 3 * n + 2)
    change = {
        f"CLEVR_default_{n:06d}.png": [f"the red cube {n} moved", f"the big red cube {n} was moved"]
        for n in ids
    }
    nochange = {f"CLEVR_default_{n:06d}.png": ["there is no change", f"nothing has changed {n}"] for n in ids}
    (root / "change_captions.json").write_text(json.dumps(change))
    (root / "no_change_captions.json").write_text(json.dumps(nochange))
    splits = splits or {"train": [0, 1], "val": [2], "test": [3]}
    (root / "splits.json").write_text(json.dumps(splits))
    types = ("color", "material", "add", "drop", "move")
    mapping = {t: [] for t in types}
    for n in ids:
        mapping[types[n % 5]].append(str(n) if str_ids else n)
    (root / "type_mapping.json").write_text(json.dumps(mapping))
    return root


def make_spot(root: Path, raw: bool = False) -> Path:
    for pid in ("10", "11", "12"):
        _png(root / "resized_images" / f"{pid}.png", int(pid))
        _png(root / "resized_images" / f"{pid}_2.png", int(pid) + 100)
    if raw:
        ann = root / "annotations"
        ann.mkdir(parents=True)
        train = [
            {"img_id": "10", "sentences": ["the car is gone", " "]},
            {"img_id": "10", "sentences": ["a person walked away", "the car is gone"]},
            {"img_id": "11", "sentences": ["the bike moved"]},
        ]
        (ann / "train.json").write_text(json.dumps(train))
        (ann / "val.json").write_text(json.dumps([]))
        (ann / "test.json").write_text(json.dumps([{"img_id": "12", "sentences": ["a sign appeared"]}]))
    else:
        (root / "reformat_train.json").write_text(
            json.dumps(
                [
                    {"img_id": "10", "sentences": ["the car is gone", "a person walked away"]},
                    {"img_id": "11", "sentences": ["the bike moved"]},
                ]
            )
        )
        (root / "reformat_val.json").write_text(json.dumps([]))
        (root / "reformat_test.json").write_text(
            json.dumps([{"img_id": "12", "sentences": ["a sign appeared"]}])
        )
    return root


def make_ier(root: Path) -> Path:
    for name in ("a.jpg", "b.jpg", "c.png", "d.png"):
        _png(root / "images" / name, ord(name[0]))
    (root / "train.json").write_text(
        json.dumps(
            [
                {
                    "img0": "a.jpg",
                    "img1": "b.jpg",
                    "sents": ["make it brighter", "increase brightness"],
                    "uid": 7,
                }
            ]
        )
    )
    (root / "valid.json").write_text(
        json.dumps([{"img0": "c.png", "img1": "d.png", "sents": ["crop the top"], "uid": "v1"}])
    )
    (root / "test.json").write_text(
        json.dumps([{"img0": "b.jpg", "img1": "a.jpg", "sents": ["darken it"], "uid": 9}])
    )
    return root


@pytest.mark.parametrize("str_ids", [False, True])
def test_clevr_reader(tmp_path: Path, str_ids: bool) -> None:
    root = make_clevr(tmp_path, str_ids=str_ids)
    pairs = load_pairs(root, "clevr", "train")
    assert [p.pair_id for p in pairs] == ["0", "0_n", "1", "1_n"]
    change, nochange = pairs[2], pairs[3]
    assert change.before == root / "images/CLEVR_default_000001.png"
    assert change.after == root / "sc_images/CLEVR_semantic_000001.png"
    assert change.captions == ["the red cube 1 moved", "the big red cube 1 was moved"]
    assert change.change_type == "material" and change.scene_id == "1"
    assert change.distractor == root / "nsc_images/CLEVR_nonsemantic_000001.png"
    assert nochange.before == change.before and nochange.after == change.distractor
    assert nochange.captions == ["there is no change", "nothing has changed 1"]
    assert nochange.change_type == "no_change" and nochange.scene_id == "1"
    assert [p.pair_id for p in load_pairs(root, "clevr", "test")] == ["3", "3_n"]
    assert len(load_pairs(root, "clevr", "all")) == 8
    assert detect_dataset(root) == "clevr"


def test_spot_reader_reformat_and_raw(tmp_path: Path) -> None:
    root = make_spot(tmp_path / "fmt")
    pairs = load_pairs(root, "spot", "train")
    assert [(p.pair_id, p.captions) for p in pairs] == [
        ("10", ["the car is gone", "a person walked away"]),
        ("11", ["the bike moved"]),
    ]
    assert (
        pairs[0].before == root / "resized_images/10.png"
        and pairs[0].after == root / "resized_images/10_2.png"
    )
    assert pairs[0].change_type == ""
    raw = make_spot(tmp_path / "raw", raw=True)
    raw_pairs = load_pairs(raw, "spot", "train")
    assert [(p.pair_id, p.captions) for p in raw_pairs] == [(p.pair_id, p.captions) for p in pairs]
    assert [p.pair_id for p in load_pairs(raw, "spot", "test")] == ["12"]
    assert detect_dataset(raw) == "spot"


def test_merge_spot_annotations() -> None:
    raw = [
        {"img_id": 5, "sentences": ["a", "b "]},
        {"img_id": "6", "sentences": "c"},
        {"img_id": "5", "sentences": ["b", "d"]},
    ]
    assert merge_spot_annotations(raw) == [
        {"img_id": "5", "sentences": ["a", "b", "d"]},
        {"img_id": "6", "sentences": ["c"]},
    ]
    with pytest.raises(Clip4idcError, match="entry 0 has no img_id"):
        merge_spot_annotations([{"sentences": []}], "x.json")


def test_ier_reader(tmp_path: Path) -> None:
    root = make_ier(tmp_path)
    train = load_pairs(root, "ier", "train")
    assert [(p.pair_id, p.before.name, p.after.name, p.captions) for p in train] == [
        ("7", "a.jpg", "b.jpg", ["make it brighter", "increase brightness"])
    ]
    assert train[0].before == root / "images" / "a.jpg"
    assert [p.pair_id for p in load_pairs(root, "ier", "val")] == ["v1"]  # valid.json accepted for val
    assert [p.pair_id for p in load_pairs(root, "ier", "test")] == ["9"]
    assert detect_dataset(root) == "ier"


def test_load_pairs_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(Clip4idcError, match="dataset folder not found"):
        load_pairs(tmp_path / "nope", "clevr", "test")
    with pytest.raises(Clip4idcError, match="unknown dataset"):
        load_pairs(tmp_path, "coco", "test")
    root = make_clevr(tmp_path / "c")
    (root / "splits.json").write_text("{not json")
    with pytest.raises(Clip4idcError, match=r"splits\.json: malformed JSON") as err:
        load_pairs(root, "clevr", "test")
    assert "\n" not in str(err.value)


def test_coco_gt(tmp_path: Path) -> None:
    root = make_clevr(
        tmp_path / "c", ids=(0, 1, 2, 3, 4), splits={"train": [], "val": [], "test": [0, 1, 2, 3, 4]}
    )
    pairs = load_pairs(root, "clevr", "test")
    gt = make_coco_gt(pairs)
    assert gt["type"] == "captions" and gt["info"] == {} and gt["licenses"] == []
    assert [im["id"] for im in gt["images"]] == ["0", "0_n", "1", "1_n", "2", "2_n", "3", "3_n", "4", "4_n"]
    assert gt["annotations"][0] == {"image_id": "0", "caption": "the red cube 0 moved", "id": 0}
    assert [a["id"] for a in gt["annotations"]] == list(range(20))
    files = {p.name: json.loads(p.read_text()) for p in write_gt(root, "clevr", "test", tmp_path / "gt")}
    assert set(files) == {
        f"clevr_test_{n}.json"
        for n in ("total", "change", "no_change", "color", "material", "add", "drop", "move")
    }
    assert [i["id"] for i in files["clevr_test_no_change.json"]["images"]] == [
        "0_n",
        "1_n",
        "2_n",
        "3_n",
        "4_n",
    ]
    assert [i["id"] for i in files["clevr_test_drop.json"]["images"]] == ["3"]
    spot = {p.name for p in write_gt(make_spot(tmp_path / "s"), "spot", "train", tmp_path / "gt")}
    assert spot == {"spot_train_total.json"}


# ------------------------------------------------------------------------------------------ datasets
def test_adaptation_dataset_train_and_eval(tmp_path: Path) -> None:
    root = make_clevr(tmp_path, ids=tuple(range(8)), splits={"train": list(range(8)), "val": [], "test": []})
    ds = AdaptationDataset(root, split="train", resolution=32, max_words=16, train=True, seed=1)
    assert len(ds) == 8 and all(p.change_type != "no_change" for p in ds.pairs)
    item = ds[0]
    assert item["before"].shape == (3, 32, 32) and item["before"].dtype == torch.float32
    assert item["text_ids"].shape == (16,) and item["text_mask"].dtype == torch.long and item["index"] == 0
    tok = default_tokenizer()
    # over epochs: both captions used, before replaced by the distractor about half the time
    swaps, captions = 0, set()
    for epoch in range(20):
        ds.set_epoch(epoch)
        it = ds[3]
        p = ds.pairs[3]
        if torch.equal(it["before"], preprocess(p.distractor, 32)):
            swaps += 1
        else:
            assert torch.equal(it["before"], preprocess(p.before, 32))
        captions.add(tok.caption_text(it["text_ids"][1:]))
    assert 4 <= swaps <= 16 and len(captions) == 2
    # same (seed, epoch, index) → same item, whatever else was read before
    ds.set_epoch(5)
    a = ds[2]
    ds.set_epoch(5)
    _ = ds[6]
    b = ds[2]
    assert all(torch.equal(a[k], b[k]) for k in ("before", "text_ids"))
    ev = AdaptationDataset(root, split="train", resolution=32, max_words=16, train=False, seed=1)
    e = ev[1]
    assert torch.equal(e["before"], preprocess(ev.pairs[1].before, 32))
    ids, _ = tok.batch([ev.pairs[1].captions[0]], 16)
    assert torch.equal(e["text_ids"], ids[0])


def test_caption_dataset_train_and_eval(tmp_path: Path) -> None:
    root = make_clevr(tmp_path, ids=(0, 1, 2, 3))
    ds = CaptionDataset(root, split="train", resolution=32, max_words=20, train=True, seed=0)
    assert [p.pair_id for p in ds.pairs] == ["0", "1"]
    item = ds[1]
    assert set(item) == {
        "before",
        "after",
        "input_ids",
        "output_ids",
        "decoder_mask",
        "index",
        "distractor",
        "nc_input_ids",
        "nc_output_ids",
        "nc_decoder_mask",
    }
    assert torch.equal(item["distractor"], preprocess(ds.pairs[1].distractor, 32))
    tok = default_tokenizer()
    nc_text = tok.caption_text(item["nc_output_ids"])
    assert nc_text in ("there is no change", "nothing has changed 1")
    assert tok.caption_text(item["output_ids"]) in ds.pairs[1].captions
    ev = CaptionDataset(root, split="test", resolution=32, train=False)
    assert [p.pair_id for p in ev.pairs] == ["3", "3_n"]
    assert set(ev[1]) == {"before", "after", "index"}
    assert torch.equal(ev[1]["after"], preprocess(root / "nsc_images/CLEVR_nonsemantic_000003.png", 32))
    # Spot-the-Diff pairs have no distractor
    spot = CaptionDataset(make_spot(tmp_path / "s"), split="train", resolution=32, train=True, dataset="spot")
    assert "distractor" not in spot[0]
    # a list of pairs works as well as a folder
    pairs = load_pairs(root, "clevr", "train")
    from_list = CaptionDataset(pairs, resolution=32, max_words=20, train=True)
    assert torch.equal(from_list[0]["output_ids"], ds[0]["output_ids"])


def test_disk_cache_is_bit_identical(tmp_path: Path) -> None:
    root = make_clevr(tmp_path / "c")
    cache = tmp_path / "cache"
    plain = CaptionDataset(root, split="train", resolution=28, train=True, seed=4)
    cached = CaptionDataset(root, split="train", resolution=28, train=True, seed=4, cache_dir=cache)
    first = cached[0]
    n_files = len(list(cache.glob("*.npy")))
    assert n_files == 3  # before, after, distractor
    # second read comes from the cache: remove the PNG decoder's input to prove it
    Image_open = Image.open
    try:
        Image.open = None  # type: ignore[assignment]
        again = cached[0]
    finally:
        Image.open = Image_open
    ref = plain[0]
    for k in ("before", "after", "distractor"):
        assert torch.equal(first[k], ref[k]) and torch.equal(again[k], ref[k])
        assert first[k].dtype == torch.float32
    assert torch.equal(ref["before"], preprocess(plain.pairs[0].before, 28))


def test_pair_dataclass_fields() -> None:
    p = Pair("5", Path("a.png"), Path("b.png"), ["x"], "color", "5")
    assert (p.pair_id, p.change_type, p.scene_id, p.distractor, p.distractor_captions) == (
        "5",
        "color",
        "5",
        None,
        [],
    )
