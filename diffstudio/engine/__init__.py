"""The diffusion engine: data, schedules, networks, objectives, samplers, training and runs.

Nothing here imports Qt (a test keeps it so); the application layer (:mod:`diffstudio.app`)
drives it and the GUI subscribes to the events its jobs yield.

The public surface is below; names load on first use (PEP 562), so ``import
diffstudio.engine.runs`` on the window's main thread does not import torch::

    from diffstudio.engine import DiffusionModel, Run, RunConfig, Trainer, TrainConfig, generate
    from diffstudio.engine import samplers   # the built-in sampler functions and SamplerStep
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Dataset",
    "DiffusionModel",
    "DiffusionProcess",
    "LoadedModel",
    "Prediction",
    "Run",
    "RunConfig",
    "SampleResult",
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "Trainer",
    "generate",
    "load_model",
    "samplers",
    "save_samples",
]

_LAZY = {
    "Dataset": "diffstudio.engine.datasets",
    "DiffusionModel": "diffstudio.engine.model",
    "Prediction": "diffstudio.engine.model",
    "DiffusionProcess": "diffstudio.engine.processes",
    "Run": "diffstudio.engine.runs",
    "RunConfig": "diffstudio.engine.runs",
    "LoadedModel": "diffstudio.engine.sampling",
    "SampleResult": "diffstudio.engine.sampling",
    "generate": "diffstudio.engine.sampling",
    "load_model": "diffstudio.engine.sampling",
    "save_samples": "diffstudio.engine.sampling",
    "TrainConfig": "diffstudio.engine.training",
    "TrainEvent": "diffstudio.engine.training",
    "TrainResult": "diffstudio.engine.training",
    "Trainer": "diffstudio.engine.training",
}


def __getattr__(name: str) -> Any:
    if name == "samplers":
        return importlib.import_module("diffstudio.engine.samplers")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'diffstudio.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
