"""The Experiments page's job: the application layer's
:func:`diffstudio.app.experiment.run_experiment` in a worker process
(:func:`diffstudio.app.worker.run_experiment_in_process`: a crash or a plugin's ``os.abort()``
ends that process, never the window), driven by a :class:`~diffstudio.gui.workers.JobWorker`.
Each :class:`~diffstudio.app.experiment.JobUpdate` of a finished cell arrives with its
comparison row, read from the result file in the worker thread (the main thread only paints).
The worker's output goes to ``FOLDER/logs/worker-DATE.log``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal

from diffstudio.app.experiment import ExperimentRequest, JobUpdate
from diffstudio.app.worker import run_experiment_in_process
from diffstudio.gui.workers import JobWorker

__all__ = ["ExperimentJob"]


class ExperimentJob(JobWorker):
    """Runs one :class:`ExperimentRequest`; succeeds with an ExperimentOutcome.

    ``cell_changed(update, row)``: a job of the queue changed state; ``row`` is the cell's
    :class:`~diffstudio.engine.evaluation.tables.ComparisonRow` once it is done, else None.
    A Stop lets the running training checkpoint and the queue end "stopped".
    """

    cell_changed = Signal(object, object)
    stop_by_closing = False

    def __init__(self, request: ExperimentRequest, folder: Path, registry: Any = None) -> None:
        # ``registry`` is the window's; the worker process loads the same plugins itself.
        self.log = Path(folder) / "logs" / time.strftime("worker-%Y%m%d-%H%M%S.log")
        super().__init__("experiment", lambda stop: run_experiment_in_process(
            request, log=self.log, should_stop=stop))
        self.request = request
        self.folder = Path(folder)

    def route(self, event: Any) -> None:
        if isinstance(event, JobUpdate):
            row = None
            if event.kind == "evaluate" and event.result and event.status in ("done",
                                                                                "skipped"):
                from diffstudio.engine.evaluation.tables import row_from_result

                try:
                    data = json.loads((self.folder / event.result).read_text(encoding="utf-8"))
                    row = row_from_result(data, str(self.folder / event.result))
                except (OSError, ValueError):
                    row = None
            self.cell_changed.emit(event, row)
        else:
            super().route(event)
