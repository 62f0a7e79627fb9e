"""Managing run folders from the window: rename one, or move it to the system trash.

Both refuse a run that a process is training (its writer lock, :mod:`run_lock`): renaming or
deleting it under the trainer would split it. Torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path

from diffstudio.engine.runs import Run
from diffstudio.errors import RunError

__all__ = ["rename_run", "trash_run"]

_BAD_CHARACTERS = set('/\\:*?"<>|\0')


def _not_training(run: Run, doing: str) -> None:
    holder = run.lock_holder()
    if holder is not None:
        raise RunError(f"cannot {doing} {run.path}: it is being trained ({holder.describe()}); "
                       "stop that training first")


def rename_run(path: str | os.PathLike[str], name: str) -> Path:
    """Rename the run folder ``path`` to ``name`` in the same folder; returns the new path."""
    run = Run(path)
    if not run.exists():
        raise RunError(f"{run.path} is not a run (no config.json)")
    name = name.strip()
    if not name or name in (".", "..") or set(name) & _BAD_CHARACTERS or name.startswith("."):
        raise RunError(f"{name!r} cannot name a run folder; use letters, digits, '-', '_' or "
                       "spaces, not starting with '.'")
    target = run.path.parent / name
    if target.exists():
        raise RunError(f"{target} already exists; choose another name")
    _not_training(run, "rename")
    os.rename(run.path, target)  # same folder: atomic
    return target


def trash_run(path: str | os.PathLike[str]) -> None:
    """Move the run folder to the system trash (recoverable), via send2trash."""
    from send2trash import send2trash

    run = Run(path)
    if not run.exists():
        raise RunError(f"{run.path} is not a run (no config.json)")
    _not_training(run, "delete")
    send2trash(str(run.path))
