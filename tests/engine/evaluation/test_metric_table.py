"""Metrics register in one table (engine/evaluation/metrics.py): the ids, the defaults, what a
metric brings along and whether a small evaluation may skip it all come from there."""

from __future__ import annotations

import numpy as np
import pytest

from diffstudio.engine.evaluation import (
    DEFAULT_METRICS,
    METRIC_TABLE,
    METRICS,
    EvalSettings,
    EvaluationError,
)
from diffstudio.engine.evaluation.metrics import MetricInputs, brought_along, compute_metrics
from diffstudio.engine.evaluation.result import EvaluationResult


class _Stats:
    def __init__(self, features: np.ndarray) -> None:
        self.features = features
        self.mu = features.mean(axis=0)
        self.sigma = np.cov(features, rowvar=False)
        self.indices = np.arange(len(features)) + 100  # rows of a subset of a larger dataset


class _Reference:
    def __init__(self, data: np.ndarray) -> None:
        import torch

        self.data = torch.from_numpy(data)
        self.sample_shape = tuple(data.shape[1:])


def _inputs(n: int = 12, m: int = 20, metrics: tuple[str, ...] = METRICS) -> MetricInputs:
    import torch

    rng = np.random.default_rng(0)
    features, reference = rng.standard_normal((n, 8)), rng.standard_normal((m, 8))
    images = torch.from_numpy(rng.uniform(-1, 1, (n, 1, 4, 4)).astype(np.float32))
    pixels = rng.uniform(-1, 1, (m, 1, 4, 4)).astype(np.float32)
    settings = EvalSettings(metrics=metrics, kid_subsets=3, kid_subset_size=5,
                            baseline_size=10, memorization_neighbours=5).validate()
    return MetricInputs(features, images, _Reference(pixels), _Stats(reference), settings)


def test_ids_and_defaults_come_from_the_table():
    assert tuple(metric.id for metric in METRIC_TABLE) == METRICS
    assert tuple(m.id for m in METRIC_TABLE if m.default) == DEFAULT_METRICS
    assert "density_coverage" in METRICS and "density_coverage" not in DEFAULT_METRICS
    assert brought_along(["fid"]) == ("fid", "kid")
    assert EvalSettings(metrics=("fid",)).validate().metrics == ("fid", "kid")
    with pytest.raises(EvaluationError, match="choose from fid, kid"):
        EvalSettings(metrics=("fdi",)).validate()


def test_every_metric_in_the_table_fills_its_part_of_the_result():
    inputs = _inputs()
    result = EvaluationResult(n_generated=12, n_reference=20)
    done = compute_metrics(result, METRICS, inputs)
    assert done == list(METRICS)  # table order, whatever order they were asked in
    assert result.fid is not None and result.fid > 0
    assert result.kid is not None and result.kid.subsets == 3
    assert result.precision_recall is not None and result.density_coverage is not None
    assert set(result.retrieval) == {"inception", "pixel"}
    assert result.retrieval["inception"].indices.min() >= 100  # mapped to dataset indices
    assert result.memorization is not None


def test_skippable_metrics_become_notes_and_the_rest_still_run():
    inputs = _inputs(n=3, m=3)  # k = 3 neighbours need more than 3 points
    result = EvaluationResult(n_generated=3, n_reference=3)
    compute_metrics(result, ("precision_recall", "retrieval"), inputs)
    assert result.precision_recall is None
    assert any(note.startswith("note: precision_recall skipped") for note in result.notes)
    assert "inception" in result.retrieval


def test_progress_reports_each_metric_by_id():
    seen = []
    result = EvaluationResult(n_generated=12, n_reference=20)
    compute_metrics(result, ("kid", "fid"), _inputs(), progress=seen.append)
    assert [(p.stage, p.message) for p in seen] == [("metrics", "fid"), ("metrics", "kid")]
