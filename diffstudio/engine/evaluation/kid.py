"""Kernel Inception Distance: an unbiased MMD^2 between Inception features.

Bińkowski, Sutherland, Arbel & Gretton 2018, "Demystifying MMD GANs" (ICLR), §4 (KID): the
squared maximum mean discrepancy with the cubic polynomial kernel

    k(x, y) = (x . y / d + 1)^3,      d = feature dimension (2048)

estimated without bias (Gretton et al. 2012, "A kernel two-sample test", JMLR, Lemma 6)::

    MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
              - 2/(m n) sum_{i, j} k(x_i, y_j)

Unlike FID it has no bias at small N, which is why it is always reported beside FID@N. The
estimate is averaged over random subsets (100 of 1000 samples by default, as in the paper's
code and clean-fid); the subset size is adapted to N (``min(1000, N_generated, N_reference)``)
and the mean and standard deviation over subsets are reported. It can be slightly negative.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from diffstudio.errors import EvaluationError

__all__ = ["KidResult", "kernel_inception_distance", "mmd2_unbiased", "polynomial_kernel"]

DEFAULT_SUBSETS = 100
DEFAULT_SUBSET_SIZE = 1000


@dataclass(frozen=True)
class KidResult:
    """KID mean and standard deviation over ``subsets`` subsets of ``subset_size`` samples."""

    mean: float
    std: float
    subsets: int
    subset_size: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3) -> np.ndarray:
    """k(x, y) = (x . y / d + 1)^degree for rows of x (m, d) and y (n, d): (m, n) float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return (x @ y.T / x.shape[1] + 1.0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3) -> float:
    """Unbiased MMD^2 (Lemma 6 of Gretton et al. 2012) between x (m, d) and y (n, d), m, n >= 2."""
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise EvaluationError(f"KID needs at least 2 samples on each side; got {m} and {n}")
    k_xx = polynomial_kernel(x, x, degree)
    k_yy = polynomial_kernel(y, y, degree)
    k_xy = polynomial_kernel(x, y, degree)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kernel_inception_distance(
    generated: np.ndarray,
    reference: np.ndarray,
    *,
    subsets: int = DEFAULT_SUBSETS,
    subset_size: int = DEFAULT_SUBSET_SIZE,
    seed: int = 0,
) -> KidResult:
    """KID between ``generated`` (N, d) and ``reference`` (M, d) features.

    ``subset_size`` is capped at ``min(N, M)``; each subset draws that many rows from each side
    without replacement, with ``numpy.random.default_rng(seed)`` (generated first, then
    reference), so the result is reproducible. The std is NumPy's default (ddof = 0) over the
    subset estimates, as torch-fidelity reports it.
    """
    gen = np.asarray(generated, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if gen.ndim != 2 or ref.ndim != 2 or gen.shape[1] != ref.shape[1]:
        raise EvaluationError(
            f"KID needs two feature arrays (N, d) with the same d; got {gen.shape} and {ref.shape}"
        )
    if subsets < 1:
        raise EvaluationError(f"KID needs at least one subset; got {subsets}")
    size = min(int(subset_size), gen.shape[0], ref.shape[0])
    if size < 2:
        raise EvaluationError(
            f"KID needs at least 2 samples on each side; got {gen.shape[0]} generated and "
            f"{ref.shape[0]} reference"
        )
    rng = np.random.default_rng(seed)
    estimates = np.empty(subsets, dtype=np.float64)
    for index in range(subsets):
        pick_gen = rng.choice(gen.shape[0], size, replace=False)
        pick_ref = rng.choice(ref.shape[0], size, replace=False)
        estimates[index] = mmd2_unbiased(gen[pick_gen], ref[pick_ref])
    return KidResult(float(estimates.mean()), float(estimates.std()), int(subsets), int(size))
