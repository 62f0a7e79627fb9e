"""Datasets held in memory as one tensor, ready for training and evaluation.

A dataset factory (named by a ``dataset`` contribution) is called with its parameters and returns
a :class:`Dataset`. Images are float32 (N, C, H, W) in [-1, 1]; points are float32 (N, D) in
their own units. Files that could not be read are listed in ``skipped``, never fatal.
One file per source: ``digits.py``, ``image_folder.py``, ``toy2d.py``, ``torchvision_sets.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

__all__ = ["Dataset", "SkippedFile", "density_grid"]


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of a dataset, and why (for example ``"truncated PNG"``)."""

    path: str
    reason: str


@dataclass
class Dataset:
    """data: (N, C, H, W) in [-1, 1] for images, (N, D) for points; labels: (N,) int64 or None.

    ``log_density``, when the data distribution is known exactly (the toy Gaussian mixture),
    maps points (..., D) float64 to their log-density (...): the particle view draws it under
    the samples, and exact-score tests use it. None for data known only by its samples.

    ``noise_scale``, optional: a :class:`diffstudio.engine.suggestions.NoiseScale` (sigma_max,
    sigma_min, extent) the dataset declares for samplers' suggested defaults; when None, points
    get one computed from the data (largest pairwise distance) and images none.
    """

    name: str
    data: torch.Tensor
    kind: Literal["image", "points"]
    labels: torch.Tensor | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    skipped: list[SkippedFile] = field(default_factory=list)
    source: str = ""
    log_density: Callable[[torch.Tensor], torch.Tensor] | None = None
    noise_scale: Any = None

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    @property
    def x0_clip(self) -> float | None:
        """The bound samplers may clip x0_pred to: 1.0 for images, None for points."""
        return 1.0 if self.kind == "image" else None

    def content_hash(self) -> str:
        """SHA-256 of the data (and labels): a cache key for statistics computed on it."""
        digest = hashlib.sha256()
        digest.update(self.data.detach().cpu().contiguous().numpy().tobytes())
        if self.labels is not None:
            digest.update(self.labels.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


def density_grid(
    dataset: Dataset, size: int = 200, margin: float = 2.0
) -> tuple[torch.Tensor, tuple[float, float, float, float]] | None:
    """The exact density of a 2-D ``dataset`` on a ``size`` x ``size`` grid covering its points
    plus ``margin``: (density (size, size) float64, row = y; extent (x_min, x_max, y_min,
    y_max)), or None when the dataset declares no ``log_density`` or is not 2-D."""
    if dataset.log_density is None or dataset.kind != "points" or dataset.data.shape[1] != 2:
        return None
    low = float(dataset.data.min()) - margin
    high = float(dataset.data.max()) + margin
    axis = torch.linspace(low, high, size, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
    density = dataset.log_density(torch.stack([grid_x, grid_y], dim=-1)).exp()
    return density, (low, high, low, high)
