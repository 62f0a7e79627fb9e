"""The Fréchet distance: pytorch-fid's function, closed forms for Gaussians, singular cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from diffstudio.engine.evaluation import (
    EvaluationError,
    frechet_distance,
    frechet_distance_to_features,
    gaussian_statistics,
)
from diffstudio.engine.evaluation.frechet import trace_sqrt_product


def _spd(rng: np.random.Generator, dim: int, floor: float = 0.1) -> np.ndarray:
    a = rng.standard_normal((dim, 2 * dim))
    return a @ a.T / (2 * dim) + floor * np.eye(dim)


def _pytorch_fid(mu1, s1, mu2, s2) -> float:
    """pytorch-fid's value, or (SciPy >= 1.18 removed sqrtm's disp) an independent closed form."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sqrtm(disp=...) is deprecated in SciPy 1.16-1.17
            return float(calculate_frechet_distance(mu1, s1, mu2, s2))
    except TypeError:
        # Tr sqrt(S1 S2) from the eigenvalues of the (non-symmetric) product: all real, >= 0.
        eig = np.linalg.eigvals(s1 @ s2)
        return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2)
                     - 2 * np.sqrt(np.clip(eig.real, 0, None)).sum())


@pytest.mark.parametrize("dim", [8, 64, 256])
def test_matches_pytorch_fid_on_full_rank_statistics(dim):
    rng = np.random.default_rng(dim)
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim) * 0.5
    s1, s2 = _spd(rng, dim), _spd(rng, dim, floor=0.3)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(_pytorch_fid(mu1, s1, mu2, s2), rel=1e-6)


def test_statistics_of_features_agree_with_pytorch_fid_too():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((400, 32)) @ rng.standard_normal((32, 32))
    b = rng.standard_normal((300, 32)) * 1.3 + 0.2
    (mu1, s1), (mu2, s2) = gaussian_statistics(a), gaussian_statistics(b)
    np.testing.assert_allclose(s1, np.cov(a, rowvar=False), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mu1, a.mean(axis=0))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_pytorch_fid(mu1, s1, mu2, s2),
                                                               rel=1e-6)


def test_diagonal_covariances_closed_form():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 4, 50), rng.uniform(0.1, 4, 50)
    mu1, mu2 = rng.standard_normal(50), rng.standard_normal(50)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_commuting_covariances_closed_form():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    a, b = rng.uniform(0, 3, 40), rng.uniform(0, 3, 40)
    a[:10] = 0.0  # singular, still fine
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    mu = rng.standard_normal(40)
    expected = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(expected, rel=1e-8, abs=1e-9)


def test_one_dimension():
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


def test_identical_gaussians_are_at_distance_zero_and_the_distance_is_symmetric():
    rng = np.random.default_rng(4)
    mu, s = rng.standard_normal(30), _spd(rng, 30)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-9
    mu2, s2 = rng.standard_normal(30), _spd(rng, 30)
    assert frechet_distance(mu, s, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu, s),
                                                             rel=1e-10)


def test_rank_deficient_statistics_from_few_samples():
    """N < D: both covariances singular. Independent check: with S1 = A A^T, the nonzero
    eigenvalues of S1 S2 are those of the small symmetric A^T S2 A."""
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((20, 128)), rng.standard_normal((30, 128)) + 0.1
    (mu1, s1), (mu2, s2) = gaussian_statistics(x), gaussian_statistics(y)
    a = (x - mu1).T / np.sqrt(19)
    expected_trace = np.sqrt(np.clip(np.linalg.eigvalsh(a.T @ s2 @ a), 0, None)).sum()
    assert trace_sqrt_product(s1, s2) == pytest.approx(expected_trace, rel=1e-9)
    value = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(value) and value > 0


@pytest.mark.parametrize("n", [5, 60, 200])
def test_from_features_equals_the_full_covariance_route(n):
    """N <= D uses the D x N factor of the covariance; N > D falls back to the full route."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 64)) @ rng.standard_normal((64, 64)) * 0.3
    mu_ref, s_ref = rng.standard_normal(64), _spd(rng, 64, floor=0.0)
    expected = frechet_distance(*gaussian_statistics(x), mu_ref, s_ref)
    assert frechet_distance_to_features(x, mu_ref, s_ref) == pytest.approx(expected, rel=1e-9)


def test_mismatched_statistics_say_what_is_wrong():
    with pytest.raises(EvaluationError, match="different feature extractors"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
    with pytest.raises(EvaluationError, match="same length"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(3))
    with pytest.raises(EvaluationError, match="NaN"):
        frechet_distance(np.zeros(2), np.eye(2), np.array([np.nan, 0]), np.eye(2))
    with pytest.raises(EvaluationError, match="at least 2 samples"):
        gaussian_statistics(np.zeros((1, 5)))
    with pytest.raises(EvaluationError, match="another feature extractor"):
        frechet_distance_to_features(np.zeros((3, 5)), np.zeros(4), np.eye(4))
