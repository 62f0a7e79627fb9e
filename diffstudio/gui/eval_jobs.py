"""The Evaluate page's job: the application layer's :func:`diffstudio.app.evaluate.evaluate`
in a :class:`~diffstudio.gui.workers.JobWorker` (progress: only the newest report is kept, so a
fast stage never floods the main thread); and reading every evaluation of the workspace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffstudio.app.evaluate import EvalOutcome, EvalRequest, SweepStep, evaluate
from diffstudio.gui.workers import JobWorker

__all__ = ["EvalJob", "EvalOutcome", "EvalRequest", "load_comparison"]


class EvalJob(JobWorker):
    """Runs one :class:`EvalRequest`; succeeds with an :class:`EvalOutcome`.

    ``progress_ready`` says a new :class:`~diffstudio.app.events.Progress` waits in
    :meth:`take_progress`; ``sweep_status`` names the evaluation of a step sweep under way.
    """

    def __init__(self, request: EvalRequest, registry: Any = None) -> None:
        super().__init__("evaluate", lambda stop: evaluate(request, registry=registry,
                                                           should_stop=stop))
        self.request = request
        self.sweep_status = ""  # "Evaluation 2 of 4 (ddim, 20 steps) · " during a step sweep

    def route(self, event: Any) -> None:
        if isinstance(event, SweepStep):
            self.sweep_status = f"{event.describe()} · "
        else:
            super().route(event)


def load_comparison(folders: list[str], files: list[str]) -> tuple[list[Any], list[str]]:
    """The comparison rows of every result in ``folders`` (runs, samples folders) and of the
    result ``files``; unreadable ones are skipped and described. Rows are unique by file."""
    from diffstudio.engine.evaluation import load_results

    problems: list[str] = []
    rows = load_results([*folders, *[f for f in files if Path(f).is_file()]],
                        problems=problems)
    seen: set[str] = set()
    unique = []
    for row in rows:
        key = str(Path(row.result_file).resolve()) if row.result_file else str(id(row))
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique, problems
