"""The clip4idc web app: upload a before and an after image, read what changed and see where the model looked.

Why it is built this way:

* **Offline.** Telemetry and hub access are switched off before gradio is imported, the theme uses the
  fonts gradio serves itself, server-side rendering (which needs Node) is off, and no share tunnel is
  opened unless ``--share`` is given.
* **Never crashes on input.** Uploads reach our code as plain file paths (see :func:`upload_image`), so a
  file that is not an image, a decompression bomb, odd modes (grayscale, RGBA, 16-bit) or a missing image
  become one clear line in the status box instead of a stack trace.
* **No logic only here.** Everything shown is computed by :mod:`clip4idc.explanation` and the model; this
  module only validates input, caches models and lays out the page.
* **Queued.** All model work shares one concurrency group, so concurrent users wait in gradio's queue
  instead of fighting for the CPU.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_SSR_MODE", "False")

import argparse  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from .. import explanation  # noqa: E402
from ..data.examples import EXAMPLES_DIR, load_examples  # noqa: E402
from ..errors import Clip4idcError  # noqa: E402
from ..network.inference import retrieval_scores  # noqa: E402
from ..preprocess import load_image  # noqa: E402
from .models import ModelCache, offered_checkpoints  # noqa: E402

MAX_PIXELS = 40_000_000  # per image; larger uploads are refused before decoding
MAX_CANDIDATES = 20  # candidate captions scored per request (each is one text-encoder pass)
MAX_CANDIDATE_CHARS = 300  # per candidate; CLIP's text encoder reads 77 tokens at most anyway


# ------------------------------------------------------------------------------------------------------
# input checking
# ------------------------------------------------------------------------------------------------------
class BadUpload(str):
    """An upload gradio could not even prepare; carries the reason to the handler."""


@dataclass
class PairInput:
    before: Image.Image
    after: Image.Image
    notes: list[str]


def _describe_name(path: str) -> str:
    return Path(path).name


def read_image(value: Any, which: str) -> tuple[Image.Image, list[str]]:
    """An uploaded file path → RGB image, with notes about conversions; problems → one-line error."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise Clip4idcError(f"The {which} image is missing: please provide both a before and an after image.")
    if isinstance(value, BadUpload):
        raise Clip4idcError(f"The {which} image could not be read: {value}")
    if isinstance(value, Image.Image):
        return load_image(value, orient=True), []
    path = str(value)
    name = _describe_name(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as probe:
                size, mode = probe.size, probe.mode
    except Image.DecompressionBombError:
        raise Clip4idcError(f"The {which} image ({name}) is too large (decompression-bomb limit).") from None
    except FileNotFoundError:
        raise Clip4idcError(f"The {which} image ({name}) was not found on the server.") from None
    except Exception:
        raise Clip4idcError(
            f"The {which} file ({name}) is not an image this app can read (PNG, JPEG, …)."
        ) from None
    if size[0] * size[1] > MAX_PIXELS:
        raise Clip4idcError(
            f"The {which} image ({name}) is too large: {size[0]}×{size[1]} pixels "
            f"(the app accepts up to {MAX_PIXELS // 1_000_000} megapixels)."
        )
    try:
        img = load_image(path, orient=True)
    except Clip4idcError as err:
        problem = str(err).split(": ", 1)[-1]
        raise Clip4idcError(f"The {which} image ({name}) could not be read: {problem}.") from None
    notes = []
    if mode not in ("RGB",):
        detail = {
            "L": "grayscale",
            "LA": "grayscale with alpha; alpha dropped",
            "RGBA": "alpha channel dropped",
            "P": "palette",
            "I;16": "16-bit, scaled to 8-bit",
            "I;16B": "16-bit, scaled to 8-bit",
            "I": "32-bit integer, scaled to 8-bit",
            "F": "floating point, scaled to 8-bit",
        }.get(mode, mode)
        notes.append(f"The {which} image was converted to RGB ({detail}).")
    return img, notes


def read_pair(before: Any, after: Any, resolution: int) -> PairInput:
    """Both images, checked; notes say what was converted or resized."""
    problems, notes, images = [], [], []
    for value, which in ((before, "before"), (after, "after")):
        try:
            img, extra = read_image(value, which)
            images.append(img)
            notes += extra
        except Clip4idcError as err:
            problems.append(str(err))
    if problems:
        if len(problems) == 2 and all("missing" in p for p in problems):
            raise Clip4idcError("Please upload a before and an after image, or pick an example pair.")
        raise Clip4idcError(" ".join(problems))
    bef, aft = images
    if bef.size != aft.size:
        notes.append(
            f"The images have different sizes ({bef.size[0]}×{bef.size[1]} and {aft.size[0]}×{aft.size[1]}); "
            f"both are resized to {resolution}×{resolution} for the model, so the maps are approximate."
        )
    return PairInput(bef, aft, notes)


def _status(lines: list[str], error: str | None = None) -> str:
    parts = [f"⚠️ **{error}**"] if error else []
    parts += [f"- {line}" for line in lines]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------------
# handlers (each one a thin call into clip4idc.explanation)
# ------------------------------------------------------------------------------------------------------
def _layer_index(choice: str | None, layers: int) -> int | None:
    if not choice or not str(choice).startswith("layer "):
        return None
    index = int(str(choice).split()[1]) - 1
    return index if 0 <= index < layers else None


def domain_line(model: Any) -> str:
    """The model's training domain, shown next to its name (the check's statistics come with the weights)."""
    stats = getattr(model, "domain", None)
    if stats is None:
        return (
            "**Trained on:** not described by this checkpoint, so pairs are not checked against its domain."
        )
    return (
        f"**Trained on:** {stats.description}. Each pair gets a domain score (about 1.0 for a typical "
        f"training pair); above {stats.threshold:.2f} the app says the pair is outside what the model knows."
    )


def domain_notice(check: explanation.PairExplanation | None) -> str:
    """The notice beside the caption: the domain check's verdict with its score and what it is compared with."""
    if check is None or check.domain is None:
        return ""
    notice = check.domain.notice()
    return f"⚠️ **Outside the training domain.** {notice}" if notice else f"✅ {check.domain.summary()}."


def make_handlers(cache: ModelCache) -> dict[str, Any]:
    """The app's callbacks, bound to one model cache (also usable without a server, e.g. in tests)."""

    def model_info(checkpoint: str) -> str:
        try:
            loaded = cache.get(checkpoint)
        except Clip4idcError as err:
            return _status([], f"Cannot load the checkpoint: {err}")
        cfg = loaded.model.config
        lines = [
            f"**Model:** {loaded.label}; {loaded.model.num_parameters() / 1e6:.1f} M parameters, "
            f"{cfg.grid}×{cfg.grid} patches per image, {cfg.intra_layers} per-image + "
            f"{cfg.vision_layers - cfg.intra_layers} joint encoder blocks, {cfg.decoder_layers} decoder layers.",
            domain_line(loaded.model),
        ]
        return "\n\n".join(lines + [f"⚠️ {n}" for n in loaded.notes])

    def describe(
        before: Any,
        after: Any,
        checkpoint: str,
        decoding: str,
        beam_size: float,
        max_words: float,
        layer: str,
        rollout: bool,
    ) -> tuple[str, str, list, list, list, dict | None, str, Any]:
        start = time.perf_counter()
        try:
            loaded = cache.get(checkpoint)
            pair = read_pair(before, after, loaded.model.config.resolution)
            beams = int(beam_size) if decoding == "beam search" else 1
            result = explanation.explain_pair(
                loaded.model, pair.before, pair.after, beams, int(max_words), rollout=bool(rollout)
            )
        except Clip4idcError as err:
            return "", _status([], str(err)), [], [], [], None, "", None
        cap = result.caption
        layer_idx = _layer_index(layer, loaded.model.config.decoder_layers)
        words = explanation.word_panels(cap, pair.before, pair.after, layer=layer_idx)
        blocks = explanation.encoder_panels(result.encoder, pair.before, pair.after, vertical=True)
        changes = explanation.difference_panels(loaded.model, pair.before, pair.after)
        pixel_map, _ = explanation.pixel_difference_panel(loaded.model, pair.before, pair.after)
        elapsed = time.perf_counter() - start
        notes = list(pair.notes) + [f"⚠️ {n}" for n in loaded.notes]
        where = "mean over decoder layers" if layer_idx is None else f"decoder layer {layer_idx + 1}"
        notes.append(
            f"{cap.decoding} decoding, {len(cap.words)} words; word maps: {where}; computed in {elapsed:.2f} s."
        )
        if not cap.words:
            notes.append("The model produced an empty caption.")
        state = {"result": cap, "before": pair.before, "after": pair.after, "layer": layer_idx}
        return cap.caption, _status(notes), words, blocks, changes, state, domain_notice(result), pixel_map

    def score(before: Any, after: Any, checkpoint: str, candidates: str) -> tuple[list[list], str]:
        try:
            loaded = cache.get(checkpoint)
            pair = read_pair(before, after, loaded.model.config.resolution)
            texts = [t.strip() for t in (candidates or "").splitlines() if t.strip()]
            if not texts:
                raise Clip4idcError("Type one or more candidate captions, one per line.")
            if len(texts) > MAX_CANDIDATES:
                raise Clip4idcError(
                    f"{len(texts)} candidate captions: the app scores at most {MAX_CANDIDATES}."
                )
            if max(len(t) for t in texts) > MAX_CANDIDATE_CHARS:
                raise Clip4idcError(f"A candidate caption is longer than {MAX_CANDIDATE_CHARS} characters.")
            scores = retrieval_scores(loaded.model, pair.before, pair.after, texts)
        except Clip4idcError as err:
            return [], _status([], str(err))
        probs = torch.tensor(scores).softmax(0).tolist()
        rows = sorted(
            ([t, round(s, 3), round(p, 3)] for t, s, p in zip(texts, scores, probs)), key=lambda r: -r[1]
        )
        return rows, _status(
            [f"{len(rows)} candidates scored by the retrieval head (higher = better match)."]
        )

    def export_png(state: dict | None) -> tuple[str | None, str]:
        if not state:
            return None, _status([], "Describe a pair first, then export its word maps.")
        fig = explanation.plot_word_maps(
            state["result"], state["before"], state["after"], layer=state["layer"]
        )
        out = Path(tempfile.mkdtemp(prefix="clip4idc_")) / "word_maps.png"
        fig.savefig(str(out), format="png")
        return str(out), _status(["Word maps saved as PNG."])

    return {"model_info": model_info, "describe": describe, "score": score, "export_png": export_png}


# ------------------------------------------------------------------------------------------------------
# page
# ------------------------------------------------------------------------------------------------------
def _path_preprocess(component: gr.Image, payload: Any) -> Any:
    """Hand the uploaded file's path to the handler unopened; see :func:`upload_image`."""
    if payload is None:
        return None
    path = getattr(payload, "path", None)
    if path:
        return str(path)
    try:
        return gr.Image.preprocess(component, payload)
    except Exception as err:  # a data: URL that is not an image, …
        return BadUpload(str(err).splitlines()[0] if str(err) else type(err).__name__)


def upload_image(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` input whose upload reaches our handler as a path, unopened: gradio's own preprocessing
    opens the file with PIL and fails with a stack trace on a non-image or a decompression bomb. The method
    is replaced on the instance (a subclass would make gradio write a ``.pyi`` stub next to this module)."""
    component = gr.Image(type="filepath", **kwargs)
    component.preprocess = types.MethodType(_path_preprocess, component)  # type: ignore[method-assign]
    return component


CSS = """
#caption textarea { font-size: 1.15rem; font-weight: 600; }
"""


def build_app(cache: ModelCache | None = None) -> gr.Blocks:
    """The Blocks page over the cache's offered checkpoints (the operator's first one is shown first).
    Call ``.queue(...)`` and ``.launch(...)`` on it (see :func:`serve`)."""
    cache = cache or ModelCache()
    names = list(cache.offered)
    default_checkpoint = names[1] if len(names) > 1 else names[0]
    h = make_handlers(cache)
    examples = load_examples()
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    with gr.Blocks(title="clip4idc: what changed?", theme=theme, css=CSS, analytics_enabled=False) as demo:
        gr.Markdown(
            "# clip4idc — what changed?\n"
            "Upload a **before** and an **after** image (or pick an example pair) and the model describes the "
            "change and shows where each word looked. Runs fully offline."
        )
        with gr.Row():
            checkpoint = gr.Dropdown(
                choices=names,
                value=default_checkpoint,
                allow_custom_value=False,
                label="Checkpoint",
                info="the bundled demo model and the checkpoints this app's operator offers",
                scale=3,
            )
            model_md = gr.Markdown(elem_id="model-info")
        with gr.Row():
            before = upload_image(label="Before", sources=["upload"], elem_id="before", height=260)
            after = upload_image(label="After", sources=["upload"], elem_id="after", height=260)
        if examples:
            gr.Examples(
                examples=[[ex["before"], ex["after"]] for ex in examples],
                inputs=[before, after],
                example_labels=[f"{ex['name']}: {ex['caption']}" for ex in examples],
                label="Example pairs (one per change type, and one with no change)",
            )
        with gr.Row():
            decoding = gr.Radio(["greedy", "beam search"], value="greedy", label="Decoding")
            beam_size = gr.Slider(2, 5, value=3, step=1, label="Beam size")
            max_words = gr.Slider(4, 32, value=20, step=1, label="Max length (tokens)")
            layer = gr.Dropdown(
                ["mean over layers", "layer 1", "layer 2", "layer 3"],
                value="mean over layers",
                label="Decoder layer for word maps",
            )
            rollout = gr.Checkbox(value=False, label="Encoder: attention rollout")
        run = gr.Button("Describe the change", variant="primary", elem_id="run")
        with gr.Row():
            with gr.Column(scale=3):
                caption = gr.Textbox(
                    label="Caption", elem_id="caption", interactive=False, lines=2, max_lines=3
                )
                domain = gr.Markdown(elem_id="domain-notice")
                status = gr.Markdown(elem_id="status")
            pixels = gr.Image(
                label="Where the pixels differ (no model: mean absolute change per patch, on the after image)",
                elem_id="pixel-map",
                interactive=False,
                height=220,
                scale=2,
            )
        words = gr.Gallery(
            label="Where each word looked: before | after, one colour scale per word (use the arrows or thumbnails)",
            elem_id="word-maps",
            preview=True,
            selected_index=0,
            columns=10,
            height=430,
            object_fit="contain",
        )
        encoder = gr.Gallery(
            label="Encoder: class-token attention per block (before above, after below)",
            elem_id="encoder-maps",
            columns=6,
            height=300,
            object_fit="contain",
        )
        changes = gr.Gallery(
            label="Where the encoder sees a change: 1 − cosine of the before and after token of each patch, per "
            "block, on the after image (the per-image blocks keep the location; the decoder reads the last block)",
            elem_id="change-maps",
            columns=6,
            height=320,
            object_fit="contain",
        )
        with gr.Row():
            export = gr.Button("Export word maps as PNG")
            export_file = gr.File(label="PNG", interactive=False, height=90)
        with gr.Accordion("Retrieval: score candidate captions for this pair", open=False):
            candidates = gr.Textbox(
                lines=4,
                label="Candidate captions (one per line)",
                value="the red cube moved\nsomeone added a small sphere\nnothing has changed",
                elem_id="candidates",
            )
            score_btn = gr.Button("Score captions", elem_id="score")
            scores = gr.Dataframe(
                headers=["caption", "score", "softmax"],
                datatype=["str", "number", "number"],
                interactive=False,
                label="Scores",
            )
            score_status = gr.Markdown()
        state = gr.State(None)

        common = {"concurrency_id": "model"}
        run.click(
            h["describe"],
            [before, after, checkpoint, decoding, beam_size, max_words, layer, rollout],
            [caption, status, words, encoder, changes, state, domain, pixels],
            api_name="describe",
            **common,
        )
        score_btn.click(
            h["score"],
            [before, after, checkpoint, candidates],
            [scores, score_status],
            api_name="score",
            **common,
        )
        export.click(h["export_png"], [state], [export_file, status], api_name="export_png", **common)
        checkpoint.change(h["model_info"], [checkpoint], [model_md], api_name="model_info", **common)
        demo.load(
            h["model_info"], [checkpoint], [model_md], api_name="model_info_on_load", show_api=False, **common
        )
    return demo


class OfflinePageMiddleware:
    """Strip the external references gradio's page template hard-codes (an iframe-resizer script from a CDN
    and Google-Fonts preconnect hints), so the browser asks nothing of the internet. Pure ASGI: buffers
    only ``text/html`` responses, passes everything else (API, files, streams) straight through."""

    PATTERNS = (
        re.compile(rb"<link[^>]*rel=\"preconnect\"[^>]*>", re.S),
        re.compile(rb"<script[^>]*src=\"https?://[^\"]*\"[^>]*>\s*</script>", re.S),
    )

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        body: list[bytes] = []

        async def relay(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(b"text/html"):
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                html = b"".join(body)
                for pattern in self.PATTERNS:
                    html = pattern.sub(b"", html)
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(html)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": html, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, relay)


def serve(
    checkpoints: Sequence[str | Path] = (),
    host: str | None = None,
    port: int | None = None,
    share: bool = False,
    concurrency: int = 1,
    max_queue: int = 64,
    max_file_size: str | int = "20mb",
    block: bool = True,
    quiet: bool = False,
) -> tuple[gr.Blocks, str]:
    """Queue and launch the app offering the bundled model and ``checkpoints``; returns (app, local URL).

    ``host`` and ``port`` default to ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (what Docker and
    hosted deployments set), else 127.0.0.1:7860. ``block=False`` returns at once (tests).
    """
    host = host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    if port is None:
        env_port = os.environ.get("GRADIO_SERVER_PORT", "7860")
        if not env_port.isdigit() or not 0 < int(env_port) < 65536:
            raise Clip4idcError(f"GRADIO_SERVER_PORT={env_port!r} is not a port number (1-65535)")
        port = int(env_port)
    demo = build_app(ModelCache(offered_checkpoints(checkpoints)))
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    try:
        _, url, _ = demo.launch(
            server_name=host,
            server_port=port,
            share=share,
            max_file_size=max_file_size,
            show_error=True,
            ssr_mode=False,
            inbrowser=False,
            prevent_thread_lock=not block,
            quiet=quiet,
            allowed_paths=[str(EXAMPLES_DIR)],
            app_kwargs={"middleware": [Middleware(OfflinePageMiddleware)]},
        )
    except OSError as err:
        raise Clip4idcError(
            f"cannot listen on {host}:{port} ({str(err).splitlines()[0][:120]}); the port may be in use: "
            "choose another with --port or GRADIO_SERVER_PORT"
        ) from None
    return demo, url


def serve_from_args(args: argparse.Namespace) -> int:
    """Entry point of ``clip4idc app`` / ``python app.py``."""
    serve(
        args.checkpoint or (),
        args.host,
        args.port,
        args.share,
        args.concurrency,
        args.max_queue,
        args.max_file_size,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python app.py [--host H] [--port P] [--share] [--checkpoint C ...]``."""
    from .options import add_arguments

    parser = argparse.ArgumentParser(prog="app.py", description="clip4idc web app")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return serve_from_args(args)
    except Clip4idcError as err:
        print(f"error: {err}")
        return 2
