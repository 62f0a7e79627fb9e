"""Errors of the evaluation engine.

They extend the project's tree (:mod:`diffstudio.errors`)::

    DiffstudioError
    +-- EvaluationError         an evaluation cannot run (too few samples, mismatched shapes)
        +-- FidWeightsError     the Inception FID weights are missing, wrong or unreadable

They live here until they move into :mod:`diffstudio.errors` beside the others.
"""

from __future__ import annotations

from diffstudio.errors import DiffstudioError

__all__ = ["EvaluationError", "FidWeightsError"]


class EvaluationError(DiffstudioError):
    """An evaluation cannot run; the message says what was wrong and how to fix it."""


class FidWeightsError(EvaluationError):
    """The Inception FID weights are absent, fail their SHA-256 check, or cannot be loaded."""
