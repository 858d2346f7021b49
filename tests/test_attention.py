"""Attention maps (clip4idc.explanation): shapes for several grids, distributions, rollout, rendering, pointing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import clip4idc
from clip4idc import explanation as A
from clip4idc.explanation import pointing
from clip4idc.network.inference import retrieval_scores
from clip4idc.tokenizer import SOT_ID, default_tokenizer

TINY = dict(
    vision_width=64,
    vision_layers=3,
    intra_layers=2,
    vision_heads=2,
    embed_dim=64,
    text_width=64,
    text_layers=1,
    text_heads=2,
    decoder_layers=2,
    decoder_heads=2,
    decoder_intermediate=128,
    max_words=8,
)


def tiny_model(resolution: int, patch: int, **extra: object) -> clip4idc.CLIP4IDC:
    torch.manual_seed(0)
    return clip4idc.build_model("demo", **{**TINY, "resolution": resolution, "patch": patch, **extra}).eval()


def images(seed: int = 0, size: tuple[int, int] = (80, 60)) -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(seed)
    w, h = size
    return tuple(Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for _ in range(2))


@pytest.mark.parametrize("resolution,patch", [(48, 16), (64, 16), (80, 16), (112, 16)])
def test_encoder_maps_shapes_and_distributions(resolution: int, patch: int) -> None:
    model = tiny_model(resolution, patch)
    g = resolution // patch
    bef, aft = images()
    for rollout in (False, True):
        maps = A.encoder_attention(model, bef, aft, rollout=rollout)
        assert maps.grid == g and maps.rollout is rollout
        assert maps.intra.shape == (2, 2, g, g)
        assert maps.joint.shape == (1, 2, 2, g, g)
        assert (maps.intra >= 0).all() and (maps.joint >= 0).all()
        np.testing.assert_allclose(maps.intra.sum(axis=(2, 3)), 1.0, atol=1e-5)
        np.testing.assert_allclose(maps.joint.sum(axis=(2, 3, 4)), 1.0, atol=1e-5)
        assert maps.num_blocks == 3
        for b in range(3):
            mb, ma = maps.block(b)
            assert mb.shape == ma.shape == (g, g)
        assert "joint" in maps.block_name(2) and "per-image" in maps.block_name(0)


def test_encoder_maps_match_raw_attention_and_rollout_definition() -> None:
    model = tiny_model(64, 16)
    bef, aft = images(1)
    b, a = clip4idc.preprocess_pairs([bef], [aft], 64)
    with torch.no_grad():
        raw = model.encode_pair(b, a, need_weights=True).attentions
    maps = A.encoder_attention(model, b[0], a[0])
    # block 0, after image: class-token row, head mean, class column dropped and renormalised
    row = raw[0][1].mean(0)[0, 1:]
    np.testing.assert_allclose(maps.intra[0, 1].ravel(), (row / row.sum()).numpy(), atol=1e-6)
    # rollout over the two per-image blocks, by hand, for the before image
    eye = torch.eye(17)
    r = [0.5 * raw[i][0].mean(0) + 0.5 * eye for i in range(2)]
    r = [m / m.sum(-1, keepdim=True) for m in r]
    rolled = (r[1] @ r[0])[0, 1:]
    roll = A.encoder_attention(model, b, a, rollout=True)
    np.testing.assert_allclose(roll.intra[1, 0].ravel(), (rolled / rolled.sum()).numpy(), atol=1e-5)


@pytest.mark.parametrize("intra", [0, 3])
def test_encoder_maps_all_joint_or_all_intra(intra: int) -> None:
    model = tiny_model(48, 16, intra_layers=intra)
    bef, aft = images(2)
    for rollout in (False, True):
        maps = A.encoder_attention(model, bef, aft, rollout=rollout)
        assert maps.intra.shape[0] == intra and maps.joint.shape[0] == 3 - intra
        if maps.joint.size:
            np.testing.assert_allclose(maps.joint.sum(axis=(2, 3, 4)), 1.0, atol=1e-5)


@pytest.mark.parametrize("resolution,patch,beam", [(48, 16, 1), (80, 16, 1), (64, 16, 3)])
def test_caption_with_attention(resolution: int, patch: int, beam: int) -> None:
    model = tiny_model(resolution, patch)
    g = resolution // patch
    bef, aft = images(3)
    res = A.caption_with_attention(model, bef, aft, beam_size=beam)
    t = len(res.token_ids)
    assert res.before_layers.shape == res.after_layers.shape == (2, t, g, g)
    assert res.cls_mass.shape == (2, t, 2)
    total = res.before_layers.sum(axis=(2, 3)) + res.after_layers.sum(axis=(2, 3)) + res.cls_mass.sum(-1)
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    assert res.before.shape == (t, g, g)
    assert sum(len(w) for w in res.word_tokens) == t
    wb, wa = res.word_maps()
    assert wb.shape == wa.shape == (len(res.words), g, g)
    assert res.word_maps(layer=1)[0].shape == wb.shape
    assert res.change_map().shape == (g, g)
    assert res.caption == model.caption(bef, aft, beam_size=beam)
    assert res.decoding == ("greedy" if beam == 1 else f"beam {beam}")


def test_greedy_maps_equal_teacher_forced_maps() -> None:
    """The beam path's teacher-forced maps are the same quantity as greedy's step-by-step maps."""
    model = tiny_model(64, 16)
    bef, aft = images(4)
    res = A.caption_with_attention(model, bef, aft)
    b, a = clip4idc.preprocess_pairs([bef], [aft], 64)
    with torch.no_grad():
        hidden = model.encode_pair(b, a).hidden
        inp = torch.tensor([[SOT_ID] + res.token_ids])
        _, crosses = model.decoder(hidden, inp, torch.ones_like(inp), return_cross_attention=True)
    cross = torch.stack([c[0, :, : len(res.token_ids)] for c in crosses]).mean(1)  # (layers, T, 2N)
    np.testing.assert_allclose(
        res.after_layers.reshape(2, len(res.token_ids), -1), cross[..., 18:], atol=1e-5
    )


def test_group_words_merges_subword_tokens() -> None:
    ids = default_tokenizer().encode("the cylinderish cube moved")
    words, groups = A.group_words(ids)
    assert words == ["the", "cylinderish", "cube", "moved"]
    assert [i for g in groups for i in g] == list(range(len(ids)))


def test_explain_pair_and_scores() -> None:
    model = tiny_model(48, 16)
    bef, aft = images(5)
    ex = A.explain_pair(model, bef, aft, max_words=4)
    assert ex.caption.caption == A.caption_with_attention(model, bef, aft, max_words=4).caption
    assert ex.encoder.intra.shape == (2, 2, 3, 3)
    scores = retrieval_scores(model, bef, aft, ["a red cube", "", "nothing changed"])
    assert len(scores) == 2 and all(np.isfinite(scores))


def test_overlay_is_a_smooth_hot_image() -> None:
    img = Image.new("RGB", (64, 48), (128, 128, 128))
    heat = np.zeros((4, 4), np.float32)
    heat[0, 3] = 1.0
    out = A.overlay(img, heat)
    assert isinstance(out, np.ndarray) and out.shape == (48, 64, 3) and out.dtype == np.uint8
    hot, cold = out[5, 58].astype(int), out[42, 5].astype(int)
    assert hot[0] > hot[2] + 50 and abs(cold - 128).max() < abs(hot - 128).max()
    assert len(np.unique(out[:, :, 0])) > 8  # upsampled smoothly, not 16 flat blocks
    pil = A.overlay(np.asarray(img), heat, as_pil=True)
    assert isinstance(pil, Image.Image) and pil.size == (64, 48)
    flat = A.overlay(img, np.zeros((4, 4)))  # an all-zero map must not divide by zero
    assert flat.shape == (48, 64, 3)


def test_plot_word_maps_png_and_panels(tmp_path) -> None:
    model = tiny_model(48, 16, max_words=3)
    bef, aft = images(6, (40, 30))
    res = A.caption_with_attention(model, bef, aft)
    path = tmp_path / "words.png"
    fig = A.plot_word_maps(res, bef, aft, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert A.figure_to_image(fig).size[0] > 0
    panels = A.word_panels(res, bef, aft.resize((50, 30)))
    assert len(panels) == len(res.words)
    for img, label in panels:
        assert img.shape[0] == 30 and img.shape[1] == 2 * 40 + 6
        assert "before" in label and "after" in label
    enc_path = tmp_path / "enc.png"
    A.plot_encoder_maps(A.encoder_attention(model, bef, aft), bef, aft, enc_path)
    assert enc_path.stat().st_size > 0


def test_after_peak_hit_and_boxes() -> None:
    heat = np.zeros((4, 4))
    heat[1, 2] = 1.0  # cell centre on a 320×240 image: x = 2.5 * 80 = 200, y = 1.5 * 60 = 90
    assert A.after_peak_hit(heat, [[180, 80, 220, 100]], (320, 240))
    assert not A.after_peak_hit(heat, [[0, 0, 100, 100]], (320, 240))
    assert A.after_peak_hit(heat, [[0, 0, 10, 10], [199, 89, 201, 91]], (320, 240))
    assert not A.after_peak_hit(heat, [], (320, 240))
    boxes = {"before": [[1, 2, 3, 4]], "after": [[5, 6, 7, 8]]}
    assert A.pointing_boxes("color", boxes) == [[5, 6, 7, 8]]
    assert A.pointing_boxes("drop", {"before": [[1, 2, 3, 4]], "after": []}) == [[1, 2, 3, 4]]
    assert A.pointing_boxes("none", boxes) == []


def test_pointing_game_on_synthetic_scenes(tmp_path) -> None:
    from clip4idc.data.synthetic import generate

    generate(tmp_path, 5, size=(64, 48), seed=3, progress=False)
    model = tiny_model(48, 16, max_words=4)
    out = A.pointing_game(model, None, tmp_path, batch_size=2)
    assert out["n"] == 5 and sum(out["counts"].values()) == 5
    assert sorted(out["captions"]) == ["0", "1", "2", "3", "4"]  # each played scene's greedy caption
    assert set(out["per_type"]) == {"color", "material", "add", "drop", "move"}
    assert all(0.0 <= v <= 100.0 for v in out["per_type"].values()) and 0.0 <= out["overall"] <= 100.0
    some = A.pointing_game(model, ["CLEVR_default_000001.png", 2, {"id": "3"}, "4_n"], tmp_path)
    assert some["n"] == 3
    from clip4idc.data import load_pairs

    pairs = load_pairs(tmp_path, "clevr", "train")
    played = A.pointing_game(model, pairs, tmp_path)
    assert played["n"] == sum(p.change_type != "no_change" for p in pairs) > 0
    with pytest.raises(clip4idc.Clip4idcError):
        A.pointing_game(model, [99], tmp_path)
    assert 0.0 < out["chance"] < 100.0
    alone = {}
    for method in ("difference", "pixels"):
        other = A.pointing_game(model, None, tmp_path, batch_size=2, method=method)
        written = other["captions"]
        assert other["n"] == 5 and other["chance"] == out["chance"] and not written
        assert 0.0 <= other["overall"] <= 100.0
        alone[method] = {k: other[k] for k in ("overall", "per_type")}
    together = A.pointing_game(model, None, tmp_path, batch_size=2, readouts=("difference", "pixels"))
    assert {k: together[k] for k in ("overall", "per_type", "n")} == {
        k: out[k] for k in ("overall", "per_type", "n")
    }
    assert together["readouts"] == alone  # the same maps, from images decoded once
    with pytest.raises(ValueError, match="readouts"):
        A.pointing_game(model, None, tmp_path, readouts=("gradient",))
    last = len(model.clip.visual.transformer.resblocks) - 1
    assert A.pointing_game(model, None, tmp_path, method="difference", block=last)["n"] == 5


def test_difference_maps_compare_the_two_images_tokens_patch_by_patch() -> None:
    """Zero for a pair of identical images; otherwise 1 - cosine of the before and after token of each patch
    at the chosen block's output, checked against running the blocks by hand."""
    model = tiny_model(48, 16)
    bef, aft = torch.randn(2, 2, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    assert np.abs(A.difference_maps(model, bef, bef)).max() < 1e-5
    visual, n = model.clip.visual, model.config.tokens_per_image
    x = visual.embed_patches(torch.stack([bef, aft], dim=1).flatten(0, 1))
    with torch.no_grad():
        for block in visual.transformer.resblocks[: model.config.intra_layers]:
            x, _ = block(x)
    x = x.view(2, 2, n, -1)
    want = 1 - torch.nn.functional.cosine_similarity(x[:, 0, 1:], x[:, 1, 1:], dim=-1).view(2, 3, 3)
    np.testing.assert_allclose(A.difference_maps(model, bef, aft), want.numpy(), rtol=1e-5, atol=1e-6)
    last = len(visual.transformer.resblocks) - 1
    assert A.difference_maps(model, bef, aft, block=last).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="block"):
        A.difference_maps(model, bef, aft, block=last + 1)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)) for _ in range(2)]
    panels = A.difference_panels(model, *images)
    assert [label.split(" (")[0] for _, label in panels] == [
        f"block {b + 1}/{last + 1}" for b in range(last + 1)
    ]
    assert all(img.shape == (30, 40, 3) and img.dtype == np.uint8 for img, _ in panels)
    assert "per-image" in panels[0][1] and "joint" in panels[-1][1]


def test_pixel_difference_maps_average_each_patch() -> None:
    bef = torch.zeros(1, 3, 48, 48)
    aft = bef.clone()
    aft[0, :, 16:32, 32:48] = 2.0  # patch row 1, column 2
    aft[0, 0, 0:16, 0:16] = 3.0  # one channel of patch (0, 0)
    want = np.zeros((1, 3, 3), dtype=np.float32)
    want[0, 1, 2], want[0, 0, 0] = 2.0, 1.0
    np.testing.assert_allclose(A.pixel_difference_maps(bef, aft, 16), want)


def test_gradient_maps_are_input_times_gradient_per_pair() -> None:
    """One pair's map is the same alone or in a batch (no cross-talk through the summed score), it is
    ⟨embedding, gradient⟩⁺ per patch (checked against a direct autograd pass), and zero without a caption."""
    model = tiny_model(48, 16)
    bef, aft = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1)).chunk(2)
    pairs = (torch.cat([bef, aft]), torch.cat([aft, bef]))
    ids = [[320, 1929, 286], [518, 3063]]
    both = A.gradient_maps(model, *pairs, ids)
    assert both.shape == (2, 2, 3, 3) and (both >= 0).all() and both.sum() > 0
    alone = A.gradient_maps(model, pairs[0][:1], pairs[1][:1], ids[:1])
    np.testing.assert_allclose(alone[0], both[0], rtol=1e-4, atol=1e-7)

    patches = (
        model.clip.visual.conv1(torch.stack([bef, aft], dim=1).flatten(0, 1)).detach().requires_grad_(True)
    )
    original = model.clip.visual.conv1.forward
    model.clip.visual.conv1.forward = lambda _x: patches
    try:
        hidden = model.encode_pair(bef, aft).hidden
    finally:
        model.clip.visual.conv1.forward = original
    inp = torch.tensor([[SOT_ID, 320, 1929]])
    logp = (
        model.decoder(hidden, inp, torch.ones_like(inp)).log_softmax(-1)[0, [0, 1, 2], [320, 1929, 286]].sum()
    )
    (grad,) = torch.autograd.grad(logp, patches)
    want = (patches * grad).sum(dim=1).clamp(min=0).detach().numpy()
    np.testing.assert_allclose(alone[0], want, rtol=1e-4, atol=1e-7)
    assert not A.gradient_maps(model, bef, aft, [[]]).any()


def test_pair_peak_hit_judges_the_peak_in_the_image_it_lies_in() -> None:
    """The peak over both maps decides the image; that image's box is the target, or the other image's
    box where the object is absent (before an add, after a drop); a tie goes to the after image."""
    size = (320, 240)  # 4 × 4 grid: cells of 80 × 60 pixels
    top_left = np.zeros((4, 4))
    top_left[0, 0] = 2.0  # centre (40, 30)
    right = np.zeros((4, 4))
    right[1, 3] = 1.0  # centre (280, 90)
    boxes = {"before": [[0, 0, 50, 50]], "after": [[250, 80, 310, 100]]}
    assert A.pair_peak_hit(top_left, right, boxes, size)  # before's peak is higher: its box
    assert not A.pair_peak_hit(
        top_left, right, {"before": [[200, 0, 320, 240]], "after": boxes["after"]}, size
    )
    assert A.pair_peak_hit(right, 3 * right, {"before": [], "after": boxes["after"]}, size)  # after wins
    assert not A.pair_peak_hit(top_left, right, {"before": [], "after": boxes["after"]}, size)  # add
    assert A.pair_peak_hit(top_left / 2, 2 * top_left, {"before": boxes["before"], "after": []}, size)  # drop
    assert A.pair_peak_hit(right, right, boxes, size)  # tie: the after image
    assert not A.pair_peak_hit(top_left, top_left, boxes, size)


def test_pointing_game_plays_both_images_and_reports_the_after_image_alone(tmp_path) -> None:
    """The overall score is pair_peak_hit on each caption's change_maps; after_image_only is after_peak_hit
    on the after map with pointing_boxes, as the game was played before it looked at both images."""
    from clip4idc.data.synthetic import change_boxes, generate, load_scenes
    from clip4idc.preprocess import load_image, preprocess_pairs

    generate(tmp_path, 6, size=(64, 48), seed=4, progress=False)
    model = tiny_model(48, 16, max_words=4)
    out = A.pointing_game(model, None, tmp_path, batch_size=4)
    scenes = load_scenes(tmp_path)
    pair_hits, after_hits = [], []
    for scene in scenes.values():
        boxes = change_boxes(scene)
        if not A.pointing_boxes(scene["change"]["type"], boxes):
            continue
        imgs = [load_image(tmp_path / scene["images"][k]) for k in ("before", "after")]
        bef, aft = preprocess_pairs([imgs[0]], [imgs[1]], model.config.resolution)
        res = A.caption_with_attention(model, bef, aft, max_words=4)
        b, a = res.change_maps()
        assert np.array_equal(a, res.change_map())
        pair_hits.append(A.pair_peak_hit(b, a, boxes, imgs[1].size))
        after_hits.append(A.after_peak_hit(a, A.pointing_boxes(scene["change"]["type"], boxes), imgs[1].size))
    assert out["n"] == len(pair_hits) > 0
    assert out["overall"] == pytest.approx(100.0 * np.mean(pair_hits))
    assert out["after_image_only"]["overall"] == pytest.approx(100.0 * np.mean(after_hits))


def test_pointing_game_plays_gradient_maps(tmp_path, monkeypatch) -> None:
    """method="gradient" plays the same pairs; a map peaked inside the changed object's box always hits."""
    from clip4idc.data.synthetic import change_boxes, generate, load_scenes

    generate(tmp_path, 4, size=(64, 48), seed=3, progress=False)
    model = tiny_model(48, 16, max_words=4)
    out = A.pointing_game(model, None, tmp_path, batch_size=2, method="gradient")
    assert out["n"] == 4 and 0.0 <= out["overall"] <= 100.0
    scenes = load_scenes(tmp_path)
    order = [
        sid for sid in scenes if A.pointing_boxes(scenes[sid]["change"]["type"], change_boxes(scenes[sid]))
    ]

    def oracle(model, before, after, token_ids):  # a pixel-sized grid, peaked at the box centre
        maps = np.zeros((before.shape[0], 2, 48, 64), dtype=np.float32)
        for b in range(before.shape[0]):
            scene = scenes[order.pop(0)]
            x0, y0, x1, y1 = A.pointing_boxes(scene["change"]["type"], change_boxes(scene))[0]
            maps[b, 1, int((y0 + y1) / 2), int((x0 + x1) / 2)] = 1.0
        return maps

    monkeypatch.setattr(pointing, "gradient_maps", oracle)
    assert A.pointing_game(model, None, tmp_path, batch_size=3, method="gradient")["overall"] == 100.0
    with pytest.raises(ValueError, match="method"):
        A.pointing_game(model, None, tmp_path, method="rollout")
