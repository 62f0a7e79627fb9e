"""The evaluation job of the Evaluate page: FID@N, KID, precision/recall, density/coverage,
the nearest training images and the memorisation check, computed by
:mod:`diffstudio.engine.evaluation` in a worker thread.

The job locates the Inception weights first (a missing file fails within a second, before any
sampling), then generates samples from a run in memory or reads a samples folder, evaluates
them, writes the result JSON beside them and hands the view plain numpy arrays: the samples,
the neighbours' indices and distances, and only the reference images those neighbours name.
Progress goes through a :class:`~diffstudio.gui.workers.Mailbox` (only the newest report is
kept), so a fast stage never floods the main thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Signal

from diffstudio.errors import ConfigError
from diffstudio.gui.workers import Job, Mailbox, to_numpy

__all__ = ["EvalJob", "EvalOutcome", "EvalRequest", "load_comparison"]


@dataclass
class EvalRequest:
    """What to evaluate and how.

    ``source`` is ``"run"`` (generate ``num_samples`` with ``sampler``, in memory) or
    ``"folder"`` (a samples folder: ``samples.npz`` or PNGs; ``num_samples`` > 0 takes the first
    N). ``reference`` None means the training set of the run (for a folder: of the run its PNGs
    name). ``weights`` is a file path, "" to search (``$DIFFSTUDIO_FID_WEIGHTS``, the torch hub
    cache, then a download if ``download``), or ``"random"``: a randomly initialised Inception
    that checks the pipeline but gives no FID. ``resize_to`` below 299 is for tests only.
    ``step_sweep`` (a run only) evaluates the sampler once per step count, for the plot of FID
    against network evaluations; the reference features are computed once.
    """

    source: str = "run"
    run_dir: str | None = None
    folder: str | None = None
    sampler: str = "ddim"
    sampler_params: Mapping[str, Any] = field(default_factory=dict)
    num_samples: int = 256
    seed: int = 0
    sample_batch_size: int = 64
    checkpoint: str | None = None
    ema: bool = True
    device: str = "cpu"
    reference: str | None = None
    reference_params: Mapping[str, Any] = field(default_factory=dict)
    reference_limit: int = 0
    metrics: tuple[str, ...] = ("fid", "kid", "precision_recall", "retrieval", "memorization")
    weights: str = ""
    download: bool = True
    inception_batch_size: int = 50
    resize_to: int = 299
    cache_dir: str | None = None
    write: bool = True
    step_sweep: tuple[int, ...] = ()

    def runs(self) -> list[dict[str, Any]]:
        """The sampler parameters of each evaluation: one, or one per step count of
        ``step_sweep`` (a run only; a folder holds what it holds)."""
        if self.source != "run" or not self.step_sweep:
            return [dict(self.sampler_params)]
        return [{**dict(self.sampler_params), "steps": int(steps)} for steps in self.step_sweep]

    def describe(self) -> str:
        if self.source == "run":
            return f"{Path(self.run_dir or '?').name} with {self.sampler}"
        return f"the samples in {self.folder}"


@dataclass
class EvalOutcome:
    """A finished evaluation, as the view needs it.

    ``result``: the engine's EvaluationResult (its tensor of samples dropped); ``samples``
    (N, C, H, W) in [-1, 1]; ``retrieval`` per space; ``reference_images``: the reference images
    any neighbour names, (U, C, H, W), with ``reference_rows`` mapping a dataset index to its
    row there; ``flagged``: the samples the memorisation check flags, with their ``ratios``
    (N,) or None; ``path``: the JSON written (None if it could not be, see ``write_error``).
    After a step sweep these describe its last evaluation; ``sweep_paths`` lists every JSON.
    """

    result: Any
    summary: list[str]
    samples: np.ndarray
    retrieval: dict[str, Any]  # space -> the engine's Neighbours (numpy indices, distances)
    reference_images: np.ndarray
    reference_rows: dict[int, int]
    flagged: list[int]
    ratios: np.ndarray | None
    path: Path | None
    write_error: str = ""
    sweep_paths: list[Path] = field(default_factory=list)

    def neighbour_image(self, index: int) -> np.ndarray:
        return self.reference_images[self.reference_rows[int(index)]]


def _reference_images(reference: Any, retrieval: Mapping[str, Any],
                      nearest: np.ndarray | None) -> tuple[np.ndarray, dict[int, int]]:
    wanted = [rows.indices.ravel() for rows in retrieval.values()]
    if nearest is not None:
        wanted.append(np.asarray(nearest).ravel())
    unique = np.unique(np.concatenate(wanted)).astype(np.int64) if wanted else np.zeros(0, int)
    if unique.size == 0:
        return np.zeros((0, 1, 1, 1), np.float32), {}
    import torch

    images = to_numpy(reference.data[torch.from_numpy(unique)])
    return images, {int(index): row for row, index in enumerate(unique)}


class EvalJob(Job):
    """Runs one :class:`EvalRequest`; succeeds with an :class:`EvalOutcome`.

    ``progress_ready`` says a new :class:`~diffstudio.engine.evaluation.EvalProgress` waits in
    :meth:`take_progress` (only the newest is kept).
    """

    progress_ready = Signal()

    def __init__(self, request: EvalRequest, registry: Any = None) -> None:
        super().__init__("evaluate")
        self.request = request
        self.registry = registry
        self._progress: Mailbox[Any] = Mailbox()
        self.sweep_status = ""  # "Evaluation 2 of 4 (ddim, 20 steps) · " during a step sweep

    def take_progress(self) -> Any:
        return self._progress.take()

    def _report(self, event: Any) -> None:
        if self._progress.put(event):
            self.progress_ready.emit()

    def work(self) -> EvalOutcome:
        from diffstudio.engine.evaluation import (
            EvalSettings,
            FidWeights,
            ReferenceCache,
            evaluate_source,
            prepare_extractor,
            write_result,
        )
        from diffstudio.plugin_manager import load_plugins

        request = self.request
        registry = self.registry or load_plugins()
        location = request.run_dir if request.source == "run" else request.folder
        if not location:
            raise ConfigError("choose a run" if request.source == "run" else
                              "choose a samples folder (written by Save on the Sample page or "
                              "by 'diffstudio sample')")
        settings = EvalSettings(metrics=tuple(request.metrics), reference_limit=int(
            request.reference_limit), seed=request.seed).validate()
        # Weights first: a missing file fails at once, before any sampling.
        weights: Any = FidWeights.random() if request.weights == "random" else (
            request.weights or None)
        extractor = prepare_extractor(
            weights, device=request.device, batch_size=request.inception_batch_size,
            download=request.download, resize_to=request.resize_to, progress=self._report,
            should_stop=self.stop_requested,
        )
        cache = ReferenceCache(request.cache_dir)
        evaluations = request.runs()
        written: list[Path] = []
        path, write_error = None, ""
        for number, sampler_params in enumerate(evaluations, start=1):
            if len(evaluations) > 1:
                # An attribute, not a progress event: the mailbox keeps only the newest event.
                self.sweep_status = (f"Evaluation {number} of {len(evaluations)} "
                                     f"({request.sampler}, {sampler_params['steps']} steps) · ")
            result = evaluate_source(
                location, extractor=extractor, registry=registry,
                reference_id=request.reference, reference_params=request.reference_params,
                sampler_id=request.sampler, sampler_params=sampler_params,
                num_samples=request.num_samples, settings=settings, cache=cache,
                progress=self._report, should_stop=self.stop_requested, seed=request.seed,
                batch_size=request.sample_batch_size, checkpoint=request.checkpoint,
                ema=request.ema, device=request.device,
            )
            if request.write:
                try:
                    path = write_result(result)
                    written.append(path)
                except OSError as exc:  # a read-only folder: keep the result on screen
                    write_error = f"the result could not be written ({exc}); it is shown only"
            if number < len(evaluations):
                result.samples = result.reference_dataset = None  # only the last is shown
        outcome = self._outcome(result, path, write_error)
        outcome.sweep_paths = written
        return outcome

    @staticmethod
    def _outcome(result: Any, path: Path | None, write_error: str) -> EvalOutcome:
        samples = to_numpy(result.samples)
        reference = result.reference_dataset
        # The view gets numpy arrays; the tensors need not cross threads or stay alive.
        result.samples = result.reference_dataset = None
        retrieval = dict(result.retrieval)  # Neighbours hold numpy arrays already
        report = result.memorization
        nearest = report.nearest_index if report is not None else None
        images, rows = _reference_images(reference, retrieval, nearest)
        return EvalOutcome(
            result=result, summary=result.summary_lines(), samples=samples, retrieval=retrieval,
            reference_images=images, reference_rows=rows,
            flagged=list(report.flagged) if report is not None else [],
            ratios=np.asarray(report.ratios) if report is not None else None,
            path=path, write_error=write_error,
        )


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
