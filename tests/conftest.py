"""Shared test fixtures: the parity fixture from ../shared (never skipped when missing)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def parity_fixture_path() -> Path:
    return Path(os.environ.get("CLIP4IDC_PARITY_FIXTURE", REPO.parent / "shared" / "parity" / "tiny_a.pt"))


@pytest.fixture(scope="session")
def parity() -> dict:
    path = parity_fixture_path()
    if not path.exists():
        pytest.fail(
            f"parity fixture not found: {path} (set CLIP4IDC_PARITY_FIXTURE or provide ../shared/parity)"
        )
    return torch.load(path, weights_only=False)  # our own trusted fixture file
