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
# # 1 · Image difference captioning: the data
#
# **The task.** Image difference captioning (IDC) gets two images of the same scene, a *before* and
# an *after*, and writes one sentence about what changed: *"the small red cube has been moved"*. Two
# things make it hard:
#
# * the change is small - one object among many, a few percent of the pixels;
# * not every pixel difference is a change. The camera may have moved a little and the light may
#   differ; a good captioner ignores that and says *"there is no change"*.
#
# **CLEVR-Change** (Park et al., 2019) turns this into a controlled benchmark: rendered scenes of
# simple objects (cubes, spheres, cylinders; 8 colours; rubber or metal; large or small) with five
# kinds of *semantic* change, that is a change to the objects themselves - `color`, `material`, `add`,
# `drop`, `move` - and, for every scene, a *distractor* image that differs from the before image only by
# a small random shift of the camera and the lights (*jitter*).
#
# **CLIP4IDC**, the method this toolkit implements, builds on CLIP, OpenAI's model that embeds images and
# sentences in one space so that an image and a sentence about it score high together. CLIP4IDC first
# adapts CLIP's image encoder to *pairs* of images (stage 1), then trains a caption writer on top
# (stage 2). This notebook is about the data both stages read.
#
# In this notebook we
#
# 1. generate a small synthetic CLEVR-Change set on the CPU,
# 2. walk through the official file layout,
# 3. read it with the toolkit's readers,
# 4. look at before / after / distractor triples with their captions,
# 5. find the changed object's box (the ground truth for localisation),
# 6. see what the two training stages are fed,
# 7. compare with Spot-the-Diff and Image Editing Request, and see how to point the toolkit at the real
#    datasets.

# %% [markdown]
# **Setup.** `lessons.lesson_plan()` (`notebooks/lessons.py`, beside these notebooks) holds every size
# used below; with `CLIP4IDC_QUICK=1` in the environment everything shrinks so that the notebook runs in
# about a minute (that is what the automatic tests run on every change). Scratch files go to
# `notebooks/_work/` (git-ignored) or to `$CLIP4IDC_WORK`. We draw with matplotlib's object-oriented API
# (`Figure`), so a figure shows exactly once, where `display(fig)` puts it.

# %%
# %matplotlib inline
import json
from pathlib import Path

import lessons  # notebooks/lessons.py: the sizes, data and runs these notebooks share
from IPython.display import display
from matplotlib.figure import Figure

import clip4idc

plan, work = lessons.setup()  # the sizes (CLIP4IDC_QUICK=1: the automatic tests' small ones), ./_work/full/

# %% [markdown]
# ## 1. Generate a small synthetic CLEVR-Change set
#
# The real CLEVR-Change was rendered with Blender, a 3D graphics program (80k scenes).
# `clip4idc.data.synthetic.generate` renders CLEVR-like scenes with a small numpy *ray caster* instead
# (for every pixel it follows the line of sight from the camera to the first object it meets and shades
# that point): shading, shadows, metal highlights, camera perspective. It writes them **in the official
# layout**, so every reader, training run and evaluation works on it unchanged. Scene `i` is drawn from
# its own random generator seeded by `(seed, i)`: the same seed always gives the same files, however many
# processes render them (`workers`: one per CPU core here, up to four). Each block
# of five consecutive scenes holds each change type once, in random order.
#
# The bar below counts the scenes as they are written (three images each); the full plan's 1,500 take
# about a minute.

# %%
import contextlib
import sys

from clip4idc.data.synthetic import generate

data = work / "synth"
with contextlib.redirect_stderr(sys.stdout):  # the bar on stdout: a notebook draws stderr in red
    summary = generate(
        data,
        plan.pairs,
        plan.image_size,
        seed=plan.data_seed,
        val_frac=plan.val_frac,
        test_frac=plan.test_frac,
        workers=plan.data_workers,
        progress=True,
    )
print(f"{summary['pairs']} scenes (x3 images) in {summary['seconds']:.1f} s")

# %% [markdown]
# ## 2. The CLEVR-Change layout
#
# | file | what it holds |
# | --- | --- |
# | `images/CLEVR_default_%06d.png` | the *before* image of scene n |
# | `sc_images/CLEVR_semantic_%06d.png` | the *after* image: one semantic change (+ camera/light jitter) |
# | `nsc_images/CLEVR_nonsemantic_%06d.png` | the *distractor*: camera/light jitter only |
# | `change_captions.json` | before-image file name → the change captions |
# | `no_change_captions.json` | before-image file name → the no-change captions |
# | `splits.json` | `train` / `val` / `test` → scene ids |
# | `type_mapping.json` | change type → scene ids |
# | `scenes.json` | *synthetic only*: every object's attributes and boxes, and what changed |

# %%
for path in sorted(data.iterdir()):
    if path.name.startswith("."):
        continue  # caches made by training runs
    if path.is_dir():
        names = sorted(p.name for p in path.glob("*.png"))
        print(f"{path.name + '/':<24} {len(names):>5} images, e.g. {names[0]}")
    else:
        print(f"{path.name:<24} {path.stat().st_size / 1024:>8.1f} KiB")

# %%
change_caps = json.loads((data / "change_captions.json").read_text())
no_change_caps = json.loads((data / "no_change_captions.json").read_text())
key = next(iter(change_caps))
print(f"change_captions.json    [{key!r}] = {change_caps[key][:3]} ...")
print(f"no_change_captions.json [{key!r}] = {no_change_caps[key][:3]} ...")
splits = json.loads((data / "splits.json").read_text())
types = json.loads((data / "type_mapping.json").read_text())
print("splits.json       scenes per split:", {k: len(v) for k, v in splits.items()})
print("type_mapping.json scenes per type: ", {k: len(v) for k, v in types.items()})

# %% [markdown]
# ## 3. Reading it: one `Pair` per image pair
#
# `clip4idc.data.load_pairs(root, dataset, split)` turns any of the three datasets into a flat list
# of `Pair`s. For CLEVR-Change every scene gives **two** pairs, as the official evaluation counts
# them: the change pair `"n"` (before → after) and the no-change pair `"n_n"` (before → distractor).
# `check_dataset` (the `clip4idc data check` command) validates a folder and summarises it.

# %%
from clip4idc.data import load_pairs
from clip4idc.data.check import check_dataset

test_pairs = load_pairs(data, "clevr", "test")
change_pair = next(p for p in test_pairs if p.change_type != "no_change")
twin = next(p for p in test_pairs if p.pair_id == change_pair.pair_id + "_n")
for p in (change_pair, twin):
    print(f"pair {p.pair_id!r:7} type {p.change_type!r:11} {p.before.name} -> {p.after.name}")
    print(f"    {len(p.captions)} references, e.g. {p.captions[0]!r}")
print()
print(check_dataset(data, "clevr").summary())

# %% [markdown]
# ## 4. Before / after / distractor
#
# One scene per change type. Look for the change between the first two columns, and notice that
# the third column *also* differs from the first (the camera moved a little, the light changed) -
# yet its caption says nothing changed. Learning to tell these two kinds of difference apart is the
# heart of the task. (`examples_per_type` picks the first pair of each type; `plot_triples` draws a
# scene's three images with its captions.)

# %%
from clip4idc.data.synthetic import plot_triples
from clip4idc.evaluation.results import examples_per_type

all_pairs = load_pairs(data, "clevr", "all")
examples = examples_per_type(all_pairs, per_type=1, types=("color", "material", "add", "drop", "move"))
scene_ids = [pairs[0].scene_id for pairs in examples.values()]
fig = plot_triples(data, scene_ids, captions=2)
display(fig)

# %% [markdown]
# ## 5. Where is the change? Boxes from `scenes.json`
#
# The synthetic set also records every object's pixel box in each image (`scenes.json`, read by
# `load_scenes`). `change_boxes(scene)` gives the changed object's boxes: in both images for `color`,
# `material` and `move`; only in the *after* image for `add`; only in the *before* image for `drop`.
# Notebook 5 uses these boxes to check whether the model's attention points at the change (the *pointing
# game*).

# %%
from matplotlib.patches import Rectangle
from PIL import Image

from clip4idc.data.synthetic import change_boxes, load_scenes

scenes = load_scenes(data)
fig = Figure(figsize=(2.0 * len(scene_ids), 3.6))
axes = fig.subplots(2, len(scene_ids), squeeze=False)
for col, sid in enumerate(scene_ids):
    scene = scenes[sid]
    boxes = change_boxes(scene)
    for row, which in enumerate(("before", "after")):
        ax = axes[row, col]
        ax.imshow(Image.open(data / scene["images"][which]))
        for x0, y0, x1, y1 in boxes[which]:
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="yellow", lw=2))
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, col].set_title(f"scene {sid}: {scene['change']['type']}")
axes[0, 0].set_ylabel("before")
axes[1, 0].set_ylabel("after")
fig.tight_layout()
display(fig)

# %%
scene = scenes[scene_ids[0]]
obj = scene["objects"][scene["change"]["object"]]
print("change:        ", scene["change"])
print("changed object:", {k: obj[k] for k in ("shape", "color", "material", "size")})
print("its boxes:     ", obj["box"])
print("objects in the scene:", len(scene["objects"]))

# %% [markdown]
# ## 6. What the two training stages see
#
# * **Stage 1, adaptation** (`AdaptationDataset`): a pair and *one* of its captions. The
#   training is *contrastive*: in each *batch* (the group of examples of one training step) the model
#   learns to score every pair higher with its own caption than with the other captions of the batch, so
#   that afterwards a caption can *retrieve* its pair. In training the caption is drawn at random each
#   *epoch* (one pass over the training set) and, for CLEVR-Change, the before image is swapped for the
#   distractor half of the time: it shows the same scene, so the caption still holds, and the model sees
#   one more view of the scene at no cost.
# * **Stage 2, finetuning** (`CaptionDataset`): a change pair with its caption as input ids
#   and output ids, the same tokens shifted by one place (*teacher forcing*: while learning, the decoder
#   is given the true previous words and asked for the next one), plus its distractor pair with a
#   no-change caption (the `nc_` fields), so every step also practises saying "no change".
#
# Images are resized to the model's square resolution (128 × 128 pixels here, without keeping the aspect
# ratio) and each colour channel is shifted and scaled by the mean and standard deviation CLIP was trained
# with. Captions become CLIP's token ids: its *byte-pair encoding* (BPE) splits words into frequent pieces
# and numbers each piece (notebook 2 looks at the tokenizer). The masks mark which of the
# `max_words` positions hold tokens and which are padding.

# %%
from clip4idc.data import AdaptationDataset, CaptionDataset

cfg = clip4idc.get_config(plan.model, **plan.model_overrides)
tok = clip4idc.default_tokenizer()
train_pairs = load_pairs(data, "clevr", "train")

adapt_set = AdaptationDataset(train_pairs, train=True, resolution=cfg.resolution, max_words=plan.max_words)
item = adapt_set[0]
print("adaptation item:", {k: tuple(v.shape) if hasattr(v, "shape") else v for k, v in item.items()})
n = int(item["text_mask"].sum())
print("   its caption:", repr(tok.decode(item["text_ids"][1 : n - 1]).strip()))

caption_set = CaptionDataset(train_pairs, train=True, resolution=cfg.resolution, max_words=plan.max_words)
item = caption_set[0]
print("finetuning item:", {k: tuple(v.shape) if hasattr(v, "shape") else v for k, v in item.items()})
print(
    f"pairs: {len(adapt_set)} for adaptation, {len(caption_set)} for finetuning "
    f"(change pairs; each brings its distractor)"
)

# %% [markdown]
# ## 7. Spot-the-Diff and Image Editing Request
#
# CLIP4IDC is also evaluated on two datasets of real photographs. They differ from CLEVR-Change in
# ways that matter for a model:
#
# | | CLEVR-Change | Spot-the-Diff | Image Editing Request (IER) |
# | --- | --- | --- | --- |
# | images | rendered 3D scenes | frames of fixed surveillance cameras | photos and their edited versions |
# | what changed | exactly one object, five types | people/cars appearing, leaving, moving - often several changes per pair | a global or local photo edit |
# | captions | one sentence about the change | one sentence per difference, several per pair | an editing *request* ("make the sky bluer") |
# | no-change pairs | yes (distractors) | no | no |
# | change types, boxes | yes (boxes only in our synthetic version) | no | no |
# | size | ~80k scenes | ~13k pairs | ~4k pairs |
#
# So on Spot-the-Diff and IER there is no per-type table, no change-type accuracy and no pointing game -
# `clip4idc eval` reports those as *not applicable* rather than inventing a number.
#
# The readers expect each dataset in its official layout. To see it concretely, we build a two-pair
# Spot-the-Diff folder and a two-pair IER folder out of our synthetic images and read them back
# (`detect_dataset` tells the three layouts apart):

# %%
import shutil

from clip4idc.data import detect_dataset

spot = work / "mini_spot"
(spot / "resized_images").mkdir(parents=True, exist_ok=True)
entries = []
for k, p in enumerate(p for p in test_pairs if p.change_type != "no_change"):
    if k == 2:
        break
    shutil.copy(p.before, spot / "resized_images" / f"{k}.png")
    shutil.copy(p.after, spot / "resized_images" / f"{k}_2.png")
    entries.append({"img_id": str(k), "sentences": p.captions[:2]})
(spot / "reformat_test.json").write_text(json.dumps(entries))

ier = work / "mini_ier"
(ier / "images").mkdir(parents=True, exist_ok=True)
rows = []
for e in entries:
    for suffix in ("", "_2"):
        shutil.copy(spot / "resized_images" / f"{e['img_id']}{suffix}.png", ier / "images")
    rows.append(
        {
            "img0": f"{e['img_id']}.png",
            "img1": f"{e['img_id']}_2.png",
            "sents": e["sentences"][:1],
            "uid": f"edit{e['img_id']}",
        }
    )
(ier / "test.json").write_text(json.dumps(rows))

for root in (spot, ier):
    kind = detect_dataset(root)
    for p in load_pairs(root, kind, "test"):
        print(f"{kind:5} {p.pair_id:6} {p.before.name:>8} -> {p.after.name:<10} {p.captions[0]!r}")

# %% [markdown]
# ## 8. Pointing the toolkit at the real datasets
#
# Download the datasets from their authors (see `docs/data.md`), unpack each in its official layout,
# then check it before training - every problem is reported as one line naming the file:
#
# ```console
# $ clip4idc data check data/clevr_change --dataset clevr
# $ clip4idc data check data/spot_the_diff --dataset spot   # merge raw annotations first:
# $ python data_prep/merge_spot_the_diff.py data/spot_the_diff/annotations data/spot_the_diff
# $ clip4idc data check data/ier --dataset ier
# ```
#
# In Python the same folders are read by `load_pairs(root, "clevr" | "spot" | "ier", split)`, and a
# training run only needs `dataset` and `data` in its config. The repository's configs for the paper's
# runs:

# %%
configs = Path("..") / "configs"
for name in ("clevr_adapt.json", "spot_finetune.json"):
    if (configs / name).exists():
        print(f"--- configs/{name}")
        print((configs / name).read_text())

# %% [markdown]
# **Next:** notebook 2 builds the pair encoder and adapts it to this data with contrastive retrieval.
