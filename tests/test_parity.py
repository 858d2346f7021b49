"""Acceptance test: the original CLIP4IDC's outputs, reproduced through the public loader.

The fixture's weights are written to a ``.bin`` file, as a released checkpoint would be, and loaded with
``clip4idc.load``; the architecture comes from the fixture's ``config``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

import clip4idc
from clip4idc.network.decoding import beam_search, greedy_decode, greedy_decode_reference
from clip4idc.network.model import caption_loss, contrastive_loss

TOL = {"rtol": 1e-4, "atol": 1e-4}
FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "parity"


def load_fixture_model(parity, tmp_path):
    path = tmp_path / "pytorch_model.bin.clevr"
    torch.save(parity["state_dict"], path)
    return clip4idc.load(path, config=dict(parity["config"]))


def assert_close(actual, expected, name):
    diff = (actual.float() - expected.float()).abs().max().item()
    assert torch.allclose(actual.float(), expected.float(), **TOL), f"{name}: max |diff| {diff:.3g}"


def test_parity_all_outputs(parity, tmp_path):
    model = load_fixture_model(parity, tmp_path)
    assert model.load_layout == "clip4idc"
    inp, out, cfg = parity["inputs"], parity["outputs"], parity["config"]
    assert model.config.max_words == cfg["max_words"]
    with torch.no_grad():
        pair = model.encode_pair(inp["bef_image"], inp["aft_image"])
        assert_close(pair.hidden, out["visual_hidden"], "visual_hidden")
        assert_close(pair.pooled, out["visual_pooled"], "visual_pooled")
        text_pooled, text_hidden = model.encode_text(inp["input_ids"])
        assert_close(text_hidden, out["text_hidden"], "text_hidden")
        assert_close(text_pooled, out["text_pooled"], "text_pooled")
        logits = model.retrieval_logits(text_pooled, pair.pooled)
        assert_close(logits, out["retrieval_logits"], "retrieval_logits")
        assert_close(contrastive_loss(logits), out["loss_retrieval_train"], "loss_retrieval")
        assert_close(contrastive_loss(logits), out["loss_retrieval_from_eval_logits"], "loss_retrieval_eval")
        dec = model.caption_logits(pair.hidden, inp["input_caption_ids"], inp["decoder_mask"])
        assert_close(dec, out["decoder_logits"], "decoder_logits")
        assert_close(
            caption_loss(dec, inp["output_caption_ids"]), out["loss_caption_from_eval_logits"], "loss_cap"
        )


def test_parity_training_losses(parity, tmp_path):
    """Train-mode forward with dropout 0 gives the original's train-mode losses."""
    model = load_fixture_model(parity, tmp_path)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.train()
    inp, out = parity["inputs"], parity["outputs"]
    with torch.no_grad():
        loss_c = model.caption_loss(
            inp["bef_image"],
            inp["aft_image"],
            inp["input_caption_ids"],
            inp["output_caption_ids"],
            inp["decoder_mask"],
        )
        loss_r = model.retrieval_loss(inp["bef_image"], inp["aft_image"], inp["input_ids"])
    assert_close(loss_c, out["loss_caption_train"], "loss_caption_train")
    assert_close(loss_r, out["loss_retrieval_train"], "loss_retrieval_train")


def test_parity_greedy_and_beam(parity, tmp_path):
    model = load_fixture_model(parity, tmp_path)
    inp, out = parity["inputs"], parity["outputs"]
    steps = parity["config"]["max_words"]
    tok = clip4idc.default_tokenizer()
    with torch.no_grad():
        hidden = model.encode_pair(inp["bef_image"], inp["aft_image"]).hidden
        fast = greedy_decode(model.decoder, hidden, steps, stop_at_eot=False)
        slow = greedy_decode_reference(model.decoder, hidden, steps)
        generated = model.generate(inp["bef_image"], inp["aft_image"])
        beam = beam_search(model.decoder, hidden, steps, beam_size=1)
    assert torch.equal(fast, out["greedy_ids"])
    assert torch.equal(slow, out["greedy_ids"])
    assert [tok.caption_text(r) for r in fast] == out["greedy_text"]
    assert [tok.caption_text(r) for r in generated] == out["greedy_text"]
    lengths = out["beam1_lengths"].tolist()
    assert [row[:n].tolist() for row, n in zip(beam, lengths)] == out["beam1_ids"]
    assert all(int(row[n:].abs().sum()) == 0 for row, n in zip(beam, lengths))


def test_parity_fp16_checkpoint(parity, tmp_path):
    """Released files hold fp16 CLIP weights; they load (cast to fp32) and stay within fp16 error."""
    half = {}
    for key, value in parity["state_dict"].items():
        is_half = key.startswith("clip.") and (
            key.endswith(("in_proj_weight", "in_proj_bias", "conv1.weight", "visual.proj", "text_projection"))
            or ".out_proj." in key
            or ".mlp." in key
        )
        half[key] = value.half() if is_half else value
    path = tmp_path / "pytorch_model.bin.spot"
    torch.save(half, path)
    model = clip4idc.load(path, config=dict(parity["config"]))
    inp, out = parity["inputs"], parity["outputs"]
    with torch.no_grad():
        pooled = model.encode_pair(inp["bef_image"], inp["aft_image"]).pooled
    assert (pooled - out["visual_pooled"]).abs().max() < 2e-2
    assert model.clip.visual.conv1.weight.dtype == torch.float32


def test_config_inferred_from_shapes(parity):
    cfg = clip4idc.infer_config(parity["state_dict"], intra_layers=parity["config"]["intra_layers"])
    for key in (
        "vision_width",
        "vision_layers",
        "patch",
        "resolution",
        "embed_dim",
        "text_width",
        "text_layers",
        "context_length",
        "vocab_size",
        "decoder_layers",
        "decoder_intermediate",
        "vision_heads",
        "text_heads",
    ):
        assert getattr(cfg, key) == parity["config"][key], key


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_screened_argmax_is_exact(dtype):
    """The screened greedy head (int8 screen for a few states, bf16 for more) returns the fp32 argmax of
    the head's own weights, first index on ties, at any scale, also with an outlier word whose int8
    step is coarse."""
    from clip4idc.network.decoding import ScreenedArgmax

    g = torch.Generator().manual_seed(0)
    for scale in (0.02, 1.0, 30.0):
        weight = (torch.randn(5000, 64, generator=g) * scale).to(dtype)
        weight[123, 5] = 40 * scale  # one large weight: that word's quantisation error is large
        bias = torch.randn(5000, generator=g).to(dtype)
        for states in (torch.randn(33, 64, generator=g) * scale, weight[120:130].float() * 3):
            states = states.to(dtype)
            head = ScreenedArgmax(weight, bias)
            want = torch.nn.functional.linear(states.float(), weight.float(), bias.float()).argmax(1)
            assert torch.equal(head(states), want)  # bf16 screen
            for i in range(0, states.shape[0], 3):  # int8 screen: up to ScreenedArgmax.INT8_ROWS states
                assert torch.equal(head(states[i : i + 3]), want[i : i + 3])
    weight[7], bias[7], bias[4000] = weight[4000], 1e7, 1e7  # two identical best words: the first wins
    head = ScreenedArgmax(weight, bias)
    assert head(states).tolist() == head(states[:2]).tolist() + [7] * 8 == [7] * 10


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quick_gelu_inference_path_is_bit_identical(dtype):
    from clip4idc.network.clip import QuickGELU

    x = torch.randn(4, 7, 96).to(dtype)
    original = x.clone()
    with torch.no_grad():
        fast = QuickGELU()(x)
    assert torch.equal(x, original)  # the in-place steps leave the input alone
    assert torch.equal(fast, x * torch.sigmoid(1.702 * x))
    g = x.float().requires_grad_()
    QuickGELU()(g).sum().backward()  # training keeps the autograd-friendly form
    assert g.grad is not None


def test_repository_fixture_is_the_recorded_one():
    """The fixture in the repository is byte for byte the file that its README describes."""
    recorded = re.findall(r"sha256\s+`([0-9a-f]{64})`", (FIXTURE_DIR / "README.md").read_text())
    assert len(recorded) == 1, "fixtures/parity/README.md must record one sha256"
    data = (FIXTURE_DIR / "tiny_a.pt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == recorded[0]
