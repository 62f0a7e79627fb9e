"""MNIST, Fashion-MNIST and CIFAR-10 through ``torchvision.datasets``, as diffusion datasets.

The files are read from (or downloaded into) ``root``, by default ``~/.cache/diffstudio/datasets``,
in torchvision's own layout: ``root/MNIST/raw``, ``root/FashionMNIST/raw`` (the four
``*-ubyte`` files) and ``root/cifar-10-batches-py`` (the extracted ``cifar-10-python.tar.gz``).
Nothing is downloaded unless ``download=True``; a failed download (no network) is reported as a
:class:`DatasetError` after at most a socket timeout, never a hang.

The whole split is converted at once from the dataset's ``.data`` array (not image by image):
MNIST-like sets give (N, 1, 28, 28), CIFAR-10 gives (N, 3, 32, 32), float32 in [-1, 1].
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffstudio.engine.datasets import Dataset
from diffstudio.errors import ConfigError, DatasetError

__all__ = [
    "DEFAULT_ROOT",
    "DOWNLOAD_TIMEOUT_S",
    "TORCHVISION_SETS",
    "load_cifar10",
    "load_fashion_mnist",
    "load_mnist",
    "load_torchvision",
]

DEFAULT_ROOT = "~/.cache/diffstudio/datasets"
DOWNLOAD_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class _Source:
    class_name: str  # attribute of torchvision.datasets
    folder: str  # where torchvision looks, relative to root
    files: str  # what must be in that folder
    channels: int
    native_size: int


TORCHVISION_SETS: dict[str, _Source] = {
    "mnist": _Source(
        "MNIST", os.path.join("MNIST", "raw"),
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
        "t10k-labels-idx1-ubyte (unzipped)", 1, 28,
    ),
    "fashion-mnist": _Source(
        "FashionMNIST", os.path.join("FashionMNIST", "raw"),
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
        "t10k-labels-idx1-ubyte (unzipped)", 1, 28,
    ),
    "cifar10": _Source(
        "CIFAR10", "cifar-10-batches-py",
        "data_batch_1 .. data_batch_5, test_batch and batches.meta (the extracted "
        "cifar-10-python.tar.gz)", 3, 32,
    ),
}


def load_torchvision(
    name: str = "mnist",
    root: str | None = None,
    download: bool = False,
    size: int = 0,
    train: bool = True,
    max_images: int = 0,
) -> Dataset:
    """Load the torchvision set ``name`` ("mnist", "fashion-mnist" or "cifar10").

    Returns float32 images (N, C, H, W) in [-1, 1] (C = 1, H = W = 28 for the MNIST sets;
    C = 3, H = W = 32 for CIFAR-10), int64 labels (N,) and the set's class names.
    ``root`` None means ``~/.cache/diffstudio/datasets``. ``train`` picks the training split
    (60000 / 50000 images) or the test split (10000). ``max_images > 0`` keeps the first that
    many. ``size > 0`` resizes to size x size with bilinear interpolation (antialiased when
    shrinking; ``torch.nn.functional.interpolate``).

    Raises :class:`DatasetError` when the files are not in ``root`` (and ``download`` is off)
    or the download fails, saying where it looked and how to fix it.
    """
    key = str(name).strip().lower()
    if key not in TORCHVISION_SETS:
        raise ConfigError(
            f"unknown torchvision dataset {name!r}; choose one of {list(TORCHVISION_SETS)}"
        )
    if isinstance(size, bool) or int(size) != size or size < 0:
        raise ConfigError(f"{key} size must be 0 (native) or a positive integer, got {size!r}")
    if isinstance(max_images, bool) or int(max_images) != max_images or max_images < 0:
        raise ConfigError(f"{key} max_images must be 0 (all) or more, got {max_images!r}")
    source = TORCHVISION_SETS[key]
    folder = Path(os.path.abspath(os.path.expanduser(str(root or DEFAULT_ROOT))))

    dataset = _open(key, source, folder, bool(download), bool(train))

    images = dataset.data  # MNIST: uint8 tensor (N, 28, 28); CIFAR-10: uint8 array (N, 32, 32, 3)
    targets = dataset.targets
    if max_images:
        images, targets = images[: int(max_images)], targets[: int(max_images)]
    pixels = torch.as_tensor(np.asarray(images), dtype=torch.uint8)
    pixels = pixels.unsqueeze(1) if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2)
    data = pixels.to(torch.float32).div_(127.5).sub_(1.0)
    if size and int(size) != source.native_size:
        size = int(size)
        data = torch.nn.functional.interpolate(
            data, size=(size, size), mode="bilinear", align_corners=False,
            antialias=size < source.native_size,
        ).clamp_(-1.0, 1.0)
    labels = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
    return Dataset(
        name=key,
        data=data.contiguous(),
        kind="image",
        labels=labels,
        num_classes=len(dataset.classes),
        class_names=[str(class_name) for class_name in dataset.classes],
        source=str(folder / source.folder),
    )


def load_mnist(
    root: str | None = None,
    download: bool = False,
    size: int = 0,
    train: bool = True,
    max_images: int = 0,
) -> Dataset:
    """MNIST handwritten digits: (N, 1, 28, 28) in [-1, 1]; see :func:`load_torchvision`."""
    return load_torchvision("mnist", root, download, size, train, max_images)


def load_fashion_mnist(
    root: str | None = None,
    download: bool = False,
    size: int = 0,
    train: bool = True,
    max_images: int = 0,
) -> Dataset:
    """Fashion-MNIST clothing: (N, 1, 28, 28) in [-1, 1]; see :func:`load_torchvision`."""
    return load_torchvision("fashion-mnist", root, download, size, train, max_images)


def load_cifar10(
    root: str | None = None,
    download: bool = False,
    size: int = 0,
    train: bool = True,
    max_images: int = 0,
) -> Dataset:
    """CIFAR-10 colour photos: (N, 3, 32, 32) in [-1, 1]; see :func:`load_torchvision`."""
    return load_torchvision("cifar10", root, download, size, train, max_images)


def _open(key: str, source: _Source, folder: Path, download: bool, train: bool) -> Any:
    """The torchvision dataset object, read from disk or (when asked) downloaded first."""
    try:
        import torchvision.datasets
    except Exception as exc:
        raise DatasetError(
            f"{key} needs torchvision, which could not be imported ({type(exc).__name__}: "
            f"{exc}); install it with: pip install torchvision"
        ) from exc
    dataset_class = getattr(torchvision.datasets, source.class_name)
    where = folder / source.folder
    copy_hint = f"or copy {source.files} into {str(where)!r}"
    fix = f"pass download=True when online to download it into {str(folder)!r}, {copy_hint}"
    try:
        return dataset_class(root=str(folder), train=train, download=False)
    except Exception as exc:
        if not download:
            if not where.is_dir():
                raise DatasetError(
                    f"{key} was not found: the folder {str(where)!r} does not exist; {fix}"
                ) from exc
            raise DatasetError(
                f"{key} files in {str(where)!r} are missing, incomplete or unreadable "
                f"({_short(exc)}); {fix}"
            ) from exc

    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return dataset_class(root=str(folder), train=train, download=True)
    except Exception as exc:
        raise DatasetError(
            f"could not download {key} into {str(folder)!r} ({_short(exc)}); check the "
            f"network connection and try again, {copy_hint}"
        ) from exc
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
