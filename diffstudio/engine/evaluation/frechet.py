"""The Fréchet distance between two Gaussians: FID on Inception features.

FID as Heusel et al. 2017 define it ("GANs trained by a two time-scale update rule converge to
a local Nash equilibrium", arXiv:1706.08500, §5 "Experiments", after Dowson & Landau 1982)::

    d^2((m, C), (m_w, C_w)) = ||m - m_w||_2^2 + Tr(C + C_w - 2 (C C_w)^(1/2))

``C C_w`` is not symmetric, and pytorch-fid takes its square root with ``scipy.linalg.sqrtm``
(whose ``disp`` argument is gone in SciPy 1.18). We never form it: ``C C_w`` is similar to the
symmetric positive semi-definite ``M = C^(1/2) C_w C^(1/2)`` (conjugate by ``C^(1/2)``), so
``Tr (C C_w)^(1/2) = sum_i sqrt(lambda_i(M))``. Two symmetric eigen-decompositions in float64
(``numpy.linalg.eigh`` for ``C^(1/2)``, ``eigvalsh`` for ``M``) give it, with no complex parts to
discard and no offset to add when the covariances are singular (N < 2048 samples).

With the N generated features at hand and N <= D, ``C = A A^T`` for the D x N matrix
``A = (X - m)^T / sqrt(N - 1)``: A is a (rectangular) square root of C, and the nonzero
eigenvalues of ``C^(1/2) C_w C^(1/2)`` are those of the N x N ``A^T C_w A``
(:func:`frechet_distance_to_features`), the same formulation at a fraction of the cost.

The eigen-decompositions run with one BLAS thread: LAPACK's symmetric eigensolvers synchronise
their threads often, and OpenBLAS threads spin while they wait, so on a loaded 2-core machine a
2048 x 2048 ``eigh`` took 8-9 s with 2 threads against 1.2-1.9 s with one (measured here).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from diffstudio.errors import EvaluationError

__all__ = [
    "frechet_distance",
    "frechet_distance_to_features",
    "gaussian_statistics",
    "trace_sqrt_product",
]


def _one_blas_thread() -> Any:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of ``features`` (N, D), in float64.

    The covariance is the unbiased one (``N - 1`` in the denominator), as ``numpy.cov`` and
    pytorch-fid compute it.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise EvaluationError(f"features must be shaped (N, D); got {x.shape}")
    if x.shape[0] < 2:
        raise EvaluationError(
            f"a covariance needs at least 2 samples; got {x.shape[0]}: evaluate more samples"
        )
    mu = x.mean(axis=0)
    centred = x - mu
    sigma = centred.T @ centred / (x.shape[0] - 1)
    return mu, sigma


def _psd_eigenvalues(values: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric PSD matrix with rounding noise removed.

    Values below ``n * eps * max|lambda|`` are at the level of the rounding error of the
    decomposition; they are set to 0 rather than contributing sqrt(noise) each.
    """
    cutoff = values.shape[0] * np.finfo(np.float64).eps * max(float(np.abs(values).max()), 0.0)
    return np.where(values > cutoff, values, 0.0)


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr (sigma1 sigma2)^(1/2)`` for symmetric PSD (D, D) matrices, in float64.

    Computed as ``sum sqrt(eig(S1^(1/2) S2 S1^(1/2)))`` with symmetric eigen-decompositions.
    """
    s1 = np.asarray(sigma1, dtype=np.float64)
    s2 = np.asarray(sigma2, dtype=np.float64)
    s1 = (s1 + s1.T) * 0.5  # symmetric to the last bit, so eigh sees what we mean
    s2 = (s2 + s2.T) * 0.5
    with _one_blas_thread():
        values, vectors = np.linalg.eigh(s1)
    root1 = (vectors * np.sqrt(_psd_eigenvalues(values))) @ vectors.T  # S1^(1/2)
    return _trace_sqrt_congruence(root1, s2)


def _trace_sqrt_congruence(root: np.ndarray, sigma: np.ndarray) -> float:
    """sum sqrt(eig(R^T sigma R)) for a (D, K) factor R, via a symmetric eigen-decomposition."""
    middle = root.T @ sigma @ root
    middle = (middle + middle.T) * 0.5
    with _one_blas_thread():
        values = np.linalg.eigvalsh(middle)
    return float(np.sqrt(_psd_eigenvalues(values)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017).

    ``mu*``: (D,); ``sigma*``: (D, D) symmetric positive semi-definite (rank < D is fine).
    Everything is computed in float64. The result is >= 0 up to rounding; it is returned as is
    (a tiny negative value means the two Gaussians are the same to machine precision).
    """
    m1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    m2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    dim = m1.shape[0]
    if m1.ndim != 1 or m2.shape != m1.shape:
        raise EvaluationError(
            f"the two means must be vectors of the same length; got {m1.shape} and {m2.shape}"
        )
    if s1.shape != (dim, dim) or s2.shape != (dim, dim):
        raise EvaluationError(
            f"covariances must be ({dim}, {dim}) to match the means; got {s1.shape} and "
            f"{s2.shape} (were the statistics made with different feature extractors?)"
        )
    for name, array in (("mu1", m1), ("sigma1", s1), ("mu2", m2), ("sigma2", s2)):
        if not np.all(np.isfinite(array)):
            raise EvaluationError(f"{name} holds NaN or infinite values; recompute the statistics")
    diff = m1 - m2
    return float(
        diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2)
    )


def frechet_distance_to_features(
    features: np.ndarray, mu_ref: np.ndarray, sigma_ref: np.ndarray
) -> float:
    """FID between the Gaussian fitted to ``features`` (N, D) and N(mu_ref, sigma_ref).

    Equal to ``frechet_distance(*gaussian_statistics(features), mu_ref, sigma_ref)``; when
    N <= D it uses the factor ``A = (X - m)^T / sqrt(N - 1)`` (module docstring) and never
    builds the D x D covariance of the features.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise EvaluationError(
            f"features must be shaped (N, D) with N >= 2; got {x.shape}: evaluate more samples"
        )
    if x.shape[0] > x.shape[1]:
        return frechet_distance(*gaussian_statistics(x), mu_ref, sigma_ref)
    mu = x.mean(axis=0)
    factor = (x - mu).T / np.sqrt(x.shape[0] - 1)  # (D, N), factor @ factor.T = covariance
    m2 = np.asarray(mu_ref, dtype=np.float64)
    s2 = np.asarray(sigma_ref, dtype=np.float64)
    if m2.shape != mu.shape or s2.shape != (mu.shape[0], mu.shape[0]):
        raise EvaluationError(
            f"reference statistics {m2.shape}, {s2.shape} do not match {mu.shape[0]}-d features "
            "(were they made with another feature extractor?)"
        )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(m2)) and np.all(np.isfinite(s2))):
        raise EvaluationError("features or statistics hold NaN or infinite values")
    s2 = (s2 + s2.T) * 0.5
    diff = mu - m2
    return float(
        diff @ diff + np.einsum("ij,ij->", factor, factor) + np.trace(s2)
        - 2.0 * _trace_sqrt_congruence(factor, s2)
    )
