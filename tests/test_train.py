"""Training: bit-exact resume, DDP equivalence (2 gloo processes = 1 process), config handling."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import clip4idc
from clip4idc.errors import Clip4idcError
from clip4idc.training.config import AdaptOptions, FinetuneOptions
from clip4idc.training.losses import AdaptLoss, CaptionLoss
from clip4idc.training.train import STAGE_PARTS, Dist, GlobalBatchSampler, TrainConfig, train, train_by_epoch
from clip4idc.weights.formats import read_state_dict as read_weights

TINY = clip4idc.get_config("tiny").to_dict()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from clip4idc.data.synthetic import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, pairs=40, size=(64, 48), seed=3, workers=1, val_frac=0.2, test_frac=0.2, progress=False)
    return root


def run_cfg(synth, out, stage, **kw) -> TrainConfig:
    base = dict(
        stage=stage,
        data=str(synth),
        out=str(out),
        model="tiny",
        epochs=2,
        batch_size=8,
        batch_size_val=16,
        lr=1e-3,
        coef_lr=1.0,
        workers=0,
        val_every=0,
        progress=False,
        seed=11,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("stage", ["pretrain", "adapt", "finetune"])
def test_resume_is_bit_exact(synth, tmp_path, stage):
    """2 epochs straight == 1 epoch, resume, 1 epoch: weight for weight (dropout, caption choice and the
    distractor swap all draw random numbers)."""
    train(run_cfg(synth, tmp_path / "straight", stage))
    train(run_cfg(synth, tmp_path / "split", stage, stop_after=1))
    first = read_weights(tmp_path / "split" / "last")
    train(run_cfg(synth, tmp_path / "split", stage), resume=True)
    a = read_weights(tmp_path / "straight" / "last")
    b = read_weights(tmp_path / "split" / "last")
    assert a.keys() == b.keys()
    assert any(not torch.equal(first[k], b[k]) for k in a), "the second epoch changed nothing"
    for key in a:
        assert torch.equal(a[key], b[key]), key
    history = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]


def test_refuses_to_overwrite_a_run(synth, tmp_path):
    train(run_cfg(synth, tmp_path / "r", "adapt", epochs=1))
    with pytest.raises(Clip4idcError, match="already has a checkpoint"):
        train(run_cfg(synth, tmp_path / "r", "adapt", epochs=1))


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"_comment": "x", "stage": "finetune", "epochs": 3, "data": "d"}))
    cfg = TrainConfig.from_file(path, ["lr=0.5", "model.intra_layers=1", "init=none"])
    assert (cfg.stage, cfg.epochs, cfg.lr, cfg.model_overrides, cfg.init) == (
        "finetune",
        3,
        0.5,
        {"intra_layers": 1},
        None,
    )
    assert cfg.weight_decay == 0.01 and cfg.select_metric == "CIDEr"
    with pytest.raises(Clip4idcError, match="unknown training option 'lrr'"):
        TrainConfig.from_file(path, ["lrr=1"])
    bad = tmp_path / "bad.json"
    bad.write_text("{ nope")
    with pytest.raises(Clip4idcError, match="bad.json: malformed JSON"):
        TrainConfig.from_file(bad, [])


def test_stage_options_nest_in_their_group(tmp_path):
    """A stage's options sit in its group: a base's group merges key by key, ``GROUP.KEY`` overrides reach
    into it, a stage option given at the top level names its group, and the other stage's group is refused."""
    (tmp_path / "base.json").write_text(
        json.dumps({"stage": "finetune", "finetune": {"freeze_vision": True, "no_change_weight": 0.5}})
    )
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"base": "base.json", "finetune": {"no_change_weight": 0.25}}))
    cfg = TrainConfig.from_file(path, ["finetune.attention_guidance=0.5"])
    assert cfg.finetune == FinetuneOptions(freeze_vision=True, no_change_weight=0.25, attention_guidance=0.5)
    assert cfg.options is cfg.finetune and cfg.adapt == AdaptOptions()
    assert TrainConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg  # config.json
    with pytest.raises(Clip4idcError, match=r"'attention_guidance \(a finetune option: finetune.attention"):
        TrainConfig.from_file(path, ["attention_guidance=1"])
    with pytest.raises(Clip4idcError, match="c.json: adapt.type_negatives set for stage finetune"):
        TrainConfig.from_file(path, ["adapt.type_negatives=2"])
    with pytest.raises(Clip4idcError, match="override 'finetune.freeze_vision=maybe'"):
        TrainConfig.from_file(path, ["finetune.freeze_vision=maybe"])
    with pytest.raises(Clip4idcError, match="unknown training option 'finetune.lr'"):
        TrainConfig.from_file(path, ["finetune.lr=1"])
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"stage": "finetune", "freeze_vision": True, "adapt": []}))
    with pytest.raises(Clip4idcError, match="flat.json: adapt must be a JSON object"):
        TrainConfig.from_file(flat, [])
    flat.write_text(json.dumps({"stage": "finetune", "freeze_vision": True, "finetune": {"beam": 2}}))
    with pytest.raises(
        Clip4idcError, match=r"unknown training options: finetune.beam, freeze_vision \(a fine"
    ):
        TrainConfig.from_file(flat, [])


def test_sampler_shards_global_batches():
    one = list(GlobalBatchSampler(10, 4, Dist(), 1, seed=1))
    shards = [list(GlobalBatchSampler(10, 4, Dist(rank=r, world=2), 1, seed=1)) for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == one
    acc = list(GlobalBatchSampler(10, 4, Dist(), 2, seed=1))
    assert [acc[0] + acc[1], acc[2] + acc[3]] == one


def _batch(stage: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n, r = 4, TINY["resolution"]
    batch = {"before": torch.randn(n, 3, r, r, generator=g), "after": torch.randn(n, 3, r, r, generator=g)}
    ids = torch.randint(1, 49000, (n, 10), generator=g)
    ids[:, 0], ids[:, -1] = 49406, 49407
    if stage == "pretrain":  # single images, their descriptions and two near misses each
        neg = torch.randint(1, 49000, (n, 2, 10), generator=g)
        neg[..., 0], neg[..., -1] = 49406, 49407
        return {"image": batch["before"], "text_ids": ids, "neg_text_ids": neg}
    if stage.startswith("adapt"):
        batch["text_ids"] = ids
        if stage == "adapt_negatives":  # type_negatives: 2 caption-only negatives per pair, one absent
            neg = torch.randint(1, 49000, (n, 2, 10), generator=g)
            neg[..., 0], neg[..., -1] = 49406, 49407
            batch.update(neg_text_ids=neg, neg_valid=torch.tensor([[1, 1], [1, 0], [1, 1], [0, 1]]).bool())
        if stage == "adapt_unchanged":  # unchanged_negatives: one pair per item that no caption describes
            batch.update(
                still_before=torch.randn(n, 3, r, r, generator=g),
                still_after=torch.randn(n, 3, r, r, generator=g),
            )
    else:
        lengths = torch.tensor([10, 6, 3, 8])  # unequal token counts per rank
        mask = (torch.arange(10)[None] < lengths[:, None]).long()
        batch.update(input_ids=ids * mask, output_ids=ids.roll(-1, 1) * mask, decoder_mask=mask)
    return batch


def _model(stage: str) -> clip4idc.CLIP4IDC:
    torch.manual_seed(0)
    cfg = dict(TINY, decoder_dropout=0.0, decoder_layers=1 if stage.startswith("finetune") else 0)
    return clip4idc.CLIP4IDC(clip4idc.ModelConfig.from_dict(cfg))


def _ddp_worker(rank: int, world: int, init_file: str, stage: str, out: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    model = _model(stage)
    step = torch.nn.parallel.DistributedDataParallel(
        STAGE_PARTS[stage.split("_")[0]].loss(model, Dist(rank, world)),
        find_unused_parameters=stage.startswith("finetune"),
    )
    half = {k: v[rank * 2 : rank * 2 + 2] for k, v in _batch(stage).items()}
    loss = step(half)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.save({"loss": loss.detach(), "grads": grads}, os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("stage", ["pretrain", "adapt", "adapt_negatives", "adapt_unchanged", "finetune"])
def test_two_gloo_processes_equal_one(tmp_path, stage):
    model = _model(stage)
    loss = STAGE_PARTS[stage.split("_")[0]].loss(model, Dist())(_batch(stage))
    loss.backward()
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), stage, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        if not stage.startswith("finetune"):  # every rank computes the same global contrastive loss
            assert torch.allclose(got["loss"], loss, atol=1e-6)
        checked = 0
        for name, p in model.named_parameters():
            if p.grad is None:
                continue
            assert torch.allclose(got["grads"][name], p.grad, rtol=1e-4, atol=1e-6), name
            checked += 1
        assert checked > 10


def test_type_negatives_extend_each_pairs_pair_to_text_row():
    """The loss with caption-only negatives = cross-entropy over [batch texts | the pair's own negatives]
    for pair→text (absent ones left out), text→pair unchanged."""
    import torch.nn.functional as F

    model, batch = _model("adapt"), _batch("adapt_negatives")
    got = AdaptLoss(model, Dist())(batch)
    with torch.no_grad():
        pair = model.encode_pair(batch["before"], batch["after"]).pooled
        text, _ = model.encode_text(batch["text_ids"])
        logits = model.retrieval_logits(text, pair)
        want = F.cross_entropy(logits, torch.arange(4)) / 2
        for i in range(4):
            negs = batch["neg_text_ids"][i][batch["neg_valid"][i]]
            row = torch.cat(
                [logits[:, i], model.retrieval_logits(model.encode_text(negs)[0], pair[i : i + 1])[:, 0]]
            )
            want = want + F.cross_entropy(row[None], torch.tensor([i])) / 8
        plain = AdaptLoss(model, Dist())({k: batch[k] for k in ("before", "after", "text_ids")})
    assert torch.allclose(got, want, atol=1e-5)
    assert got > plain  # extra negatives can only add to the pair→text loss


def test_unchanged_negatives_extend_each_texts_text_to_pair_row():
    """The loss with pair-only negatives = cross-entropy over [batch pairs | every unchanged pair] for
    text→pair, pair→text unchanged."""
    import torch.nn.functional as F

    model, batch = _model("adapt"), _batch("adapt_unchanged")
    got = AdaptLoss(model, Dist())(batch)
    with torch.no_grad():
        pair = model.encode_pair(batch["before"], batch["after"]).pooled
        still = model.encode_pair(batch["still_before"], batch["still_after"]).pooled
        text, _ = model.encode_text(batch["text_ids"])
        logits = model.retrieval_logits(text, pair)
        targets = torch.arange(4)
        want = F.cross_entropy(logits.t(), targets) / 2
        for i in range(4):  # text i against the 4 batch pairs, then the 4 unchanged pairs
            row = torch.cat([logits[i], model.retrieval_logits(text[i : i + 1], still)[0]])
            want = want + F.cross_entropy(row[None], targets[i : i + 1]) / 8
        plain = AdaptLoss(model, Dist())({k: batch[k] for k in ("before", "after", "text_ids")})
    assert torch.allclose(got, want, atol=1e-5)
    assert got > plain  # extra negatives can only add to the text→pair loss


def test_no_change_weight_scales_the_no_change_caption_term():
    """Finetuning on CLEVR-Change: loss = change pair's caption loss + w · no-change pair's (w = 1: the
    original's sum); the option belongs to stage finetune."""
    model, batch = _model("finetune"), _batch("finetune")
    g = torch.Generator().manual_seed(5)
    batch.update(
        distractor=torch.randn(batch["after"].shape, generator=g),
        nc_input_ids=batch["input_ids"].flip(0),
        nc_output_ids=batch["output_ids"].flip(0),
        nc_decoder_mask=batch["decoder_mask"].flip(0),
    )
    model.eval()
    with torch.no_grad():
        change = model.caption_loss(
            batch["before"], batch["after"], batch["input_ids"], batch["output_ids"], batch["decoder_mask"]
        )
        still = model.caption_loss(
            batch["before"],
            batch["distractor"],
            batch["nc_input_ids"],
            batch["nc_output_ids"],
            batch["nc_decoder_mask"],
        )
        for weight in (1.0, 0.3, 0.0):
            got = CaptionLoss(model, Dist(), FinetuneOptions(no_change_weight=weight))(batch)
            assert torch.allclose(got, change + weight * still, atol=1e-6), weight
    with pytest.raises(ValueError, match="stage finetune"):
        TrainConfig(stage="adapt", finetune=FinetuneOptions(no_change_weight=0.5))
    with pytest.raises(ValueError, match="at least 0"):
        TrainConfig(stage="finetune", finetune=FinetuneOptions(no_change_weight=-1.0))


def test_attention_guidance_adds_its_weighted_kl_on_the_change_pairs():
    """loss = caption loss + w · guidance_loss(the change pair's cross-attention, its pixel-change target);
    w = 0 is the plain loss, and the option belongs to stage finetune."""
    from clip4idc.training.guidance import change_target, guidance_loss

    model, batch = _model("finetune"), _batch("finetune")
    model.eval()
    cfg = model.config
    with torch.no_grad():
        hidden = model.encode_pair(batch["before"], batch["after"]).hidden
        caption, crosses = model.caption_loss_from_hidden(
            hidden,
            batch["input_ids"],
            batch["output_ids"],
            batch["decoder_mask"],
            return_cross_attention=True,
        )
        target, valid = change_target(batch["before"], batch["after"], cfg.patch)
        kl = guidance_loss(crosses, batch["output_ids"], target, valid, cfg.grid)
        assert bool(valid.all()) and kl > 0
        for weight in (0.0, 0.5, 2.0):
            got = CaptionLoss(model, Dist(), FinetuneOptions(attention_guidance=weight))(batch)
            assert torch.allclose(got, caption + weight * kl, atol=1e-6), weight
    with pytest.raises(ValueError, match="stage finetune"):
        TrainConfig(stage="adapt", finetune=FinetuneOptions(attention_guidance=1.0))
    with pytest.raises(ValueError, match="at least 0"):
        TrainConfig(stage="finetune", finetune=FinetuneOptions(attention_guidance=-1.0))


def test_caption_log_likelihood_sums_each_captions_token_log_probs():
    model, batch = _model("finetune"), _batch("finetune")
    model.eval()
    with torch.no_grad():
        hidden = model.encode_pair(batch["before"], batch["after"]).hidden
        got = model.caption_log_likelihood(
            hidden, batch["input_ids"], batch["output_ids"], batch["decoder_mask"]
        )
        logp = model.caption_logits(hidden, batch["input_ids"], batch["decoder_mask"]).float().log_softmax(-1)
    out = batch["output_ids"]
    want = [sum(float(logp[i, t, out[i, t]]) for t in range(out.shape[1]) if out[i, t]) for i in range(4)]
    assert torch.allclose(got, torch.tensor(want), atol=1e-4)
    assert len(set(got.tolist())) == 4  # unequal lengths: every caption its own sum


def test_shared_embeddings_get_their_own_learning_rate():
    from clip4idc.training.optim import parameter_groups

    model = clip4idc.build_model("tiny")
    lr = 1e-3

    def lr_of(groups, param):
        return next(g["lr"] for g in groups if any(p is param for p in g["params"]))

    plain = parameter_groups(model, lr, 0.5, 0.01)  # the original's grouping
    assert len(plain) == 4
    assert lr_of(plain, model.clip.token_embedding.weight) == lr * 0.5
    split = parameter_groups(model, lr, 0.5, 0.01, coef_lr_shared=0.01)
    for shared in (model.clip.token_embedding.weight, model.clip.positional_embedding):
        assert lr_of(split, shared) == pytest.approx(lr * 0.01)
    assert lr_of(split, model.clip.visual.conv1.weight) == lr * 0.5
    assert lr_of(split, next(model.decoder.encoder.parameters())) == lr
    assert sum(len(g["params"]) for g in split) == sum(len(g["params"]) for g in plain)


def test_center_tokens_shifts_every_token_by_the_mean():
    torch.manual_seed(0)
    model = clip4idc.build_model("tiny").eval()
    visual = model.clip.visual
    r = model.config.resolution
    before, after = torch.randn(6, 3, r, r), torch.randn(6, 3, r, r)
    with torch.no_grad():
        visual.ln_post.bias.add_(3.0)  # a large common component, as stage 1 from scratch leaves
        old, _ = visual(before, after)
        share = visual.center_tokens_(before, after)
        new, _ = visual(before, after)
        tokens, _ = visual.joint_tokens(before, after)
        centred = visual.ln_post(tokens).flatten(0, 1)
    assert 0.5 < share < 1.0
    assert centred.mean(0).abs().max() < 1e-5  # the mean token is gone...
    shift = old - new
    assert torch.allclose(shift, shift[:1, :1].expand_as(shift), atol=1e-5)  # ...by one constant shift
    assert shift.abs().max() > 0.1


def test_finetune_with_centred_frozen_vision(synth, tmp_path):
    """The demo recipe's stage 2: centring changes only ln_post's bias, freezing keeps the rest of the
    vision tower as initialised, and the decoder trains."""
    torch.manual_seed(0)
    init = tmp_path / "init"
    clip4idc.save_pretrained(clip4idc.build_model("tiny", max_words=20), init)
    train(
        run_cfg(
            synth,
            tmp_path / "ft",
            "finetune",
            init=str(init),
            finetune=FinetuneOptions(center_visual=16, freeze_vision=True),
            epochs=1,
        )
    )
    before, after = read_weights(init), read_weights(tmp_path / "ft" / "last")
    visual = [k for k in before if k.startswith("clip.visual.")]
    changed = [k for k in visual if not torch.equal(before[k], after[k])]
    assert changed == ["clip.visual.ln_post.bias"]
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))


def test_train_by_epoch_trains_what_train_does(synth, tmp_path):
    """A live plot draws, loads models and samples between epochs: none of it changes the run."""
    import random

    import numpy as np

    train(run_cfg(synth, tmp_path / "whole", "finetune"))
    epochs = []
    for record in train_by_epoch(run_cfg(synth, tmp_path / "fed", "finetune")):
        epochs.append(record["epoch"])
        torch.rand(7), np.random.rand(3), random.random()  # noqa: B018 - the caller's own draws
        clip4idc.build_model("tiny")  # initialising a model draws from torch's generator
    assert epochs == [1, 2]
    whole, fed = read_weights(tmp_path / "whole" / "last"), read_weights(tmp_path / "fed" / "last")
    for key in whole:
        assert torch.equal(whole[key], fed[key]), key


def test_frozen_stage2_encodes_each_pair_once(synth, tmp_path, monkeypatch, capsys):
    """With a frozen encoder stage 2 reads each pair's tokens from one pass over the training pairs: the
    same model as encoding every batch (up to float rounding: other batch shapes), and a resumed run reads
    exactly the tokens of an uninterrupted one."""
    import clip4idc.training.train as training

    frozen = dict(finetune=FinetuneOptions(center_visual=16, freeze_vision=True))
    train(run_cfg(synth, tmp_path / "once", "finetune", **frozen))
    assert "encoded the 24 training pairs once" in capsys.readouterr().err
    train(run_cfg(synth, tmp_path / "split", "finetune", stop_after=1, **frozen))
    train(run_cfg(synth, tmp_path / "split", "finetune", **frozen), resume=True)
    monkeypatch.setattr(training, "FROZEN_TOKENS_LIMIT", 0)  # too big to keep: every step encodes
    train(run_cfg(synth, tmp_path / "each", "finetune", **frozen))
    assert "each step encodes its pairs" in capsys.readouterr().err
    once, split, each = (read_weights(tmp_path / r / "last") for r in ("once", "split", "each"))
    for key in once:
        assert torch.equal(once[key], split[key]), key
        assert torch.allclose(once[key], each[key], atol=1e-5), key


@pytest.mark.parametrize("stage", ["adapt", "finetune"])
def test_compiled_step_trains_the_same_model(synth, tmp_path, stage):
    """``compile=True`` runs the same maths through fused kernels: one epoch lands on the eager run's
    weights up to float rounding, and the checkpoint keeps the model's own keys. (Compiled dropout draws
    other random numbers than eager dropout, so the decoder's dropout is off here.)"""
    kw: dict = dict(epochs=1, adapt=AdaptOptions(type_negatives=2))
    if stage == "finetune":
        kw = dict(
            epochs=1,
            finetune=FinetuneOptions(attention_guidance=1.0),
            model_overrides={"decoder_dropout": 0.0},
        )
    from torch._dynamo.utils import counters

    train(run_cfg(synth, tmp_path / "eager", stage, **kw))
    counters.clear()
    train(run_cfg(synth, tmp_path / "compiled", stage, compile=True, **kw))
    assert counters["stats"]["unique_graphs"] > 0, "compile=True compiled nothing"
    a = read_weights(tmp_path / "eager" / "last")
    b = read_weights(tmp_path / "compiled" / "last")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-4, msg=key)

    def first_loss(run: str) -> float:
        return json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[0])["train_loss"]

    assert first_loss("compiled") == pytest.approx(first_loss("eager"), rel=1e-4)


def test_training_hands_freed_memory_back(synth, tmp_path, monkeypatch):
    """The loop releases the allocator's free pages every ``RELEASE_EVERY`` steps and after each validation
    (``.memory``: without it, stage 1 at batch 16 grew to 24 GB), and the weights are those of a run that
    never releases."""
    import clip4idc.training.train as training

    train(run_cfg(synth, tmp_path / "plain", "adapt", val_every=1))
    calls: list[int] = []
    monkeypatch.setattr(training, "RELEASE_EVERY", 2)
    monkeypatch.setattr(training, "release_free_memory", lambda: calls.append(1) or True)
    train(run_cfg(synth, tmp_path / "released", "adapt", val_every=1))
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "released" / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(calls) == steps[-1] // 2 + len(steps), "one release per 2 steps and one per validation"
    a, b = read_weights(tmp_path / "plain" / "last"), read_weights(tmp_path / "released" / "last")
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's (Linux)")
def test_release_returns_freed_pages_to_the_os():
    """Blocks freed between live ones stay resident in glibc's heap (they cannot merge into its top) until
    released; the release gives their pages back."""
    import ctypes

    from clip4idc.training.memory import release_free_memory

    def rss_mb() -> float:
        return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024

    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 * 1024  # below mmap's threshold: in the heap
    blocks = [libc.malloc(size) for _ in range(8000)]  # 500 MiB
    for b in blocks:
        ctypes.memset(b, 1, size)  # touch every page: resident
    for b in blocks[::2]:
        libc.free(b)  # 250 MiB of holes between live blocks
    held = rss_mb()
    assert release_free_memory()
    released = rss_mb()
    for b in blocks[1::2]:
        libc.free(b)
    assert held - released > 150, f"{held:.0f} MiB resident before the release, {released:.0f} after"
