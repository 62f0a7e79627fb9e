"""TEMPORARY (replaced by the training-settings declaration being written on branch `train`)."""

from __future__ import annotations

from diffstudio.gui.train_settings import DIFFUSION_PARAMS, TRAIN_PARAMS
from diffstudio.specs import Param

TRAIN_SETTINGS: tuple[Param, ...] = (
    *DIFFUSION_PARAMS, *TRAIN_PARAMS,
    Param("epochs", "int", 0, minimum=0, help="epochs"),
    Param("device", "str", "auto", help="device"),
    Param("mixed_precision", "str", "auto", help="precision"),
    Param("hybrid_lambda", "float", 0.001, help="lambda"),
)
