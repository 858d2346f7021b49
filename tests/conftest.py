"""Shared test fixtures: the parity fixture (in the repository; never skipped when missing), and the
lone-clone check (the session fails if any test reads beside the checkout, see ``sitehook/lone_clone.py``)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SITEHOOK = Path(__file__).resolve().parent / "sitehook"
PARITY_FIXTURE = REPO / "tests" / "fixtures" / "parity" / "tiny_a.pt"

sys.path.insert(0, str(SITEHOOK))
import lone_clone  # noqa: E402

sys.path.remove(str(SITEHOOK))


def parity_fixture_path() -> Path:
    return Path(os.environ.get("CLIP4IDC_PARITY_FIXTURE") or PARITY_FIXTURE)


@pytest.fixture(scope="session")
def parity() -> dict:
    path = parity_fixture_path()
    if not path.exists():
        pytest.fail(
            f"parity fixture not found: {path} (the repository's is {PARITY_FIXTURE.relative_to(REPO)}; "
            "CLIP4IDC_PARITY_FIXTURE may name another)"
        )
    return torch.load(path, weights_only=False)  # our own trusted fixture file


_LONE: dict = {}


def pytest_configure(config: pytest.Config) -> None:
    """Record reads beside the checkout here and in every Python subprocess the tests start."""
    recorder = lone_clone.install(REPO)
    _LONE["recorder"] = recorder
    if recorder.rule.off_reason:
        return
    logdir = tempfile.mkdtemp(prefix="clip4idc-lone-clone-")
    _LONE["logdir"] = logdir
    os.environ[lone_clone.ROOT_ENV] = str(REPO)
    os.environ[lone_clone.LOG_ENV] = os.path.join(logdir, "beside.log")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITEHOOK), os.environ.get("PYTHONPATH")]))


def pytest_report_header(config: pytest.Config) -> str:
    recorder = _LONE["recorder"]
    if recorder.rule.off_reason:
        return f"lone-clone check: off ({recorder.rule.off_reason})"
    return f"lone-clone check: no test may read beside {REPO} in {recorder.rule.parent}"


def _beside() -> list[str]:
    recorder = _LONE.get("recorder")
    if recorder is None or recorder.rule.off_reason:
        return []
    found = list(recorder.seen) + lone_clone.read_log(os.environ[lone_clone.LOG_ENV])
    return list(dict.fromkeys(os.path.abspath(p) for p in found))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session (exit status 1) when any test read beside the checkout."""
    found = _beside()
    _LONE["found"] = found
    if found and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if "logdir" in _LONE:
        shutil.rmtree(_LONE.pop("logdir"), ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    found = _LONE.get("found") or []
    if not found:
        terminalreporter.write_line(pytest_report_header(config).replace("no test may read", "nothing read"))
    else:
        terminalreporter.section("lone-clone check FAILED", sep="=", red=True, bold=True)
        terminalreporter.line(
            f"{len(found)} path(s) beside the checkout were read; a clone with nothing beside it lacks them:",
            red=True,
        )
        for path in found:
            terminalreporter.line(f"  {path}", red=True)


def small_demo_model() -> torch.nn.Module:
    """The demo architecture at a few hundred kB (seed 0): what app, security and domain tests save and load."""
    import clip4idc

    torch.manual_seed(0)
    return clip4idc.build_model(
        "demo", vision_width=64, vision_heads=2, embed_dim=64, text_width=64, text_heads=2, text_layers=1,
        decoder_heads=2, decoder_intermediate=128, resolution=64, patch=16,
    )  # fmt: skip
