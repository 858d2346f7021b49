"""clip4idc: image difference captioning with CLIP4IDC (Guo et al., 2022).

>>> import clip4idc
>>> model = clip4idc.load("demo")                 # or a checkpoint path
>>> model.caption("before.png", "after.png")
>>> clip4idc.domain_score(model, "before.png", "after.png")   # does the pair look like its training data?
"""

from .errors import Clip4idcError
from .network.config import ModelConfig, get_config, infer_config, list_configs
from .network.model import CLIP4IDC, PairEncoding
from .preprocess import load_image, preprocess, preprocess_pairs
from .tokenizer import Tokenizer, default_tokenizer
from .weights import DomainCheck, domain_score, load, save_clip, save_pretrained

__version__ = "0.1.0"


def build_model(config: ModelConfig | str = "demo", **overrides: object) -> CLIP4IDC:
    """A freshly initialised model from a config or a named config (``ViT-B-32``, ``ViT-B-16``, ``demo``)."""
    if isinstance(config, str):
        config = get_config(config, **overrides)
    return CLIP4IDC(config)


__all__ = [
    "CLIP4IDC",
    "Clip4idcError",
    "DomainCheck",
    "ModelConfig",
    "PairEncoding",
    "Tokenizer",
    "build_model",
    "default_tokenizer",
    "domain_score",
    "get_config",
    "infer_config",
    "list_configs",
    "load",
    "load_image",
    "preprocess",
    "preprocess_pairs",
    "save_clip",
    "save_pretrained",
]
