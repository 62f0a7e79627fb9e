"""scikit-learn's handwritten digits (the UCI optical-recognition set), as a diffusion dataset.

1797 grayscale 8x8 images of the digits 0-9, shipped inside the scikit-learn wheel
(``sklearn.datasets.load_digits``), so nothing is downloaded. Pixel intensities 0..16 are mapped
to [-1, 1] by ``x / 8 - 1``. Small enough to train a U-Net on a CPU in minutes.
"""

from __future__ import annotations

import torch

from diffstudio.engine.datasets import Dataset
from diffstudio.errors import ConfigError, DatasetError

__all__ = ["NATIVE_SIZE", "load_digits"]

NATIVE_SIZE = 8


def load_digits(size: int = NATIVE_SIZE) -> Dataset:
    """The 1797 digits as a float32 tensor of shape (1797, 1, size, size) in [-1, 1].

    Labels are the digits 0-9 (int64, shape (1797,)); ``class_names`` are ``"0"`` .. ``"9"``.
    ``size`` other than 8 resizes with bilinear interpolation
    (``torch.nn.functional.interpolate``, ``align_corners=False``), then clamps to [-1, 1]; it
    adds no detail, it only lets networks that need larger inputs train on the set.
    """
    if int(size) != size or size < 1:
        raise ConfigError(f"digits size must be a positive integer, got {size!r}")
    size = int(size)
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits

        bunch = sklearn_load_digits()
    except Exception as exc:
        raise DatasetError(
            f"could not load scikit-learn's digits ({type(exc).__name__}: {exc}); "
            "reinstall scikit-learn (pip install --force-reinstall scikit-learn)"
        ) from exc

    pixels = torch.as_tensor(bunch.images, dtype=torch.float32)  # (1797, 8, 8), values 0..16
    data = (pixels / 8.0 - 1.0).unsqueeze(1)  # (1797, 1, 8, 8) in [-1, 1]
    if size != NATIVE_SIZE:
        data = torch.nn.functional.interpolate(
            data, size=(size, size), mode="bilinear", align_corners=False
        ).clamp_(-1.0, 1.0)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    return Dataset(
        name="digits",
        data=data.contiguous(),
        kind="image",
        labels=labels,
        num_classes=10,
        class_names=[str(digit) for digit in range(10)],
        source="sklearn.datasets.load_digits",
    )
