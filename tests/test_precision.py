"""``precision="auto"`` on a CPU: bf16 only where a timing shows it is faster, not wherever the flags allow."""

from __future__ import annotations

import time

import pytest
import torch

from clip4idc import precision


@pytest.fixture
def fresh_probe():
    """Clear the once-per-process probe before and after, so a faked answer never outlives its test."""
    precision.cpu_bf16_is_faster.cache_clear()
    yield
    precision.cpu_bf16_is_faster.cache_clear()


def fake_linear(fp32_s: float, bf16_s: float):
    """A stand-in for a linear layer that takes ``bf16_s`` under CPU autocast and ``fp32_s`` otherwise."""

    def linear(x, w, b=None):
        time.sleep(bf16_s if torch.is_autocast_enabled("cpu") else fp32_s)
        return x.new_empty(x.shape[0], w.shape[0])

    return linear


@pytest.mark.parametrize(("fp32_s", "bf16_s", "faster"), [(0.006, 0.002, True), (0.002, 0.006, False)])
def test_probe_follows_the_timing(fresh_probe, monkeypatch, fp32_s, bf16_s, faster):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(torch.nn.functional, "linear", fake_linear(fp32_s, bf16_s))
    assert precision.cpu_bf16_is_faster() is faster
    assert precision.resolve_precision("auto", "cpu") == ("bf16" if faster else "fp32")


def test_no_native_bf16_means_fp32_without_timing(fresh_probe, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)

    def never(*args, **kwargs):
        raise AssertionError("the probe should not time anything without native bf16")

    monkeypatch.setattr(torch.nn.functional, "linear", never)
    assert precision.cpu_bf16_is_faster() is False
    assert precision.resolve_precision("auto", "cpu") == "fp32"


def test_explicit_precisions_are_kept(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_is_faster", lambda: False)
    assert precision.resolve_precision("bf16", "cpu") == "bf16"
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="fp16"):
        precision.resolve_precision("fp16", "cpu")
