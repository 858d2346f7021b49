"""Weights: reading and writing every supported format (:mod:`.formats`) and the named weights behind
the one loader, :func:`clip4idc.load` (:mod:`.registry`)."""

from .formats import read_state_dict, save_pretrained
from .registry import installed, load

__all__ = ["installed", "load", "read_state_dict", "save_pretrained"]
