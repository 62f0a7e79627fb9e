"""Datasets held in memory as one tensor, ready for training and evaluation.

A dataset factory (named by a ``dataset`` contribution) is called with its parameters and returns
a :class:`Dataset`. Images are float32 (N, C, H, W) in [-1, 1]; points are float32 (N, D) in
their own units. Files that could not be read are listed in ``skipped``, never fatal.
One file per source: ``digits.py``, ``image_folder.py``, ``toy2d.py``, ``torchvision_sets.py``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import torch

__all__ = ["Dataset", "SkippedFile"]


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of a dataset, and why (for example ``"truncated PNG"``)."""

    path: str
    reason: str


@dataclass
class Dataset:
    """data: (N, C, H, W) in [-1, 1] for images, (N, D) for points; labels: (N,) int64 or None."""

    name: str
    data: torch.Tensor
    kind: Literal["image", "points"]
    labels: torch.Tensor | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    skipped: list[SkippedFile] = field(default_factory=list)
    source: str = ""

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
