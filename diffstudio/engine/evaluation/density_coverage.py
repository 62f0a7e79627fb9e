"""Density and coverage: precision and recall made robust to outliers in the reference set.

Naeem, Oh, Uh, Choi & Yoo 2020, "Reliable fidelity and diversity metrics for generative
models" (ICML), §3. Only reference samples X_j get k-NN balls B(X_j, NND_k(X_j)) (k = 5)::

    density  = 1/(k N) sum_i sum_j 1[Y_i in B(X_j, NND_k(X_j))]       (can exceed 1)
    coverage = 1/M sum_j 1[some Y_i in B(X_j, NND_k(X_j))]

for N generated samples Y_i and M reference samples X_j. Balls are closed (<=), as in
:mod:`diffstudio.engine.evaluation.precision_recall`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from diffstudio.engine.evaluation._distances import distance_blocks, kth_neighbour_distance
from diffstudio.errors import EvaluationError

__all__ = ["DensityCoverage", "density_coverage"]


@dataclass(frozen=True)
class DensityCoverage:
    density: float
    coverage: float
    k: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def density_coverage(
    generated: np.ndarray, reference: np.ndarray, k: int = 5
) -> DensityCoverage:
    """Density and coverage of ``generated`` (N, D) against ``reference`` (M, D) features."""
    gen = np.asarray(generated, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape[0] <= k or gen.shape[0] < 1:
        raise EvaluationError(
            f"density/coverage with k={k} needs more than {k} reference samples and at least "
            f"one generated; got {ref.shape[0]} reference and {gen.shape[0]} generated"
        )
    radius = kth_neighbour_distance(ref, k)  # (M,)
    inside = 0
    covered = np.zeros(ref.shape[0], dtype=bool)
    for _, block in distance_blocks(gen, ref):  # block: (rows of gen, M)
        hits = block <= radius[None, :]
        inside += int(hits.sum())
        covered |= hits.any(axis=0)
    return DensityCoverage(inside / (k * gen.shape[0]), float(covered.mean()), int(k))
