"""Hostile and careless input: no code in a checkpoint runs, endless files are refused, the app offers only
what its operator listed, and every fault gets one clear line (through the CLI, the API and the app)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_demo_model
from torch import nn

import clip4idc
from clip4idc.cli import main
from clip4idc.errors import Clip4idcError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "clip4idc" / "assets" / "examples"
PAIR = (str(EXAMPLE / "move_before.png"), str(EXAMPLE / "move_after.png"))


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _cli_process(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI in its own process, with its memory capped at 4 GB, so an endless read cannot hurt the suite."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    return subprocess.run(
        [sys.executable, "-m", "clip4idc.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap,
        cwd=REPO,
    )


# -- the hostile corpus ------------------------------------------------------------------------------------


class SideEffect(nn.Module):
    """A scripted module whose ``__setstate__`` writes a file: ``torch.jit.load`` runs it."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2))
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return (self.weight, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        self.weight = state[0]
        self.marker = state[1]
        self.training = state[2]
        torch.save(torch.zeros(1), self.marker)


class Reduce:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    marker = root / "side_effect"
    files = {"marker": marker}
    files["torchscript"] = root / "evil_script.pt"
    torch.jit.save(torch.jit.script(SideEffect(str(marker))), str(files["torchscript"]))
    torch.jit.load(str(files["torchscript"]))  # the file is truly hostile: loading it the usual way runs code
    assert marker.exists()
    marker.unlink()
    files["reduce_zip"] = root / "evil_reduce.bin"
    torch.save({"clip.x": torch.zeros(1), "y": Reduce(marker)}, files["reduce_zip"])
    files["reduce_legacy"] = root / "evil_legacy.bin"
    torch.save({"y": Reduce(marker)}, files["reduce_legacy"], _use_new_zipfile_serialization=False)
    files["fifo"] = root / "pipe.bin"
    os.mkfifo(files["fifo"])
    files["device_link"] = root / "zero.pt"
    files["device_link"].symlink_to("/dev/zero")
    files["dev_zero"] = Path("/dev/zero")
    files["fake_script"] = root / "fake_script.pt"
    with zipfile.ZipFile(files["fake_script"], "w") as zf:
        zf.writestr("fake/data.pkl", b"not a pickle at all")
        zf.writestr("fake/code/__torch__.py", "class X:\n  pass\n")
    return files


HOSTILE = ["torchscript", "reduce_zip", "reduce_legacy", "fifo", "device_link", "dev_zero", "fake_script"]


@pytest.mark.parametrize("name", HOSTILE)
def test_api_refuses_hostile_files_in_one_line(corpus: dict[str, Path], name: str) -> None:
    with pytest.raises(Clip4idcError) as info:
        clip4idc.load(corpus[name])
    text = str(info.value)
    assert text.startswith(str(corpus[name]) + ": ") and "\n" not in text, text
    assert "weights_only" not in text and not text.endswith("()"), text  # no torch advice, no empty reason
    assert not corpus["marker"].exists()


@pytest.mark.parametrize("name", HOSTILE)
def test_cli_refuses_hostile_files_in_one_line(corpus: dict[str, Path], name: str) -> None:
    result = _cli_process(["caption", *PAIR, "--checkpoint", str(corpus[name])], timeout=90)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {corpus[name]}: "), result.stderr[-2000:]
    assert not corpus["marker"].exists()


def test_refusals_say_why(corpus: dict[str, Path]) -> None:
    reasons = {}
    for name in ("torchscript", "reduce_zip", "reduce_legacy", "dev_zero", "fifo", "fake_script"):
        with pytest.raises(Clip4idcError) as info:
            clip4idc.load(corpus[name])
        reasons[name] = str(info.value)
    assert "__setstate__" in reasons["torchscript"] and "refused" in reasons["torchscript"]
    assert "run code (os.makedirs)" in reasons["reduce_zip"]
    assert "run code" in reasons["reduce_legacy"] and "never runs code" in reasons["reduce_legacy"]
    assert "not a regular file" in reasons["dev_zero"] and "not a regular file" in reasons["fifo"]
    assert "malformed pickle" in reasons["fake_script"]


def test_openai_style_torchscript_archive_reads_only_parameters_and_buffers(tmp_path: Path) -> None:
    """A scripted block like OpenAI's: attention with a causal-mask attribute (not a parameter) and the
    size entries OpenAI's file records; the reader returns exactly what ``state_dict()`` returns."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2)
            self.ln_1 = nn.LayerNorm(8)
            self.attn_mask = torch.full((3, 3), float("-inf")).triu(1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(self.ln_1(x), x, x, need_weights=False, attn_mask=self.attn_mask)[0]

    class Root(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.resblocks = nn.Sequential(Block(), Block())
            self.logit_scale = nn.Parameter(torch.ones([]))
            self.register_buffer("input_resolution", torch.tensor(224))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.resblocks(x) * self.logit_scale

    path = tmp_path / "openai_like.pt"
    torch.jit.save(torch.jit.script(Root()), str(path))
    expected = torch.jit.load(str(path)).state_dict()
    got = clip4idc.weights.formats.read_state_dict(path)
    assert sorted(got) == sorted(expected) and "resblocks.0.attn_mask" not in got
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_zip_records_are_checked_before_they_are_trusted(tmp_path: Path) -> None:
    path = tmp_path / "liar.bin"
    torch.save({"clip.a": torch.zeros(4)}, path)
    with zipfile.ZipFile(path) as zf:
        records = {n: zf.read(n) for n in zf.namelist()}
    data = next(n for n in records if n.endswith("/data/0"))
    records[data] = records[data][:8]  # the pickle still says 4 floats (16 bytes)
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in records.items():
            zf.writestr(name, content)
    with pytest.raises(Clip4idcError, match="does not hold 4"):
        clip4idc.weights.formats.read_state_dict(path)


# -- the app -----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def operator_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = small_demo_model()
    path = tmp_path_factory.mktemp("operator") / "tiny"
    clip4idc.save_pretrained(model, path)
    return path


@pytest.fixture(scope="module")
def app_url(operator_checkpoint: Path):
    from clip4idc.app import web as app

    demo, url = app.serve([operator_checkpoint], port=_free_port(), block=False, quiet=True)
    yield url
    demo.close()


def _app_answer(client, api: str, checkpoint: str) -> str:
    """What a visitor reads for ``checkpoint``: the status text, or the error the call raised."""
    from gradio_client import handle_file

    try:
        if api == "/model_info":
            return client.predict(checkpoint, api_name=api)
        if api == "/score":
            files = [handle_file(p) for p in PAIR]
            return client.predict(*files, checkpoint, "the cube moved", api_name=api)[1]
        files = [handle_file(p) for p in PAIR]
        return client.predict(*files, checkpoint, "greedy", 3, 6, "mean over layers", False, api_name=api)[1]
    except Exception as err:  # gradio refuses a value outside the dropdown's choices itself
        return str(err)


def test_app_offers_only_what_its_operator_listed(
    app_url: str, corpus: dict[str, Path], operator_checkpoint: Path, tmp_path: Path
) -> None:
    import httpx
    from gradio_client import Client

    client = Client(app_url, verbose=False, download_files=False)
    hostile = corpus["torchscript"]
    with hostile.open("rb") as fh:  # a visitor uploads a checkpoint and learns its path on the server
        uploaded = httpx.post(f"{app_url}gradio_api/upload", files={"files": fh}, timeout=30).json()[0]
    assert Path(uploaded).exists()
    probes = [uploaded, str(hostile), "/etc/passwd", "/dev/zero", str(tmp_path / "absent.bin"), str(tmp_path)]
    for api in ("/model_info", "/describe", "/score"):
        answers = [_app_answer(client, api, p) for p in probes]
        generic = {a.replace(p, "<X>").replace(repr(p), "<X>") for a, p in zip(answers, probes)}
        assert len(generic) == 1, (api, answers)  # the same answer whatever exists on disk
        assert all("\n" not in a.strip() for a in answers), answers
    assert not corpus["marker"].exists()
    info = client.predict("tiny", api_name="/model_info")  # what the operator listed does load
    assert "Model:" in info and "tiny" in info
    caption, status = client.predict(*map(_handle, PAIR), "demo", "greedy", 3, 6, "mean over layers", False,
                                     api_name="/describe")[:2]  # fmt: skip
    assert "computed in" in status  # and the server still answers


def _handle(path: str):
    from gradio_client import handle_file

    return handle_file(path)


def test_operator_folders_and_mistakes(operator_checkpoint: Path, tmp_path: Path) -> None:
    from clip4idc.app.models import offered_checkpoints

    folder = tmp_path / "many"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"")
    (folder / "notes.txt").write_text("x")
    (folder / "sub").mkdir()
    offered = offered_checkpoints([folder, operator_checkpoint])
    assert list(offered) == ["demo", "a.bin", "tiny"]
    with pytest.raises(Clip4idcError, match="checkpoint not found"):
        offered_checkpoints([tmp_path / "absent"])
    with pytest.raises(Clip4idcError, match="holds no checkpoint"):
        offered_checkpoints([folder / "sub"])


def test_candidate_captions_are_capped() -> None:
    from clip4idc.app.models import ModelCache
    from clip4idc.app.web import MAX_CANDIDATE_CHARS, MAX_CANDIDATES, make_handlers

    score = make_handlers(ModelCache())["score"]
    rows, status = score(*PAIR, "demo", "\n".join(f"caption {i}" for i in range(5000)))
    assert rows == [] and f"at most {MAX_CANDIDATES}" in status
    rows, status = score(*PAIR, "demo", "x" * (MAX_CANDIDATE_CHARS + 1))
    assert rows == [] and "longer than" in status
    rows, _ = score(*PAIR, "demo", "\n".join(f"caption {i}" for i in range(MAX_CANDIDATES)))
    assert len(rows) == MAX_CANDIDATES


def test_app_honours_gradio_server_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from clip4idc.app import web as app

    port = _free_port()
    monkeypatch.setenv("GRADIO_SERVER_NAME", "127.0.0.1")
    monkeypatch.setenv("GRADIO_SERVER_PORT", str(port))
    demo, url = app.serve(block=False, quiet=True)
    try:
        assert url.rstrip("/").endswith(f":{port}")
        with pytest.raises(Clip4idcError, match="--port or GRADIO_SERVER_PORT") as info:
            app.serve(block=False, quiet=True)  # the same port again: in use
        assert "\n" not in str(info.value)
    finally:
        demo.close()
    monkeypatch.setenv("GRADIO_SERVER_PORT", "http")
    with pytest.raises(Clip4idcError, match="not a port number"):
        app.serve(block=False, quiet=True)


# -- training, data and evaluation output ------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clip4idc.data.synthetic import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, pairs=24, size=(64, 48), seed=5, workers=1, val_frac=0.2, test_frac=0.2, progress=False)
    return root


TINY_RUN = ["stage=adapt", "model=tiny", "epochs=2", "stop_after=1", "batch_size=8", "workers=0",
            "val_every=0", "progress=false", "model.max_words=20"]  # fmt: skip


def test_resume_checks_settings_before_writing(synth: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc, _, err = _cli(["train", f"data={synth}", f"out={out}", *TINY_RUN])
    assert rc == 0, err
    config = (out / "config.json").read_bytes()
    changes = [("model.vision_width=128", "model_overrides"), ("lr=5e-2", "lr")]
    changes.append(("adapt.type_negatives=1", "adapt.type_negatives (0 -> 1)"))  # a stage's option, by name
    for change, name in changes:
        rc, _, err = _cli(["train", "--out", str(out), "--resume", change])
        assert rc == 2 and len(err.strip().splitlines()) == 1 and f"changed {name}" in err, err
        assert (out / "config.json").read_bytes() == config  # nothing was written
    rc, _, err = _cli(
        ["train", "--out", str(out), "epochs=3", "--resume", "stop_after=null"]
    )  # flags anywhere
    assert rc == 0, err
    assert "epochs: 2 -> 3" in err
    saved = json.loads((out / "config.json").read_text())
    assert saved["epochs"] == 3 and saved["stop_after"] is None
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
    ]


def test_run_checkpoint_is_read_as_data(synth: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc, _, err = _cli(["train", f"data={synth}", f"out={out}", *TINY_RUN])
    assert rc == 0, err
    marker = tmp_path / "side_effect"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["history"] = [Reduce(marker)]
    torch.save(state, out / "checkpoint.pt")
    rc, _, err = _cli(["train", "--out", str(out), "--resume"])
    assert rc == 2 and "cannot resume" in err and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()


@pytest.mark.parametrize(
    "argv",
    [["train", "epochs=abc"], ["train", "model.vision_width=wide"], ["train", "progress=maybe"]],
)
def test_bad_override_values_are_one_line(argv: list[str]) -> None:
    rc, _, err = _cli(argv)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "override" in err, err


def test_unwritable_outputs_fail_before_work(synth: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for argv in (
        ["train", f"data={synth}", f"out={blocker / 'run'}", *TINY_RUN],
        ["data", "synth", str(blocker / "data"), "--pairs", "2", "--workers", "1"],
        ["eval", "--checkpoint", "demo", "--data", str(synth), "--out", str(blocker / "eval")],
    ):
        rc, _, err = _cli(argv)
        assert rc == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "cannot write there" in lines[0] and str(blocker) in lines[0], err


def test_eval_prints_its_results_when_saving_fails(
    synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clip4idc.errors import fail
    from clip4idc.evaluation import evaluate

    def full_disk(path, obj, indent=2):
        raise fail(path, "cannot write file (No space left on device)")

    monkeypatch.setattr(evaluate, "write_json_atomic", full_disk)
    rc, stdout, err = _cli(
        ["eval", "--checkpoint", "demo", "--data", str(synth), "--split", "test", "--out", str(tmp_path / "o"),
         "--no-spice", "--no-baseline", "--no-pointing", "--no-progress", "--device", "cpu"]
    )  # fmt: skip
    assert rc == 2
    assert "CIDEr" in err and err.strip().splitlines()[-1].startswith("error: ") and "No space" in err
    assert json.loads(stdout)["CIDEr"] is not None  # the results are on the screen


def test_a_killed_save_leaves_no_temporary_file_for_good(tmp_path: Path) -> None:
    model = clip4idc.build_model("tiny")
    clip4idc.save_pretrained(model, tmp_path / "m")
    (tmp_path / "m" / "tmpab12cd.tmp").write_bytes(b"half")  # what an older save killed mid-write leaves
    (tmp_path / "m" / ".model.safetensors.xyz.tmp").write_bytes(b"half")
    clip4idc.save_pretrained(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]


# -- images a user brings ----------------------------------------------------------------------------------


def _phone_jpeg(path: Path) -> np.ndarray:
    """A 40×24 picture stored sideways with EXIF orientation 6 (rotate 90° clockwise to view)."""
    from PIL import Image

    upright = np.zeros((40, 24, 3), np.uint8)
    upright[:10] = (255, 0, 0)  # red at the top when viewed upright
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # how the phone stores it
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=95, exif=exif)
    return upright


def test_exif_orientation_is_applied_where_users_bring_images(tmp_path: Path) -> None:
    from PIL import Image

    from clip4idc.app.web import read_image
    from clip4idc.preprocess import load_image

    path = tmp_path / "phone.jpg"
    upright = _phone_jpeg(path)
    for img in (load_image(path, orient=True), read_image(str(path), "before")[0]):
        assert img.size == (24, 40) and np.asarray(img)[2, 12, 0] > 200 > np.asarray(img)[35, 12, 0]
    assert load_image(path).size == (40, 24)  # datasets: as the original reads them
    with Image.open(path) as raw:
        assert load_image(raw, orient=True).size == (24, 40)
    with Image.open(path) as raw:
        turned = np.asarray(raw.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    assert turned.shape == upright.shape
    model = clip4idc.build_model("tiny").eval()
    assert model.caption(str(path), str(path)) == model.caption(turned, turned)


def test_caption_inputs_are_checked() -> None:
    model = clip4idc.build_model("tiny").eval()
    before, after = PAIR
    with pytest.raises(Clip4idcError, match="before is a list of 1 but after is one image"):
        model.caption([before], after)
    with pytest.raises(Clip4idcError, match="got NoneType"):
        model.caption(None, after)
    with pytest.raises(Clip4idcError, match="HxWx3"):
        model.caption(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 3), np.float32))
    array = np.asarray(clip4idc.load_image(before))
    assert model.caption(array, after) == model.caption(before, after)
    assert len(model.caption([before, array], [after, after])) == 2


def test_json_inputs_are_regular_files_too(corpus: dict[str, Path], tmp_path: Path) -> None:
    """A pipe or a device given as predictions or a config fails at once instead of blocking forever."""
    for path in (corpus["fifo"], corpus["dev_zero"]):
        rc, _, err = _cli(["score", str(path), str(path)])
        assert rc == 2 and "not a regular file" in err and len(err.strip().splitlines()) == 1, err
        rc, _, err = _cli(["train", "--config", str(path)])
        assert rc == 2 and "not a regular file" in err, err
