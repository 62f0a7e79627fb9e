"""KID against a direct double-loop implementation of the unbiased MMD^2 estimator."""

from __future__ import annotations

import numpy as np
import pytest

from diffstudio.engine.evaluation import EvaluationError, kernel_inception_distance
from diffstudio.engine.evaluation.kid import mmd2_unbiased


def _naive_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_unbiased_mmd_matches_the_direct_sum():
    rng = np.random.default_rng(0)
    x, y = rng.random((9, 16)), rng.random((7, 16)) + 0.3
    assert mmd2_unbiased(x, y) == pytest.approx(_naive_mmd2(x, y), rel=1e-12)


def test_subsets_mean_and_std_match_a_direct_loop():
    rng = np.random.default_rng(1)
    gen, ref = rng.random((12, 8)), rng.random((15, 8)) * 1.2
    result = kernel_inception_distance(gen, ref, subsets=6, subset_size=5, seed=3)
    draws = np.random.default_rng(3)
    values = []
    for _ in range(6):
        g = draws.choice(12, 5, replace=False)
        r = draws.choice(15, 5, replace=False)
        values.append(_naive_mmd2(gen[g], ref[r]))
    assert result.mean == pytest.approx(np.mean(values), rel=1e-10)
    assert result.std == pytest.approx(np.std(values), rel=1e-8)
    assert (result.subsets, result.subset_size) == (6, 5)


def test_subset_size_adapts_to_the_smaller_set():
    rng = np.random.default_rng(2)
    gen, ref = rng.random((10, 4)), rng.random((30, 4))
    result = kernel_inception_distance(gen, ref, subsets=3)
    assert result.subset_size == 10
    # All of gen in every subset: a whole-set subset is one permutation away from the full sets.
    whole = kernel_inception_distance(gen, ref[:10], subsets=1)
    assert whole.mean == pytest.approx(_naive_mmd2(gen, ref[:10]), rel=1e-10)


def test_same_distribution_is_near_zero_and_a_shift_is_not():
    rng = np.random.default_rng(3)
    a, b = rng.random((200, 32)), rng.random((200, 32))
    same = kernel_inception_distance(a, b, subsets=20, subset_size=100)
    shifted = kernel_inception_distance(a, b + 0.5, subsets=20, subset_size=100)
    assert abs(same.mean) < 3 * same.std + 1e-3
    assert shifted.mean > 10 * max(abs(same.mean), same.std)


def test_too_few_samples_are_refused_with_the_counts():
    with pytest.raises(EvaluationError, match="1 generated"):
        kernel_inception_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(EvaluationError, match="same d"):
        kernel_inception_distance(np.zeros((3, 4)), np.zeros((5, 3)))
