"""Checkpoint loading: OpenAI CLIP layouts at full size, our format round trip, and each bad file's error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import clip4idc
from clip4idc.errors import Clip4idcError
from clip4idc.network.model import TIED_KEYS
from clip4idc.weights.formats import PAIR_KEYS


def openai_state_dict(model: clip4idc.CLIP4IDC) -> dict:
    """A random state dict in OpenAI's ``ViT-B-32.pt`` layout (what ``CLIP.get_config`` returns)."""
    sd = {
        k[len("clip.") :]: v.clone()
        for k, v in model.state_dict().items()
        if k.startswith("clip.") and k not in PAIR_KEYS
    }
    cfg = model.config
    sd.update(input_resolution=cfg.resolution, context_length=cfg.context_length, vocab_size=cfg.vocab_size)
    return sd


@pytest.mark.parametrize("name,grid", [("ViT-B-32", 7), ("ViT-B-16", 14)])
def test_openai_layout_full_size(tmp_path, name, grid):
    torch.manual_seed(0)
    source = clip4idc.build_model(name)
    sd = openai_state_dict(source)
    path = tmp_path / f"{name}.pt"
    torch.save(sd, path)
    model = clip4idc.load(path)
    assert model.load_layout == "openai"
    assert model.config.grid == grid and model.config.name == name
    assert model.clip.visual.joint_positional_embedding.shape == (2 * (grid * grid + 1), 768)
    assert torch.equal(model.clip.visual.conv1.weight, source.clip.visual.conv1.weight)
    if name == "ViT-B-32":
        # the released caption models: 173,740,545 unique parameters, 443 state-dict keys
        assert model.num_parameters() == 173_740_545
        assert len(model.state_dict()) == 443
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32, key


def test_openai_torchscript_archive(tmp_path):
    """``ViT-B-32.pt`` is a TorchScript archive: read its tensors without unpickling Python objects."""
    source = clip4idc.build_model("demo")
    sd = {k: v for k, v in openai_state_dict(source).items() if isinstance(v, torch.Tensor)}

    class Holder(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Holder()
    for key, value in sd.items():
        *parents, leaf = key.split(".")
        node = root
        for part in parents:
            if not hasattr(node, part):
                node.add_module(part, Holder())
            node = getattr(node, part)
        node.register_parameter(leaf, nn.Parameter(value))
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.save(torch.jit.script(root), str(path))
    model = clip4idc.load(path, config="demo")
    assert model.load_layout == "openai"
    assert torch.equal(model.clip.token_embedding.weight, source.clip.token_embedding.weight)


def test_safetensors_round_trip(tmp_path):
    torch.manual_seed(1)
    model = clip4idc.build_model("demo").eval()
    clip4idc.save_pretrained(model, tmp_path / "m")
    again = clip4idc.load(tmp_path / "m")
    assert again.config == model.config
    bef, aft = torch.randn(2, 3, 128, 128), torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        a, b = model.encode_pair(bef, aft), again.encode_pair(bef, aft)
        assert torch.equal(a.hidden, b.hidden)
        assert torch.equal(model.generate(bef, aft), again.generate(bef, aft))
    # tied weights are still one tensor after loading
    assert again.decoder.classifier.cls.predictions.decoder.weight is again.clip.token_embedding.weight


def test_adaptation_stage_checkpoint(tmp_path, parity):
    stage_one = {k: v for k, v in parity["state_dict"].items() if k.startswith("clip.")}
    path = tmp_path / "adapt.bin"
    torch.save(stage_one, path)
    model = clip4idc.load(path, config=dict(parity["config"]))
    assert model.load_layout == "clip4idc-adapt"
    assert torch.equal(model.clip.visual.ln_mid.weight, parity["state_dict"]["clip.visual.ln_mid.weight"])


def _save(tmp_path, sd, name="bad.bin"):
    path = tmp_path / name
    torch.save(sd, path)
    return path


def test_bad_checkpoints(tmp_path, parity):
    cfg = dict(parity["config"])
    good = dict(parity["state_dict"])
    cases = []
    extra = dict(good, **{"clip.visual.extra_thing": torch.zeros(3)})
    cases.append((_save(tmp_path, extra, "extra.bin"), "unexpected keys: clip.visual.extra_thing"))
    missing = {k: v for k, v in good.items() if k != "clip.visual.ln_post.weight"}
    cases.append((_save(tmp_path, missing, "missing.bin"), "missing keys: clip.visual.ln_post.weight"))
    shaped = dict(good, **{"clip.visual.proj": torch.zeros(5, 5)})
    cases.append((_save(tmp_path, shaped, "shape.bin"), r"misshaped keys: clip.visual.proj \(5, 5\)"))
    untied = dict(
        good, **{"decoder.embeddings.word_embeddings.weight": good["clip.token_embedding.weight"] + 1}
    )
    cases.append((_save(tmp_path, untied, "untied.bin"), "tied entries"))
    (tmp_path / "trunc.bin").write_bytes(_save(tmp_path, good, "full.bin").read_bytes()[:5000])
    cases.append((tmp_path / "trunc.bin", "not a readable PyTorch checkpoint"))
    (tmp_path / "notes.json").write_text('{"a": 1}')
    cases.append((tmp_path / "notes.json", "not a readable PyTorch checkpoint"))
    cases.append(
        (_save(tmp_path, {"foo.weight": torch.zeros(2)}, "other.bin"), "not a CLIP or CLIP4IDC checkpoint")
    )
    cases.append((tmp_path / "absent.bin", "checkpoint not found"))
    (tmp_path / "emptydir").mkdir()
    cases.append((tmp_path / "emptydir", "no model.safetensors"))
    for path, message in cases:
        with pytest.raises(Clip4idcError, match=message) as info:
            clip4idc.load(path, config=cfg)
        text = str(info.value)
        assert text.startswith(str(path)) and "\n" not in text, text


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = _save(tmp_path, {"x": Evil()}, "evil.bin")
    with pytest.raises(Clip4idcError, match="evil.bin: not a readable PyTorch checkpoint"):
        clip4idc.load(path)


def test_state_dict_has_original_tied_keys():
    model = clip4idc.build_model("demo")
    sd = model.state_dict()
    for alias, canonical in TIED_KEYS.items():
        assert sd[alias].data_ptr() == sd[canonical].data_ptr()
