"""Reference statistics and features, cached on disk so a repeated evaluation pays only for the
generated side.

One ``.npz`` per reference set, readable by pytorch-fid as precomputed statistics
(``python -m pytorch_fid ref.npz samples/`` reads its ``mu`` and ``sigma``)::

    mu        (2048,)        float64   mean of the reference features
    sigma     (2048, 2048)   float64   their covariance (N - 1 in the denominator)
    features  (M, 2048)      float32   the features themselves (KID, precision/recall, retrieval)
    indices   (M,)           int64     which dataset images they are (a subset may be used)
    info      ()             str       JSON: the cache key and what went into it

The cache key is the SHA-256 of a canonical JSON of everything that decides the features: the
dataset's content hash (:meth:`Dataset.content_hash`), the image shape, the subset taken, the
preprocessing and the weights' SHA-256. Files are written atomically; a file that cannot be read
or does not match its key is ignored and recomputed, never trusted.

The folder is ``$DIFFSTUDIO_CACHE_DIR/fid-reference`` when that variable is set, else
``$XDG_CACHE_HOME/diffstudio/fid-reference`` (``~/.cache/diffstudio/fid-reference``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffstudio.engine.evaluation.frechet import gaussian_statistics
from diffstudio.engine.io import atomic_write_with
from diffstudio.errors import EvaluationError

__all__ = [
    "CACHE_ENV",
    "ReferenceCache",
    "ReferenceStatistics",
    "default_cache_dir",
    "reference_key",
    "save_statistics_npz",
]

CACHE_ENV = "DIFFSTUDIO_CACHE_DIR"
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """The folder reference statistics are kept in (see the module docstring)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "fid-reference"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "diffstudio" / "fid-reference"


def reference_key(
    dataset_sha256: str,
    image_shape: tuple[int, ...],
    extractor_identity: Mapping[str, Any],
    subset: Mapping[str, Any] | None = None,
) -> str:
    """SHA-256 (hex) naming one reference set's statistics under one feature extractor."""
    payload = {
        "format": CACHE_FORMAT,
        "dataset_sha256": dataset_sha256,
        "image_shape": [int(s) for s in image_shape],
        "subset": dict(subset or {}),
        "extractor": dict(extractor_identity),
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ReferenceStatistics:
    """Reference features (M, 2048) with their mean and covariance, and where they came from."""

    key: str
    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray
    indices: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    from_cache: bool = False

    @classmethod
    def from_features(
        cls, key: str, features: np.ndarray, indices: np.ndarray, info: dict[str, Any]
    ) -> ReferenceStatistics:
        mu, sigma = gaussian_statistics(features)
        return cls(key, mu, sigma, np.asarray(features, dtype=np.float32),
                   np.asarray(indices, dtype=np.int64), dict(info))


def save_statistics_npz(
    path: str | Path, mu: np.ndarray, sigma: np.ndarray, **arrays: np.ndarray
) -> None:
    """Write a pytorch-fid-compatible ``.npz`` (``mu``, ``sigma``, extra arrays) atomically."""

    def write(temp: Path) -> None:
        with open(temp, "wb") as handle:
            np.savez(handle, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
                     **arrays)

    atomic_write_with(path, write)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:40] or "reference"


class ReferenceCache:
    """Reference statistics on disk, one ``.npz`` per key, in ``directory``.

    ``hits`` and ``misses`` count lookups, so callers and tests can tell a cache hit from a
    recomputation without timing anything.
    """

    def __init__(self, directory: str | Path | None = None, *, enabled: bool = True) -> None:
        self.directory = Path(directory).expanduser() if directory else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def path_for(self, key: str, name: str = "reference") -> Path:
        return self.directory / f"{_slug(name)}-{key[:32]}.npz"

    def load(self, key: str, name: str = "reference") -> ReferenceStatistics | None:
        """The statistics stored under ``key``, or None when absent, unreadable or mismatched."""
        path = self.path_for(key, name)
        if not self.enabled or not path.is_file():
            self.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                info = json.loads(str(data["info"]))
                mu, sigma = data["mu"], data["sigma"]
                features, indices = data["features"], data["indices"]
            dim = mu.shape[0]
            valid = (
                info.get("key") == key
                and mu.shape == (dim,)
                and sigma.shape == (dim, dim)
                and features.ndim == 2 and features.shape[1] == dim
                and indices.shape == (features.shape[0],)
                and np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))
            )
        except Exception:  # a torn or foreign file: recompute rather than trust it
            valid = False
        if not valid:
            self.misses += 1
            return None
        self.hits += 1
        return ReferenceStatistics(key, mu, sigma, features, indices, info, path, True)

    def save(self, stats: ReferenceStatistics, name: str = "reference") -> Path | None:
        """Store ``stats`` under its key (atomically); returns the file, or None when disabled."""
        if not self.enabled:
            return None
        path = self.path_for(stats.key, name)
        info = {**stats.info, "key": stats.key}
        save_statistics_npz(
            path, stats.mu, stats.sigma, features=stats.features.astype(np.float32),
            indices=stats.indices.astype(np.int64), info=np.array(json.dumps(info, default=str)),
        )
        stats.path = path
        return path

    def get_or_compute(
        self,
        key: str,
        name: str,
        compute: Callable[[], tuple[np.ndarray, np.ndarray, dict[str, Any]]],
    ) -> ReferenceStatistics:
        """The cached statistics for ``key``, else ``compute()`` -> (features, indices, info),
        stored before being returned."""
        cached = self.load(key, name)
        if cached is not None:
            return cached
        features, indices, info = compute()
        if features.shape[0] < 2:
            raise EvaluationError(
                f"the reference set {name!r} has {features.shape[0]} image(s); at least 2 needed"
            )
        stats = ReferenceStatistics.from_features(key, features, indices, info)
        self.save(stats, name)
        return stats
