"""The notebooks' lesson plan (notebooks/lessons.py): plans, data reuse, and runs trained only when asked."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lessons", REPO / "notebooks" / "lessons.py")
lessons = importlib.util.module_from_spec(_spec)
sys.modules["lessons"] = lessons  # as the notebooks import it (its dataclasses look their module up)
_spec.loader.exec_module(lessons)


def test_quick_mode_and_plans(monkeypatch, tmp_path):
    monkeypatch.setenv(lessons.QUICK_ENV, "1")
    assert lessons.quick_mode() and lessons.lesson_plan().quick
    monkeypatch.setenv(lessons.QUICK_ENV, "0")
    assert not lessons.quick_mode()
    quick, full = lessons.lesson_plan(True), lessons.lesson_plan(False)
    assert quick.pairs < full.pairs and quick.finetune_epochs <= full.finetune_epochs
    assert quick.data_workers == 1 <= full.data_workers <= 4  # CI renders in one process
    monkeypatch.setenv(lessons.WORK_ENV, str(tmp_path / "w"))
    assert lessons.work_dir("ignored", quick) == tmp_path / "w" / "quick"
    assert (tmp_path / "w" / "quick").is_dir()


def test_setup_gives_the_plan_its_work_folder_and_threads(monkeypatch, tmp_path, capsys):
    import torch

    monkeypatch.setenv(lessons.QUICK_ENV, "1")
    monkeypatch.setenv(lessons.WORK_ENV, str(tmp_path / "w"))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        plan, work = lessons.setup()
        assert plan == lessons.lesson_plan(True) and work == tmp_path / "w" / "quick" and work.is_dir()
        assert torch.get_num_threads() == plan.threads == 1
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert f"plan 'quick': {plan.pairs} synthetic scenes" in printed and str(work) in printed


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("lessons") / "synth"
    return lessons.synthetic_dataset(root, 20, (64, 48), seed=1, val_frac=0.2, test_frac=0.2)


def test_synthetic_dataset_is_reused_only_when_identical(tiny_synth):
    stamp = (tiny_synth / "scenes.json").stat().st_mtime_ns
    lessons.synthetic_dataset(tiny_synth, 20, (64, 48), seed=1, val_frac=0.2, test_frac=0.2)
    assert (tiny_synth / "scenes.json").stat().st_mtime_ns == stamp
    assert not lessons._same_dataset(tiny_synth, 20, (64, 48), 2, 0.2, 0.2)
    assert not lessons._same_dataset(tiny_synth, 20, (64, 48), 1, 0.1, 0.2)
    assert not lessons._same_dataset(tiny_synth, 21, (64, 48), 1, 0.2, 0.2)


def test_train_epochs_then_train_or_reuse_reuses_the_run(tiny_synth, tmp_path):
    plan = lessons.lesson_plan(True)
    cfg = lessons.train_config(
        plan, "adapt", tiny_synth, tmp_path / "adapt", epochs=2, batch_size=4, threads=None
    )
    records = list(lessons.train_epochs(cfg))
    assert [r["epoch"] for r in records] == [1, 2]
    assert all("train_loss" in r and "val" in r for r in records)
    stamp = (tmp_path / "adapt" / "checkpoint.pt").stat().st_mtime_ns
    path = lessons.train_or_reuse(cfg)  # an epoch-by-epoch run counts as finished
    assert path == tmp_path / "adapt" / "best"
    assert (tmp_path / "adapt" / "checkpoint.pt").stat().st_mtime_ns == stamp
    other = lessons.train_config(
        plan, "adapt", tiny_synth, tmp_path / "adapt", epochs=1, batch_size=4, threads=None
    )
    lessons.train_or_reuse(other)  # a different config retrains from scratch
    lines = (tmp_path / "adapt" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1


def test_ablation_arms_share_the_lesson_recipe(monkeypatch, tmp_path):
    """Both arms run notebook 3's recipe and schedule; the adapted arm with notebook 3's seed is notebook
    3's own run (trained once), the other arm starts from the encoder stage 1 started from (never from
    random weights while the demo model is installed)."""
    for quick in (True, False):
        plan = lessons.lesson_plan(quick)
        work = tmp_path / plan.name
        monkeypatch.setattr(lessons, "plan_dataset", lambda plan, work: work / "synth")
        lesson = lessons.finetune_config(plan, work, init=work / "adapt" / "best")
        assert lesson.init == str(work / "adapt" / "best")
        assert lessons.ablation_config(lesson, plan, work, adapted=True, seed=lesson.seed) == lesson
        other = lessons.ablation_config(lesson, plan, work, adapted=True, seed=lesson.seed + 1)
        start = lessons.ablation_config(lesson, plan, work, adapted=False, seed=lesson.seed)
        assert other.init == lesson.init
        assert start.init == str(lessons.start_checkpoint(plan, work)) and start.init is not None
        assert start.init == lessons.adapt_config(plan, work).init  # the arm skips exactly stage 1
        assert len({lesson.out, other.out, start.out}) == 3
        for cfg in (other, start):
            assert (
                cfg.epochs == plan.finetune_epochs
                and cfg.finetune.freeze_vision == lesson.finetune.freeze_vision
            )
            assert cfg.lr == lesson.lr and cfg.batch_size == lesson.batch_size


def test_demo_start_is_named_by_the_demo_weights(monkeypatch, tmp_path):
    """Lessons start from the demo's CLIP in a folder named by the demo weights' hash, so new bundled
    weights give a new start (and a new ``init`` for every run built on it) instead of a stale reuse."""
    from clip4idc.weights import registry as checkpoint

    plan = lessons.lesson_plan(True)
    assert plan.start == "demo"  # the demo weights ship with the package
    first = lessons.start_checkpoint(plan, tmp_path)
    assert first.name.startswith("start_demo_") and (first / "model.safetensors").exists()
    assert lessons.start_checkpoint(plan, tmp_path) == first
    fake = tmp_path / "weights" / "demo"
    fake.mkdir(parents=True)
    (fake / checkpoint.WEIGHTS_NAME).write_bytes(b"other weights")
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path / "weights")
    digest = hashlib.sha256(b"other weights").hexdigest()[:10]
    (tmp_path / f"start_demo_{digest}").mkdir()
    (tmp_path / f"start_demo_{digest}" / checkpoint.WEIGHTS_NAME).write_bytes(b"")
    assert lessons.start_checkpoint(plan, tmp_path) == tmp_path / f"start_demo_{digest}" != first
