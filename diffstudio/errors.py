"""Every error diffstudio raises on purpose.

The tree::

    DiffstudioError             one clear line for the user (the CLI prints str(error))
    +-- ConfigError             a malformed config, a parameter out of range, an unknown id
    +-- PluginError             a plugin failed to import, gave an invalid spec or raised
    |   +-- PluginInstallError  an install/uninstall was refused or failed (pip's reason)
    +-- DatasetError            a dataset could not be read or is empty
    +-- RunError                a run directory is missing, incomplete or incompatible
    +-- TrainingError           training cannot go on (for example a NaN loss)
    +-- SamplingError           sampling cannot go on (bad initial noise, NaN output)
    +-- EvaluationError         an evaluation cannot run (too few samples, mismatched shapes)
    |   +-- FidWeightsError     the Inception FID weights are missing, wrong or unreadable
    +-- OnnxError               an ONNX export fails or does not match, a file is missing or stale
    +-- StorageError            a file could not be written: disk full, read-only, no permission
    +-- Cancelled               the user asked a job to stop; not a failure

Messages say what was passed, what was expected and how to fix it; the cause is chained
(``raise ... from exc``).
"""

from __future__ import annotations

__all__ = [
    "Cancelled",
    "ConfigError",
    "DatasetError",
    "DiffstudioError",
    "EvaluationError",
    "FidWeightsError",
    "OnnxError",
    "PluginError",
    "PluginInstallError",
    "RunError",
    "SamplingError",
    "StorageError",
    "TrainingError",
]


class DiffstudioError(Exception):
    """Base class: the message is one line a user can act on."""


class ConfigError(DiffstudioError, ValueError):
    """A configuration value or parameter is malformed, unknown or out of range."""


class PluginError(DiffstudioError):
    """A plugin could not be loaded or used; the message names the plugin."""


class PluginInstallError(PluginError):
    """A plugin install or uninstall was refused (it would change a pinned package, the
    environment cannot be installed into) or pip failed; the environment is as it was."""


class DatasetError(DiffstudioError):
    """A dataset could not be found, read or is empty."""


class RunError(DiffstudioError):
    """A run directory is missing, incomplete or was made by an incompatible version."""


class TrainingError(DiffstudioError):
    """Training cannot continue; the last good checkpoint is kept."""


class SamplingError(DiffstudioError):
    """Sampling cannot continue."""


class EvaluationError(DiffstudioError):
    """An evaluation cannot run; the message says what was wrong and how to fix it."""


class FidWeightsError(EvaluationError):
    """The Inception FID weights are absent, fail their SHA-256 check, or cannot be loaded."""


class OnnxError(DiffstudioError):
    """An ONNX export failed or does not match PyTorch, or an ONNX file is missing, stale
    (exported from other weights) or does not fit the run or the input."""


class StorageError(DiffstudioError):
    """A file or folder could not be written (the disk is full, the file system is read-only,
    or permission is denied); the message says where and what is still intact."""


class Cancelled(DiffstudioError):
    """A job stopped because the user asked it to (between two steps)."""
