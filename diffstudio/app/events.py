"""What every job yields: progress, notes and, last, its result.

A job is a generator of events (see :mod:`diffstudio.app`). Three kinds are common to all jobs
and are all a front end needs to show any job:

* :class:`Progress` -- ``done`` of ``total`` units of a named stage, with the elapsed time and an
  ETA computed here, once, so the terminal's bar, the window's status bar and the logs show the
  same numbers.
* :class:`Note` -- one line for the user (a skipped file, a slow plugin, where output went).
* :class:`Done` -- the job's result; always the last event of a job that succeeded.

Jobs add their own payload events (a logged training step, a live sampling frame). An event
class with ``latest_only = True`` may be coalesced by a slow consumer: only the newest one
matters (a live frame, a progress report); every other event must be delivered in order.
Nothing here imports torch or Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["Done", "Note", "Progress", "eta_seconds", "format_duration"]


def eta_seconds(done: float, total: float, elapsed: float) -> float | None:
    """Seconds left at the average rate so far; None before the first unit is done."""
    if done <= 0 or total <= 0 or elapsed <= 0:
        return None
    return max(0.0, elapsed / done * (total - done))


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` ``unit``s of ``stage`` after ``elapsed`` seconds of this stage.

    ``rate`` is units per second (for training: images per second, as logged). ``total`` 0
    means unknown (the bar then only counts). ``remaining`` is the job's own estimate of the
    seconds left (a resumed training knows its rate better than this stage's average); when
    None the ETA is the average rate of this stage so far.
    """

    latest_only: ClassVar[bool] = True

    stage: str
    done: int
    total: int
    elapsed: float = 0.0
    unit: str = "step"
    rate: float | None = None
    detail: str = ""
    remaining: float | None = None

    @property
    def eta(self) -> float | None:
        if self.remaining is not None:
            return self.remaining
        return eta_seconds(self.done, self.total, self.elapsed)

    @property
    def fraction(self) -> float | None:
        return None if self.total <= 0 else min(1.0, self.done / self.total)

    def describe(self) -> str:
        """One line, the same in the terminal and the window: "sample 3/50 step · ETA 0:12"."""
        text = f"{self.stage} {self.done}"
        if self.total:
            text += f"/{self.total}"
        text += f" {self.unit}{'s' if self.total != 1 else ''}"
        if self.detail:
            text += f" · {self.detail}"
        eta = self.eta
        if eta is not None and self.done < self.total:
            text += f" · ETA {format_duration(eta)}"
        return text


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour), rounded to whole seconds."""
    total = round(max(0.0, seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True)
class Note:
    """A line for the user; ``level`` is "info" or "warning"."""

    latest_only: ClassVar[bool] = False

    text: str
    level: str = "info"


@dataclass(frozen=True)
class Done:
    """The job's result (its type is the job's: a TrainResult, a SampleOutcome, ...)."""

    latest_only: ClassVar[bool] = False

    result: Any
