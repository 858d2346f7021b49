"""Issue 26: each model says what it knows. The domain check in the library, the CLI's notice, a folder
without statistics, and malformed statistics files (one line naming the file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import small_demo_model
from PIL import Image, ImageDraw

import clip4idc
from clip4idc.cli import main
from clip4idc.data.examples import load_examples
from clip4idc.errors import Clip4idcError
from clip4idc.explanation import explain_pair
from clip4idc.weights.domain import (
    DOMAIN_NAME,
    DomainStats,
    choose_threshold,
    domain_score,
    fit_domain,
    pair_scores,
    patch_embeddings,
    read_domain,
    save_domain,
)


@pytest.fixture(scope="module")
def photo_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The issue's pair: matplotlib's portrait, and the same with a red disk painted on."""
    from matplotlib import cbook

    folder = tmp_path_factory.mktemp("photo")
    photo = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    photo.save(folder / "before.png")
    ImageDraw.Draw(photo).ellipse((200, 300, 300, 400), fill=(255, 0, 0))
    photo.save(folder / "after.png")
    return str(folder / "before.png"), str(folder / "after.png")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small saved model folder with no domain statistics."""
    tiny = small_demo_model()
    folder = tmp_path_factory.mktemp("tiny") / "model"
    clip4idc.save_pretrained(tiny, folder)
    return folder


def test_bundled_model_knows_its_domain() -> None:
    model = clip4idc.load("demo")
    assert model.domain is not None and "synthetic CLEVR-style scenes" in model.domain.description
    assert model.domain.threshold > 1.0 and model.domain.mean.shape == (model.config.vision_width,)
    bundled = clip4idc.weights.registry.WEIGHTS_DIR / "demo" / DOMAIN_NAME
    assert bundled.stat().st_size < 300_000  # the bundled folder stays small


def test_cli_notice_on_stderr_for_a_photo_and_none_for_the_examples(photo_pair, capsys) -> None:
    assert main(["caption", *photo_pair]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 1  # stdout keeps just the caption
    assert err.startswith("notice: ") and "outside what the model knows" in err and "domain score is" in err
    assert "synthetic CLEVR-style scenes" in err and len(err.strip().splitlines()) == 1
    for ex in load_examples():
        assert main(["caption", ex["before"], ex["after"]]) == 0
        out, err = capsys.readouterr()
        assert out.strip() and err == "", (ex["name"], err)


def test_python_api_scores_the_pair(photo_pair) -> None:
    model = clip4idc.load("demo")
    outside = clip4idc.domain_score(model, *photo_pair)
    assert outside is not None and not outside.inside and outside.score > outside.threshold
    assert outside.notice() and "OUTSIDE" in outside.summary()
    ex = load_examples()[0]
    inside = domain_score(model, ex["before"], ex["after"])
    assert inside is not None and inside.inside and inside.notice() is None and inside.score < 2.0
    result = explain_pair(model, *photo_pair, max_words=4)
    assert result.domain is not None and result.domain.score == pytest.approx(outside.score, rel=1e-4)


def test_folder_without_statistics_skips_the_check(tiny_folder: Path, photo_pair, capsys) -> None:
    model = clip4idc.load(tiny_folder)
    assert model.domain is None and domain_score(model, *photo_pair) is None
    assert explain_pair(model, *photo_pair, max_words=3).domain is None
    assert main(["caption", *photo_pair, "--checkpoint", str(tiny_folder), "--max-words", "3"]) == 0
    assert capsys.readouterr().err == ""


def test_fit_threshold_and_round_trip(tiny_folder: Path, tmp_path: Path) -> None:
    """Statistics fitted on grey scenes flag coloured noise, survive a save and reload, and the threshold
    lies in the gap between held-out in-domain and out-of-domain scores."""
    model = clip4idc.load(tiny_folder)
    g = torch.Generator().manual_seed(0)
    grey = lambda n: (torch.randn(n, 3, 64, 64, generator=g) * 0.05).clamp(-2, 2)  # noqa: E731
    fit = torch.cat([patch_embeddings(model, grey(16), grey(16))])
    stats = fit_domain(fit, "grey frames")
    inside = pair_scores(model, stats, grey(16), grey(16)).tolist()
    outside = pair_scores(model, stats, torch.randn(16, 3, 64, 64, generator=g), grey(16)).tolist()
    assert max(inside) < min(outside)
    threshold = choose_threshold(inside, outside, 0.0)
    assert max(inside) < threshold < min(outside)
    assert choose_threshold([1.0, 2.0], [8.0], 0.0) == pytest.approx(4.0)  # geometric middle of the gap
    folder = tmp_path / "model"
    clip4idc.save_pretrained(model, folder)
    save_domain(DomainStats("grey frames", threshold, stats.mean, stats.covariance, stats.typical), folder)
    loaded = clip4idc.load(folder)
    assert loaded.domain.description == "grey frames" and loaded.domain.threshold == pytest.approx(threshold)
    assert torch.allclose(loaded.domain.covariance, stats.covariance)
    check = domain_score(loaded, torch.randn(1, 3, 64, 64, generator=g), grey(1))
    assert check is not None and not check.inside


def _bad_files(folder: Path) -> dict[str, tuple[bytes | None, str]]:
    from safetensors.torch import save

    good = read_domain(clip4idc.weights.registry.WEIGHTS_DIR / "demo")
    meta = {
        "format": "clip4idc-domain/1",
        "description": "x",
        "threshold": "4",
        "typical": "1",
        "quantile": "0.25",
    }
    tensors = {"patch_embedding.mean": good.mean, "patch_embedding.covariance": good.covariance}
    return {
        "garbage": (b"\x00\x01 not safetensors", "not a readable safetensors file"),
        "empty": (b"", "not a readable safetensors file"),
        "nan threshold": (save(tensors, {**meta, "threshold": "nan"}), "must be positive numbers"),
        "no description": (save(tensors, {**meta, "description": " "}), "without a description"),
        "wrong format": (save(tensors, {**meta, "format": "other"}), "not a domain statistics file"),
        "no covariance": (save({"patch_embedding.mean": good.mean}, meta), "lack patch_embedding.mean"),
        "not positive definite": (
            save({**tensors, "patch_embedding.covariance": -good.covariance}, meta),
            "not positive definite",
        ),
        "other width": (
            save({"patch_embedding.mean": good.mean[:8], "patch_embedding.covariance": torch.eye(8)}, meta),
            "do not fit this model",
        ),
    }


def test_malformed_statistics_give_one_line_naming_the_file(
    tiny_folder: Path, tmp_path: Path, capsys
) -> None:
    import shutil

    from clip4idc.app.models import ModelCache, offered_checkpoints
    from clip4idc.app.web import make_handlers

    folder = tmp_path / "demo_copy"
    shutil.copytree(clip4idc.weights.registry.WEIGHTS_DIR / "demo", folder)
    ex = load_examples()[0]
    for name, (data, problem) in _bad_files(folder).items():
        (folder / DOMAIN_NAME).write_bytes(data)
        with pytest.raises(Clip4idcError, match=problem) as err:
            clip4idc.load(folder)
        assert str(err.value).startswith(f"{folder / DOMAIN_NAME}: "), name
        assert main(["caption", ex["before"], ex["after"], "--checkpoint", str(folder)]) == 2
        out, printed = capsys.readouterr()
        assert out == "" and printed == f"error: {err.value}\n", name  # one line, never a traceback
    info = make_handlers(ModelCache(offered_checkpoints([folder])))["model_info"](folder.name)
    assert "Cannot load the checkpoint" in info and DOMAIN_NAME in info
