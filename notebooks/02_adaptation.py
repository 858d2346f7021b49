# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2 · Stage 1: adapting CLIP to image *pairs*
#
# CLIP embeds one image and one sentence in the same space. CLIP4IDC (Guo et al., 2022) makes CLIP's
# vision transformer look at **two** images at once and then *adapts* it with the same contrastive
# objective CLIP was trained with, but between an image pair and its change caption. Only after this
# retrieval stage does a caption decoder learn to write (notebook 3). The idea: first teach the visual
# features what *differences* matter, using the cheap and strong retrieval signal.
#
# In this notebook we
#
# 1. follow a pair through the encoder, printing tensor shapes at every step,
# 2. see how captions become tokens and a text embedding,
# 3. compute the contrastive loss by hand from the model's outputs,
# 4. run adaptation on the synthetic set with a live loss plot,
# 5. measure retrieval (R@K), draw the similarity matrix, and list the captions a pair retrieves.

# %% [markdown]
# **Setup.** `lessons.lesson_plan()` (`notebooks/lessons.py`, beside these notebooks) holds every size
# used below; with `CLIP4IDC_QUICK=1` in the environment everything shrinks so that the notebook runs in
# about a minute (that is what CI runs). Scratch files go to `notebooks/_work/` (git-ignored) or to
# `$CLIP4IDC_WORK`. We draw with matplotlib's object-oriented API (`Figure`), so a figure shows exactly
# once, where `display(fig)` or a cell's last
# line puts it.

# %%
# %matplotlib inline
import time
from pathlib import Path

import lessons  # notebooks/lessons.py: the sizes, data and runs these notebooks share
import numpy as np
import torch
from IPython.display import display
from matplotlib.figure import Figure

import clip4idc

plan, work = lessons.setup()  # the sizes (CLIP4IDC_QUICK=1: the automatic tests' small ones), ./_work/full/

# %%
from clip4idc.data import AdaptationDataset, load_pairs

data = lessons.plan_dataset(plan, work)  # notebook 1's set (generated now if missing)
test_pairs = load_pairs(data, "clevr", "test")
cfg = clip4idc.get_config(plan.model, **plan.model_overrides)
print(
    {
        k: getattr(cfg, k)
        for k in (
            "resolution",
            "patch",
            "vision_width",
            "vision_layers",
            "intra_layers",
            "embed_dim",
            "text_layers",
        )
    }
)
print("grid", cfg.grid, "x", cfg.grid, "patches + 1 class token =", cfg.tokens_per_image, "tokens per image")

# %% [markdown]
# ## 1. The pair encoder, step by step
#
# `PairVisionTransformer` is CLIP's ViT with one change in the middle:
#
# 1. **Patches** - each image is cut into `patch × patch` squares, each projected to a `vision_width`
#    vector (`conv1`); a class token is prepended and position embeddings added (`embed_patches`).
# 2. **Per-image blocks** - the first `intra_layers` transformer blocks run on each image *separately*
#    (the two images are just two items of the batch).
# 3. **Joining** - the two token sequences get a learned *before* or *after* embedding, are concatenated
#    into one sequence of `2N` tokens, get a *joint* position embedding, and `ln_mid`.
# 4. **Joint blocks** - the remaining blocks attend across both images: here a token of the after image
#    can compare itself with the same place in the before image.
# 5. **Output** - `ln_post` and a projection to `embed_dim`; the pair embedding used for retrieval is
#    the mean of the two class tokens.
#
# Below we call those submodules one by one on a real pair and check that we get exactly what
# `model.encode_pair` returns.

# %%
torch.manual_seed(0)
model = clip4idc.build_model(cfg).eval()
visual = model.clip.visual
pair = test_pairs[0]
before, after = clip4idc.preprocess_pairs([pair.before], [pair.after], cfg.resolution)
print("before, after:", tuple(before.shape), tuple(after.shape), "(batch, RGB, height, width)")

with torch.no_grad():
    x = visual.embed_patches(torch.stack([before, after], dim=1).flatten(0, 1))
    print("1. embed_patches      ", tuple(x.shape), "(2 images, N tokens, width)")
    intra_att = []
    for i, block in enumerate(visual.transformer.resblocks[: cfg.intra_layers]):
        x, att = block(x, None, True)
        intra_att.append(att)
        print(
            f"2. per-image block {i}  ",
            tuple(x.shape),
            " attention",
            tuple(att.shape),
            "(images, heads, N, N)",
        )
    n = cfg.tokens_per_image
    x = x.view(1, 2, n, -1)
    joint = torch.cat([x[:, 0] + visual.bef_embedding, x[:, 1] + visual.aft_embedding], dim=1)
    joint = visual.ln_mid(joint + visual.joint_positional_embedding)
    print("3. joined             ", tuple(joint.shape), "(pair, 2N tokens, width)")
    joint_att = []
    for i, block in enumerate(visual.transformer.resblocks[cfg.intra_layers :], start=cfg.intra_layers):
        joint, att = block(joint, None, True)
        joint_att.append(att)
        print(
            f"4. joint block {i}      ",
            tuple(joint.shape),
            "attention",
            tuple(att.shape),
            "(pair, heads, 2N, 2N)",
        )
    hidden = visual.ln_post(joint) @ visual.proj
    pooled = (hidden[:, 0] + hidden[:, n]) / 2
    print("5. hidden             ", tuple(hidden.shape), " pooled", tuple(pooled.shape))

    enc = model.encode_pair(before, after, need_weights=True)
print(
    "same as model.encode_pair:",
    torch.allclose(enc.hidden, hidden, atol=1e-5),
    torch.allclose(enc.pooled, pooled, atol=1e-5),
)

# %% [markdown]
# Who can attend to whom? Below, the attention of the last per-image block and of the last joint block,
# drawn on the `2N × 2N` token grid (head mean; row = query token, column = key token; before tokens
# first). In the per-image stage only the two diagonal blocks can be non-zero; in the joint stage every
# token can look at both images. (The weights are random here - it is the *structure* that matters.)

# %%
full = torch.zeros(2 * n, 2 * n)
if intra_att:
    full[:n, :n] = intra_att[-1][0].mean(0)
    full[n:, n:] = intra_att[-1][1].mean(0)
fig = Figure(figsize=(9, 4.2))
axes = fig.subplots(1, 2)
panels = [(full, "per-image block"), (joint_att[-1][0].mean(0) if joint_att else full, "joint block")]
for ax, (mat, title) in zip(axes, panels):
    ax.imshow(mat.numpy() ** 0.5, cmap="magma")
    ax.axhline(n - 0.5, color="w", lw=0.8)
    ax.axvline(n - 0.5, color="w", lw=0.8)
    ax.set(title=f"{title} (sqrt scale)", xlabel="key token", ylabel="query token")
fig.tight_layout()
fig

# %% [markdown]
# ## 2. From caption to text embedding
#
# CLIP's text side is unchanged. The tokenizer is CLIP's byte-level BPE (49,408 entries): frequent
# words are one token, rare words split into pieces that end in `</w>` at a word boundary. `batch`
# wraps each caption in start (`49406`) and end (`49407`) tokens and pads with 0; the text encoder's
# output at the end token (the largest id, so `argmax` finds it) is the caption embedding.

# %%
tok = clip4idc.default_tokenizer()
caption = pair.captions[0]
ids = tok.encode(caption)
print(repr(caption))
print("BPE ids   ", ids)
print("BPE tokens", [tok.decoder[i] for i in ids])
print("decoded   ", repr(tok.decode(ids)))

text_ids, mask = tok.batch([caption, "there is no change"], max_words=plan.max_words)
print("batch ids ", tuple(text_ids.shape), text_ids[0, : len(ids) + 3].tolist(), "...")
with torch.no_grad():
    text_pooled, text_hidden = model.encode_text(text_ids)
print("encode_text: pooled", tuple(text_pooled.shape), "hidden", tuple(text_hidden.shape))

# %% [markdown]
# ## 3. The contrastive objective
#
# For a batch of `B` pairs and their captions, `retrieval_logits` gives the `B × B` matrix of scaled
# cosine similarities (text rows, pair columns). The right caption for pair `j` is on the diagonal, so
# the loss is a cross-entropy that picks the diagonal - once over rows (text → pair) and once over
# columns (pair → text), averaged. An untrained model scores everything alike, so its loss is about
# `ln B`.

# %%
from clip4idc.network.model import contrastive_loss

batch = [p for p in test_pairs if p.change_type != "no_change"][:8]
bef, aft = clip4idc.preprocess_pairs([p.before for p in batch], [p.after for p in batch], cfg.resolution)
ids, _ = tok.batch([p.captions[0] for p in batch], plan.max_words)
with torch.no_grad():
    logits = model.retrieval_logits(model.encode_text(ids)[0], model.encode_pair(bef, aft).pooled)
print(
    "logits",
    tuple(logits.shape),
    f"- loss {contrastive_loss(logits).item():.3f} vs ln B = {np.log(len(batch)):.3f}",
)

# %% [markdown]
# ## 4. Adaptation on the synthetic set, with a live plot
#
# **Where it starts.** Real CLIP4IDC runs start from OpenAI's pretrained CLIP (`init=ViT-B-32.pt`), whose
# pair parts (before/after and joint position embeddings, `ln_mid`) are new and start random. Nothing can
# be downloaded here, so this lesson starts from the **bundled demo model's CLIP** with its decoder removed
# (`lessons.start_checkpoint`): trained from random weights on 15,000 synthetic scenes by the demo recipe,
# it has been adapted to pairs already, so here stage 1 *continues* an adaptation on new scenes rather
# than starting one.
#
# The toolkit also ships a single-image **CLIP stand-in** (`clip-standin`, card in
# `clip4idc/weights/clip_standin/README.md`), pretrained on scene descriptions and loaded exactly as
# `ViT-B-32.pt` is - the paper's starting point. Stage 1 from it needs far more pairs than a lesson can
# show in minutes: on this notebook's 1,125 training pairs, 4 to 8 epochs left its test R@1 where it
# started (2.1 % zero-shot, 1.2-1.3 % after), while the 30,000-scene recipe in `projects/demo_model_v2`
# lifts val R@1 from 5 % to 9 % in two epochs. Try it: `lessons.adapt_config(plan, work, init="clip-standin",
# out=work / "adapt_standin", lr=2.5e-4, coef_lr=1.0)`.
#
# **What stage 1 does.** `clip4idc.training.train.train(TrainConfig(stage="adapt", ...))` is the whole
# stage: it builds the model (no decoder yet), samples batches of pairs with one caption each, and steps
# the optimiser (Adam with warm-up and BERT-style weight decay, as the original) on the contrastive loss.
# After every epoch it validates retrieval on the val split and keeps the best epoch's model in `best/`.
# `lessons.train_epochs` hands over each epoch's record as soon as it is written (the run waits meanwhile), so
# we can measure the test pairs after each epoch and redraw the curves. Epoch 0 is the start itself.
# CLIP's weights train at `lr × coef_lr`, the new pair parts at `lr`.

# %%
from clip4idc.evaluation.retrieval import retrieval_metrics
from clip4idc.network import inference

adapt_cfg = lessons.adapt_config(plan, work)
print({k: getattr(adapt_cfg, k) for k in ("init", "epochs", "batch_size", "lr", "coef_lr", "weight_decay")})
test_set = AdaptationDataset(test_pairs, train=False, resolution=cfg.resolution, max_words=plan.max_words)
captions = [p.captions for p in test_set.pairs]


def test_retrieval(m: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Every test caption (query) against every test change pair: similarities and each query's pair."""
    return inference.retrieval_similarity(m, test_set, captions, plan.max_words)


start = clip4idc.load(adapt_cfg.init, config=cfg) if adapt_cfg.init else model
measured = {"start": test_retrieval(start)}  # kept for the table in section 5
curve = [{"epoch": 0, **retrieval_metrics(*measured["start"])["text_to_pair"]}]  # epoch 0: the start
losses = []
fig = Figure(figsize=(10, 3.4))
ax_loss, ax_r = fig.subplots(1, 2)
handle = display(fig, display_id=True)
t0 = time.time()
for record in lessons.train_epochs(adapt_cfg):
    losses.append(record["train_loss"])
    measured["last"] = test_retrieval(clip4idc.load(Path(adapt_cfg.out) / "last"))
    curve.append({"epoch": record["epoch"], **retrieval_metrics(*measured["last"])["text_to_pair"]})
    epochs = [c["epoch"] for c in curve]
    ax_loss.clear()
    ax_loss.plot(epochs[1:], losses, "o-")
    ax_loss.axhline(np.log(adapt_cfg.batch_size), color="gray", ls=":", label="ln(batch): chance")
    ax_loss.set(title="training loss (contrastive)", xlabel="epoch", xticks=epochs)
    ax_loss.legend()
    ax_r.clear()
    for k in ("R@1", "R@5", "R@10"):
        ax_r.plot(epochs, [c[k] for c in curve], "o-", label=k)
    ax_r.set(title="test text→pair recall (%); epoch 0 = the start", xlabel="epoch", xticks=epochs)
    ax_r.legend()
    fig.tight_layout()
    handle.update(fig)
    print(
        f"epoch {record['epoch']}: loss {losses[-1]:.2f}, test R@1 {curve[-1]['R@1']:.1f} %, "
        f"{time.time() - t0:.0f} s"
    )
print(
    f"test R@1: start {curve[0]['R@1']:.1f} % -> after stage 1 {curve[-1]['R@1']:.1f} % "
    f"(x{curve[-1]['R@1'] / max(curve[0]['R@1'], 1e-9):.1f})"
)

# %% [markdown]
# **What the curve shows.** The loss stays low and test R@1 stays where it started (about 42 %, the
# printout above): the demo model's CLIP was adapted to pairs for hours already, and three gentle epochs on
# 1,125 new pairs neither add nor take away. Stage 1 that visibly teaches needs an encoder that has never
# seen a pair and tens of thousands of pairs (the stand-in note above); here it shows the mechanics - the
# loss, the per-epoch measurement, the checkpoint notebook 3 starts from - on an encoder that is already
# good.
#
# ## 5. Retrieval on the test split
#
# Every reference caption of every test change pair is a query; **text → pair R@K** is the share of
# queries whose own pair is among the K most similar pairs (pair → text the other way round). **MedianR**
# and **MeanR** are the median and mean rank of the right pair (1 is best). With `P` pairs, guessing gives
# R@K ≈ K/P, so we compare the adapted model with an untrained one (section 1's random weights), with the
# encoder it started from, and with that chance level.
#
# The other end of the scale is not 100 %. A caption names the changed object only by what singles it
# out *in its own scene* ("the small object moved"), so it fits other pairs too. On a synthetic set,
# `probes.retrieval_ceiling` reads what each caption pins down and gives the R@K a perfect model
# would expect, one that sees every scene exactly.

# %%
from clip4idc.evaluation.results import format_rows

adapted = clip4idc.load(Path(adapt_cfg.out) / "last")
rows = []
measured["untrained"] = test_retrieval(model)
for name, key in [("untrained", "untrained"), ("start (before stage 1)", "start"), ("after stage 1", "last")]:
    sim, text_to_pair = measured[key]
    r = retrieval_metrics(sim, text_to_pair)
    rows.append(
        {
            "model": name,
            **{f"t2p {k}": v for k, v in r["text_to_pair"].items()},
            "p2t R@1": r["pair_to_text"]["R@1"],
        }
    )
P = len(test_set)
rows.append({"model": "chance", "t2p R@1": 100 / P, "t2p R@5": 500 / P, "t2p R@10": 1000 / P})
if (data / "scenes.json").exists():  # our generator's sets say what every caption could fit
    from clip4idc.data.synthetic import load_scenes
    from clip4idc.evaluation.probes import retrieval_ceiling

    best = retrieval_ceiling(test_pairs, load_scenes(data))
    rows.append({"model": "best possible", **{f"t2p {k}": best[k] for k in ("R@1", "R@5", "R@10")}})
print(f"{P} test change pairs, {len(text_to_pair)} caption queries")
print(format_rows(rows, digits=1))

# %% [markdown]
# ## 6. The similarity matrix
#
# Each pair against the first caption of each pair, with pairs sorted by change type. A model that
# has learned the change types shows brighter blocks on the diagonal (captions of the same type score
# higher); a model that has learned the exact change shows a bright diagonal.

# %%
order = sorted(range(P), key=lambda j: (test_set.pairs[j].change_type, j))
ordered = [test_set.pairs[j] for j in order]
ordered_set = AdaptationDataset(ordered, train=False, resolution=cfg.resolution, max_words=plan.max_words)
square, _ = inference.retrieval_similarity(
    adapted, ordered_set, [[p.captions[0]] for p in ordered], plan.max_words
)

fig = Figure(figsize=(6.5, 5.6))
ax = fig.subplots()
im = ax.imshow(square.numpy(), cmap="viridis")
fig.colorbar(im, ax=ax, label="scaled cosine similarity")
types_sorted = [p.change_type for p in ordered]
starts = [i for i, t in enumerate(types_sorted) if i == 0 or t != types_sorted[i - 1]]
for s in starts[1:]:
    ax.axhline(s - 0.5, color="w", lw=0.7)
    ax.axvline(s - 0.5, color="w", lw=0.7)
mids = [(a + b - 1) / 2 for a, b in zip(starts, starts[1:] + [P])]
ax.set_xticks(mids, [types_sorted[s] for s in starts], rotation=30)
ax.set_yticks(mids, [types_sorted[s] for s in starts])
ax.set(xlabel="pair", ylabel="caption (first reference of each pair)")
fig.tight_layout()
fig

# %% [markdown]
# ## 7. What does a pair retrieve?
#
# `results.top_captions` ranks every test caption for one pair. ✓ marks a caption written for this
# very pair; the predicted change type of each retrieved caption (read from its words by
# `clip4idc.evaluation.change_types.classify_change`) shows whether the model at least got the *kind* of change.
#
# The misses below are instructive. A caption of the right type about a near-identical object (same colour
# and size, another material or shape) outranks the pair's own: a caption names the object only by what
# singles it out in its scene, and the encoder sees each object through about one 16-pixel patch. A move
# retrieving "a new ... appeared" captions is the other classic: in the after image a moved object *is*
# somewhere it was not, and only the empty place it left tells a move from an addition.

# %%
from clip4idc.evaluation.change_types import classify_change
from clip4idc.evaluation.results import top_captions

sim, text_to_pair = measured["last"]  # the adapted model's, from section 4
texts = [c for caps in captions for c in caps]
first_of_type = {}
for j, p in enumerate(test_set.pairs):
    first_of_type.setdefault(p.change_type, j)
picks = list(first_of_type.values())[:3]
fig = Figure(figsize=(7, 2.4 * len(picks)))
axes = fig.subplots(len(picks), 2, squeeze=False)
for row, j in zip(axes, picks):
    p = test_set.pairs[j]
    for ax, path, title in zip(row, (p.before, p.after), ("before", f"after ({p.change_type})")):
        ax.imshow(clip4idc.load_image(path))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
fig.tight_layout()
display(fig)
for j in picks:
    p = test_set.pairs[j]
    print(f"pair {p.pair_id} ({p.change_type}) - a reference: {p.captions[0]!r}")
    for text, score, rank in top_captions(sim, texts, j, k=5):
        mark = "✓" if text in p.captions else " "
        print(f"  {rank}. {mark} {score:6.2f}  [{classify_change(text):9}] {text}")

# %% [markdown]
# ## Takeaways
#
# * The pair encoder is CLIP's ViT split in two: per-image blocks, then joint blocks over `2N` tokens
#   with before/after and joint position embeddings.
# * Adaptation is CLIP's contrastive loss between *pairs* and change captions; R@K against chance tells
#   whether the features separate the changes.
# * Stage 1 needs a good start *and* many pairs: from the demo model's CLIP (already adapted) a few
#   epochs on new scenes keep retrieval where it was; from the CLIP stand-in (never adapted) a lesson's
#   1,125 pairs are far too few to move R@1, and the paper's pipeline needs tens of thousands. With
#   `CLIP4IDC_QUICK=1` everything runs for seconds on ~150 scenes, so read the numbers as a smoke test.
#
# **Next:** notebook 3 puts a caption decoder on top of this adapted encoder.
