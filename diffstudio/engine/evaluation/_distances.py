"""Euclidean distances and exact k-nearest neighbours, in float64 and in blocks of rows.

Shared by precision/recall, density/coverage and retrieval. Candidates are found from
``|a|^2 + |b|^2 - 2 a.b`` (one matrix product per block), then the k chosen distances are
recomputed directly as ``|a - b|`` so that near-duplicates (the memorisation case) get exact,
correctly ordered distances. Ties are broken by the lower index.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from diffstudio.errors import EvaluationError

__all__ = ["distance_blocks", "k_nearest", "kth_neighbour_distance"]

_BLOCK_ENTRIES = 1 << 22  # distances per block (32 MiB of float64)


def _as_rows(x: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 2:
        raise EvaluationError(f"{name} must be shaped (N, D); got {array.shape}")
    return array


def distance_blocks(
    query: np.ndarray, bank: np.ndarray
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_row, distances)`` with distances (rows, M) from query rows to all of bank."""
    q = _as_rows(query, "query")
    b = _as_rows(bank, "bank")
    if q.shape[1] != b.shape[1]:
        raise EvaluationError(
            f"query and bank have different dimensions: {q.shape[1]} and {b.shape[1]}"
        )
    bank_sq = np.einsum("ij,ij->i", b, b)
    rows = max(1, _BLOCK_ENTRIES // max(1, b.shape[0]))
    for first in range(0, q.shape[0], rows):
        block = q[first : first + rows]
        squared = np.einsum("ij,ij->i", block, block)[:, None] + bank_sq[None, :]
        squared -= 2.0 * (block @ b.T)
        np.maximum(squared, 0.0, out=squared)
        yield first, np.sqrt(squared, out=squared)


def _exact_distances(query: np.ndarray, bank: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """|query_i - bank_candidates[i, j]| for candidates (N, c), in chunks of bounded memory."""
    out = np.empty(candidates.shape, dtype=np.float64)
    rows = max(1, _BLOCK_ENTRIES // max(1, candidates.shape[1] * query.shape[1]))
    for first in range(0, query.shape[0], rows):
        picked = candidates[first : first + rows]
        difference = query[first : first + rows, None, :] - bank[picked]
        out[first : first + rows] = np.sqrt(np.einsum("ijk,ijk->ij", difference, difference))
    return out


def k_nearest(
    query: np.ndarray,
    bank: np.ndarray,
    k: int,
    *,
    exclude_self: bool = False,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``bank`` (M, D) to each row of ``query`` (N, D).

    Returns ``(indices, distances)``, both (N, k), nearest first; indices are int64 into
    ``bank``, distances float64 Euclidean. For a leave-one-out search, ``exclude`` (N,) gives the
    bank row each query row must not be matched with (``query`` rows taken from ``bank``);
    ``exclude_self`` is ``exclude = arange(N)`` (``query`` is ``bank``).
    """
    q = _as_rows(query, "query")
    b = _as_rows(bank, "bank")
    if exclude_self:
        exclude = np.arange(q.shape[0])
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64)
        if exclude.shape != (q.shape[0],):
            raise EvaluationError(
                f"exclude must hold one bank index per query row; got {exclude.shape}"
            )
    available = b.shape[0] - (1 if exclude is not None else 0)
    if not 1 <= k <= available:
        raise EvaluationError(
            f"asked for {k} nearest neighbours among {available} candidates; use k <= {available}"
        )
    indices = np.empty((q.shape[0], k), dtype=np.int64)
    distances = np.empty((q.shape[0], k), dtype=np.float64)
    for first, block in distance_blocks(q, b):
        rows = np.arange(block.shape[0])
        excluded = exclude[first : first + block.shape[0]] if exclude is not None else None
        if excluded is not None:
            block[rows, excluded] = np.inf
        # A few spare candidates so that exact recomputation can reorder near-ties.
        spare = min(available, k + 2)
        candidates = np.argpartition(block, spare - 1, axis=1)[:, :spare]
        exact = _exact_distances(q[first : first + block.shape[0]], b, candidates)
        if excluded is not None:
            exact[candidates == excluded[:, None]] = np.inf
        order = np.lexsort((candidates, exact), axis=1)[:, :k]
        indices[first + rows] = np.take_along_axis(candidates, order, axis=1)
        distances[first + rows] = np.take_along_axis(exact, order, axis=1)
    return indices, distances


def kth_neighbour_distance(x: np.ndarray, k: int) -> np.ndarray:
    """(N,) distance from each row of x (N, D) to its k-th nearest other row."""
    return k_nearest(x, x, k, exclude_self=True)[1][:, k - 1]
