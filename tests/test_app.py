"""The Gradio app: gradio_client against the app served on 127.0.0.1, and the handlers on bad input."""

from __future__ import annotations

import os
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image, ImageDraw

import clip4idc
from clip4idc.app import web as app_module
from clip4idc.app.models import ModelCache, load_for_app, offered_checkpoints
from clip4idc.app.web import EXAMPLES_DIR, load_examples, make_handlers

DESCRIBE_DEFAULTS = ("demo", "greedy", 3, 6, "mean over layers", False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    demo, url = app_module.serve(
        port=free_port(), block=False, quiet=True, max_file_size="1mb", concurrency=2
    )
    assert url.startswith("http://127.0.0.1:")
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(server: str) -> Client:
    return Client(server, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def handlers() -> dict:
    return make_handlers(ModelCache())


def example(kind: str) -> tuple[str, str]:
    return str(EXAMPLES_DIR / f"{kind}_before.png"), str(EXAMPLES_DIR / f"{kind}_after.png")


def describe(client: Client, before: str | None, after: str | None, **options: object) -> tuple:
    args = dict(
        zip(("checkpoint", "decoding", "beam_size", "max_words", "layer", "rollout"), DESCRIBE_DEFAULTS)
    )
    args.update(options)
    files = [handle_file(p) if p else None for p in (before, after)]
    return client.predict(*files, *args.values(), api_name="/describe")


# -- setup ----------------------------------------------------------------------------------------------


def test_offline_environment_and_examples() -> None:
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    # huggingface_hub reads these as booleans; another import may rewrite "1" as "True" (test order)
    for name in ("HF_HUB_DISABLE_TELEMETRY", "HF_HUB_OFFLINE"):
        assert os.environ[name].upper() in ("1", "ON", "YES", "TRUE"), (name, os.environ[name])
    examples = load_examples()
    assert sorted(e["change_type"] for e in examples) == sorted(
        ["color", "material", "add", "drop", "move", "none"]
    )
    assert sum(p.stat().st_size for p in EXAMPLES_DIR.iterdir()) < 1_000_000
    for e in examples:
        assert Path(e["before"]).exists() and Path(e["after"]).exists() and e["caption"]


def test_cli_and_script_expose_the_app() -> None:
    from clip4idc.cli import build_parser

    args = build_parser().parse_args(["demo", "--port", "7999"])
    assert (args.host, args.port, args.share, args.checkpoint) == (None, 7999, False, None)  # see serve()
    assert "clip4idc.app" in (Path(__file__).parents[1] / "app.py").read_text()


# -- through the server ------------------------------------------------------------------------------------


def test_caption_for_an_example_pair(client: Client) -> None:
    caption, status, words, blocks, changes, _domain, _pixels = describe(client, *example("move"))
    assert isinstance(caption, str) and caption.strip()
    assert "computed in" in status
    assert len(words) >= 1 and all(item["image"] for item in words)
    assert len(blocks) == clip4idc.get_config("demo").vision_layers  # one encoder panel per block
    assert len(changes) == len(blocks) and all(item["image"] for item in changes)  # one difference map each
    caption_beam = describe(client, *example("color"), decoding="beam search", rollout=True)[0]
    assert isinstance(caption_beam, str)


def test_domain_notice_beside_the_caption_for_a_photo_not_for_examples(
    client: Client, tmp_path: Path
) -> None:
    """Issue 26: a portrait with a red disk painted on is outside what the demo model knows, and the app says so
    beside the caption with the score and the threshold; the bundled example pairs get no notice."""
    from matplotlib import cbook

    photo = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    photo.save(tmp_path / "before.png")
    ImageDraw.Draw(photo).ellipse((200, 300, 300, 400), fill=(255, 0, 0))
    photo.save(tmp_path / "after.png")
    caption, status, *_, domain, pixels = describe(
        client, str(tmp_path / "before.png"), str(tmp_path / "after.png")
    )
    assert caption.strip() and "computed in" in status
    assert "Outside the training domain" in domain and "synthetic CLEVR-style scenes" in domain
    score = float(re.search(r"domain score is (\d+\.\d+)", domain).group(1))
    threshold = float(re.search(r"at most (\d+\.\d+)", domain).group(1))
    assert score > threshold > 1.0
    assert pixels  # the model-free pixel-difference map comes back as an image file
    for kind in ("color", "material", "add", "drop", "move", "none"):
        domain = describe(client, *example(kind))[5]
        assert "Outside" not in domain and "inside the training domain" in domain, (kind, domain)
    assert "Trained on:** synthetic CLEVR-style scenes" in client.predict("demo", api_name="/model_info")


def test_bad_upload_gets_a_message_and_the_app_keeps_serving(client: Client, tmp_path: Path) -> None:
    fake = tmp_path / "not_an_image.png"
    fake.write_text("this is text, not a PNG")
    caption, status, words, blocks, changes, _domain, _pixels = describe(client, example("add")[0], str(fake))
    assert caption == "" and words == [] and blocks == [] and changes == []
    assert "not an image" in status and "not_an_image.png" in status
    assert "missing" in describe(client, example("add")[0], None)[1]
    assert describe(client, *example("add"))[0]  # still serving


def test_upload_size_limit(client: Client, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 1_000_000
    with pytest.raises(Exception):  # noqa: B017 - the client raises whatever the upload route answers
        describe(client, example("drop")[0], str(big))
    assert describe(client, *example("drop"))[0]


def test_twenty_concurrent_requests_all_answered(client: Client) -> None:
    before, after = example("material")
    files = (handle_file(before), handle_file(after))
    args = (*files, "demo", "greedy", 3, 4, "mean over layers", False)
    jobs = [client.submit(*args, api_name="/describe") for _ in range(20)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda job: job.result(timeout=120), jobs))
    assert len(results) == 20
    assert len({r[0] for r in results}) == 1 and results[0][0]


def test_retrieval_scores_and_png_export(client: Client) -> None:
    table, status = client.predict(
        handle_file(example("add")[0]), handle_file(example("add")[1]), "demo", "a\n\nsomeone added a ball",
        api_name="/score",
    )  # fmt: skip
    assert [row[0] for row in table["data"]].count("a") == 1 and len(table["data"]) == 2
    assert (
        "Type one or more"
        in client.predict(
            handle_file(example("add")[0]), handle_file(example("add")[1]), "demo", "  ", api_name="/score"
        )[1]
    )


# -- handlers: every odd input becomes a message ----------------------------------------------------------


def _run(handlers: dict, before: object, after: object) -> tuple:
    return handlers["describe"](before, after, "demo", "greedy", 3, 3, "layer 2", False)


def test_image_modes_and_sizes(handlers: dict, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    paths = {}
    for name, img in {
        "gray": Image.fromarray(rgb[..., 0]),
        "rgba": Image.fromarray(np.dstack([rgb, np.full((60, 80), 200, np.uint8)])),
        "deep": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).convert("I;16"),
        "other_size": Image.fromarray(rgb).resize((50, 90)),
        "rgb": Image.fromarray(rgb),
    }.items():
        paths[name] = tmp_path / f"{name}.png"
        img.save(paths[name])
    caption, status, words, blocks, changes, state, _domain, _pixels = _run(
        handlers, str(paths["gray"]), str(paths["rgba"])
    )
    assert "grayscale" in status and "alpha" in status and state is not None
    assert "decoder layer 2" in status
    assert "16-bit" in _run(handlers, str(paths["deep"]), str(paths["rgb"]))[1]
    status = _run(handlers, str(paths["rgb"]), str(paths["other_size"]))[1]
    assert "different sizes" in status
    png, msg = handlers["export_png"](state)
    assert Path(png).read_bytes()[:4] == b"\x89PNG"
    assert handlers["export_png"](None)[0] is None


def test_missing_huge_and_broken_images(handlers: dict, tmp_path: Path) -> None:
    ok = str(EXAMPLES_DIR / "move_before.png")
    assert "Please upload" in _run(handlers, None, None)[1]
    assert "before image is missing" in _run(handlers, None, ok)[1]
    bomb = tmp_path / "bomb.png"
    Image.new("1", (14000, 14000)).save(bomb)  # 196 Mpx: beyond PIL's decompression-bomb limit
    status = _run(handlers, ok, str(bomb))[1]
    assert "too large" in status and "decompression" in status
    big = tmp_path / "big.png"
    Image.new("1", (7000, 7000)).save(big)  # 49 Mpx: beyond the app's own limit
    assert "megapixels" in _run(handlers, str(big), ok)[1]
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(Path(ok).read_bytes()[:300])
    assert "could not be read" in _run(handlers, ok, str(truncated))[1]
    assert "not found" in _run(handlers, ok, str(tmp_path / "gone.png"))[1]
    assert "could not be read" in _run(handlers, ok, app_module.BadUpload("bad data URL"))[1]


def test_checkpoint_picker_layouts(handlers: dict, tmp_path: Path) -> None:
    import clip4idc
    from clip4idc.network.model import TIED_KEYS
    from clip4idc.weights.formats import PAIR_KEYS

    assert "Cannot load the checkpoint" in handlers["model_info"](str(tmp_path / "nope.pt"))
    info = handlers["model_info"]("demo")
    assert "Model:" in info
    if not (clip4idc.weights.registry.WEIGHTS_DIR / "demo" / "model.safetensors").exists():
        assert "random-weight" in info
    torch.manual_seed(0)
    tiny = clip4idc.build_model(
        "demo", vision_width=64, vision_heads=2, embed_dim=64, text_width=64, text_heads=2, text_layers=1,
        decoder_heads=2, decoder_intermediate=128, resolution=64, patch=16,
    )  # fmt: skip
    state = {k: v for k, v in tiny.state_dict().items() if k not in TIED_KEYS}
    openai = {k[5:]: v for k, v in state.items() if k.startswith("clip.") and k not in PAIR_KEYS}
    torch.save(openai, tmp_path / "openai.pt")
    torch.save({k: v for k, v in state.items() if k.startswith("clip.")}, tmp_path / "adapt.bin")
    loaded = load_for_app("openai.pt", tmp_path / "openai.pt")
    assert not loaded.decoder_trained and "untrained" in loaded.notes[0]
    handlers = make_handlers(
        ModelCache(offered_checkpoints([tmp_path / "openai.pt", tmp_path / "adapt.bin"]))
    )
    assert "untrained" in handlers["model_info"]("adapt.bin")
    caption, status, words, blocks, changes, _, domain, pixels = handlers["describe"](
        str(EXAMPLES_DIR / "add_before.png"), str(EXAMPLES_DIR / "add_after.png"), "openai.pt",
        "greedy", 3, 3, "mean over layers", False,
    )  # fmt: skip
    assert "untrained" in status and len(blocks) == len(changes) == tiny.config.vision_layers
    assert domain == "" and pixels.shape[2] == 3  # an OpenAI file describes no domain: no check, no notice
    assert "not described by this checkpoint" in handlers["model_info"]("openai.pt")
