"""Stage-1 rewrites: reversed add ↔ drop twins (items, batches that keep twins together), counterfactual
changes and attribute swaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clip4idc.data import AdaptationDataset, load_pairs
from clip4idc.data.rewrite import (
    counterfactual_captions,
    reference_of,
    reverse_caption,
    reversible,
)
from clip4idc.data.synthetic import generate
from clip4idc.evaluation.change_types import classify_change
from clip4idc.training.config import AdaptOptions
from clip4idc.training.train import Dist, GlobalBatchSampler, TrainConfig


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_rev")
    generate(out, 40, (64, 48), seed=5, workers=1, val_frac=0.0, test_frac=0.0, progress=False)
    return out


def test_reverse_caption_swaps_the_change_and_keeps_the_object():
    rng = np.random.default_rng(0)
    add = "a new small green rubber block that is to the left of the red ball was placed in the scene"
    drop = reverse_caption(add, "add", rng)
    assert classify_change(drop) == "drop"
    assert reference_of(drop, "drop") == "small green rubber block that was to the left of the red ball"
    back = reverse_caption(drop, "drop", rng)
    assert classify_change(back) == "add"
    assert reference_of(back, "add") == reference_of(add, "add")
    assert reverse_caption("the big sphere is gone", "drop", rng).count("big sphere") == 1


def test_unknown_wording_and_other_changes_get_no_twin():
    rng = np.random.default_rng(0)
    assert reverse_caption("the cube was teleported away", "drop", rng) is None
    assert reverse_caption("the red cube moved", "move", rng) is None
    assert not reversible(["someone added a red cube", "a cube arrived"], "add")
    assert not reversible([], "add")


def test_every_generated_add_drop_pair_is_reversible(synth):
    pairs = [p for p in load_pairs(synth, "clevr", "train") if p.change_type in ("add", "drop")]
    assert pairs
    assert all(reversible(p.captions, p.change_type) for p in pairs)


def test_twin_items_are_the_pair_backwards_with_the_opposite_caption(synth):
    pairs = load_pairs(synth, "clevr", "train")
    plain = AdaptationDataset(pairs, train=True, resolution=32, max_words=24)
    ds = AdaptationDataset(pairs, train=True, resolution=32, max_words=24, reverse_twins=True)
    n = len(ds.pairs)
    assert len(plain) == n and plain.batch_groups() is None
    assert len(ds.twins) == sum(p.change_type in ("add", "drop") for p in ds.pairs) > 0
    assert len(ds) == n + len(ds.twins)
    groups = ds.batch_groups()
    assert sorted(i for g in groups for i in g) == list(range(len(ds)))
    for k, base in enumerate(ds.twins):
        pair, twin = ds.pairs[base], ds[n + k]
        assert torch.equal(twin["before"], ds.images.tensor(pair.after))
        assert torch.equal(twin["after"], ds.images.tensor(pair.before)) or torch.equal(
            twin["after"], ds.images.tensor(pair.distractor)
        )
        text = ds.tokenizer.caption_text(twin["text_ids"]).replace("<|startoftext|>", "").strip()
        assert classify_change(text) == {"add": "drop", "drop": "add"}[pair.change_type], text
    # Evaluation never gets twins.
    assert len(AdaptationDataset(pairs, train=False, resolution=32, reverse_twins=True)) == n


def test_sampler_keeps_groups_adjacent_and_is_unchanged_without_them():
    groups = [[0, 10], [1], [2, 11], [3], [4, 12], [5], [6], [7], [8, 13], [9]]
    s = GlobalBatchSampler(14, 4, Dist(), 1, seed=3, groups=groups)
    order = [i for batch in s for i in batch]
    assert len(order) == 12 and len(set(order)) == 12  # 3 full batches of 4; the rest waits for next epoch
    for twin in (g for g in groups if len(g) == 2):
        if twin[0] in order[:-1]:
            assert order[order.index(twin[0]) + 1] == twin[1]
    # Without groups the order is the plain permutation it always was (earlier runs stay reproducible).
    plain = [i for batch in GlobalBatchSampler(14, 4, Dist(), 1, seed=3) for i in batch]
    g = torch.Generator().manual_seed(3 * 100_003)
    assert plain == torch.randperm(14, generator=g).tolist()[:12]


def test_reverse_twins_is_for_stage_1_only():
    with pytest.raises(ValueError, match="reverse_twins, type_negatives and unchanged_negatives"):
        TrainConfig(stage="finetune", adapt=AdaptOptions(reverse_twins=True))
    with pytest.raises(ValueError, match="are for stage adapt"):
        TrainConfig(stage="finetune", adapt=AdaptOptions(type_negatives=2))
    assert TrainConfig(stage="adapt", adapt=AdaptOptions(reverse_twins=True)).adapt.reverse_twins


def test_direction_accuracy_scores_an_oracle_and_an_anti_oracle(synth, monkeypatch):
    """Pair embeddings equal to the true captions' embeddings score 100 %, equal to the reversed ones 0 %."""
    import clip4idc
    from clip4idc.evaluation.probes import direction_accuracy
    from clip4idc.network import inference as inference

    pairs = load_pairs(synth, "clevr", "train")
    chosen = [p for p in pairs if p.change_type in ("add", "drop")]
    model = clip4idc.build_model("tiny").eval()
    rng = np.random.default_rng(0)
    forward = [p.captions[0] for p in chosen]
    backward = [reverse_caption(c, p.change_type, rng) for c, p in zip(forward, chosen)]
    for texts, expected in ((forward, 100.0), (backward, 0.0)):
        oracle = inference.encode_texts(model, texts, 24)
        monkeypatch.setattr(inference, "encode_pairs", lambda *a, oracle=oracle, **k: oracle)
        res = direction_accuracy(model, pairs, max_words=24, seed=0)
        assert res["all"] == {"accuracy": expected, "n": len(chosen)}
        assert res["add"]["n"] == sum(p.change_type == "add" for p in chosen)
    with pytest.raises(ValueError, match="add/drop pairs"):
        direction_accuracy(model, [p for p in pairs if p.change_type == "move"])


def test_counterfactuals_name_the_same_object_with_other_changes(synth):
    rng = np.random.default_rng(0)
    pairs = [p for p in load_pairs(synth, "clevr", "train") if p.change_type != "no_change"]
    assert {p.change_type for p in pairs} == {"color", "material", "add", "drop", "move"}
    for p in pairs:
        ref = reference_of(p.captions[0], p.change_type)
        assert ref is not None, p.captions[0]
        negatives = counterfactual_captions(p.captions[0], p.change_type, 4, rng)
        types = [classify_change(c) for c in negatives]
        assert sorted(types) == sorted(
            t for t in ("color", "material", "add", "drop", "move") if t != p.change_type
        )
        for c, t in zip(negatives, types):
            other = reference_of(c, t)
            assert other is not None and other.split(" that ")[0] == ref.split(" that ")[0], (c, ref)
    assert counterfactual_captions("the cube went on holiday", "move", 2, rng) == []
    assert len(counterfactual_captions(pairs[0].captions[0], pairs[0].change_type, 2, rng)) == 2


def test_type_negative_items(synth):
    pairs = load_pairs(synth, "clevr", "train")
    ds = AdaptationDataset(
        pairs, train=True, resolution=32, max_words=24, reverse_twins=True, type_negatives=3
    )
    plain = AdaptationDataset(pairs, train=True, resolution=32, max_words=24, reverse_twins=True)
    for i in (0, len(ds.pairs)):  # a forward pair and a reversed twin
        item, same = ds[i], plain[i]
        assert item["neg_text_ids"].shape == (3, 24) and item["neg_valid"].all()
        assert torch.equal(item["text_ids"], same["text_ids"])  # the extra draws come after the old ones
        assert torch.equal(item["before"], same["before"]) and torch.equal(item["after"], same["after"])
    assert "neg_text_ids" not in AdaptationDataset(pairs, train=False, resolution=32, type_negatives=3)[0]
    with pytest.raises(ValueError, match="type_negatives must be 0-4"):
        TrainConfig(stage="adapt", adapt=AdaptOptions(type_negatives=5))


def test_unchanged_negative_items(synth):
    """Each item (forward pair or reversed twin) also carries its scene unchanged: the before image and the
    distractor, in either order; the other fields are those the option-less dataset gives."""
    pairs = load_pairs(synth, "clevr", "train")
    ds = AdaptationDataset(
        pairs, train=True, resolution=32, max_words=24, reverse_twins=True, unchanged_negatives=True
    )
    plain = AdaptationDataset(pairs, train=True, resolution=32, max_words=24, reverse_twins=True)
    orders = set()
    for i in list(range(len(ds.pairs))) + [len(ds.pairs)]:
        item, same = ds[i], plain[i]
        for key in ("before", "after", "text_ids"):
            assert torch.equal(item[key], same[key])
        pair = ds.pairs[ds.twins[i - len(ds.pairs)]] if i >= len(ds.pairs) else ds.pairs[i]
        before, distractor = ds.images.tensor(pair.before), ds.images.tensor(ds.distractor_of(pair)[0])
        assert not torch.equal(before, distractor)
        if torch.equal(item["still_before"], before):
            assert torch.equal(item["still_after"], distractor)
            orders.add("before first")
        else:
            assert torch.equal(item["still_before"], distractor) and torch.equal(item["still_after"], before)
            orders.add("distractor first")
    assert orders == {"before first", "distractor first"}
    assert (
        "still_before"
        not in AdaptationDataset(pairs, train=False, resolution=32, unchanged_negatives=True)[0]
    )
    with pytest.raises(ValueError, match="unchanged_negatives are for stage adapt"):
        TrainConfig(stage="finetune", adapt=AdaptOptions(unchanged_negatives=True))


def test_counterfactual_accuracy_scores_an_oracle_and_an_anti_oracle(synth, monkeypatch):
    import clip4idc
    from clip4idc.evaluation.probes import counterfactual_accuracy
    from clip4idc.network import inference as inference

    pairs = load_pairs(synth, "clevr", "train")
    chosen = [p for p in pairs if p.change_type != "no_change"]
    model = clip4idc.build_model("tiny").eval()
    rng = np.random.default_rng(0)
    first_rewrite = [counterfactual_captions(p.captions[0], p.change_type, 4, rng)[0] for p in chosen]
    for texts, expected in (([p.captions[0] for p in chosen], 100.0), (first_rewrite, 0.0)):
        oracle = inference.encode_texts(model, texts, 24)
        monkeypatch.setattr(inference, "encode_pairs", lambda *a, oracle=oracle, **k: oracle)
        res = counterfactual_accuracy(model, pairs, max_words=24, seed=0)
        assert res["all"] == {"accuracy": expected, "n": len(chosen)}
        assert set(res) == {"color", "material", "add", "drop", "move", "all"}
    with pytest.raises(ValueError, match="synthetic-template captions"):
        counterfactual_accuracy(model, [p for p in pairs if p.change_type == "no_change"])


def test_detection_accuracy_scores_an_oracle_and_an_anti_oracle(synth, monkeypatch):
    """Change pairs embedded as their captions and unchanged scenes as anything else score 100 %; the other
    way round 0 %. Only change pairs with a distractor count."""
    import clip4idc
    from clip4idc.evaluation.probes import detection_accuracy
    from clip4idc.network import inference as inference

    pairs = load_pairs(synth, "clevr", "train")
    chosen = [p for p in pairs if p.change_type != "no_change"]
    model = clip4idc.build_model("tiny").eval()
    captions = inference.encode_texts(model, [p.captions[0] for p in chosen], 24)
    other = inference.encode_texts(model, ["a purple giraffe"] * len(chosen), 24)
    for first, second, expected in ((captions, other, 100.0), (other, captions, 0.0)):
        returns = iter([first, second])  # the change pairs, then the same scenes unchanged
        monkeypatch.setattr(inference, "encode_pairs", lambda *a, returns=returns, **k: next(returns))
        res = detection_accuracy(model, pairs, max_words=24)
        assert res["all"] == {"accuracy": expected, "n": len(chosen)}
        assert set(res) == {"color", "material", "add", "drop", "move", "all"}
    with pytest.raises(ValueError, match="distractor"):
        detection_accuracy(model, [p for p in pairs if p.change_type == "no_change"])


def test_detection_accuracy_encodes_the_scene_unchanged(synth, monkeypatch):
    """The second set of pairs it encodes is each change pair's before image with its distractor."""
    import clip4idc
    from clip4idc.data.datasets import ImageCache
    from clip4idc.evaluation.probes import detection_accuracy
    from clip4idc.network import inference as inference

    pairs = [p for p in load_pairs(synth, "clevr", "train") if p.change_type != "no_change"][:3]
    model = clip4idc.build_model("tiny").eval()
    seen = []

    def spy(model, dataset, *args, **kwargs):
        seen.append([(dataset[i]["before"], dataset[i]["after"]) for i in range(len(dataset))])
        return torch.randn(len(dataset), model.config.embed_dim)

    monkeypatch.setattr(inference, "encode_pairs", spy)
    detection_accuracy(model, pairs, max_words=24)

    images = ImageCache(model.config.resolution)
    for (bef, aft), p in zip(seen[1], pairs):
        assert torch.equal(bef, images.tensor(p.before)) and torch.equal(aft, images.tensor(p.distractor))
    for (bef, aft), p in zip(seen[0], pairs):
        assert torch.equal(bef, images.tensor(p.before)) and torch.equal(aft, images.tensor(p.after))
