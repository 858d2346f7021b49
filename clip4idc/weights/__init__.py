"""Weights: reading and writing every supported format (:mod:`.formats`), the named weights behind
the one loader, :func:`clip4idc.load` (:mod:`.registry`), and what each model knows (:mod:`.domain`)."""

from .domain import DomainCheck, domain_score
from .formats import read_state_dict, save_clip, save_pretrained
from .registry import installed, load

__all__ = [
    "DomainCheck",
    "domain_score",
    "installed",
    "load",
    "read_state_dict",
    "save_clip",
    "save_pretrained",
]
