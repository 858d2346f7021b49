"""Torch datasets for CLIP4IDC's two stages.

* :class:`AdaptationDataset` — retrieval adaptation: a pair and one caption. In training a caption is
  drawn at random and, for CLEVR-Change, the before image is replaced by the distractor with probability
  0.5 (as the original does: the nonsemantic image shows the same scene, so the caption still holds).
* :class:`CaptionDataset` — captioning finetuning: a pair and teacher-forcing ids; for CLEVR-Change also the
  distractor pair with a no-change caption (the original sums the losses of both pairs).

All randomness comes from ``numpy.random.default_rng([seed, epoch, index])``: an item depends only on
(seed, epoch, index), not on worker count or order, so a resumed run sees exactly the same samples.
Images can be cached on disk as resized uint8 arrays so later epochs skip PNG decoding; cached and
uncached tensors are bit-identical.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..preprocess import CLIP_MEAN, CLIP_STD, load_image
from ..tokenizer import Tokenizer, default_tokenizer
from .readers import CHANGE_TYPES, Pair, detect_dataset, load_pairs
from .rewrite import OPPOSITE, counterfactual_captions, reverse_caption, reversible

_MEAN = torch.tensor(CLIP_MEAN).view(3, 1, 1)
_STD = torch.tensor(CLIP_STD).view(3, 1, 1)


def _normalise(arr: np.ndarray) -> torch.Tensor:
    """uint8 (3, R, R) → CLIP-normalised float32, with exactly the operations of ``preprocess``."""
    x = torch.from_numpy(arr.astype(np.float32)) / 255.0
    return (x - _MEAN) / _STD


class ImageCache:
    """Resized uint8 images, optionally kept on disk under ``cache_dir``.

    The key is the file's absolute path, size and modification time plus the resolution, so an edited
    image is decoded again. Writes go through a temporary file and ``os.replace``: several DataLoader
    workers may fill the cache at once.
    """

    def __init__(self, resolution: int, cache_dir: str | Path | None = None, in_memory: bool = False) -> None:
        self.resolution = int(resolution)
        # ``in_memory``: also keep every image in this process (3·R² bytes each; with loader workers each
        # worker holds its own copy, so use it with workers=0 when the CPU is the bottleneck)
        self.memory: dict[str, np.ndarray] | None = {} if in_memory else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    def _decode(self, path: Path) -> np.ndarray:
        img = load_image(path).resize((self.resolution, self.resolution), Image.BICUBIC)
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))

    def cache_path(self, path: Path) -> Path | None:
        if self.cache_dir is None:
            return None
        path = Path(path).resolve()
        try:
            st = path.stat()
        except OSError:
            return None  # load_image will raise the one-line error
        key = f"{path}|{st.st_size}|{st.st_mtime_ns}|{self.resolution}"
        return self.cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"

    def uint8(self, path: str | Path) -> np.ndarray:
        """The resized image as uint8 (3, R, R), from the cache when there."""
        if self.memory is not None:
            hit = self.memory.get(str(path))
            if hit is None:
                hit = self.memory[str(path)] = self._load(path)
            return hit
        return self._load(path)

    def _load(self, path: str | Path) -> np.ndarray:
        cpath = self.cache_path(Path(path))
        if cpath is not None and cpath.exists():
            try:
                arr = np.load(cpath, allow_pickle=False)
                if arr.shape == (3, self.resolution, self.resolution) and arr.dtype == np.uint8:
                    return arr
            except (OSError, ValueError):
                pass  # a torn or foreign file: decode again and overwrite it
        arr = self._decode(Path(path))
        if cpath is not None:
            tmp = cpath.with_name(f"{cpath.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, arr, allow_pickle=False)
            os.replace(tmp, cpath)
        return arr

    def tensor(self, path: str | Path) -> torch.Tensor:
        return _normalise(self.uint8(path))


class _PairDataset(Dataset):
    """Shared plumbing: pairs, image cache, tokenizer, per-item generator."""

    def __init__(
        self,
        source: str | Path | list[Pair],
        split: str = "train",
        resolution: int = 224,
        max_words: int = 32,
        train: bool = False,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        in_memory: bool = False,
        dataset: str | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        if isinstance(source, (str, Path)):
            dataset = dataset or detect_dataset(source)
            all_pairs = load_pairs(source, dataset, split)
        else:
            all_pairs = list(source)
        self.split = split
        self.resolution = resolution
        self.max_words = max_words
        self.train = train
        self.seed = int(seed)
        self.epoch = 0
        self.images = ImageCache(resolution, cache_dir, in_memory)
        self.tokenizer = tokenizer or default_tokenizer()
        # No-change references per scene, for change pairs built without ``distractor_captions``.
        self._nochange = {p.scene_id: p for p in all_pairs if p.change_type == "no_change" and p.scene_id}
        self.all_pairs = all_pairs
        self.pairs = self._select(all_pairs)

    def _select(self, pairs: list[Pair]) -> list[Pair]:
        return pairs

    def set_epoch(self, epoch: int) -> None:
        """Make the random choices of the next pass depend on ``epoch`` (call before each epoch)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __len__(self) -> int:
        return len(self.pairs)

    def distractor_of(self, pair: Pair) -> tuple[Path | None, list[str]]:
        """CLEVR-Change distractor image and its no-change captions (None when the pair has none)."""
        if pair.distractor is not None:
            caps = pair.distractor_captions
            if not caps and pair.scene_id in self._nochange:
                caps = self._nochange[pair.scene_id].captions
            return pair.distractor, caps
        nc = self._nochange.get(pair.scene_id) if pair.change_type in CHANGE_TYPES else None
        return (nc.after, nc.captions) if nc is not None else (None, [])


def _is_change(pair: Pair) -> bool:
    return pair.change_type != "no_change"


class AdaptationDataset(_PairDataset):
    """Pair + one caption for retrieval adaptation.

    Items: ``before``, ``after`` (3, R, R) float32, ``text_ids``, ``text_mask`` (L,) long, ``index``.
    Only change pairs are used in both modes (the no-change captions of CLEVR-Change are all alike, so
    text-to-pair retrieval over them is ill-posed). Evaluation: first caption, no swap.

    Training options (see :mod:`clip4idc.data.rewrite`, synthetic captions only): ``reverse_twins`` adds
    every add/drop pair seen backwards as items ``len(pairs) + k`` (kept in its pair's batch by
    :meth:`batch_groups`); ``type_negatives = k`` adds ``neg_text_ids`` (k, L) and ``neg_valid`` (k,): the
    same object with other changes, false captions the loss uses as extra negatives for this pair;
    ``unchanged_negatives`` adds ``still_before``, ``still_after``: the same scene with nothing changed (its
    before image and its distractor in random order, or the before image twice when there is no distractor),
    a pair no change caption describes, so the loss can use it as a negative for every caption of the batch.
    """

    def __init__(
        self,
        *args,
        reverse_twins: bool = False,
        type_negatives: int = 0,
        unchanged_negatives: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.twins = (
            [
                i
                for i, p in enumerate(self.pairs)
                if p.change_type in OPPOSITE and reversible(p.captions, p.change_type)
            ]
            if reverse_twins and self.train
            else []
        )
        self.type_negatives = int(type_negatives) if self.train else 0
        self.unchanged_negatives = bool(unchanged_negatives) and self.train

    def _select(self, pairs: list[Pair]) -> list[Pair]:
        return [p for p in pairs if _is_change(p)]

    def __len__(self) -> int:
        return len(self.pairs) + len(self.twins)

    def batch_groups(self) -> list[list[int]] | None:
        """Indices that must share a batch (each pair with its reversed twin); None: no constraint."""
        if not self.twins:
            return None
        n = len(self.pairs)
        twin_of = {base: n + k for k, base in enumerate(self.twins)}
        return [[i, twin_of[i]] if i in twin_of else [i] for i in range(n)]

    def __getitem__(self, index: int) -> dict:
        if index >= len(self.pairs):
            return self._reversed_twin(index)
        pair = self.pairs[index]
        before_path = pair.before
        caption = pair.captions[0] if pair.captions else ""
        rng = None
        if self.train:
            rng = self.rng(index)
            if pair.captions:
                caption = pair.captions[int(rng.integers(len(pair.captions)))]
            distractor, _ = self.distractor_of(pair)
            swap = rng.random() < 0.5
            if distractor is not None and swap:
                before_path = distractor
        return self._item(before_path, pair.after, caption, pair.change_type, index, rng, pair)

    def _reversed_twin(self, index: int) -> dict:
        """Pair ``twins[index - len(pairs)]`` backwards (after → before) with a caption of the opposite change;
        its 'after' is the distractor half the time, as the forward pair's 'before' is."""
        pair = self.pairs[self.twins[index - len(self.pairs)]]
        rng = self.rng(index)
        caption = pair.captions[int(rng.integers(len(pair.captions)))]
        caption = reverse_caption(caption, pair.change_type, rng)
        distractor, _ = self.distractor_of(pair)
        after_path = distractor if distractor is not None and rng.random() < 0.5 else pair.before
        return self._item(pair.after, after_path, caption, OPPOSITE[pair.change_type], index, rng, pair)

    def _item(
        self,
        before: Path,
        after: Path,
        caption: str,
        change_type: str,
        index: int,
        rng: np.random.Generator | None,
        pair: Pair | None = None,
    ) -> dict:
        ids, mask = self.tokenizer.batch([caption], self.max_words)
        item = {
            "before": self.images.tensor(before),
            "after": self.images.tensor(after),
            "text_ids": ids[0],
            "text_mask": mask[0],
            "index": index,
        }
        if self.type_negatives and rng is not None:
            k = self.type_negatives
            negatives = counterfactual_captions(caption, change_type, k, rng)
            rows = negatives + [""] * (k - len(negatives))
            valid = [True] * len(negatives) + [False] * (k - len(negatives))
            neg_ids, _ = self.tokenizer.batch(rows, self.max_words)
            item.update(neg_text_ids=neg_ids, neg_valid=torch.tensor(valid, dtype=torch.bool))
        if self.unchanged_negatives and rng is not None and pair is not None:
            distractor, _ = self.distractor_of(pair)
            still = [pair.before, distractor if distractor is not None else pair.before]
            if rng.random() < 0.5:
                still.reverse()
            item.update(still_before=self.images.tensor(still[0]), still_after=self.images.tensor(still[1]))
        return item


class CaptionDataset(_PairDataset):
    """Pairs + teacher-forcing targets for captioning finetuning, or pairs alone for evaluation.

    Training (change pairs only for CLEVR-Change): ``before``, ``after``, ``input_ids``, ``output_ids``,
    ``decoder_mask``, ``index``; with a distractor also ``distractor`` and ``nc_input_ids``,
    ``nc_output_ids``, ``nc_decoder_mask`` for a random no-change caption.
    Evaluation (every pair, no-change ones included): ``before``, ``after``, ``index``; the references
    are ``dataset.pairs[index].captions``.
    """

    def _select(self, pairs: list[Pair]) -> list[Pair]:
        return [p for p in pairs if _is_change(p)] if self.train else pairs

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        item = {
            "before": self.images.tensor(pair.before),
            "after": self.images.tensor(pair.after),
            "index": index,
        }
        if not self.train:
            return item
        rng = self.rng(index)
        caption = pair.captions[int(rng.integers(len(pair.captions)))] if pair.captions else ""
        inp, out, mask = self.tokenizer.caption_targets([caption], self.max_words)
        item.update(input_ids=inp[0], output_ids=out[0], decoder_mask=mask[0])
        distractor, nc_caps = self.distractor_of(pair)
        if distractor is not None:
            nc = nc_caps[int(rng.integers(len(nc_caps)))] if nc_caps else "there is no change"
            ninp, nout, nmask = self.tokenizer.caption_targets([nc], self.max_words)
            item.update(
                distractor=self.images.tensor(distractor),
                nc_input_ids=ninp[0],
                nc_output_ids=nout[0],
                nc_decoder_mask=nmask[0],
            )
        return item
