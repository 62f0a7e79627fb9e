"""The Train and Model pages' forms, taken from the one declaration of the training settings
(:data:`diffstudio.engine.train_config.TRAIN_SETTINGS`, torch-free), so the window, the CLI
and the config's validation cannot disagree.

The Model page shows the diffusion settings (T and the prediction type); the Train page the
rest, except the device and precision (the toolbar's device chooser sets them) and ``epochs``
(the window trains for a number of steps). :data:`GUI_DEFAULTS` lists where the window's
defaults differ, and why.
"""

from __future__ import annotations

import dataclasses

from diffstudio.engine.train_config import PREDICTION_TYPES, TRAIN_SETTINGS, setting
from diffstudio.specs import Param

__all__ = [
    "DIFFUSION_PARAMS",
    "GUI_DEFAULTS",
    "PREDICTION_TYPES",
    "RESUMABLE",
    "TRAIN_PARAMS",
    "diffusion_params",
]

# Where the window's defaults differ from TrainConfig's, and why.
GUI_DEFAULTS = {
    "preview_every": 200,  # previews sooner: a new user sees samples after a minute on a CPU
}

_DIFFUSION = ("num_timesteps", "prediction_type")
_ELSEWHERE = ("device", "mixed_precision", "epochs")


def _for_window(param: Param) -> Param:
    if param.name in GUI_DEFAULTS:
        param = dataclasses.replace(param, default=GUI_DEFAULTS[param.name])
    if param.name == "steps":  # without epochs, 0 steps would train nothing
        param = dataclasses.replace(param, minimum=1)
    return param


def diffusion_params(prediction_types: tuple[str, ...] = PREDICTION_TYPES) -> tuple[Param, ...]:
    """T and the prediction type, offering ``prediction_types``."""
    return (setting("num_timesteps"),
            dataclasses.replace(setting("prediction_type"), choices=tuple(prediction_types)))


DIFFUSION_PARAMS: tuple[Param, ...] = diffusion_params()

TRAIN_PARAMS: tuple[Param, ...] = tuple(
    _for_window(param) for param in TRAIN_SETTINGS
    if param.name not in _DIFFUSION + _ELSEWHERE
)

#: The settings a continued run may change (its length, optimiser, intervals); the rest shape
#: the model and stay the run's own (the engine refuses a change to them).
RESUMABLE = frozenset(param.name for param in TRAIN_SETTINGS if param.resumable)
