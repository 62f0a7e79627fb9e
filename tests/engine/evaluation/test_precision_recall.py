"""Precision/recall (k = 3) and density/coverage (k = 5) against brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest

from diffstudio.engine.evaluation import EvaluationError, density_coverage, precision_recall


def _kth(x: np.ndarray, k: int) -> np.ndarray:
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    return np.sort(d, axis=1)[:, k]  # column 0 is the point itself


def _brute_pr(gen, ref, k):
    r_ref, r_gen = _kth(ref, k), _kth(gen, k)
    d = np.linalg.norm(gen[:, None] - ref[None], axis=2)
    m, n = len(ref), len(gen)
    precision = np.mean([any(d[i, j] <= r_ref[j] for j in range(m)) for i in range(n)])
    recall = np.mean([any(d[i, j] <= r_gen[i] for i in range(n)) for j in range(m)])
    return precision, recall


def _brute_dc(gen, ref, k):
    r_ref = _kth(ref, k)
    d = np.linalg.norm(gen[:, None] - ref[None], axis=2)
    density = sum(d[i, j] <= r_ref[j] for i in range(len(gen)) for j in range(len(ref)))
    coverage = np.mean([d[:, j].min() <= r_ref[j] for j in range(len(ref))])
    return density / (k * len(gen)), coverage


@pytest.mark.parametrize("shift", [0.0, 0.4, 2.0])
def test_precision_recall_and_density_coverage_match_brute_force(shift):
    rng = np.random.default_rng(7)
    ref = rng.standard_normal((40, 6))
    gen = rng.standard_normal((30, 6)) * 0.8 + shift
    pr = precision_recall(gen, ref, k=3)
    dc = density_coverage(gen, ref, k=5)
    assert (pr.precision, pr.recall) == pytest.approx(_brute_pr(gen, ref, 3))
    assert (dc.density, dc.coverage) == pytest.approx(_brute_dc(gen, ref, 5))


def test_blocks_do_not_change_the_result(monkeypatch):
    import diffstudio.engine.evaluation._distances as distances

    rng = np.random.default_rng(8)
    ref, gen = rng.standard_normal((50, 5)), rng.standard_normal((45, 5)) + 0.3
    whole = precision_recall(gen, ref), density_coverage(gen, ref)
    monkeypatch.setattr(distances, "_BLOCK_ENTRIES", 64)  # a handful of rows per block
    assert (precision_recall(gen, ref), density_coverage(gen, ref)) == whole


def test_too_few_samples_for_k():
    with pytest.raises(EvaluationError, match="more than 3 samples"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)
