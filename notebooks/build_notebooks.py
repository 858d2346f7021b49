"""Write the tutorial notebooks from the cell sources in this file (outputs stripped).

    python notebooks/build_notebooks.py          # (re)write notebooks/*.ipynb
    python notebooks/build_notebooks.py --check  # exit 1 if a notebook differs from its source here

Keeping the cells here makes review and diffs readable; the .ipynb files are what people open. Every
computation in a cell is a call into the ``clip4idc`` library - the notebooks only glue and plot; the glue
they share (sizes, data, the runs they build on each other) is ``lessons.py`` beside them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from textwrap import dedent

import nbformat

HERE = Path(__file__).resolve().parent


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(dedent(text).strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(dedent(text).strip("\n"))


SETUP = code(
    '''
    %matplotlib inline
    import json
    import time
    from pathlib import Path

    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from IPython.display import display
    from matplotlib.figure import Figure

    import clip4idc
    import lessons  # notebooks/lessons.py: the sizes, data and runs these notebooks share

    plan = lessons.lesson_plan()            # CLIP4IDC_QUICK=1 gives the small CI sizes
    work = lessons.work_dir("_work", plan)  # $CLIP4IDC_WORK or ./_work, then quick/ or full/
    if plan.threads:
        torch.set_num_threads(plan.threads)  # tiny models: one thread is fastest on a busy CPU
    print(f"plan '{plan.name}': {plan.pairs} synthetic scenes at {plan.image_size[0]}x{plan.image_size[1]}, "
          f"model '{plan.model}' {plan.model_overrides}")
    print("work folder:", work.resolve())
    '''
)

SETUP_MD = md(
    """
    **Setup.** `lessons.lesson_plan()` (`notebooks/lessons.py`, beside these notebooks) holds every size
    used below; with `CLIP4IDC_QUICK=1` in the environment everything shrinks so that the notebook runs in
    about a minute (that is what CI runs). Scratch files go to `notebooks/_work/` (git-ignored) or to
    `$CLIP4IDC_WORK`. We draw with matplotlib's object-oriented API (`Figure`), so a figure shows exactly
    once, where `display(fig)` or a cell's last
    line puts it.
    """
)

# ======================================================================================================
# 01 data
# ======================================================================================================

NB01 = [
    md(
        """
        # 1 · Image difference captioning: the data

        **The task.** Image difference captioning (IDC) gets two images of the same scene, a *before* and
        an *after*, and writes one sentence about what changed: *"the small red cube has been moved"*. Two
        things make it hard:

        * the change is small - one object among many, a few percent of the pixels;
        * not every pixel difference is a change. The camera may have moved a little and the light may
          differ; a good captioner ignores that and says *"there is no change"*.

        **CLEVR-Change** (Park et al., 2019) turns this into a controlled benchmark: rendered scenes of
        simple objects (cubes, spheres, cylinders; 8 colours; rubber or metal; large or small) with five
        kinds of *semantic* change - `color`, `material`, `add`, `drop`, `move` - and, for every scene, a
        *distractor* image that differs from the before image only by camera and lighting jitter.

        In this notebook we

        1. generate a small synthetic CLEVR-Change set on the CPU,
        2. walk through the official file layout,
        3. read it with the toolkit's readers,
        4. look at before / after / distractor triples with their captions,
        5. find the changed object's box (the ground truth for localisation),
        6. see what the two training stages are fed,
        7. compare with Spot-the-Diff and Image Editing Request, and see how to point the toolkit at the real
           datasets.
        """
    ),
    SETUP_MD,
    SETUP,
    md(
        """
        ## 1. Generate a small synthetic CLEVR-Change set

        The real CLEVR-Change was rendered with Blender (80k scenes). `clip4idc.data.synthetic` renders
        CLEVR-like scenes with a small numpy ray caster instead - shading, shadows, metal highlights, camera
        perspective - and writes them **in the official layout**, so every reader, training run and
        evaluation works on it unchanged. Scene `i` is drawn from its own random generator seeded by
        `(seed, i)`: the same seed always gives the same files. Change types are balanced in blocks of
        five scenes.
        """
    ),
    code(
        """
        from clip4idc.data.synthetic import generate

        data = work / "synth"
        t0 = time.time()
        summary = generate(data, plan.pairs, plan.image_size, seed=plan.data_seed,
                           val_frac=plan.val_frac, test_frac=plan.test_frac, progress=False)
        print(f"{summary['pairs']} scenes (x3 images) in {time.time() - t0:.1f} s")
        """
    ),
    md(
        """
        ## 2. The CLEVR-Change layout

        | file | what it holds |
        | --- | --- |
        | `images/CLEVR_default_%06d.png` | the *before* image of scene n |
        | `sc_images/CLEVR_semantic_%06d.png` | the *after* image: one semantic change (+ camera/light jitter) |
        | `nsc_images/CLEVR_nonsemantic_%06d.png` | the *distractor*: camera/light jitter only |
        | `change_captions.json` | before-image file name → the change captions |
        | `no_change_captions.json` | before-image file name → the no-change captions |
        | `splits.json` | `train` / `val` / `test` → scene ids |
        | `type_mapping.json` | change type → scene ids |
        | `scenes.json` | *synthetic only*: every object's attributes and boxes, and what changed |
        """
    ),
    code(
        """
        for path in sorted(data.iterdir()):
            if path.name.startswith("."):
                continue  # caches made by training runs
            if path.is_dir():
                names = sorted(p.name for p in path.glob("*.png"))
                print(f"{path.name + '/':<24} {len(names):>5} images, e.g. {names[0]}")
            else:
                print(f"{path.name:<24} {path.stat().st_size / 1024:>8.1f} KiB")
        """
    ),
    code(
        """
        change_caps = json.loads((data / "change_captions.json").read_text())
        no_change_caps = json.loads((data / "no_change_captions.json").read_text())
        key = next(iter(change_caps))
        print(f"change_captions.json    [{key!r}] = {change_caps[key][:3]} ...")
        print(f"no_change_captions.json [{key!r}] = {no_change_caps[key][:3]} ...")
        splits = json.loads((data / "splits.json").read_text())
        types = json.loads((data / "type_mapping.json").read_text())
        print("splits.json       scenes per split:", {k: len(v) for k, v in splits.items()})
        print("type_mapping.json scenes per type: ", {k: len(v) for k, v in types.items()})
        """
    ),
    md(
        """
        ## 3. Reading it: one `Pair` per image pair

        `clip4idc.data.load_pairs(root, dataset, split)` turns any of the three datasets into a flat list
        of `Pair`s. For CLEVR-Change every scene gives **two** pairs, as the official evaluation counts
        them: the change pair `"n"` (before → after) and the no-change pair `"n_n"` (before → distractor).
        `check_dataset` (the `clip4idc data check` command) validates a folder and summarises it.
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        ## 4. Before / after / distractor

        One scene per change type. Look for the change between the first two columns, and notice that
        the third column *also* differs from the first (the camera moved a little, the light changed) -
        yet its caption says nothing changed. Learning to tell these two kinds of difference apart is the
        heart of the task.
        """
    ),
    code(
        """
        from clip4idc.evaluation.results import examples_per_type
        from clip4idc.data.synthetic import plot_triples

        all_pairs = load_pairs(data, "clevr", "all")
        examples = examples_per_type(all_pairs, per_type=1, types=("color", "material", "add", "drop", "move"))
        scene_ids = [pairs[0].scene_id for pairs in examples.values()]
        fig = plot_triples(data, scene_ids, captions=2)
        display(fig)
        plt.close(fig)
        """
    ),
    md(
        """
        ## 5. Where is the change? Boxes from `scenes.json`

        The synthetic set also records every object's pixel box in each image. `change_boxes(scene)` gives
        the changed object's boxes: in both images for `color`, `material` and `move`; only in the *after*
        image for `add`; only in the *before* image for `drop`. Notebook 5 uses these boxes to check
        whether the model's attention points at the change (the *pointing game*).
        """
    ),
    code(
        """
        from matplotlib.patches import Rectangle
        from PIL import Image

        from clip4idc.data.synthetic import change_boxes, load_scenes

        scenes = load_scenes(data)
        fig = Figure(figsize=(2.6 * len(scene_ids), 4.4))
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
        fig
        """
    ),
    code(
        """
        scene = scenes[scene_ids[0]]
        obj = scene["objects"][scene["change"]["object"]]
        print("change:        ", scene["change"])
        print("changed object:", {k: obj[k] for k in ("shape", "color", "material", "size")})
        print("its boxes:     ", obj["box"])
        print("objects in the scene:", len(scene["objects"]))
        """
    ),
    md(
        """
        ## 6. What the two training stages see

        * **Stage 1, adaptation** (`AdaptationDataset`): a pair and *one* of its captions, for contrastive
          retrieval. In training the caption is drawn at random each epoch and, for CLEVR-Change, the before
          image is swapped for the distractor half of the time (it shows the same scene, so the caption still
          holds - a free augmentation against viewpoint changes).
        * **Stage 2, finetuning** (`CaptionDataset`): a change pair with teacher-forcing token ids, plus its
          distractor pair with a no-change caption, so every step also practises saying "no change".

        Images are resized to the model's resolution and normalised as CLIP expects; captions become CLIP
        BPE ids (notebook 2 looks at the tokenizer).
        """
    ),
    code(
        """
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
        print(f"pairs: {len(adapt_set)} for adaptation, {len(caption_set)} for finetuning "
              f"(change pairs; each brings its distractor)")
        """
    ),
    md(
        """
        ## 7. Spot-the-Diff and Image Editing Request

        CLIP4IDC is also evaluated on two datasets of real photographs. They differ from CLEVR-Change in
        ways that matter for a model:

        | | CLEVR-Change | Spot-the-Diff | Image Editing Request (IER) |
        | --- | --- | --- | --- |
        | images | rendered 3D scenes | frames of fixed surveillance cameras | photos and their edited versions |
        | what changed | exactly one object, five types | people/cars appearing, leaving, moving - often several changes per pair | a global or local photo edit |
        | captions | one sentence about the change | one sentence per difference, several per pair | an editing *request* ("make the sky bluer") |
        | no-change pairs | yes (distractors) | no | no |
        | change types, boxes | yes (boxes only in our synthetic version) | no | no |
        | size | ~80k scenes | ~13k pairs | ~4k pairs |

        So on Spot-the-Diff and IER there is no per-type table, no change-type accuracy and no pointing game -
        `clip4idc eval` reports those as *not applicable* rather than inventing a number.

        The readers expect each dataset in its official layout. To see it concretely, we build a two-pair
        Spot-the-Diff folder and a two-pair IER folder out of our synthetic images and read them back:
        """
    ),
    code(
        """
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
            rows.append({"img0": f"{e['img_id']}.png", "img1": f"{e['img_id']}_2.png",
                         "sents": e["sentences"][:1], "uid": f"edit{e['img_id']}"})
        (ier / "test.json").write_text(json.dumps(rows))

        for root in (spot, ier):
            kind = detect_dataset(root)
            for p in load_pairs(root, kind, "test"):
                print(f"{kind:5} {p.pair_id:6} {p.before.name:>8} -> {p.after.name:<10} {p.captions[0]!r}")
        """
    ),
    md(
        """
        ## 8. Pointing the toolkit at the real datasets

        Download the datasets from their authors (see `docs/data.md`), unpack each in its official layout,
        then check it before training - every problem is reported as one line naming the file:

        ```console
        $ clip4idc data check data/clevr_change --dataset clevr
        $ clip4idc data check data/spot_the_diff --dataset spot   # merge raw annotations first:
        $ python data_prep/merge_spot_the_diff.py data/spot_the_diff/annotations data/spot_the_diff
        $ clip4idc data check data/ier --dataset ier
        ```

        In Python the same folders are read by `load_pairs(root, "clevr" | "spot" | "ier", split)`, and a
        training run only needs `dataset` and `data` in its config. The repository's configs for the paper's
        runs:
        """
    ),
    code(
        """
        configs = Path("..") / "configs"
        for name in ("clevr_adapt.json", "spot_finetune.json"):
            if (configs / name).exists():
                print(f"--- configs/{name}")
                print((configs / name).read_text())
        """
    ),
    md(
        """
        **Next:** notebook 2 builds the pair encoder and adapts it to this data with contrastive retrieval.
        """
    ),
]

# ======================================================================================================
# 02 adaptation
# ======================================================================================================

NB02 = [
    md(
        """
        # 2 · Stage 1: adapting CLIP to image *pairs*

        CLIP embeds one image and one sentence in the same space. CLIP4IDC (Guo et al., 2022) makes CLIP's
        vision transformer look at **two** images at once and then *adapts* it with the same contrastive
        objective CLIP was trained with, but between an image pair and its change caption. Only after this
        retrieval stage does a caption decoder learn to write (notebook 3). The idea: first teach the visual
        features what *differences* matter, using the cheap and strong retrieval signal.

        In this notebook we

        1. follow a pair through the encoder, printing tensor shapes at every step,
        2. see how captions become tokens and a text embedding,
        3. compute the contrastive loss by hand from the model's outputs,
        4. run adaptation on the synthetic set with a live loss plot,
        5. measure retrieval (R@K), draw the similarity matrix, and list the captions a pair retrieves.
        """
    ),
    SETUP_MD,
    SETUP,
    code(
        """
        from clip4idc.data import AdaptationDataset, load_pairs

        data = lessons.plan_dataset(plan, work)  # notebook 1's set (generated now if missing)
        test_pairs = load_pairs(data, "clevr", "test")
        cfg = clip4idc.get_config(plan.model, **plan.model_overrides)
        print({k: getattr(cfg, k) for k in ("resolution", "patch", "vision_width", "vision_layers",
                                             "intra_layers", "embed_dim", "text_layers")})
        print("grid", cfg.grid, "x", cfg.grid, "patches + 1 class token =", cfg.tokens_per_image, "tokens per image")
        """
    ),
    md(
        """
        ## 1. The pair encoder, step by step

        `PairVisionTransformer` is CLIP's ViT with one change in the middle:

        1. **Patches** - each image is cut into `patch × patch` squares, each projected to a `vision_width`
           vector (`conv1`); a class token is prepended and position embeddings added (`embed_patches`).
        2. **Per-image blocks** - the first `intra_layers` transformer blocks run on each image *separately*
           (the two images are just two items of the batch).
        3. **Joining** - the two token sequences get a learned *before* or *after* embedding, are concatenated
           into one sequence of `2N` tokens, get a *joint* position embedding, and `ln_mid`.
        4. **Joint blocks** - the remaining blocks attend across both images: here a token of the after image
           can compare itself with the same place in the before image.
        5. **Output** - `ln_post` and a projection to `embed_dim`; the pair embedding used for retrieval is
           the mean of the two class tokens.

        Below we call those submodules one by one on a real pair and check that we get exactly what
        `model.encode_pair` returns.
        """
    ),
    code(
        """
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
                print(f"2. per-image block {i}  ", tuple(x.shape), " attention", tuple(att.shape), "(images, heads, N, N)")
            n = cfg.tokens_per_image
            x = x.view(1, 2, n, -1)
            joint = torch.cat([x[:, 0] + visual.bef_embedding, x[:, 1] + visual.aft_embedding], dim=1)
            joint = visual.ln_mid(joint + visual.joint_positional_embedding)
            print("3. joined             ", tuple(joint.shape), "(pair, 2N tokens, width)")
            joint_att = []
            for i, block in enumerate(visual.transformer.resblocks[cfg.intra_layers :], start=cfg.intra_layers):
                joint, att = block(joint, None, True)
                joint_att.append(att)
                print(f"4. joint block {i}      ", tuple(joint.shape), "attention", tuple(att.shape), "(pair, heads, 2N, 2N)")
            hidden = visual.ln_post(joint) @ visual.proj
            pooled = (hidden[:, 0] + hidden[:, n]) / 2
            print("5. hidden             ", tuple(hidden.shape), " pooled", tuple(pooled.shape))

            enc = model.encode_pair(before, after, need_weights=True)
        print("same as model.encode_pair:", torch.allclose(enc.hidden, hidden, atol=1e-5),
              torch.allclose(enc.pooled, pooled, atol=1e-5))
        """
    ),
    md(
        """
        Who can attend to whom? Below, the attention of the last per-image block and of the last joint block,
        drawn on the `2N × 2N` token grid (head mean; row = query token, column = key token; before tokens
        first). In the per-image stage only the two diagonal blocks can be non-zero; in the joint stage every
        token can look at both images. (The weights are random here - it is the *structure* that matters.)
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        ## 2. From caption to text embedding

        CLIP's text side is unchanged. The tokenizer is CLIP's byte-level BPE (49,408 entries): frequent
        words are one token, rare words split into pieces that end in `</w>` at a word boundary. `batch`
        wraps each caption in start (`49406`) and end (`49407`) tokens and pads with 0; the text encoder's
        output at the end token (the largest id, so `argmax` finds it) is the caption embedding.
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        ## 3. The contrastive objective

        For a batch of `B` pairs and their captions, `retrieval_logits` gives the `B × B` matrix of scaled
        cosine similarities (text rows, pair columns). The right caption for pair `j` is on the diagonal, so
        the loss is a cross-entropy that picks the diagonal - once over rows (text → pair) and once over
        columns (pair → text), averaged. An untrained model scores everything alike, so its loss is about
        `ln B`.
        """
    ),
    code(
        """
        from clip4idc.network.model import contrastive_loss

        batch = [p for p in test_pairs if p.change_type != "no_change"][:8]
        bef, aft = clip4idc.preprocess_pairs([p.before for p in batch], [p.after for p in batch], cfg.resolution)
        ids, _ = tok.batch([p.captions[0] for p in batch], plan.max_words)
        with torch.no_grad():
            logits = model.retrieval_logits(model.encode_text(ids)[0], model.encode_pair(bef, aft).pooled)
        print("logits", tuple(logits.shape), f"- loss {contrastive_loss(logits).item():.3f} vs ln B = {np.log(len(batch)):.3f}")
        """
    ),
    md(
        """
        ## 4. Adaptation on the synthetic set, with a live loss plot

        `clip4idc.training.train.train(TrainConfig(stage="adapt", ...))` is the whole stage: it builds the model
        (no decoder yet), samples batches, steps the optimiser (BertAdam with warm-up, as the original),
        validates retrieval R@1 after every epoch and keeps the best epoch's model in `best/`.
        `lessons.train_epochs` runs it one epoch at a time (each call resumes the previous one, bit-exactly),
        so we can redraw the curves as they come in.

        **Where it starts.** Real CLIP4IDC runs start from OpenAI's pretrained CLIP (`init=ViT-B-32.pt`).
        Nothing can be downloaded here, so when the bundled demo model is installed its CLIP - trained from
        scratch on 15,000 synthetic scenes, decoder removed - plays that part (`lessons.start_checkpoint`),
        and stage 1 adapts it gently to this notebook's scenes. Without the demo model the lesson starts
        from random weights (the tiny model), which runs but learns little in minutes.
        """
    ),
    code(
        """
        adapt_cfg = lessons.adapt_config(plan, work)
        print({k: getattr(adapt_cfg, k) for k in ("init", "epochs", "batch_size", "lr", "warmup_proportion", "weight_decay")})

        fig = Figure(figsize=(10, 3.4))
        ax_loss, ax_r = fig.subplots(1, 2)
        handle = display(fig, display_id=True)
        history, t0 = [], time.time()
        for record in lessons.train_epochs(adapt_cfg):
            history.append(record)
            epochs = [h["epoch"] for h in history]
            ax_loss.clear()
            ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-")
            ax_loss.axhline(np.log(adapt_cfg.batch_size), color="gray", ls=":", label="ln(batch): chance")
            ax_loss.set(title="training loss (contrastive)", xlabel="epoch")
            ax_loss.legend()
            ax_r.clear()
            for k in ("R@1", "R@5", "R@10"):
                ax_r.plot(epochs, [h["val"][f"text_to_pair/{k}"] for h in history], "o-", label=k)
            ax_r.set(title="validation text→pair recall (%)", xlabel="epoch")
            ax_r.legend()
            fig.tight_layout()
            handle.update(fig)
        print(f"{len(history)} epochs in {time.time() - t0:.0f} s; best val R@1 "
              f"{max(h['val']['R@1'] for h in history):.1f}% (kept in {adapt_cfg.out}/best)")
        """
    ),
    md(
        """
        ## 5. Retrieval on the test split

        Every reference caption of every test change pair is a query; **text → pair R@K** is the share of
        queries whose own pair is among the K most similar pairs (pair → text the other way round). With `P`
        pairs, guessing gives R@K ≈ K/P, so we compare the adapted model with the untrained one from
        section 1, with its starting point (when there is one) and with that chance level.

        The other end of the scale is not 100 %. A caption names the changed object only by what singles it
        out *in its own scene* ("the small object moved"), so it fits other pairs too. On a synthetic set,
        `probes.retrieval_ceiling` reads what each caption pins down and gives the R@K a perfect model
        would expect, one that sees every scene exactly.
        """
    ),
    code(
        """
        from clip4idc.network import inference
        from clip4idc.evaluation.results import format_rows
        from clip4idc.evaluation.retrieval import retrieval_metrics

        adapted = clip4idc.load(work / "adapt" / "best")
        test_set = AdaptationDataset(test_pairs, train=False, resolution=cfg.resolution, max_words=plan.max_words)
        captions = [p.captions for p in test_set.pairs]
        rows = []
        start = lessons.start_checkpoint(plan, work)
        compared = [("untrained", model)] + ([("start (before stage 1)", clip4idc.load(start))] if start else [])
        for name, m in compared + [("adapted", adapted)]:
            sim, text_to_pair = inference.retrieval_similarity(m, test_set, captions, plan.max_words)
            r = retrieval_metrics(sim, text_to_pair)
            rows.append({"model": name, **{f"t2p {k}": v for k, v in r["text_to_pair"].items()},
                         "p2t R@1": r["pair_to_text"]["R@1"]})
        P = len(test_set)
        rows.append({"model": "chance", "t2p R@1": 100 / P, "t2p R@5": 500 / P, "t2p R@10": 1000 / P})
        if (data / "scenes.json").exists():  # our generator's sets say what every caption could fit
            from clip4idc.evaluation.probes import retrieval_ceiling
            from clip4idc.data.synthetic import load_scenes

            best = retrieval_ceiling(test_pairs, load_scenes(data))
            rows.append({"model": "best possible", **{f"t2p {k}": best[k] for k in ("R@1", "R@5", "R@10")}})
        print(f"{P} test change pairs, {len(text_to_pair)} caption queries")
        print(format_rows(rows, digits=1))
        """
    ),
    md(
        """
        ## 6. The similarity matrix

        Each pair against the first caption of each pair, with pairs sorted by change type. A model that
        has learned the change types shows brighter blocks on the diagonal (captions of the same type score
        higher); a model that has learned the exact change shows a bright diagonal.
        """
    ),
    code(
        """
        order = sorted(range(P), key=lambda j: (test_set.pairs[j].change_type, j))
        ordered = [test_set.pairs[j] for j in order]
        ordered_set = AdaptationDataset(ordered, train=False, resolution=cfg.resolution, max_words=plan.max_words)
        square, _ = inference.retrieval_similarity(adapted, ordered_set, [[p.captions[0]] for p in ordered], plan.max_words)

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
        """
    ),
    md(
        """
        ## 7. What does a pair retrieve?

        `results.top_captions` ranks every test caption for one pair. ✓ marks a caption written for this
        very pair; the predicted change type of each retrieved caption (read from its words by
        `clip4idc.evaluation.change_types.classify_change`) shows whether the model at least got the *kind* of change.
        """
    ),
    code(
        """
        from clip4idc.evaluation.results import top_captions
        from clip4idc.evaluation.change_types import classify_change

        sim, text_to_pair = inference.retrieval_similarity(adapted, test_set, captions, plan.max_words)
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
        """
    ),
    md(
        """
        ## Takeaways

        * The pair encoder is CLIP's ViT split in two: per-image blocks, then joint blocks over `2N` tokens
          with before/after and joint position embeddings.
        * Adaptation is CLIP's contrastive loss between *pairs* and change captions; R@K against chance tells
          whether the features separate the changes.
        * Stage 1 needs a good start: from the demo model's CLIP a few epochs keep or sharpen retrieval on
          new scenes; from random weights (the fallback plan) minutes of CPU stay near chance. With
          `CLIP4IDC_QUICK=1` everything runs for seconds on ~150 scenes, so read the numbers as a smoke test.

        **Next:** notebook 3 puts a caption decoder on top of this adapted encoder.
        """
    ),
]

# ======================================================================================================
# 03 finetuning
# ======================================================================================================

NB03 = [
    md(
        """
        # 3 · Stage 2: finetuning a caption decoder

        After adaptation the pair encoder's tokens carry what changed; now a small transformer decoder learns
        to *write* it. CLIP4IDC's decoder is BERT-style:

        * an **encoder stack** re-contextualises the `2N` visual tokens, keeping every layer's output;
        * **decoder layer `i`** self-attends over the words written so far (causally) and cross-attends to
          encoder layer `i`'s output;
        * its **word and position embeddings are CLIP's own** (`clip.token_embedding`,
          `clip.positional_embedding`), and the output projection onto the 49,408-word vocabulary is that
          same embedding matrix, transposed. The decoder reads and writes in the words CLIP's text encoder
          was adapted with.

        In this notebook we

        1. load notebook 2's adapted encoder with a fresh decoder and check the weight tying,
        2. see teacher forcing: inputs, targets, the causal mask and the loss,
        3. finetune on the synthetic set, watching the loss and sample captions epoch by epoch,
        4. compare greedy decoding with beam search.
        """
    ),
    SETUP_MD,
    SETUP,
    code(
        """
        from clip4idc.evaluation.results import examples_per_type, format_rows
        from clip4idc.data import load_pairs

        data = lessons.plan_dataset(plan, work)
        adapted = lessons.train_or_reuse(lessons.adapt_config(plan, work))  # notebook 2's run (trained now if missing)
        test_pairs = load_pairs(data, "clevr", "test")
        print("adapted checkpoint:", adapted)
        """
    ),
    md(
        """
        ## 1. The decoder on top of the adapted encoder

        The adaptation checkpoint has no decoder (stage 1 does not need one). Loading it into a model whose
        config has `decoder_layers > 0` keeps the adapted encoder and starts the decoder from the original's
        BERT initialisation - exactly what the finetuning run below does with `init=`.
        """
    ),
    code(
        """
        mcfg = clip4idc.get_config(plan.model, **plan.model_overrides, max_words=plan.max_words)
        model = clip4idc.load(adapted, config=mcfg)
        print("loaded as:", model.load_layout, "(encoder adapted, decoder fresh)")
        dec = model.decoder
        word = model.clip.token_embedding.weight
        print("decoder word embeddings are CLIP's:", dec.embeddings.word_embeddings.weight is word)
        print("output projection is the same matrix:", dec.classifier.cls.predictions.decoder.weight is word)
        count = lambda prefix: sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))
        print(f"parameters: {model.num_parameters():,} in all; decoder's own {count('decoder.'):,}; "
              f"vision {count('clip.visual.'):,}; shared word embeddings {word.numel():,} "
              f"({mcfg.vocab_size:,} words x {mcfg.embed_dim})")
        """
    ),
    md(
        """
        ## 2. Teacher forcing

        Training never lets the decoder read its own guesses. `caption_targets` builds, for each caption,
        the input `[SOT] w1 w2 … wn` and the target `w1 w2 … wn [EOT]` - the same sentence shifted by one -
        so position `t` learns to predict word `t+1` from the *true* words before it. A causal mask stops
        position `t` from peeking at later inputs, so all positions train in one parallel pass. The loss is
        the cross-entropy of the targets (padding ignored); an untrained decoder spreads its guess over the
        whole vocabulary, so it starts near `ln(49408) ≈ 10.8`.
        """
    ),
    code(
        """
        tok = clip4idc.default_tokenizer()
        pair = next(p for p in test_pairs if p.change_type != "no_change")
        inp, out, mask = tok.caption_targets([pair.captions[0]], plan.max_words)
        L = int(mask.sum())
        print(repr(pair.captions[0]))
        print(format_rows([{"t": t, "input": tok.decoder[int(inp[0, t])], "target": tok.decoder[int(out[0, t])]}
                           for t in range(L)]))
        """
    ),
    code(
        """
        from clip4idc.network.decoder import causal_padding_mask

        bef, aft = clip4idc.preprocess_pairs([pair.before], [pair.after], mcfg.resolution)
        with torch.no_grad():
            hidden = model.encode_pair(bef, aft).hidden
            memory = dec.encode_memory(hidden)
            logits = model.caption_logits(hidden, inp, mask)
            loss = model.caption_loss(bef, aft, inp, out, mask)
        print("visual tokens", tuple(hidden.shape), "-> decoder memory, one per layer:", [tuple(m.shape) for m in memory])
        print("logits", tuple(logits.shape), "(batch, positions, vocabulary)")
        print(f"loss {loss.item():.2f} vs ln(vocabulary) {np.log(mcfg.vocab_size):.2f}")

        allowed = (causal_padding_mask(mask)[0, 0, : L + 2, : L + 2] == 0).numpy()
        labels = [tok.decoder[int(i)].replace("</w>", "") for i in inp[0, : L + 2]]
        fig = Figure(figsize=(5.2, 4.6))
        ax = fig.subplots()
        ax.imshow(allowed, cmap="Greens")
        ax.set_xticks(range(L + 2), labels, rotation=90)
        ax.set_yticks(range(L + 2), labels)
        ax.set(title="who may attend to whom (green = allowed)", xlabel="key (input token)", ylabel="query")
        fig.tight_layout()
        fig
        """
    ),
    md(
        """
        ## 3. Finetuning, epoch by epoch

        `train(TrainConfig(stage="finetune", init=<adapted checkpoint>, ...))` trains the decoder (and, by
        default, the encoder too) with teacher forcing. For CLEVR-Change each step has two terms, as the
        original: the change pair with one of its captions, and the same scene's distractor pair with a
        no-change caption. After every epoch the run validates CIDEr on the val split (greedy captions) and
        keeps the best epoch in `best/`.

        Two settings come from training the demo model (its model card tells the story): `center_visual`
        first subtracts the mean output token of the pair encoder (a CLIP trained from scratch leaves all
        its tokens pointing one way, and a decoder cannot read a memory that barely varies), and
        `freeze_vision` keeps the encoder fixed - trained along, it pushed its tokens back into one direction
        while the decoder was still learning the commonest sentence.

        Below we caption the same test pairs - one per change type - with the model after each epoch, so you
        can watch the sentences take shape.
        """
    ),
    code(
        """
        ft_cfg = lessons.finetune_config(plan, work, init=adapted)  # from notebook 2's checkpoint
        print({k: getattr(ft_cfg, k) for k in ("epochs", "batch_size", "lr", "select_metric", "finetune")})
        samples = [ps[0] for ps in examples_per_type(test_pairs, per_type=1).values()]

        fig = Figure(figsize=(10, 3.4))
        ax_loss, ax_val = fig.subplots(1, 2)
        handle = display(fig, display_id=True)
        history, captions_by_epoch, t0 = [], [], time.time()
        for record in lessons.train_epochs(ft_cfg):
            history.append(record)
            snapshot = clip4idc.load(Path(ft_cfg.out) / "last")
            captions_by_epoch.append(snapshot.caption([p.before for p in samples], [p.after for p in samples]))
            epochs = [h["epoch"] for h in history]
            ax_loss.clear()
            ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-")
            ax_loss.set(title="training loss (change + no-change terms)", xlabel="epoch")
            ax_val.clear()
            ax_val.plot([h["epoch"] for h in history if "val" in h], [h["val"]["CIDEr"] for h in history if "val" in h], "o-", color="C1")
            ax_val.set(title="validation CIDEr (greedy)", xlabel="epoch")
            fig.tight_layout()
            handle.update(fig)
        print(f"{len(history)} epochs in {time.time() - t0:.0f} s")
        """
    ),
    code(
        """
        for k, p in enumerate(samples):
            print(f"pair {p.pair_id} ({p.change_type}) - a reference: {p.captions[0]!r}")
            for epoch, caps in enumerate(captions_by_epoch, start=1):
                print(f"   epoch {epoch:2}: {caps[k]!r}")
        """
    ),
    md(
        """
        A decoder usually learns the most frequent sentence first (every scene contributes a no-change
        caption, so *"there is no change"* and its variants are the commonest targets), then sentence
        templates, then the words that depend on the images. With `CLIP4IDC_QUICK=1` the model sees only
        ~150 scenes for a few seconds, so it may not get past the first phase - run the notebook without it
        for longer training. Notebook 4 measures this with the *mean-sentence baseline*.

        ## 4. Greedy decoding vs beam search

        * **Greedy** takes the single most likely next token at every step (the original's decoding).
        * **Beam search** keeps the `k` best partial captions by total log-probability and returns the best
          finished one; it can recover from a locally attractive but globally worse first word. The toolkit's
          decoders cache keys and values, so each step costs only the newest token.
        """
    ),
    code(
        """
        best = clip4idc.load(Path(ft_cfg.out) / "best")
        for p in samples[:3]:
            print(f"pair {p.pair_id} ({p.change_type})")
            for beam in (1, 3, 5):
                print(f"   {'greedy' if beam == 1 else f'beam {beam}':7} {best.caption(p.before, p.after, beam_size=beam)!r}")
        """
    ),
    code(
        """
        from clip4idc.network import inference
        from clip4idc.data import CaptionDataset
        from clip4idc.evaluation.metrics import score_captions

        eval_set = CaptionDataset(test_pairs, train=False, resolution=mcfg.resolution, max_words=plan.max_words)
        references = {p.pair_id: p.captions for p in eval_set.pairs}
        rows = []
        for beam in (1, 3):
            t0 = time.time()
            caps = inference.generate_captions(best, eval_set, beam_size=beam)
            seconds = time.time() - t0
            scores = score_captions(dict(zip(references, caps)), references)
            rows.append({"decoding": "greedy" if beam == 1 else f"beam {beam}", "seconds": seconds,
                         **{k: scores[k] for k in ("BLEU_4", "METEOR", "ROUGE_L", "CIDEr")},
                         "distinct captions": len(set(caps))})
        print(f"test split: {len(eval_set)} pairs (change and no-change)")
        print(format_rows(rows))
        """
    ),
    md(
        """
        ## Takeaways

        * The decoder reads CLIP's word embeddings and writes through the same matrix; its cross-attention
          looks at all `2N` visual tokens of the pair.
        * Teacher forcing trains every position in parallel on the shifted sentence; the causal mask keeps it
          honest.
        * Watch captions, not just the loss: a falling loss can still mean "the same sentence for every
          pair". Beam search changes which sentence wins; whether it helps is an empirical question the
          table answers for *this* model.

        **Next:** notebook 4 evaluates properly - what each metric rewards, per change type, against a
        baseline, without adaptation, and across seeds.
        """
    ),
]

# ======================================================================================================
# 04 evaluation
# ======================================================================================================

NB04 = [
    md(
        """
        # 4 · Evaluation: what the numbers mean

        A captioning paper reports BLEU-4, METEOR, ROUGE-L and CIDEr (and SPICE when its Java jars are at
        hand). They all compare the generated sentence with several human references, but they reward
        different things. In this notebook we

        1. score hand-made candidate captions for one pair to see what each metric rewards,
        2. evaluate a model with `clip4idc.evaluation.evaluate.evaluate` and read the per-change-type table and chart,
        3. compare with the *mean-sentence baseline*,
        4. run a small ablation - finetuning **without** adaptation - over several seeds, and report mean ± std.
        """
    ),
    SETUP_MD,
    SETUP,
    code(
        """
        from clip4idc.evaluation.results import format_rows, per_type_rows, score_candidates, seed_spread
        from clip4idc.data import load_pairs
        from clip4idc.evaluation.evaluate import evaluate
        from clip4idc.evaluation.results import format_summary

        data = lessons.plan_dataset(plan, work)
        test_pairs = load_pairs(data, "clevr", "test")
        """
    ),
    md(
        """
        ## 1. What the metrics reward, on examples

        * **BLEU-4** - precision of the candidate's 1- to 4-grams against the references (clipped counts),
          geometric mean, times a brevity penalty for candidates shorter than the references. Word order
          matters through the longer n-grams.
        * **METEOR** - aligns unigrams with the references (exact, stem, synonym), an F-mean weighted towards
          recall, minus a penalty when the matches are fragmented.
        * **ROUGE-L** - F-measure of the longest common subsequence: in-order words, gaps allowed.
        * **CIDEr(-D)** - cosine similarity of tf-idf weighted n-gram vectors, averaged over references,
          with a length penalty, ×10. The IDF comes from the references of *all* pairs scored, so n-grams
          every caption shares ("there is", "the") weigh little and the informative ones - the object's
          colour, shape, what happened to it - weigh a lot. It is the metric CLEVR-Change papers lead with,
          and it is not bounded by 1.

        We take one test pair, hold out one of its human captions, and score candidates against the rest of
        its references (inside the whole test split, so CIDEr's IDF is the real one).
        """
    ),
    code(
        """
        target = next(p for p in test_pairs if p.change_type not in ("no_change",))
        same_type = next(p for p in test_pairs if p.change_type == target.change_type and p.pair_id != target.pair_id)
        other_type = next(p for p in test_pairs if p.change_type not in (target.change_type, "no_change"))
        held_out, words = target.captions[0], target.captions[0].split()
        references = {p.pair_id: p.captions for p in test_pairs}
        references[target.pair_id] = target.captions[1:]
        candidates = {
            "held-out human caption": held_out,
            "its words reversed": " ".join(reversed(words)),
            "its first half": " ".join(words[: max(1, len(words) // 2)]),
            f"another {target.change_type} scene's caption": same_type.captions[0],
            f"a {other_type.change_type} caption": other_type.captions[0],
            "'there is no change'": "there is no change",
        }
        print(f"pair {target.pair_id} ({target.change_type}); references:")
        for r in references[target.pair_id]:
            print("   ", r)
        scores = score_candidates(target.pair_id, candidates, references)
        print()
        print(format_rows([{"candidate": k, "text": candidates[k][:48], **v} for k, v in scores.items()]))
        for metric in ("BLEU_4", "METEOR", "ROUGE_L", "CIDEr"):
            ranking = sorted(scores, key=lambda k: -scores[k][metric])
            print(f"{metric:8} ranks first: {ranking[0]!r}, last: {ranking[-1]!r}")
        """
    ),
    md(
        """
        ## 2. Evaluating a model

        `evaluate(model, data_root, split=...)` is `clip4idc eval` as a function. It captions every pair
        (change and no-change), scores the CLEVR-Change subsets separately as the official evaluation does
        (each with its own IDF), reads the change type each caption names, runs retrieval with the stage-1
        head, plays the pointing game (notebook 5) and scores the mean-sentence baseline; with `out=` it also
        writes `metrics.json` and `predictions.json`. Here the model is the bundled demo model when it is
        installed, otherwise notebook 3's tiny model.
        """
    ),
    code(
        """
        model, description = lessons.demo_or_trained_model(plan, work)
        print("evaluating", description)
        metrics = evaluate(model, data, split="test", out=work / "eval")
        print(format_summary(metrics))
        """
    ),
    md(
        """
        ### Per change type

        `type_accuracy` is the share of pairs whose caption *names* the right kind of change
        (`clip4idc.evaluation.change_types.classify_change` reads it from the words), independent of n-gram overlap.
        Types differ a lot in difficulty: a colour change names two colours, a move must notice a shifted
        object, a drop must notice an absence.
        """
    ),
    code(
        """
        columns = ["subset", "n", "CIDEr", "BLEU_4", "METEOR", "ROUGE_L", "type_accuracy", "R@1", "pointing_game"]
        rows = per_type_rows(metrics)
        print(format_rows(rows, columns))

        typed = [r for r in rows if r["subset"] not in ("total", "change")]
        names = [r["subset"] for r in typed]
        fig = Figure(figsize=(10, 3.4))
        ax_c, ax_t = fig.subplots(1, 2)
        ax_c.bar(names, [r["CIDEr"] or 0 for r in typed], color="C0")
        ax_c.set(title="CIDEr per subset (each scored on its own)")
        ax_t.bar(names, [r["type_accuracy"] or 0 for r in typed], color="C2")
        ax_t.set(title="caption names the right change type (%)", ylim=(0, 100))
        for ax in (ax_c, ax_t):
            ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        fig
        """
    ),
    md(
        """
        ## 3. The mean-sentence baseline

        Take the one training caption that, said for *every* test pair, scores the best CIDEr. It looks at
        no image at all. On CLEVR-Change half the pairs are no-change pairs, so this sentence is usually a
        no-change caption and it scores surprisingly well on the total. A model that does not beat it has not
        learned to look; the interesting comparison is on the *change* pairs and on type accuracy.
        """
    ),
    code(
        """
        base = metrics["baseline"]
        keys = ("BLEU_4", "METEOR", "ROUGE_L", "CIDEr", "type_accuracy")
        print(f"mean sentence: {base['sentence']!r} (best of the most frequent of {base['num_train_captions']} training captions)")
        print(format_rows([{"system": "model", **{k: metrics[k] for k in keys}},
                           {"system": "mean sentence", **{k: base[k] for k in keys}}]))
        better = [k for k in keys if metrics[k] is not None and base[k] is not None and metrics[k] > base[k]]
        print("the model beats the baseline on:", ", ".join(better) if better else "none of these")
        """
    ),
    md(
        """
        ## 4. Ablation: does adaptation help? And how much do seeds move the numbers?

        The claim of CLIP4IDC is that stage 1 makes stage 2 better. We test it the only honest way: same
        finetuning recipe, once starting from the adapted encoder (notebook 2) and once from the untrained
        one (here there are no OpenAI CLIP weights, so "without adaptation" means a random encoder), each
        with several seeds. A difference smaller than the seed spread is not a difference.

        Both arms get notebook 3's full finetuning schedule (`lessons.ablation_config`): a fresh decoder needs
        about that many epochs to leave the language prior ("there is no change" for everything), and an arm
        stopped before that would compare two unfinished decoders - a short ablation can even show the
        opposite of the truth. The adapted arm with notebook 3's seed *is* notebook 3's run and is reused, so
        without `CLIP4IDC_QUICK` this cell trains the other three runs: about 5 minutes each, ~15 minutes in
        all on a 2-core CPU - the longest cell of the series (with `CLIP4IDC_QUICK=1`, about a minute). Two
        seeds per arm is the least that shows a spread; add seeds to `plan.seeds` when you have the time.

        `results.seed_spread` gives mean and sample standard deviation per metric - the same summary as
        `clip4idc report RUN1 RUN2 ...` prints from run folders.
        """
    ),
    code(
        """
        keys = ["CIDEr", "BLEU_4", "METEOR", "ROUGE_L", "type_accuracy", "R@1"]
        adapted = lessons.train_or_reuse(lessons.adapt_config(plan, work))  # notebook 2's run
        lesson = lessons.finetune_config(plan, work, init=adapted)  # notebook 3's recipe
        arms = {"with adaptation": True, "without adaptation": False}
        runs = {arm: [] for arm in arms}
        t0 = time.time()
        for seed in plan.seeds:
            for arm, adapted in arms.items():
                cfg = lessons.ablation_config(lesson, work, adapted=adapted, seed=seed)
                m = clip4idc.load(lessons.train_or_reuse(cfg))
                runs[arm].append(evaluate(m, data, split="test", baseline=False, pointing=False))
        print(f"{len(plan.seeds)} seeds x 2 arms, {plan.finetune_epochs} finetuning epochs each, in {time.time() - t0:.0f} s")
        spread = {arm: seed_spread(r, keys) for arm, r in runs.items()}
        print(format_rows([{"metric": k, **{arm: f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}" for arm, s in spread.items()}}
                           for k in keys]))
        """
    ),
    code(
        """
        shown = ["CIDEr", "METEOR", "ROUGE_L", "BLEU_4"]
        fig = Figure(figsize=(9, 3.4))
        ax = fig.subplots()
        width = 0.38
        for k, (arm, s) in enumerate(spread.items()):
            xs = np.arange(len(shown)) + (k - 0.5) * width
            ax.bar(xs, [s[m]["mean"] for m in shown], width, yerr=[s[m]["std"] for m in shown], capsize=4, label=arm)
            for x, m in zip(xs, shown):
                ax.plot([x] * len(s[m]["values"]), s[m]["values"], "k.", ms=5)
        ax.set_xticks(np.arange(len(shown)), shown)
        ax.set(title=f"test scores, mean ± std over {len(plan.seeds)} seeds (dots: single runs)")
        ax.legend()
        fig.tight_layout()
        fig
        """
    ),
    md(
        """
        ## Takeaways

        * Read several metrics: BLEU and ROUGE-L reward wording, METEOR is forgiving about word forms, CIDEr
          rewards the informative n-grams - and none of them checks that the caption is *true*; type accuracy
          and the pointing game (notebook 5) get closer to that.
        * Always report the per-type table and the mean-sentence baseline on CLEVR-Change: the total can hide
          a model that only says "no change".
        * An ablation is only as good as its seed spread. With `CLIP4IDC_QUICK=1` these runs are seconds long
          and the spread is large; run without it for runs that can separate the two arms.
        """
    ),
]

# ======================================================================================================
# 05 attention and errors
# ======================================================================================================

NB05 = [
    md(
        """
        # 5 · Where does the model look? Attention maps and error analysis

        A change caption is only trustworthy if it is about the right place. The decoder's cross-attention
        says, for every generated word, how much it looked at each patch of the before and the after image.
        In this notebook we

        1. draw per-word attention maps and the encoder's own class-token maps,
        2. play the **pointing game**: does the attention peak land on the changed object?
        3. browse the test predictions with a small widget (filter by change type, sort by CIDEr, see the
           images, references, prediction and attention),
        4. see which change types get confused with which,
        5. check which attributes of the changed object the captions get right.
        """
    ),
    SETUP_MD,
    SETUP,
    code(
        """
        from clip4idc import explanation as attention
        from clip4idc.evaluation.probes import attribute_accuracy, direction_accuracy
        from clip4idc.evaluation.change_types import CHANGE_LABELS
        from clip4idc.evaluation.results import confusion_matrix, format_rows, select_predictions, top_confusions
        from clip4idc.data import load_pairs
        from clip4idc.data.synthetic import change_boxes, load_scenes

        data = lessons.plan_dataset(plan, work)
        model, description = lessons.demo_or_trained_model(plan, work)
        test_pairs = load_pairs(data, "clevr", "test")
        scenes = load_scenes(data)
        print("model:", description, f"- a {model.config.grid}x{model.config.grid} patch grid per image")
        """
    ),
    md(
        """
        ## 1. Per-word attention maps

        `attention.caption_with_attention` captions one pair and keeps, for every generated token, the
        decoder's cross-attention over the `2N` visual tokens (mean over heads and decoder layers), split into
        a before map and an after map. A word's map is the mean of its BPE tokens' maps. Each column below
        is one word; before and after share a colour scale, so the hotter image is the one the word looked at
        more. The printout gives each word's attention mass on each image.
        """
    ),
    code(
        """
        pair = next((p for p in test_pairs if p.change_type == "add"), test_pairs[0])
        res = attention.caption_with_attention(model, pair.before, pair.after)
        print(f"pair {pair.pair_id} ({pair.change_type}); caption: {res.caption!r}")
        wb, wa = res.word_maps()
        for word, b, a in zip(res.words, wb, wa):
            print(f"  {word:>12}  before {b.sum():.2f}  after {a.sum():.2f}")
        fig = attention.plot_word_maps(res, pair.before, pair.after)
        display(fig)
        """
    ),
    md(
        """
        The pair encoder has attention too: `attention.encoder_attention` gives the class token's map over
        the patches for every vision block - per image in the first blocks, over both images in the joint
        blocks. With `rollout=True` the maps are multiplied through the blocks (attention rollout), which shows
        what the output token has integrated so far rather than one block's raw attention.
        """
    ),
    code(
        """
        enc = attention.encoder_attention(model, pair.before, pair.after, rollout=True)
        fig = attention.plot_encoder_maps(enc, pair.before, pair.after)
        display(fig)
        """
    ),
    md(
        """
        ## 2. The pointing game

        For each change pair, take the caption's **change maps** - the mean over its words of the before
        image's maps, and of the after image's - and find the hottest cell of the two. It is a *hit* if that
        cell's centre falls inside the changed object's box in that image. Where the object is absent from
        that image (before an `add`, after a `drop`), its box in the other image stands for the place; the
        camera moved only slightly. So a model may point at a dropped object where it still is, in the before
        image, as a person would. The score is the hit rate, in percent. A random peak would hit as often as
        the boxes cover the grid; `pointing_game` reports that chance level too, with the same hit rule, and
        the score of the after image's map alone (`after_image_only`, how the game was first played here).
        """
    ),
    code(
        """
        from matplotlib.patches import Rectangle

        boxes = change_boxes(scenes[pair.scene_id])
        images = {"before": clip4idc.load_image(pair.before), "after": clip4idc.load_image(pair.after)}
        after_img = images["after"]
        maps = dict(zip(("before", "after"), res.change_maps()))
        hit = attention.pair_peak_hit(maps["before"], maps["after"], boxes, after_img.size)
        peak_in = "before" if maps["before"].max() > maps["after"].max() else "after"
        lo, hi = min(m.min() for m in maps.values()), max(m.max() for m in maps.values())
        g = model.config.grid
        fig = Figure(figsize=(8.4, 3.6))
        for ax, key in zip(fig.subplots(1, 2), ("before", "after")):
            ax.imshow(attention.overlay(images[key], maps[key], vmin=lo, vmax=hi))  # one colour scale
            for x0, y0, x1, y1 in boxes[key]:
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", lw=2))
            if key == peak_in:
                row, col = np.unravel_index(int(np.argmax(maps[key])), maps[key].shape)
                ax.plot((col + 0.5) * after_img.size[0] / g, (row + 0.5) * after_img.size[1] / g, "w+", ms=14, mew=2)
            ax.set_title(key, fontsize=9)
            ax.axis("off")
        fig.suptitle(f"change maps of {res.caption!r}\\nbox: changed object, +: peak -> {'hit' if hit else 'miss'}", fontsize=9)
        fig.tight_layout()
        fig
        """
    ),
    code(
        """
        change_pairs = [p for p in test_pairs if p.change_type != "no_change"]
        game = attention.pointing_game(model, change_pairs, data)
        chance = game["chance"]
        alone = game["after_image_only"]
        rows = [{"subset": t, "n": game["counts"][t], "pointing game %": game["per_type"][t],
                 "after image alone %": alone["per_type"][t]} for t in game["per_type"]]
        rows.append({"subset": "all", "n": game["n"], "pointing game %": game["overall"],
                     "after image alone %": alone["overall"]})
        print(format_rows(rows, digits=1))
        print(f"chance level (random peak cell): {chance:.1f}%")
        """
    ),
    md(
        """
        Attention says where the decoder *read*, but the joint blocks and the decoder's own encoder have mixed
        the tokens before it reads them, so a low score could be the map's fault rather than the model's.
        `attention.gradient_maps` asks a different question: which patch embeddings does the caption's
        probability depend on (input × gradient, positive part)? Playing the game with those maps
        (`method="gradient"`, the sum of the before and after maps) tells the two apart: if both sit near
        chance, the model does not localise the change - it reads it from the whole scene.
        """
    ),
    code(
        """
        by_gradient = attention.pointing_game(model, change_pairs, data, method="gradient")
        print(format_rows([{"map": "attention (change map)", "pointing game %": game["overall"]},
                           {"map": "input x gradient", "pointing game %": by_gradient["overall"]},
                           {"map": "random peak (chance)", "pointing game %": chance}], digits=1))
        """
    ),
    md(
        """
        The bundled demo model's decoder was trained to look where the pixels changed (`clip4idc.training.guidance`,
        an addition to CLIP4IDC); without that, its attention found the changed object about one time in
        ten. Where is the location of the change lost without it? The encoder can be asked directly.
        `attention.difference_maps` compares the before and the after image's tokens patch by patch (one
        minus their cosine) at the output of one vision block - by default the last *per-image* block, before
        the two images mix. `method="difference"` plays the game with it, and `method="pixels"` with the plain
        pixel difference per patch, a baseline that needs no model at all. Below, the same pair's difference
        map at every block: the per-image blocks see the change where it is; watch what the joint blocks,
        whose tokens the decoder reads, do to it.
        """
    ),
    code(
        """
        from clip4idc.preprocess import preprocess_pairs

        by_difference = attention.pointing_game(model, change_pairs, data, method="difference")
        by_pixels = attention.pointing_game(model, change_pairs, data, method="pixels")
        print(format_rows([{"map": "encoder difference (last per-image block)", "pointing game %": by_difference["overall"]},
                           {"map": "pixel difference (no model)", "pointing game %": by_pixels["overall"]}], digits=1))

        bef_t, aft_t = preprocess_pairs([clip4idc.load_image(pair.before)], [after_img], model.config.resolution)
        blocks = len(model.clip.visual.transformer.resblocks)
        fig = Figure(figsize=(2.4 * blocks, 2.6))
        for b, ax in enumerate(fig.subplots(1, blocks)):
            ax.imshow(attention.overlay(after_img, attention.difference_maps(model, bef_t, aft_t, block=b)[0]))
            kind = "per-image" if b < model.config.intra_layers else "joint"
            ax.set_title(f"block {b + 1} ({kind})", fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        fig
        """
    ),
    md(
        """
        ## 3. A browser over the test predictions

        `evaluate(..., out=...)` writes `predictions.json`: for every test pair its caption, references,
        per-pair BLEU/METEOR/ROUGE-L/CIDEr, the true change type and the type the caption names.
        `results.select_predictions` filters and sorts those records; the widget below is a thin layer over it.
        Pick a change type, an order, optionally only the captions that name the wrong type, and step through
        them. (The widget needs a live kernel; the cell after it shows one record without widgets.)
        """
    ),
    code(
        """
        from clip4idc.evaluation.evaluate import evaluate

        metrics = evaluate(model, data, split="test", out=work / "eval_attention", baseline=False, pointing=False)
        records = json.loads((work / "eval_attention" / "predictions.json").read_text())
        by_id = {p.pair_id: p for p in test_pairs}


        def describe_prediction(pair_id):
            # the text and the per-word attention figure of one test prediction
            rec, p = records[pair_id], by_id[pair_id]
            lines = [f"pair {pair_id}: true type {rec['change_type']}, caption names {rec['predicted_type']}, "
                     f"CIDEr {rec['CIDEr']:.3f}, METEOR {rec['METEOR']:.3f}",
                     f"prediction: {rec['caption']!r}", "references:", *(f"  - {r}" for r in rec["references"])]
            res = attention.caption_with_attention(model, p.before, p.after)
            return "\\n".join(lines), attention.plot_word_maps(res, p.before, p.after)


        print(f"{len(records)} predictions; mean CIDEr {metrics['CIDEr']:.3f}")
        """
    ),
    code(
        """
        import ipywidgets as widgets

        type_box = widgets.Dropdown(options=["all", *CHANGE_LABELS], description="true type")
        order_box = widgets.Dropdown(options=[("worst CIDEr first", False), ("best CIDEr first", True)], description="order")
        wrong_box = widgets.Checkbox(value=False, description="only wrong type")
        index = widgets.IntSlider(min=0, max=0, description="#", continuous_update=False)
        view = widgets.Output()
        selection = []


        def select(*_):
            selection[:] = select_predictions(
                records, change_type=None if type_box.value == "all" else type_box.value,
                correct=False if wrong_box.value else None, sort_by="CIDEr", descending=order_box.value)
            index.max = max(0, len(selection) - 1)
            index.value = 0
            draw()


        def draw(*_):
            view.outputs = ()  # clear, then fill the widget's outputs directly
            if not selection:
                view.append_stdout("no prediction matches\\n")
                return
            text, fig = describe_prediction(selection[index.value][0])
            view.append_stdout(f"{len(selection)} match; #{index.value}\\n{text}\\n")
            view.append_display_data(fig)


        for w in (type_box, order_box, wrong_box):
            w.observe(select, names="value")
        index.observe(draw, names="value")
        select()
        display(widgets.VBox([widgets.HBox([type_box, order_box, wrong_box]), index, view]))
        """
    ),
    code(
        """
        worst = select_predictions(records, change_type=[t for t in CHANGE_LABELS if t != "no_change"], limit=1)
        if worst:
            text, fig = describe_prediction(worst[0][0])
            print(text)
            display(fig)
        """
    ),
    md(
        """
        ## 4. Which change types get confused with which?

        Rows: the true change type; columns: the type the caption names (`unknown` when the words name no
        change). The diagonal holds the right answers. Off the diagonal, a large `no_change` column means the
        model misses changes; confusions inside the attribute pair (colour ↔ material) or the object pair
        (add ↔ drop ↔ move) tell you which distinction it has not learned.
        """
    ),
    code(
        """
        rows, cols, counts = confusion_matrix(metrics["confusion"])
        fig = Figure(figsize=(6.4, 4.8))
        ax = fig.subplots()
        ax.imshow(np.array(counts), cmap="Blues")
        for i in range(len(rows)):
            for j in range(len(cols)):
                if counts[i][j]:
                    ax.text(j, i, counts[i][j], ha="center", va="center", fontsize=9)
        ax.set_xticks(range(len(cols)), cols, rotation=30)
        ax.set_yticks(range(len(rows)), rows)
        ax.set(xlabel="type named by the caption", ylabel="true type", title="change-type confusion (test)")
        fig.tight_layout()
        display(fig)
        print("most frequent confusions:")
        for true, pred, n in top_confusions(metrics["confusion"], k=5):
            print(f"  {true:>9} -> {pred:<9} {n}")
        """
    ),
    md(
        """
        ## 5. Which attributes of the changed object does the caption get right?

        A caption can name the right kind of change about the wrong object. On a synthetic set the scene file
        knows the changed object, so `probes.attribute_accuracy` checks each attribute the caption names
        (size, colour, material, shape) against it, and counts which values the model says. A value the
        model never varies - always the same shape, say - is one its encoder does not see, and the decoder
        fills in its prior. For the bundled demo model that is the case for shape: its stage 1, trained from
        scratch by the contrastive loss alone, kept what tells captions apart within a batch (colour,
        material) and not the shape (see its model card).
        """
    ),
    code(
        """
        accuracy = attribute_accuracy(records, scenes)  # the scenes loaded in the setup cell
        print(format_rows([
            {"attribute": attr, "captions naming it": s["named"], "right %": s["correct"],
             "values named": ", ".join(f"{v} {n}" for v, n in sorted(s["said"].items(), key=lambda kv: -kv[1]))}
            for attr, s in accuracy.items()
        ], digits=1))
        """
    ),
    md(
        """
        ## 6. Does the encoder know which image holds the object?

        "A red cube has been added" and "the red cube is missing" differ only in direction. The pair
        embedding should prefer the true one; `probes.direction_accuracy` counts how often it does on the
        add/drop pairs, against the same caption rewritten to the opposite change. 50 % is an encoder blind
        to direction. Stage 1 only learns what tells captions apart *within a batch*, and two such captions
        rarely meet in a random one: the bundled demo model scored 52 % until an adaptation stage
        (`reverse_twins`) put every add/drop pair and its reversed twin in one batch, which took it to 99 %
        and its captions' additions from 1 % to 95 % right.
        """
    ),
    code(
        """
        direction = direction_accuracy(model, test_pairs, max_words=plan.max_words)
        print(format_rows([{"change": k, "pairs": v["n"], "prefers the true direction %": v["accuracy"]}
                           for k, v in direction.items()], digits=1))
        """
    ),
    md(
        """
        ## 7. Can the encoder tell a change from camera jitter?

        Every CLEVR-Change scene also has a *distractor*: the before scene again, with only the camera and
        lights nudged. `probes.detection_accuracy` asks, for each change pair, whether its caption is
        closer to the pair than to that unchanged scene (before image + distractor). 50 % is an encoder
        that cannot tell this change from jitter. Adds, drops and recolourings change the scene's global
        statistics (how many objects, which colours) and are easy; a move changes none of them. The bundled
        demo model's encoder scored 64 % on the val moves after stage 1e, and its captions called most
        moves "no change". Stages 1f and 1g (`unchanged_negatives`) add each scene unchanged to the batch
        as a pair no caption describes; that took it to 88 % on val (95 % on the test moves) and the
        moves its captions name from 31 % to 57 %.
        """
    ),
    code(
        """
        from clip4idc.evaluation.probes import detection_accuracy

        detection = detection_accuracy(model, test_pairs, max_words=plan.max_words)
        print(format_rows([{"change": k, "pairs": v["n"], "caption prefers its pair to the unchanged scene %": v["accuracy"]}
                           for k, v in detection.items()], digits=1))
        """
    ),
    md(
        """
        ## Takeaways

        * Per-word maps show *which image* a word looked at and *where*; the pointing game turns that into a
          number you can compare with chance.
        * Sort by per-pair CIDEr and read the worst captions of each type before trusting an average.
        * The confusion matrix names the distinction the model is missing - the next experiment to run; the
          attribute, direction and detection checks name what the encoder does not see.
        * Check an attention map against a gradient map before reading much into either.
        * Difference maps show where the encoder still holds the change; comparing them block by block with the
          pixel baseline says where a model loses it.
        """
    ),
]

NOTEBOOKS: dict[str, list[nbformat.NotebookNode]] = {
    "01_data.ipynb": NB01,
    "02_adaptation.ipynb": NB02,
    "03_finetuning.ipynb": NB03,
    "04_evaluation.ipynb": NB04,
    "05_attention_and_errors.ipynb": NB05,
}


def build(cells: list[nbformat.NotebookNode], stem: str) -> nbformat.NotebookNode:
    """A notebook with deterministic cell ids, no outputs, and the ``python3`` kernel."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nb.cells = []
    for i, cell in enumerate(cells):
        cell = nbformat.from_dict(dict(cell))
        cell["id"] = f"{stem.split('_')[0]}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    return nbformat.writes(build(NOTEBOOKS[name], Path(name).stem)) + ""


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name in NOTEBOOKS:
        path = HERE / name
        text = render(name)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print("wrote", path.relative_to(HERE.parent))
    if stale:
        print("out of date (run python notebooks/build_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
