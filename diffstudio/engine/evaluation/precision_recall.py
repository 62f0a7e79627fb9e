"""Improved precision and recall of a generative model, from k-nearest-neighbour balls.

Kynkäänniemi, Karras, Laine, Lehtinen & Aila 2019, "Improved precision and recall metric for
assessing generative models" (NeurIPS), §2. Each feature vector phi' of a set Phi gets a ball
whose radius is the distance to its k-th nearest neighbour in Phi (k = 3); a vector phi is
"in the manifold of Phi" when it lies in some ball:

    f(phi, Phi) = 1  if  ||phi - phi'||_2 <= ||phi' - NN_k(phi', Phi)||_2  for some phi' in Phi

    precision = mean over generated phi_g of f(phi_g, Phi_reference)   (fidelity)
    recall    = mean over reference phi_r of f(phi_r, Phi_generated)   (diversity)

The paper uses equal numbers of generated and reference samples; with unequal sets the
k-NN radii have different scales, so compare values made with the same N and reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from diffstudio.engine.evaluation._distances import distance_blocks, kth_neighbour_distance
from diffstudio.errors import EvaluationError

__all__ = ["PrecisionRecall", "precision_recall"]


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float
    recall: float
    k: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def precision_recall(
    generated: np.ndarray, reference: np.ndarray, k: int = 3
) -> PrecisionRecall:
    """Precision and recall of ``generated`` (N, D) against ``reference`` (M, D) features."""
    gen = np.asarray(generated, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if min(gen.shape[0], ref.shape[0]) <= k:
        raise EvaluationError(
            f"precision/recall with k={k} needs more than {k} samples on each side; got "
            f"{gen.shape[0]} generated and {ref.shape[0]} reference"
        )
    radius_ref = kth_neighbour_distance(ref, k)  # (M,)
    radius_gen = kth_neighbour_distance(gen, k)  # (N,)
    in_reference = np.zeros(gen.shape[0], dtype=bool)
    in_generated = np.zeros(ref.shape[0], dtype=bool)
    for first, block in distance_blocks(gen, ref):  # block: (rows of gen, M)
        rows = block.shape[0]
        in_reference[first : first + rows] = (block <= radius_ref[None, :]).any(axis=1)
        in_generated |= (block <= radius_gen[first : first + rows, None]).any(axis=0)
    return PrecisionRecall(float(in_reference.mean()), float(in_generated.mean()), int(k))
