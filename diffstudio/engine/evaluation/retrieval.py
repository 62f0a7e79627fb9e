"""Similarity retrieval and a memorisation check: does the model copy its training set?

Retrieval: for each generated sample, the 5 training images nearest to it by
Euclidean distance between Inception pool3 features, with their distances; the same search is
available in pixel space (images flattened, values in [-1, 1]).

Memorisation (Carlini et al. 2023, "Extracting training data from diffusion models", USENIX
Security, §5): a sample x^ is flagged when its nearest training image x is much closer than its
typical neighbours, in pixel space::

    ratio(x^) = ||x^ - x||_2 / (alpha * mean_{y in S(x^)} ||x^ - y||_2),   alpha = 0.5,

where S(x^) holds the n = 50 nearest training images (x among them), and flagged when
``ratio <= threshold`` (1 by default, as issue 5 sets it). A ratio means little on its own, so
the same ratio is computed for training images against the rest of the training set
(leave-one-out): near-duplicates inside the data set show up there too, and the fraction of
training images that would be flagged is the base rate to compare the samples' rate with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffstudio.engine.evaluation._distances import k_nearest
from diffstudio.errors import EvaluationError

__all__ = [
    "MemorizationReport",
    "Neighbours",
    "memorization_check",
    "memorization_ratios",
    "nearest_training_images",
    "pixel_vectors",
]

RETRIEVAL_K = 5
MEMORIZATION_NEIGHBOURS = 50
MEMORIZATION_ALPHA = 0.5
MEMORIZATION_THRESHOLD = 1.0


@dataclass
class Neighbours:
    """indices (N, k) into the training set and Euclidean distances (N, k), nearest first."""

    space: str  # "inception" or "pixel"
    indices: np.ndarray
    distances: np.ndarray

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "k": self.k,
            "indices": self.indices.tolist(),
            "distances": [[round(float(d), 6) for d in row] for row in self.distances],
        }


def pixel_vectors(images: Any) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1] (tensor or array) -> (N, C*H*W) float64 vectors."""
    array = np.asarray(images.detach().cpu().numpy() if hasattr(images, "detach") else images)
    if array.ndim < 2:
        raise EvaluationError(f"pixel retrieval needs a batch of images; got shape {array.shape}")
    return array.reshape(array.shape[0], -1).astype(np.float64)


def nearest_training_images(
    query: np.ndarray, training: np.ndarray, *, k: int = RETRIEVAL_K, space: str = "inception"
) -> Neighbours:
    """The ``k`` training rows (M, D) nearest to each query row (N, D), by Euclidean distance."""
    k = min(int(k), np.asarray(training).shape[0])
    indices, distances = k_nearest(query, training, k)
    return Neighbours(space, indices, distances)


def memorization_ratios(
    query: np.ndarray,
    training: np.ndarray,
    *,
    neighbours: int = MEMORIZATION_NEIGHBOURS,
    alpha: float = MEMORIZATION_ALPHA,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Carlini et al.'s ratio for each query row: ``(ratios, nearest_index, nearest_distance)``.

    ``neighbours`` is capped at the number of candidates; ``exclude`` (N,) names, for query rows
    taken from ``training``, their own row (leave-one-out). A query whose n nearest are all at
    distance 0 (an exact copy of a repeated image) gets ratio 0.
    """
    available = np.asarray(training).shape[0] - (1 if exclude is not None else 0)
    count = min(int(neighbours), available)
    indices, distances = k_nearest(query, training, count, exclude=exclude)
    typical = alpha * distances.mean(axis=1)
    ratios = np.divide(
        distances[:, 0], typical, out=np.zeros(distances.shape[0]), where=typical > 0
    )
    return ratios, indices[:, 0], distances[:, 0]


@dataclass
class MemorizationReport:
    """Per-sample ratios and flags, and the training set's own leave-one-out base rate."""

    threshold: float
    neighbours: int
    alpha: float
    ratios: np.ndarray  # (N,)
    nearest_index: np.ndarray  # (N,)
    nearest_distance: np.ndarray  # (N,)
    baseline_size: int
    baseline_ratios: np.ndarray  # (baseline_size,)
    baseline_nearest_distance: np.ndarray  # (baseline_size,)
    notes: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.ratios <= self.threshold)]

    @property
    def baseline_flagged(self) -> int:
        return int((self.baseline_ratios <= self.threshold).sum())

    def to_dict(self) -> dict[str, Any]:
        def quantiles(values: np.ndarray) -> dict[str, float] | None:
            if values.size == 0:
                return None
            q = np.quantile(values, [0.05, 0.5, 0.95])
            return {"p05": float(q[0]), "median": float(q[1]), "p95": float(q[2])}

        flagged = self.flagged
        return {
            "space": "pixel",
            "threshold": self.threshold,
            "neighbours": self.neighbours,
            "alpha": self.alpha,
            "flagged_count": len(flagged),
            "flagged": flagged,
            "flagged_fraction": len(flagged) / max(1, self.ratios.size),
            "ratios": [round(float(r), 6) for r in self.ratios],
            "nearest_index": self.nearest_index.tolist(),
            "nearest_distance": [round(float(d), 6) for d in self.nearest_distance],
            "samples_nearest_distance": quantiles(self.nearest_distance),
            "samples_ratio": quantiles(self.ratios),
            "training_baseline": {
                "size": self.baseline_size,
                "flagged_count": self.baseline_flagged,
                "flagged_fraction": self.baseline_flagged / max(1, self.baseline_size),
                "nearest_distance": quantiles(self.baseline_nearest_distance),
                "ratio": quantiles(self.baseline_ratios),
            },
            "notes": list(self.notes),
        }


def memorization_check(
    samples: np.ndarray,
    training: np.ndarray,
    *,
    threshold: float = MEMORIZATION_THRESHOLD,
    neighbours: int = MEMORIZATION_NEIGHBOURS,
    alpha: float = MEMORIZATION_ALPHA,
    baseline_size: int = 2000,
    seed: int = 0,
) -> MemorizationReport:
    """Flag samples (N, D) too close to a training row (M, D); D is pixels, values in [-1, 1].

    The base rate uses up to ``baseline_size`` training rows drawn with
    ``numpy.random.default_rng(seed)``, each against all other training rows.
    """
    query = np.asarray(samples, dtype=np.float64)
    bank = np.asarray(training, dtype=np.float64)
    if bank.shape[0] < 2:
        raise EvaluationError(
            f"the memorisation check needs at least 2 training images; got {bank.shape[0]}"
        )
    if query.ndim != 2 or bank.ndim != 2 or query.shape[1] != bank.shape[1]:
        raise EvaluationError(
            f"samples and training images must have the same size for the pixel-space check; "
            f"got {query.shape[1:]} and {bank.shape[1:]} values per image"
        )
    notes = []
    count = min(int(neighbours), bank.shape[0] - 1)
    if count < neighbours:
        notes.append(
            f"only {bank.shape[0]} training images: typical distance over {count} neighbours, "
            f"not {neighbours}"
        )
    ratios, nearest_index, nearest_distance = memorization_ratios(
        query, bank, neighbours=count, alpha=alpha
    )
    size = min(int(baseline_size), bank.shape[0])
    base_ratios, base_nearest = np.zeros(0), np.zeros(0)
    if size:
        picked = np.sort(np.random.default_rng(seed).choice(bank.shape[0], size, replace=False))
        base_ratios, _, base_nearest = memorization_ratios(
            bank[picked], bank, neighbours=count, alpha=alpha, exclude=picked
        )
    return MemorizationReport(
        threshold=float(threshold),
        neighbours=count,
        alpha=float(alpha),
        ratios=ratios,
        nearest_index=nearest_index,
        nearest_distance=nearest_distance,
        baseline_size=size,
        baseline_ratios=base_ratios,
        baseline_nearest_distance=base_nearest,
        notes=notes,
    )
