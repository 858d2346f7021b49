"""Synthetic CLEVR-Change: layout, determinism, localised changes, truthful captions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clip4idc.cli import main
from clip4idc.data import CHANGE_TYPES, load_pairs
from clip4idc.data.check import check_dataset
from clip4idc.data.synthetic import change_boxes, generate, load_scenes, plot_triples
from clip4idc.data.synthetic.captions import (
    COLOR_WORDS,
    GENERIC_NOUNS,
    MATERIAL_WORDS,
    SHAPE_WORDS,
    SIZE_WORDS,
    parse_change_caption,
    vocabulary,
)
from clip4idc.data.synthetic.writer import change_type_for, make_splits

N_SCENES = 30


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, N_SCENES, (128, 96), seed=3, workers=1, progress=False)
    return out


def _word_map() -> dict[str, tuple[str, str]]:
    """Caption word → (attribute, canonical value)."""
    m = {}
    for attr, table in (("size", SIZE_WORDS), ("material", MATERIAL_WORDS), ("shape", SHAPE_WORDS)):
        for value, words in table.items():
            for w in words:
                m[w] = (attr, value)
    for c in COLOR_WORDS:
        m[c] = ("color", c)
    return m


WORDS = _word_map()


def _noun_phrases(caption: str) -> list[dict]:
    """Runs of attribute words ending in a shape noun (or object/thing) → attribute dicts, in order."""
    tokens = caption.split()
    out, run = [], {}
    for tok in tokens:
        if tok in GENERIC_NOUNS:
            out.append(dict(run))
            run = {}
        elif tok in WORDS:
            attr, value = WORDS[tok]
            run[attr] = value
            if attr == "shape":
                out.append(dict(run))
                run = {}
        else:
            run = {}
    return out


def test_layout_passes_check_and_readers(synth: Path) -> None:
    for name in (
        "change_captions.json",
        "no_change_captions.json",
        "splits.json",
        "type_mapping.json",
        "scenes.json",
    ):
        assert (synth / name).exists(), name
    assert (synth / "images" / "CLEVR_default_000000.png").exists()
    assert (synth / "sc_images" / "CLEVR_semantic_000007.png").exists()
    assert (synth / "nsc_images" / "CLEVR_nonsemantic_000029.png").exists()
    report = check_dataset(synth, "clevr")
    assert report.ok, report.problems
    assert main(["data", "check", str(synth), "--dataset", "clevr"]) == 0
    splits = json.loads((synth / "splits.json").read_text())
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == list(range(N_SCENES))
    assert len(splits["val"]) == len(splits["test"]) == 3
    pairs = load_pairs(synth, "clevr", "all")
    assert len(pairs) == 2 * N_SCENES
    with Image.open(pairs[0].before) as im:
        assert im.size == (128, 96)


def test_change_types_balanced(synth: Path) -> None:
    mapping = json.loads((synth / "type_mapping.json").read_text())
    assert sorted(mapping) == sorted(CHANGE_TYPES)
    assert {t: len(v) for t, v in mapping.items()} == {t: N_SCENES // 5 for t in CHANGE_TYPES}
    scenes = load_scenes(synth)
    for t, ids in mapping.items():
        assert all(scenes[str(i)]["change"]["type"] == t for i in ids)
    # any 5 consecutive scenes from a block boundary cover all types
    assert sorted(change_type_for(i, 11) for i in range(10, 15)) == sorted(CHANGE_TYPES)


def test_scenes_json_schema_and_change_boxes(synth: Path) -> None:
    scenes = load_scenes(synth)
    assert len(scenes) == N_SCENES
    for scene in scenes.values():
        ch = scene["change"]
        objs = scene["objects"]
        assert 3 <= len(objs) <= 7
        for o in objs:
            assert set(o) >= {"shape", "color", "material", "size", "position", "box"}
            assert len(o["position"]) == 3
            for key in ("before", "after", "distractor"):
                b = o["box"][key]
                if b is not None:
                    assert 0 <= b[0] < b[2] <= 128 and 0 <= b[1] < b[3] <= 96
        boxes = change_boxes(scene)
        expect = {"add": (0, 1), "drop": (1, 0)}.get(ch["type"], (1, 1))
        assert (len(boxes["before"]), len(boxes["after"])) == expect
        target = objs[ch["object"]]
        if ch["type"] == "color":
            assert ch["from"] == target["color"] != ch["to"]
        if ch["type"] == "material":
            assert {ch["from"], ch["to"]} == {"rubber", "metal"}
        if ch["type"] == "move":
            assert ch["from"] != ch["to"]


def _mask(boxes: list[list[int]], h: int, w: int, pad: float = 0.5) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        bw, bh = x1 - x0, y1 - y0
        m[
            max(0, int(y0 - pad * bh)) : int(y1 + pad * bh), max(0, int(x0 - pad * bw)) : int(x1 + pad * bw)
        ] = True
    return m


def test_change_is_localised_and_distractor_is_slight(synth: Path) -> None:
    scenes = load_scenes(synth)
    ratios, dist_ratios = [], []
    for scene in scenes.values():
        im = {k: np.asarray(Image.open(synth / p), dtype=np.float32) for k, p in scene["images"].items()}
        h, w = im["before"].shape[:2]
        cb = change_boxes(scene)
        m = _mask(cb["before"] + cb["after"], h, w)
        d = np.abs(im["after"] - im["before"]).mean(-1)
        dd = np.abs(im["distractor"] - im["before"]).mean(-1)
        ratios.append(d[m].mean() / max(d[~m].mean(), 1e-3))
        dist_ratios.append(dd[m].mean() / max(dd[~m].mean(), 1e-3))
        # the distractor differs a little, everywhere: small mean difference, no object-sized blob
        assert 0 < dd.mean() < 12, dd.mean()
        assert (dd > 60).mean() < 0.02
    ratios, dist_ratios = np.array(ratios), np.array(dist_ratios)
    # the change pair differs mainly inside the changed object's (padded) boxes
    assert np.median(ratios) > 5, ratios
    assert (ratios > 1.5).all(), ratios
    assert np.median(dist_ratios) < 2.5, dist_ratios
    assert (ratios > dist_ratios).mean() >= 0.8


def test_captions_name_the_true_attributes(synth: Path) -> None:
    scenes = load_scenes(synth)
    caps = json.loads((synth / "change_captions.json").read_text())
    nc = json.loads((synth / "no_change_captions.json").read_text())
    vocab = vocabulary()
    assert 50 <= len(vocab) <= 90, len(vocab)
    for sid, scene in scenes.items():
        key = f"CLEVR_default_{int(sid):06d}.png"
        ch = scene["change"]
        objs = scene["objects"]
        target = objs[ch["object"]]
        assert 5 <= len(caps[key]) <= 10 and len(set(caps[key])) == len(caps[key])
        assert 4 <= len(nc[key])
        for text in caps[key] + nc[key]:
            assert set(text.split()) <= vocab, text
        visible = [o for o in objs if (o["in_after"] if ch["type"] == "add" else o["in_before"])]
        for text in caps[key]:
            nps = _noun_phrases(text)
            assert nps, text
            first = nps[0]
            assert first, text
            for attr, value in first.items():
                assert target[attr] == value, (text, target)
            matching = [o for o in visible if all(o[a] == v for a, v in first.items())]
            if len(matching) > 1:  # ambiguous by attributes alone → a relation must follow
                assert re.search(
                    r"that (is|was) (behind|in front of|to the left of|to the right of) the ", text
                ), text
            if ch["type"] == "color":
                assert text.split()[-1] == ch["to"]
            if ch["type"] == "material":
                assert WORDS[text.split()[-1]] == ("material", ch["to"])


def test_parse_change_caption_inverts_the_generator(synth: Path) -> None:
    from clip4idc.evaluation.probes import _naming_weights, retrieval_ceiling

    scenes = load_scenes(synth)
    pairs = [p for split in ("train", "val", "test") for p in load_pairs(synth, "clevr", split)]
    relational = texts = 0
    for pair in pairs:
        if pair.change_type == "no_change":
            assert all(parse_change_caption(text) is None for text in pair.captions), pair.captions
            continue
        scene = scenes[pair.pair_id]
        change = scene["change"]
        to = change["to"] if change["type"] in ("color", "material") else None
        unique = _naming_weights(scene)  # the attribute subsets that single out the changed object
        for text in pair.captions:
            parsed = parse_change_caption(text)
            assert parsed is not None and (parsed.change_type, parsed.to) == (change["type"], to), text
            relational += parsed.spec is None
            texts += 1
            assert parsed.spec is None or parsed.spec in unique, (text, unique)
    assert parse_change_caption("the man in the red shirt is gone") is None  # not this generator's words
    assert texts >= 5 * N_SCENES and relational < texts / 2
    ceiling = retrieval_ceiling(load_pairs(synth, "clevr", "train"), scenes)
    assert 0.0 < ceiling["R@1"] <= ceiling["R@5"] <= ceiling["R@10"] <= 100.0


def test_deterministic_across_worker_counts(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, 6, (64, 48), seed=5, workers=1, progress=False)
    generate(b, 6, (64, 48), seed=5, workers=2, progress=False)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 6 * 3 + 5
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = tmp_path / "c"
    generate(c, 3, (64, 48), seed=6, workers=1, progress=False)
    assert (c / "images/CLEVR_default_000000.png").read_bytes() != (
        a / "images/CLEVR_default_000000.png"
    ).read_bytes()


def test_synth_cli_and_plot(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert (
        main(["data", "synth", str(out), "--pairs", "5", "--size", "64x48", "--seed", "1", "--workers", "1"])
        == 0
    )
    assert "pairs/s" in capsys.readouterr().out
    assert main(["data", "check", str(out), "--dataset", "clevr"]) == 0
    fig = plot_triples(out, [0, 1], tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 1000
    assert len(fig.axes) == 6
    assert main(["data", "synth", str(out), "--pairs", "0"]) == 2


def test_splits_are_deterministic_partitions() -> None:
    s = make_splits(100, 0, 0.1, 0.2)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (70, 10, 20)
    assert s == make_splits(100, 0, 0.1, 0.2)
    assert sorted(s["train"] + s["val"] + s["test"]) == list(range(100))
