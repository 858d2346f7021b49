"""``clip4idc eval``: caption, retrieve and point on one split, and write ``metrics.json`` + ``predictions.json``.

Why one command: the numbers of a paper table (BLEU/METEOR/ROUGE-L/CIDEr/SPICE, CLEVR-Change subsets,
retrieval R@K) and the demo's quality gate (does the caption name the right change type? does its
attention point at the change?) must come from one run of one model on one split, so they can be compared
and re-checked. Everything here composes the library: :mod:`clip4idc.network.inference` runs the model,
:mod:`clip4idc.evaluation.metrics` and :mod:`clip4idc.evaluation.change_types` score, :mod:`clip4idc.explanation` plays the pointing
game; nothing is re-implemented.

Conventions:

* Caption metrics are on pycocoevalcap's native scale (CIDEr 1.5 is "150" in a paper). CLEVR-Change is
  scored as its official evaluation: ``total`` (change + no-change), ``change``, ``no_change`` and each
  change type, each subset on its own (CIDEr's IDF comes from that subset's references).
* Percentages (type accuracy, R@K, pointing game) are 0-100.
* Retrieval uses the change pairs only (no-change captions are all alike), every reference caption of
  every pair as a query. Per-type R@1 ranks against all change pairs but averages over that type's texts.
* On a synthetic set (``scenes.json``), ``attribute_accuracy`` says how often the caption names the changed
  object's size / colour / material / shape right (:func:`clip4idc.evaluation.probes.attribute_accuracy`).
* The pointing game plays the decoder's attention (the maps the app shows) on both images of the pair
  (:func:`clip4idc.explanation.pointing.pair_peak_hit`); ``pointing_game_detail`` also holds ``chance``,
  ``after_image_only`` (the after image's map alone, as the game was played before) and ``readouts``: the
  same game with the encoder's before/after difference map and with the pixel difference
  (:func:`clip4idc.explanation.maps.difference_maps`), which say where the location is lost.
* On a synthetic set, ``retrieval_ceiling`` is the text→pair R@K a perfect model would expect: many captions
  ("the small object moved") fit several pairs (:func:`clip4idc.evaluation.probes.retrieval_ceiling`).
* On synthetic add/drop pairs, ``direction_accuracy`` says whether the pair embedding knows which image holds
  the object (:func:`clip4idc.evaluation.probes.direction_accuracy`; 50 % is chance).
* On CLEVR-Change-style pairs (with a distractor), ``detection_accuracy`` says whether a change caption is
  closer to its pair than to the same scene unchanged (:func:`clip4idc.evaluation.probes.detection_accuracy`; 50 % is
  chance): can the encoder tell the change from camera jitter?
* Whatever cannot be measured is ``null`` with a ``*_status`` string saying why - never a made-up number.
* Output files are written only after everything is computed, each atomically: an interrupted or failed
  run leaves an existing ``OUT`` untouched. ``metrics.json`` is written last.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..data.readers import CHANGE_TYPES
from ..errors import Clip4idcError, fail
from ..io import check_writable_folder, write_json_atomic

__all__ = ["evaluate"]

SPLITS = ("train", "val", "test")
CAPTION_KEYS = ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr")
PER_TYPE_KEYS = ("CIDEr", "BLEU_4", "METEOR", "ROUGE_L")


# ----------------------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------------------


def _clean(obj: Any) -> Any:
    """NaN/inf floats become ``None`` so the JSON written is strict JSON other tools can read."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _device(name: str | torch.device) -> torch.device:
    """``auto`` → CUDA when present; a bad or unavailable device is a one-line error, not a traceback."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise Clip4idcError(f"bad device {name!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Clip4idcError(f"device {name!r} requested but CUDA is not available")
    return dev


def _check_out(out: Path | None) -> None:
    """Fail before minutes of inference, not after, when OUT cannot be a folder or cannot be written."""
    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise fail(out, "exists and is not a folder (--out names a folder for metrics.json)")
    for name in ("metrics.json", "predictions.json"):
        if (out / name).is_dir():
            raise fail(out / name, "is a directory, cannot write JSON there")
    check_writable_folder(out)


# ----------------------------------------------------------------------------------------------------------
# the pieces
# ----------------------------------------------------------------------------------------------------------


def _load_split(data_root: str | Path, dataset: str | None, split: str) -> tuple[Path, str, list[Any]]:
    from ..data import detect_dataset, load_pairs
    from ..data.readers import DATASETS

    root = Path(data_root)
    if not root.exists():
        raise fail(root, "dataset folder not found")
    if not root.is_dir():
        raise fail(root, "not a folder")
    if split not in SPLITS:
        raise Clip4idcError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    if dataset is not None and dataset not in DATASETS:
        raise Clip4idcError(f"unknown dataset {dataset!r} (expected one of {', '.join(DATASETS)})")
    dataset = dataset or detect_dataset(root)
    pairs = load_pairs(root, dataset, split)
    if not pairs:
        raise fail(root, f"the {split!r} split of this {dataset} dataset has no pairs")
    return root, dataset, pairs


def change_pair_retrieval(
    model: Any,
    pairs: list[Any],
    max_words: int,
    batch_size: int,
    device: torch.device,
    precision: str,
    workers: int,
    resolution: int,
) -> tuple[dict[str, Any], dict[str, float | None]]:
    """Text↔pair retrieval over the change pairs of ``pairs`` (every reference caption a query), plus
    text→pair R@1 restricted to each type's texts: the evaluation's retrieval, also usable alone on a
    stage-1 checkpoint, which has no decoder to caption with."""
    from ..data import AdaptationDataset
    from ..network import inference
    from .retrieval import retrieval_metrics

    ds = AdaptationDataset(pairs, train=False, resolution=resolution, max_words=max_words)
    if not ds.pairs:
        return {"status": "unavailable: no change pairs"}, {}
    captions = [p.captions for p in ds.pairs]
    sim, text_to_pair = inference.retrieval_similarity(
        model, ds, captions, max_words, batch_size, device, precision, workers
    )
    result: dict[str, Any] = dict(retrieval_metrics(sim, text_to_pair))
    result["num_pairs"] = len(ds.pairs)
    result["num_texts"] = len(text_to_pair)
    gt = torch.tensor(text_to_pair)
    types = [p.change_type or "unknown" for p in ds.pairs]
    per_type: dict[str, float | None] = {}
    for typ in dict.fromkeys(types):
        rows = torch.tensor([types[j] == typ for j in text_to_pair])
        per_type[typ] = retrieval_metrics(sim[rows], gt[rows].tolist())["text_to_pair"]["R@1"]
    return result, per_type


def _pointing(
    model: Any,
    root: Path,
    dataset: str,
    pairs: list[Any],
    batch_size: int,
    max_words: int | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """Pointing game from :mod:`clip4idc.explanation` on the change pairs (its result holds its greedy
    ``captions`` by scene id); ``(None, why)`` when it can't run."""
    if dataset != "clevr":
        return None, f"not applicable: {dataset} has no object boxes"
    if not (root / "scenes.json").is_file():
        return None, "unavailable: no scenes.json (only synthetic CLEVR-Change datasets have object boxes)"
    try:
        from ..explanation.pointing import pointing_game
    except ImportError as err:
        return None, f"unavailable: clip4idc.explanation.pointing.pointing_game cannot be imported ({err})"
    ids = [p.pair_id for p in pairs if p.change_type != "no_change"]
    if not ids:
        return None, "unavailable: no change pairs"
    try:  # readouts: the same game with maps that ask the encoder alone, and the pixels
        result = pointing_game(model, ids, root, batch_size, max_words, readouts=("difference", "pixels"))
    except Clip4idcError as err:
        return None, f"failed: {err}"
    if not result.get("n"):
        return None, "unavailable: no change pair has a box to point at"
    return (
        result,
        "ok (greedy captions; peak of the change maps of both images inside the changed object's box there)",
    )


def _embedding_check(
    check: Callable[..., dict], missing: str, ok: str, model: Any, pairs: list, *args: Any
) -> tuple[dict | None, str]:
    """Run a :mod:`clip4idc.evaluation.results` check of the pair embedding (``direction_accuracy``,
    ``detection_accuracy``); its ValueError means the data has nothing to check, so the status says so."""
    try:
        return check(model, pairs, *args), ok
    except ValueError:
        return None, missing


def _attributes(root: Path, dataset: str, predictions: dict[str, str]) -> tuple[dict | None, str]:
    """:func:`clip4idc.evaluation.probes.attribute_accuracy` when the data has a synthetic ``scenes.json``."""
    from ..data.synthetic import load_scenes
    from .probes import attribute_accuracy

    path = root / "scenes.json"
    if dataset != "clevr" or not path.is_file():
        return None, "unavailable: no scenes.json (only synthetic CLEVR-Change datasets name the objects)"
    try:
        scenes = load_scenes(root)
        return attribute_accuracy(predictions, scenes), "ok (first size/colour/material/shape word named)"
    except Clip4idcError as err:
        return None, f"failed: {err}"
    except (KeyError, TypeError, IndexError) as err:  # a scene without the fields load_scenes documents
        return None, f"failed: {path}: a scene lacks its change or objects ({type(err).__name__}: {err})"


def _ceiling(root: Path, dataset: str, pairs: list[Any]) -> tuple[dict | None, str]:
    """:func:`clip4idc.evaluation.probes.retrieval_ceiling` when the data is the synthetic generator's."""
    from ..data.synthetic import load_scenes
    from .probes import retrieval_ceiling

    path = root / "scenes.json"
    if dataset != "clevr" or not path.is_file():
        return None, "unavailable: no scenes.json (only synthetic sets say what each caption could fit)"
    try:
        ceiling = retrieval_ceiling(pairs, load_scenes(root))
    except Clip4idcError as err:
        return None, f"failed: {err}"
    except ValueError as err:  # captions another tool wrote, or edited by hand
        return None, f"unavailable: {err}"
    except (KeyError, TypeError, IndexError) as err:
        return None, f"failed: {path}: a scene lacks its change or objects ({type(err).__name__}: {err})"
    return ceiling, "ok (Bayes-optimal text→pair retriever that sees every scene exactly; ties at random)"


def _baseline(
    root: Path, dataset: str, references: dict[str, list[str]], types: dict[str, str] | None
) -> tuple[dict[str, Any] | None, str]:
    """Mean-sentence baseline: the training caption that, said for every pair, scores the best CIDEr."""
    from ..data import load_pairs
    from .baseline import mean_sentence_baseline
    from .change_types import classify_change, type_accuracy

    try:
        train_pairs = load_pairs(root, dataset, "train")
    except Clip4idcError as err:
        return None, f"unavailable: cannot read the train split ({err})"
    train_captions = [c for p in train_pairs for c in p.captions]
    if not train_captions:
        return None, "unavailable: the train split has no captions"
    sentence, scores = mean_sentence_baseline(train_captions, references)
    out: dict[str, Any] = {"sentence": sentence, "predicted_type": classify_change(sentence)}
    out.update({k: scores[k] for k in CAPTION_KEYS})
    if types is not None:
        acc = type_accuracy({pid: sentence for pid in types}, types)
        out.update(
            type_accuracy=acc["overall"],
            type_accuracy_change=acc["change"],
            type_accuracy_no_change=acc["no_change"],
        )
    out["num_train_captions"] = len(train_captions)
    return out, "ok"


# ----------------------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------------------


def evaluate(
    model: Any,
    data_root: str | Path,
    dataset: str | None = None,
    split: str = "test",
    out: str | Path | None = None,
    batch_size: int = 64,
    beam_size: int = 1,
    max_words: int | None = None,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    spice: str | Path | bool | None = None,
    baseline: bool = True,
    pointing: bool = True,
    max_pairs: int | None = None,
    workers: int = 0,
    checkpoint: str | None = None,
    progress: bool = False,
    probes: bool = True,
) -> dict[str, Any]:
    """Evaluate ``model`` (a :class:`~clip4idc.CLIP4IDC`, or a checkpoint name/path) on one split.

    Returns the metrics dict (the content of ``metrics.json``); with ``out`` also writes
    ``out/predictions.json`` (``{pair_id: {caption, references, per-pair scores, change_type,
    predicted_type}}``) and then ``out/metrics.json``. ``spice``: see :func:`clip4idc.evaluation.metrics.find_spice_lib`
    (``None`` = use the CoreNLP jars if found, else report SPICE as unavailable). ``max_pairs`` keeps the
    first N scenes (quick checks). ``checkpoint`` is only recorded in the output. ``probes``: run the
    synthetic-only probes of :mod:`.probes` where they apply (``False`` skips them).
    """
    from ..data import CaptionDataset, first_scenes
    from ..network import inference
    from ..precision import cast_for_inference, resolve_precision
    from .change_types import classify_change, confusion, type_accuracy
    from .metrics import find_spice_lib, per_sample_records, score_captions_detailed, score_clevr_change

    started = time.time()
    out_dir = Path(out) if out is not None else None
    _check_out(out_dir)
    root, dataset, pairs = _load_split(data_root, dataset, split)
    if max_pairs is not None:
        if max_pairs < 1:
            raise Clip4idcError(f"max_pairs must be at least 1, got {max_pairs}")
        pairs = first_scenes(pairs, max_pairs)
    find_spice_lib(spice)  # a bad SPICE folder fails now, before any inference
    if isinstance(model, (str, Path)):
        from ..weights.registry import load, print_notes

        checkpoint = checkpoint or str(model)
        source = model
        model = load(source)
        print_notes(model, source)
    dev = _device(device)
    try:
        precision = resolve_precision(precision, dev)
    except ValueError as err:
        raise Clip4idcError(str(err)) from None
    if batch_size < 1 or beam_size < 1:
        raise Clip4idcError("batch size and beam size must be at least 1")
    model = model.to(dev).eval()
    cfg = model.config
    max_words = int(max_words or cfg.max_words)

    # 1. pointing game on the change pairs; with greedy decoding its captions are the evaluated ones too,
    #    so those pairs are decoded once
    runner = cast_for_inference(model, precision)
    if pointing:
        point, point_status = _pointing(runner, root, dataset, pairs, batch_size, max_words)
    else:
        point, point_status = None, "skipped (pointing=False)"
    greedy = point.pop("captions") if point else {}  # scene id -> caption
    played = greedy if beam_size == 1 else {}

    # 2. captions for every other pair (no-change ones included)
    from ..data.readers import scene_id_of

    reused = {
        p.pair_id: played[sid]
        for p in pairs
        if played and p.change_type != "no_change" and (sid := scene_id_of(p.pair_id)) in played
    }
    rest = CaptionDataset(
        [p for p in pairs if p.pair_id not in reused],
        train=False,
        resolution=cfg.resolution,
        max_words=max_words,
    )
    decoded = inference.generate_captions(
        runner, rest, batch_size, dev, precision, beam_size, max_words, workers=workers, progress=progress
    )
    predictions = {**reused, **{p.pair_id: c for p, c in zip(rest.pairs, decoded)}}
    ids = [p.pair_id for p in pairs]
    predictions = {pid: predictions[pid] for pid in ids}  # in the split's order
    references = {p.pair_id: list(p.captions) for p in pairs}
    true_types = {p.pair_id: p.change_type for p in pairs}
    is_clevr = dataset == "clevr"
    types_known = is_clevr and all(true_types.values())

    # 3. caption metrics: total + per-pair scores, then the CLEVR-Change subsets
    total, per_sample = score_captions_detailed(predictions, references, spice=spice)
    if is_clevr:
        subset_types = {pid: (t or "unknown") for pid, t in true_types.items()}
        captioning: dict[str, Any] = dict(score_clevr_change(predictions, references, subset_types, spice))
    else:
        captioning = {"total": {**total, "num_pairs": len(ids)}}

    # 4. change type named by each caption
    predicted_types = {pid: classify_change(c) for pid, c in predictions.items()}
    if types_known:
        acc = type_accuracy(predictions, true_types)
        conf: dict[str, Any] | None = confusion(predictions, true_types)
        type_status = "ok (change type read from the caption's words by clip4idc.evaluation.change_types)"
    else:
        acc, conf = None, None
        type_status = (
            f"not applicable: {dataset} has no change types"
            if not is_clevr
            else "unavailable: some pairs have no change type (type_mapping.json missing or incomplete)"
        )

    # 5. retrieval on the change pairs
    retrieval, r1_per_type = change_pair_retrieval(
        model, pairs, max_words, batch_size, dev, precision, workers, cfg.resolution
    )

    from .probes import detection_accuracy, direction_accuracy

    settings = (max_words, batch_size, dev, precision)
    skipped: tuple[None, str] = (None, "skipped (probes=False)")
    direction, direction_status = (
        skipped
        if not probes
        else _embedding_check(
            direction_accuracy,
            "not applicable: no add/drop pairs with synthetic-template captions",
            "ok (pair embedding: its add/drop caption vs that caption reversed; chance 50 %)",
            model,
            pairs,
            *settings,
        )
    )
    detection, detection_status = (
        skipped
        if not probes
        else _embedding_check(
            detection_accuracy,
            "not applicable: no change pairs with a distractor image",
            "ok (change caption: its pair vs the same scene unchanged; chance 50 %)",
            model,
            pairs,
            *settings,
        )
    )

    # 6. mean-sentence baseline
    if baseline:
        base, base_status = _baseline(root, dataset, references, true_types if types_known else None)
    else:
        base, base_status = None, "skipped (baseline=False)"

    # assemble
    tot = captioning["total"]
    metrics: dict[str, Any] = {
        "checkpoint": checkpoint,
        "data": str(root),
        "dataset": dataset,
        "split": split,
        "num_pairs": len(ids),
        "num_change_pairs": sum(t != "no_change" for t in true_types.values()),
        "num_no_change_pairs": sum(t == "no_change" for t in true_types.values()),
    }
    metrics.update({k: tot[k] for k in CAPTION_KEYS})
    metrics["SPICE"] = tot.get("SPICE")
    metrics["SPICE_status"] = tot.get("SPICE_status")
    metrics["type_accuracy"] = acc["overall"] if acc else None
    metrics["type_accuracy_change"] = acc["change"] if acc else None
    metrics["type_accuracy_no_change"] = acc["no_change"] if acc else None
    metrics["type_accuracy_status"] = type_status
    t2p = retrieval.get("text_to_pair")
    metrics["R@1"] = t2p["R@1"] if t2p else None
    metrics["pointing_game"] = point["overall"] if point else None
    metrics["pointing_game_status"] = point_status
    metrics["captioning"] = captioning
    metrics["retrieval"] = retrieval
    metrics["type_accuracy_detail"] = acc
    metrics["confusion"] = conf
    metrics["pointing_game_detail"] = point
    metrics["attribute_accuracy"], metrics["attribute_accuracy_status"] = (
        _attributes(root, dataset, predictions) if probes else skipped
    )
    metrics["retrieval_ceiling"], metrics["retrieval_ceiling_status"] = (
        _ceiling(root, dataset, pairs) if probes else skipped
    )
    metrics["direction_accuracy"] = direction
    metrics["direction_accuracy_status"] = direction_status
    metrics["detection_accuracy"] = detection
    metrics["detection_accuracy_status"] = detection_status

    if is_clevr:
        per_type: dict[str, dict[str, Any]] = {}
        for typ in (*CHANGE_TYPES, "no_change", *[t for t in captioning if t == "unknown"]):
            sub = captioning.get(typ)
            row: dict[str, Any] = {k: (sub[k] if sub else None) for k in PER_TYPE_KEYS}
            row["type_accuracy"] = acc.get(typ) if acc else None
            row["R@1"] = r1_per_type.get(typ)
            row["pointing_game"] = point["per_type"].get(typ) if point else None
            row["num_pairs"] = sub["num_pairs"] if sub else 0
            per_type[typ] = row
        metrics["per_type"] = per_type
    else:
        metrics["per_type"] = None
    metrics["baseline"] = base
    metrics["baseline_status"] = base_status
    metrics["settings"] = {
        "beam_size": beam_size,
        "max_words": max_words,
        "precision": precision,
        "device": str(dev),
        "batch_size": batch_size,
        "max_pairs": max_pairs,
        "resolution": cfg.resolution,
        "scale": "caption metrics on pycocoevalcap's scale (CIDEr 1.5 = 150 in papers); percentages 0-100",
    }
    metrics["seconds"] = round(time.time() - started, 2)
    metrics = _clean(metrics)

    if out_dir is not None:
        records = per_sample_records(predictions, references, per_sample)
        for pid, rec in records.items():
            rec["change_type"] = true_types[pid] or None
            rec["predicted_type"] = predicted_types[pid]
        try:
            write_json_atomic(out_dir / "predictions.json", _clean(records))
            write_json_atomic(out_dir / "metrics.json", metrics)
        except Clip4idcError as err:
            raise UnsavedResults(str(err), metrics) from None
    return metrics


class UnsavedResults(Clip4idcError):
    """Writing the results failed after the evaluation ran; ``metrics`` still holds them."""

    def __init__(self, message: str, metrics: dict[str, Any]) -> None:
        super().__init__(message)
        self.metrics = metrics
