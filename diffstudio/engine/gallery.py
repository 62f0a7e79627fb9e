"""Grids of images (contact sheets) for previews and galleries."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch

from diffstudio.engine.pngmeta import write_png

__all__ = ["make_grid", "save_grid"]


def make_grid(
    images: torch.Tensor | np.ndarray, columns: int | None = None, pad: int = 1
) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (C, rows*(H+pad)+pad, cols*(W+pad)+pad) in [-1, 1].

    Padding is drawn at -1 (black). ``columns`` defaults to ceil(sqrt(N)).
    """
    array = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else images
    count, channels, height, width = array.shape
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / columns)
    grid = np.full(
        (channels, rows * (height + pad) + pad, columns * (width + pad) + pad), -1.0, np.float32
    )
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = pad + row * (height + pad), pad + column * (width + pad)
        grid[:, top : top + height, left : left + width] = array[index]
    return grid


def save_grid(
    images: torch.Tensor | np.ndarray,
    path: str | os.PathLike[str],
    *,
    metadata: dict[str, Any] | None = None,
    columns: int | None = None,
    scale: int | None = None,
) -> None:
    """Write a grid PNG; small images are enlarged (nearest) to at least ~256 px across."""
    grid = make_grid(images, columns)
    if scale is None:
        scale = max(1, 256 // max(grid.shape[1:]))
    write_png(path, grid, metadata or {}, scale=scale)
