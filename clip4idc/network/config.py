"""Model configurations: one small JSON file per named model, and inference from checkpoint shapes.

Field names follow the parity fixture's ``config`` so a fixture, a JSON file and a checkpoint all describe
a model the same way. ``intra_layers`` and the head counts are not visible in tensor shapes; for those a
checkpoint's config falls back to the named model with the same shapes (or the OpenAI/original defaults).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import fail

CONFIG_DIR = Path(__file__).with_name("model_configs")


@dataclass
class ModelConfig:
    """Architecture of a CLIP4IDC model (vision pair encoder, text encoder, caption decoder)."""

    vision_width: int = 768
    vision_layers: int = 12
    intra_layers: int = 9
    patch: int = 32
    resolution: int = 224
    embed_dim: int = 512
    text_width: int = 512
    text_layers: int = 12
    context_length: int = 77
    vocab_size: int = 49408
    decoder_layers: int = 3
    decoder_heads: int = 8
    decoder_intermediate: int = 2048
    vision_heads: int | None = None  # CLIP's rule when None: width // 64
    text_heads: int | None = None
    decoder_dropout: float = 0.1
    max_words: int = 32  # caption length budget (the original's --max_words)
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.vision_heads is None:
            self.vision_heads = max(1, self.vision_width // 64)
        if self.text_heads is None:
            self.text_heads = max(1, self.text_width // 64)
        self.validate()

    @property
    def grid(self) -> int:
        return self.resolution // self.patch

    @property
    def tokens_per_image(self) -> int:
        """Patch tokens plus the class token (50 for ViT-B/32 at 224 px)."""
        return self.grid**2 + 1

    def validate(self) -> None:
        problems = []
        if self.resolution % self.patch:
            problems.append(f"resolution {self.resolution} is not a multiple of patch {self.patch}")
        if not 0 <= self.intra_layers <= self.vision_layers:
            problems.append(
                f"intra_layers {self.intra_layers} not in [0, vision_layers={self.vision_layers}]"
            )
        if self.vision_width % self.vision_heads:
            problems.append(
                f"vision_width {self.vision_width} not divisible by vision_heads {self.vision_heads}"
            )
        if self.text_width % self.text_heads:
            problems.append(f"text_width {self.text_width} not divisible by text_heads {self.text_heads}")
        if self.decoder_layers and self.embed_dim != self.text_width:
            problems.append(
                "the caption decoder ties its embeddings to CLIP's: embed_dim must equal text_width"
            )
        if self.decoder_layers and self.embed_dim % self.decoder_heads:
            problems.append(f"embed_dim {self.embed_dim} not divisible by decoder_heads {self.decoder_heads}")
        if self.max_words > self.context_length:
            problems.append(f"max_words {self.max_words} exceeds context_length {self.context_length}")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], strict: bool = False) -> ModelConfig:
        """Build from a dict; unknown keys are an error when ``strict``, else ignored (fixture extras)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if strict and unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        from ..io import read_json

        path = Path(path)
        data = read_json(path)
        try:
            return cls.from_dict(data, strict=True)
        except (TypeError, ValueError) as err:
            raise fail(path, str(err)) from None


def list_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """A named config (``ViT-B-32``, ``ViT-B-16``, ``demo``) with optional field overrides."""
    path = CONFIG_DIR / f"{name}.json"
    if not path.exists():
        raise ValueError(f"unknown model config {name!r}; known: {', '.join(list_configs())}")
    data = json.loads(path.read_text())
    data.update(overrides)
    return ModelConfig.from_dict(data, strict=True)


def _count_blocks(keys: list[str], prefix: str) -> int:
    idx = {int(k[len(prefix) :].split(".")[0]) for k in keys if k.startswith(prefix)}
    return max(idx) + 1 if idx else 0


def infer_config(state_dict: dict[str, Any], **overrides: Any) -> ModelConfig:
    """Read the architecture off a CLIP4IDC-layout state dict (``clip.*`` / ``decoder.*`` keys).

    Shapes determine widths, layer counts, patch, resolution, embed size, context and vocabulary. The
    per-image/joint split and head counts do not show in shapes: they come from ``overrides``, else from
    a named config with the same vision shapes, else CLIP's defaults (width // 64 heads, 8 decoder heads).
    A file without decoder weights (OpenAI CLIP, adaptation stage) gets a fresh 3-layer decoder, as the
    original builds one; pass ``decoder_layers=0`` for a retrieval-only model.
    """
    keys = list(state_dict)

    def shape(key: str) -> tuple[int, ...]:
        if key not in state_dict:
            raise KeyError(key)
        return tuple(state_dict[key].shape)

    conv = shape("clip.visual.conv1.weight")
    patch = conv[-1]
    grid = round((shape("clip.visual.positional_embedding")[0] - 1) ** 0.5)
    cfg: dict[str, Any] = {
        "vision_width": conv[0],
        "patch": patch,
        "resolution": grid * patch,
        "vision_layers": _count_blocks(keys, "clip.visual.transformer.resblocks."),
        "embed_dim": shape("clip.text_projection")[1],
        "text_width": shape("clip.ln_final.weight")[0],
        "text_layers": _count_blocks(keys, "clip.transformer.resblocks."),
        "context_length": shape("clip.positional_embedding")[0],
        "vocab_size": shape("clip.token_embedding.weight")[0],
        "decoder_layers": _count_blocks(keys, "decoder.decoder.layer."),
    }
    if cfg["decoder_layers"]:
        cfg["decoder_intermediate"] = shape("decoder.decoder.layer.0.intermediate.dense.weight")[0]
    for name in list_configs():
        named = get_config(name)
        same = all(
            getattr(named, k) == cfg[k] for k in ("vision_width", "patch", "resolution", "vision_layers")
        )
        if same:
            cfg.setdefault("intra_layers", named.intra_layers)
            cfg.setdefault("decoder_heads", named.decoder_heads)
            cfg.setdefault("name", name)
            if cfg["decoder_layers"] == 0:  # OpenAI or adaptation-stage file: a fresh decoder as the original
                cfg["decoder_layers"] = named.decoder_layers
                cfg["decoder_intermediate"] = named.decoder_intermediate
            break
    else:
        cfg.setdefault("intra_layers", max(0, cfg["vision_layers"] * 3 // 4))
        if cfg["decoder_layers"] == 0:
            cfg["decoder_layers"] = 3  # the original decoder_config.json
            cfg["decoder_intermediate"] = 4 * cfg["embed_dim"]
    cfg.update(overrides)
    return ModelConfig.from_dict(cfg, strict=True)
