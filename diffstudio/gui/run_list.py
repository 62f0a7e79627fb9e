"""The runs in a workspace, summarised for the Runs page (read through the engine's Run)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from diffstudio.engine.runs import Run

__all__ = ["RunSummary", "scan_workspace", "summarise_run"]


@dataclass
class RunSummary:
    """One run folder: what it trains, how far it got and its last logged loss."""

    path: str
    name: str
    dataset: str = "?"
    network: str = "?"
    schedule: str = "?"
    kind: str = "image"
    step: int = 0
    total_steps: int = 0
    last_loss: float | None = None
    checkpoint_step: int | None = None
    modified: datetime | None = None
    error: str = ""
    training: str = ""  # who is training it now ("pid 123 on host (since ...)"), else ""
    note: str = ""  # the user's note (note.txt), whole

    @property
    def can_sample(self) -> bool:
        return self.checkpoint_step is not None and not self.error


def summarise_run(path: str | Path) -> RunSummary:
    """Read a run's config, metrics and latest checkpoint; an unreadable run gets ``error``."""
    from diffstudio.errors import DiffstudioError

    run = Run(path)
    summary = RunSummary(str(run.path), run.path.name)
    try:
        summary.modified = datetime.fromtimestamp(run.config_path.stat().st_mtime)
        config = run.config()
        summary.dataset = config.dataset
        if config.dataset_params.get("name"):  # a dataset with named variants (toy2d/mixture)
            summary.dataset = f"{config.dataset}/{config.dataset_params['name']}"
        summary.network = config.network
        preset = config.network_params.get("preset")
        if preset:
            summary.network = f"{summary.network} ({preset})"
        summary.schedule = config.schedule
        summary.kind = config.kind
        summary.total_steps = int(config.total_steps or config.train.get("steps", 0) or 0)
        metrics = run.metrics()
        if metrics:
            summary.step = int(metrics[-1].get("step", 0))
            loss = metrics[-1].get("loss")
            summary.last_loss = float(loss) if loss is not None else None
        checkpoint = run.latest_checkpoint()
        if checkpoint is not None:
            summary.checkpoint_step = run.checkpoint_step(checkpoint)
            summary.step = max(summary.step, summary.checkpoint_step)
        summary.note = run.read_note()
        holder = run.lock_holder()  # a run being trained is busy: its writer holds the lock
        summary.training = holder.describe() if holder is not None else ""
    except (DiffstudioError, OSError, ValueError, TypeError) as exc:
        summary.error = str(exc)
    return summary


def scan_workspace(workspace: str | Path) -> list[RunSummary]:
    """Every run directly under ``workspace`` (folders with a config.json), newest first."""
    root = Path(workspace).expanduser()
    if not root.is_dir():
        return []
    runs = [summarise_run(child) for child in sorted(root.iterdir())
            if child.is_dir() and Run.is_run(child)]
    return sorted(runs, key=lambda r: r.modified or datetime.min, reverse=True)


def _metrics_key(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def read_loss_curves(
    paths: list[str], cache: dict[str, tuple[tuple[int, int], Any]] | None = None,
) -> dict[str, tuple[Any, Any]]:
    """``{run path: (steps, losses)}`` (numpy float64) from each run's metrics.jsonl, for the
    Runs page's overlaid curves. ``cache`` (``{path: ((size, mtime_ns), curve)}``, updated in
    place) skips files unchanged since they were last read; a run without metrics is left out.
    """
    import numpy as np

    cache = {} if cache is None else cache
    curves: dict[str, tuple[Any, Any]] = {}
    for path in paths:
        run = Run(path)
        key = _metrics_key(run.metrics_path)
        if key is None:
            continue
        cached = cache.get(path)
        if cached is not None and cached[0] == key:
            curves[path] = cached[1]
            continue
        records = [r for r in run.metrics()
                   if isinstance(r.get("loss"), int | float) and isinstance(r.get("step"), int)]
        curve = (np.array([r["step"] for r in records], dtype=np.float64),
                 np.array([r["loss"] for r in records], dtype=np.float64))
        cache[path] = (key, curve)
        if records:
            curves[path] = curve
    return curves
