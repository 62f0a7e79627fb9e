"""The metric table: every metric an evaluation can compute, registered in one place.

Each :class:`Metric` names what it implements, the metrics it brings along, whether a small
evaluation may skip it (with a note instead of an error), and the function that fills its part
of an :class:`~.result.EvaluationResult` from the shared :class:`MetricInputs` (the Inception
features of both sides, the images, the reference). ``METRICS`` (ids, in computing order) and
``DEFAULT_METRICS`` come from the table; the CLI's ``--metrics`` and the Evaluate page's check
boxes come from those.

========================  ==========================================================
``fid``                   FID@N, the Fréchet distance of Inception features
                          (Heusel et al. 2017, arXiv:1706.08500)
``kid``                   KID, unbiased MMD^2 (Binkowski et al. 2018, arXiv:1801.01401)
``precision_recall``      improved precision and recall, k = 3 (arXiv:1904.06991)
``density_coverage``      density and coverage, k = 5 (arXiv:2002.09797)
``retrieval``             nearest training images, in Inception and pixel space
``memorization``          ratio test in pixels (Carlini et al. 2023, arXiv:2301.13188)
========================  ==========================================================

Nothing here imports torch at import time; the metric functions work on NumPy features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from diffstudio.engine.evaluation.density_coverage import density_coverage
from diffstudio.engine.evaluation.frechet import frechet_distance_to_features
from diffstudio.engine.evaluation.kid import kernel_inception_distance
from diffstudio.engine.evaluation.precision_recall import precision_recall
from diffstudio.engine.evaluation.progress import ProgressCallback, StopCheck, check_stop, emit
from diffstudio.engine.evaluation.result import EvaluationResult, fid_warnings
from diffstudio.engine.evaluation.retrieval import (
    memorization_check,
    nearest_training_images,
    pixel_vectors,
)
from diffstudio.errors import EvaluationError

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "METRIC_TABLE",
    "Metric",
    "MetricInputs",
    "brought_along",
    "compute_metrics",
]


@dataclass
class MetricInputs:
    """What every metric reads: ``features`` (N, 2048) of the samples, ``images`` (N, C, H, W)
    in [-1, 1], the ``reference`` dataset, its ``stats`` (a :class:`~.cache.ReferenceStatistics`:
    features, mean, covariance, and the dataset indices of the rows) and the ``settings`` (an
    :class:`~.settings.EvalSettings`)."""

    features: Any
    images: Any
    reference: Any
    stats: Any
    settings: Any


@dataclass(frozen=True)
class Metric:
    """One row of the table. ``compute(result, inputs)`` stores its numbers (and notes) in the
    result; ``skippable`` metrics that raise :class:`EvaluationError` (too few samples for k
    neighbours) are skipped with a note; ``brings`` are computed whenever this one is."""

    id: str
    title: str
    compute: Callable[[EvaluationResult, MetricInputs], None]
    default: bool = True
    skippable: bool = False
    brings: tuple[str, ...] = ()


def _fid(result: EvaluationResult, inputs: MetricInputs) -> None:
    result.fid = frechet_distance_to_features(inputs.features, inputs.stats.mu, inputs.stats.sigma)
    result.warnings.extend(fid_warnings(result.n_generated, result.n_reference))


def _kid(result: EvaluationResult, inputs: MetricInputs) -> None:
    settings = inputs.settings
    result.kid = kernel_inception_distance(
        inputs.features, inputs.stats.features, subsets=settings.kid_subsets,
        subset_size=settings.kid_subset_size, seed=settings.seed,
    )


def _precision_recall(result: EvaluationResult, inputs: MetricInputs) -> None:
    result.precision_recall = precision_recall(inputs.features, inputs.stats.features,
                                               inputs.settings.precision_recall_k)


def _density_coverage(result: EvaluationResult, inputs: MetricInputs) -> None:
    result.density_coverage = density_coverage(inputs.features, inputs.stats.features,
                                               inputs.settings.density_coverage_k)


def _reference_pixels(inputs: MetricInputs) -> tuple[Any, str | None]:
    """All reference images as pixel vectors (a subset limits Inception work, not this)."""
    shape, reference_shape = tuple(inputs.images.shape[1:]), tuple(inputs.reference.sample_shape)
    if shape != reference_shape:
        return None, (f"samples are {shape} and reference images {reference_shape}: "
                      "pixel-space comparisons need the same size")
    return pixel_vectors(inputs.reference.data), None


def _retrieval(result: EvaluationResult, inputs: MetricInputs) -> None:
    k, stats = inputs.settings.retrieval_k, inputs.stats
    found = nearest_training_images(inputs.features, stats.features, k=k, space="inception")
    found.indices = stats.indices[found.indices]  # subset rows -> dataset indices
    result.retrieval["inception"] = found
    pixels, problem = _reference_pixels(inputs)
    if pixels is None:
        result.notes.append(f"note: pixel-space retrieval skipped: {problem}")
        return
    result.retrieval["pixel"] = nearest_training_images(
        pixel_vectors(inputs.images), pixels, k=k, space="pixel"
    )


def _memorization(result: EvaluationResult, inputs: MetricInputs) -> None:
    pixels, problem = _reference_pixels(inputs)
    if pixels is None:
        result.notes.append(f"note: memorisation check skipped: {problem}")
        return
    settings = inputs.settings
    report = memorization_check(
        pixel_vectors(inputs.images), pixels, threshold=settings.memorization_threshold,
        neighbours=settings.memorization_neighbours, baseline_size=settings.baseline_size,
        seed=settings.seed,
    )
    result.memorization = report
    result.notes.extend(f"note: {text}" for text in report.notes)


METRIC_TABLE: tuple[Metric, ...] = (
    Metric("fid", "FID@N", _fid, brings=("kid",)),
    Metric("kid", "KID", _kid),
    Metric("precision_recall", "precision and recall", _precision_recall, skippable=True),
    Metric("density_coverage", "density and coverage", _density_coverage, default=False,
           skippable=True),
    Metric("retrieval", "nearest training images", _retrieval),
    Metric("memorization", "memorisation check", _memorization),
)
METRICS: tuple[str, ...] = tuple(metric.id for metric in METRIC_TABLE)
DEFAULT_METRICS: tuple[str, ...] = tuple(metric.id for metric in METRIC_TABLE if metric.default)
_BY_ID = {metric.id: metric for metric in METRIC_TABLE}


def brought_along(chosen: Iterable[str]) -> tuple[str, ...]:
    """``chosen`` plus every metric they bring (FID brings KID), keeping the user's order."""
    names = list(dict.fromkeys(chosen))
    for name in list(names):
        names.extend(extra for extra in _BY_ID[name].brings if extra not in names)
    return tuple(names)


def compute_metrics(
    result: EvaluationResult, chosen: Iterable[str], inputs: MetricInputs,
    progress: ProgressCallback | None = None, should_stop: StopCheck | None = None,
) -> list[str]:
    """Compute the ``chosen`` metrics in table order (stage ``metrics``); returns their ids."""
    wanted = set(chosen)
    steps = [metric for metric in METRIC_TABLE if metric.id in wanted]
    for index, metric in enumerate(steps):
        check_stop(should_stop, f"before {metric.id}")
        emit(progress, "metrics", index, len(steps), metric.id)
        try:
            metric.compute(result, inputs)
        except EvaluationError as exc:
            if not metric.skippable:
                raise
            result.notes.append(f"note: {metric.id} skipped: {exc}")
    return [metric.id for metric in steps]
