"""Progress reports and cancellation, shared by every stage of an evaluation.

Progress is reported as :class:`EvalProgress` through ``progress(event)``, stage by stage:
``weights`` (bytes of a download), ``reference`` and ``samples`` (images through the Inception),
``generate`` (sampler steps), ``metrics``, ``sweep`` (evaluations of a sweep) and ``done``.
``should_stop()`` is polled between batches and steps; when it returns True the stage raises
:class:`~diffstudio.errors.Cancelled`. Nothing here imports torch or Qt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from diffstudio.errors import Cancelled

__all__ = ["NOT_CACHED_NOTE", "EvalProgress", "ProgressCallback", "StopCheck", "check_stop",
           "emit"]

# Begins the ``reference`` stage's message when the reference features are being computed
# (the first evaluation against a reference set): the window offers a smaller reference then.
NOT_CACHED_NOTE = "reference features not cached yet"


@dataclass(frozen=True)
class EvalProgress:
    """One progress report: ``done`` of ``total`` units in ``stage`` (images, steps, bytes)."""

    stage: str
    done: int
    total: int
    message: str = ""


ProgressCallback = Callable[[EvalProgress], None]
StopCheck = Callable[[], bool]


def emit(progress: ProgressCallback | None, stage: str, done: int, total: int,
         message: str = "") -> None:
    """Send one :class:`EvalProgress` to ``progress`` (nothing when it is None)."""
    if progress is not None:
        progress(EvalProgress(stage, int(done), int(total), message))


def check_stop(should_stop: StopCheck | None, where: str) -> None:
    """Raise :class:`~diffstudio.errors.Cancelled` ("stopped ``where``") when asked to stop."""
    if should_stop is not None and should_stop():
        raise Cancelled(f"the evaluation was stopped {where}")
