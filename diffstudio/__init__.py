"""diffstudio: a desktop studio for diffusion models.

The public API is small on purpose; the engine lives in :mod:`diffstudio.engine` (no Qt), the
plugin hooks in :mod:`diffstudio.hookspecs`, and the command line in :mod:`diffstudio.cli`.
Importing this package is cheap: torch is imported only by the engine modules that need it.
"""

from __future__ import annotations

from diffstudio.errors import (
    Cancelled,
    ConfigError,
    DatasetError,
    DiffstudioError,
    PluginError,
    RunError,
    SamplingError,
    TrainingError,
)
from diffstudio.hookspecs import hookimpl
from diffstudio.specs import Contribution, Param

__version__ = "0.1.0"

__all__ = [
    "Cancelled",
    "ConfigError",
    "Contribution",
    "DatasetError",
    "DiffstudioError",
    "Param",
    "PluginError",
    "RunError",
    "SamplingError",
    "TrainingError",
    "__version__",
    "hookimpl",
]
