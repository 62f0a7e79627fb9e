"""The evaluation job: FID@N, KID, precision/recall, density/coverage, the nearest training
images and the memorisation check of a run (sampled in memory) or a samples folder, once or as
a step sweep -- the one path behind ``diffstudio eval`` and the Evaluate page.

The Inception weights are located first (a missing file fails within a second, before any
sampling). The job yields :class:`~diffstudio.app.events.Progress` per stage (weights,
reference features, generation, sample features, metrics), :class:`SweepStep` before each
evaluation of a sweep, and finally ``Done(EvalOutcome)``: the results, the JSON files written,
and, for views, plain numpy arrays of the last evaluation's samples and of only the reference
images its neighbours name.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from diffstudio.app.events import Progress
from diffstudio.app.threaded import Emit, StopCheck, events_of
from diffstudio.errors import ConfigError, StorageError

__all__ = ["EvalOutcome", "EvalRequest", "SweepStep", "evaluate"]

# The unit each evaluation stage counts in (the terminal's bars and the window say the same).
STAGE_UNITS = {"weights": "byte", "reference": "image", "generate": "step", "samples": "image",
               "metrics": "metric"}


@dataclass
class EvalRequest:
    """What to evaluate and how.

    ``location`` is a run folder (``num_samples`` are generated with ``sampler``, in memory;
    default 2048) or a samples folder (``samples.npz`` or PNGs; ``num_samples`` takes the first
    N). ``reference`` None means the training set of the run (for a folder: of the run its PNGs
    name). ``weights`` is a file path, "" to search (``$DIFFSTUDIO_FID_WEIGHTS``, the torch hub
    cache, then a download when ``download`` allows: None follows ``DIFFSTUDIO_OFFLINE``), or
    ``"random"``: a randomly initialised Inception that checks the pipeline but gives no FID.
    ``resize_to`` below 299 is for tests only. ``step_sweep`` (a run only) evaluates the sampler
    once per step count, for the plot of FID against network evaluations; the reference
    features are computed once. ``write`` stores each result as JSON (at ``out`` for a single
    evaluation, else beside the samples).
    """

    location: str
    sampler: str = "ddim"
    sampler_params: Mapping[str, Any] = field(default_factory=dict)
    num_samples: int | None = None
    seed: int = 0
    sample_batch_size: int = 64
    checkpoint: str | None = None
    ema: bool = True
    class_label: int | None = None
    device: str = "auto"
    reference: str | None = None
    reference_params: Mapping[str, Any] = field(default_factory=dict)
    reference_limit: int = 0
    metrics: tuple[str, ...] | None = None
    weights: str = ""
    download: bool | None = None
    allow_unverified_weights: bool = False
    inception_batch_size: int = 50
    resize_to: int = 299
    cache_dir: str | None = None
    use_cache: bool = True
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    memorization_threshold: float = 1.0
    blas_threads: int = 0
    write: bool = True
    out: str | None = None
    step_sweep: tuple[int, ...] = ()

    def evaluations(self) -> list[dict[str, Any]]:
        """The sampler parameters of each evaluation: one, or one per step count."""
        if not self.step_sweep:
            return [dict(self.sampler_params)]
        return [{**dict(self.sampler_params), "steps": int(steps)} for steps in self.step_sweep]

    def describe(self) -> str:
        from diffstudio.engine.runs import Run

        name = Path(self.location).name
        return f"{name} with {self.sampler}" if Run.is_run(self.location) else \
            f"the samples in {self.location}"


@dataclass(frozen=True)
class SweepStep:
    """Evaluation ``number`` of ``total`` of a step sweep is starting."""

    latest_only: ClassVar[bool] = False

    number: int
    total: int
    sampler: str
    steps: int

    def describe(self) -> str:
        return f"Evaluation {self.number} of {self.total} ({self.sampler}, {self.steps} steps)"


@dataclass
class EvalOutcome:
    """A finished evaluation.

    ``results`` every EvaluationResult (one, or one per step of a sweep; their tensors
    dropped); ``paths`` the JSON files written; ``write_error`` why one could not be written
    (the result is then shown only). Of the last evaluation, for views: ``samples``
    (N, C, H, W) in [-1, 1]; ``retrieval`` per space (the engine's Neighbours);
    ``reference_images`` the reference images any neighbour names (U, C, H, W), with
    ``reference_rows`` mapping a dataset index to its row there; ``flagged`` the samples the
    memorisation check flags, with their ``ratios`` (N,) or None.
    """

    results: list[Any]
    paths: list[Path]
    samples: np.ndarray
    retrieval: dict[str, Any]
    reference_images: np.ndarray
    reference_rows: dict[int, int]
    flagged: list[int]
    ratios: np.ndarray | None
    write_error: str = ""

    @property
    def result(self) -> Any:
        return self.results[-1]

    @property
    def path(self) -> Path | None:
        return self.paths[-1] if self.paths else None

    @property
    def summary(self) -> list[str]:
        return self.result.summary_lines()

    def neighbour_image(self, index: int) -> np.ndarray:
        return self.reference_images[self.reference_rows[int(index)]]


def _reference_images(reference: Any, retrieval: Mapping[str, Any],
                      nearest: Any) -> tuple[np.ndarray, dict[int, int]]:
    wanted = [np.asarray(rows.indices).ravel() for rows in retrieval.values()]
    if nearest is not None:
        wanted.append(np.asarray(nearest).ravel())
    unique = np.unique(np.concatenate(wanted)).astype(np.int64) if wanted else np.zeros(0, int)
    if unique.size == 0 or reference is None:
        return np.zeros((0, 1, 1, 1), np.float32), {}
    import torch

    images = reference.data[torch.from_numpy(unique)].detach().float().cpu().numpy()
    return images, {int(index): row for row, index in enumerate(unique)}


def _outcome(results: list[Any], paths: list[Path], write_error: str) -> EvalOutcome:
    last = results[-1]
    samples = (last.samples.detach().float().cpu().numpy() if last.samples is not None
               else np.zeros((0, 1, 1, 1), np.float32))
    reference = last.reference_dataset
    last.samples = last.reference_dataset = None  # views get numpy; tensors need not live on
    retrieval = dict(last.retrieval)
    report = last.memorization
    nearest = report.nearest_index if report is not None else None
    images, rows = _reference_images(reference, retrieval, nearest)
    return EvalOutcome(
        results=results, paths=paths, samples=samples, retrieval=retrieval,
        reference_images=images, reference_rows=rows,
        flagged=list(report.flagged) if report is not None else [],
        ratios=np.asarray(report.ratios) if report is not None else None,
        write_error=write_error,
    )


class _Stages:
    """Engine progress reports -> Progress events with each stage's own elapsed time."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.started: dict[str, float] = {}

    def __call__(self, report: Any) -> None:
        now = time.perf_counter()
        started = self.started.setdefault(report.stage, now)
        self.emit(Progress(report.stage, int(report.done), int(report.total), now - started,
                           unit=STAGE_UNITS.get(report.stage, "item"), detail=report.message))


def evaluate(
    request: EvalRequest, *, registry: Any = None, should_stop: StopCheck | None = None
) -> Iterator[Any]:
    """Yields Progress, SweepStep (sweeps) and finally Done(EvalOutcome)."""
    if registry is None:
        from diffstudio.plugin_manager import load_plugins

        registry = load_plugins()
    if not request.location:
        raise ConfigError("choose a run or a samples folder (written by Save on the Sample page "
                          "or by 'diffstudio sample')")
    if not Path(request.location).expanduser().is_dir():
        raise ConfigError(f"no run or samples folder at {request.location}")
    from diffstudio.engine.runs import Run

    if request.step_sweep and not Run.is_run(request.location):
        raise ConfigError("a step sweep samples a run; give a run folder or no sweep")
    if request.num_samples is not None and request.num_samples < 2:
        raise ConfigError(f"the number of samples must be at least 2, got {request.num_samples}")
    if request.write:  # before any work: a read-only run would waste the whole evaluation
        from diffstudio.engine.io import check_writable

        location = Path(request.location).expanduser()
        folder = Path(request.out).expanduser().parent if request.out else (
            Run(location).evaluations_dir if Run.is_run(location) else location)
        problem = check_writable(folder)
        if problem is not None:
            raise StorageError(f"cannot write the evaluation result to {folder}: {problem}; "
                               "give --out FILE.json in a folder you can write to")

    def work(emit: Emit, stop: StopCheck) -> EvalOutcome:
        from diffstudio.engine.evaluation import (
            DEFAULT_METRICS,
            EvalSettings,
            FidWeights,
            ReferenceCache,
            evaluate_source,
            prepare_extractor,
            write_result,
        )

        progress = _Stages(emit)
        settings = EvalSettings(
            metrics=tuple(request.metrics) if request.metrics else tuple(DEFAULT_METRICS),
            kid_subsets=request.kid_subsets, kid_subset_size=request.kid_subset_size,
            memorization_threshold=request.memorization_threshold,
            reference_limit=int(request.reference_limit), seed=request.seed,
            blas_threads=request.blas_threads,
        ).validate()
        # Weights first: a missing file fails at once, before any sampling.
        weights: Any = FidWeights.random() if request.weights == "random" else (
            request.weights or None)
        extractor = prepare_extractor(
            weights, device=request.device, batch_size=request.inception_batch_size,
            download=request.download, allow_unverified=request.allow_unverified_weights,
            resize_to=request.resize_to, progress=progress, should_stop=stop,
        )
        cache = ReferenceCache(request.cache_dir, enabled=request.use_cache)
        evaluations = request.evaluations()
        results: list[Any] = []
        paths: list[Path] = []
        write_error = ""
        for number, sampler_params in enumerate(evaluations, start=1):
            if len(evaluations) > 1:
                emit(SweepStep(number, len(evaluations), request.sampler,
                               int(sampler_params["steps"])))
            result = evaluate_source(
                request.location, extractor=extractor, registry=registry,
                reference_id=request.reference, reference_params=request.reference_params,
                sampler_id=request.sampler, sampler_params=sampler_params,
                num_samples=request.num_samples, settings=settings, cache=cache,
                progress=progress, should_stop=stop, seed=request.seed,
                batch_size=request.sample_batch_size, checkpoint=request.checkpoint,
                ema=request.ema, device=request.device, class_label=request.class_label,
            )
            if request.write:
                try:
                    target = request.out if len(evaluations) == 1 else None
                    paths.append(write_result(result, target))
                except OSError as exc:  # a read-only folder: keep the result on screen
                    write_error = f"the result could not be written ({exc}); it is shown only"
            if number < len(evaluations):
                result.samples = result.reference_dataset = None  # only the last is shown
            results.append(result)
        return _outcome(results, paths, write_error)

    yield from events_of(work, should_stop=should_stop, name="diffstudio-evaluate")
