"""Single images and their scene descriptions, for pretraining the CLIP stand-in (stage ``pretrain``).

OpenAI's CLIP learnt from images and their alt-texts; the stand-in learns from synthetic scenes and their
descriptions (:mod:`clip4idc.data.synthetic.describe`). Every image of a synthetic CLEVR-Change set is a
scene of its own: a split of ``n`` scenes gives ``3n`` images (before, after, distractor), each described
by the objects it shows.

Items: ``image`` (3, R, R) float32, ``text_ids`` (L,) long, ``index``; in training also ``neg_text_ids``
(k, L): ``hard_negatives = k`` near-miss descriptions of the same image (``shape_negatives`` of them about
an object's shape, then any attribute changed or exchanged), extra negatives the loss scores against this
image only. Training
draws synonyms for the attribute words; evaluation uses the first word of each, with no negatives (the
zero-shot check, :func:`clip4idc.evaluation.descriptions.description_accuracy`, makes its own).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..errors import Clip4idcError
from ..tokenizer import Tokenizer, default_tokenizer
from .datasets import ImageCache
from .readers import Pair
from .synthetic.describe import VALUES, SeenObject, change_attribute, describe, false_objects, image_objects
from .synthetic.scenes import read_scene_file

VIEWS = ("before", "after", "distractor")


def described_images(
    root: str | Path, scene_ids: list[str]
) -> tuple[list[tuple[Path, list[SeenObject]]], tuple[int, int]]:
    """Each image of these scenes with the objects it shows, and the images' size (W, H)."""
    root = Path(root)
    data = read_scene_file(root)
    scenes = data["scenes"]
    width, height = (int(v) for v in data.get("image_size", (0, 0)))
    out = []
    for sid in scene_ids:
        scene = scenes.get(str(sid))
        if scene is None:
            raise Clip4idcError(f"{root / 'scenes.json'}: scene {sid} is not described there")
        for view in VIEWS:
            out.append((root / scene["images"][view], image_objects(scene, view)))
    return out, (width, height)


class DescriptionDataset(Dataset):
    """The images of a synthetic set's scenes with their descriptions (see the module docstring)."""

    def __init__(
        self,
        pairs: list[Pair],
        resolution: int = 224,
        max_words: int = 77,
        train: bool = False,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        in_memory: bool = False,
        hard_negatives: int = 0,
        shape_negatives: int = 1,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        if not pairs:
            raise Clip4idcError("no scenes to describe")
        root = pairs[0].before.parent.parent  # the CLEVR-Change layout: ROOT/images/CLEVR_default_*.png
        scene_ids = list(dict.fromkeys(p.scene_id for p in pairs if p.scene_id))
        self.items, (self.width, self.height) = described_images(root, scene_ids)
        self.max_words = int(max_words)
        self.train = train
        self.seed = int(seed)
        self.epoch = 0
        self.hard_negatives = int(hard_negatives) if train else 0
        self.shape_negatives = min(int(shape_negatives), self.hard_negatives, len(VALUES["shape"]) - 1)
        self.images = ImageCache(resolution, cache_dir, in_memory)
        self.tokenizer = tokenizer or default_tokenizer()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def description(self, index: int, rng: np.random.Generator | None = None) -> str:
        """Image ``index``'s description (synonyms drawn with ``rng``; first words without)."""
        _, objects = self.items[index]
        return describe(objects, self.width, self.height, rng)

    def near_misses(
        self, objects: list[SeenObject], rng: np.random.Generator
    ) -> list[list[SeenObject] | None]:
        """``hard_negatives`` false object lists (None: no objects): first ``shape_negatives`` about shape
        (one: an object with another shape, or two objects' shapes exchanged; two: one object with each
        other shape, so a cube meets both the sphere and the cylinder), then random near misses."""
        out: list[list[SeenObject] | None] = []
        if self.shape_negatives == 1:
            out.append(false_objects(objects, rng, "shape"))
        elif self.shape_negatives == 2 and objects:
            k = int(rng.integers(len(objects)))
            out += [
                change_attribute(objects, k, "shape", v) for v in VALUES["shape"] if v != objects[k].shape
            ]
        while len(out) < self.hard_negatives:
            out.append(false_objects(objects, rng))
        return out

    def __getitem__(self, index: int) -> dict:
        path, objects = self.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, int(index)]) if self.train else None
        words = int(rng.integers(2**31)) if rng is not None else None  # near misses share the synonyms

        def text(objs: list[SeenObject]) -> str:
            choice = np.random.default_rng(words) if words is not None else None
            return describe(objs, self.width, self.height, choice)

        texts = [text(objects)]
        if self.hard_negatives:
            assert rng is not None
            texts += [text(wrong) if wrong else "" for wrong in self.near_misses(objects, rng)]
        ids, _ = self.tokenizer.batch(texts, self.max_words)
        item = {"image": self.images.tensor(path), "text_ids": ids[0], "index": index}
        if self.hard_negatives:
            item["neg_text_ids"] = ids[1:]
        return item


__all__ = ["DescriptionDataset", "described_images"]
