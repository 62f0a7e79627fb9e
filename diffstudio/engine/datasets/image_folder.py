"""A folder of image files (searched recursively) as a diffusion dataset.

Every file whose extension is a common image format is opened with Pillow and fully decoded;
each image is converted to RGB or grayscale, resized so that its short side is ``size`` and
centre-cropped to ``size`` x ``size``, then mapped from 0..255 to [-1, 1]. A file that cannot be
read (truncated, corrupt, empty, not an image, over
:data:`~diffstudio.engine.image_files.MAX_IMAGE_PIXELS`, a directory, link, FIFO or device
named like an image) is left out and listed in
``Dataset.skipped`` with the reason; it never stops the load.

Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is read, never set: left ``False`` (its default),
decoding a truncated file raises, which is how truncated files are detected.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from diffstudio.engine.datasets import Dataset, SkippedFile
from diffstudio.engine.image_files import open_image, short_error
from diffstudio.errors import ConfigError, DatasetError

__all__ = ["CHANNELS", "IMAGE_EXTENSIONS", "load_image_folder"]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
CHANNELS: dict[str, str] = {"rgb": "RGB", "grayscale": "L"}
_EXAMPLES_IN_ERROR = 3
_BACKGROUND = 255  # transparent pixels are composited onto white


def load_image_folder(
    root: str | None,
    size: int = 32,
    channels: str = "rgb",
    labels_from_subfolders: bool = False,
    max_images: int = 0,
) -> Dataset:
    """Read every image under ``root`` into a float32 tensor (N, C, size, size) in [-1, 1].

    ``channels`` is ``"rgb"`` (C = 3) or ``"grayscale"`` (C = 1). Files are visited in sorted
    order of their path relative to ``root`` (extensions matched case-insensitively), so the
    result is the same on every run. Images are resized with Lanczos filtering when shrunk and
    bicubic when enlarged; transparent pixels are composited onto white; EXIF orientation is
    applied.

    With ``labels_from_subfolders`` each image's label is the index of its first-level
    subfolder among the sorted names of the subfolders holding image files (``root/cat/a.png``
    and ``root/cat/x/b.png`` are both class ``"cat"``); files directly in ``root`` are skipped.
    ``max_images > 0`` keeps the first that many readable images (visiting the classes in
    turn when labelled, so every class is represented); 0 keeps all.

    Raises :class:`DatasetError` when ``root`` is missing or not a folder, or when no image in
    it can be read; :class:`ConfigError` for a bad parameter.
    """
    if root is None or str(root).strip() == "":
        raise ConfigError(
            "image-folder needs a folder: set its 'root' parameter to a folder of images "
            "(for example --dataset.root ~/pictures/faces)"
        )
    mode = _channel_mode(channels)
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise ConfigError(f"image-folder size must be a positive integer, got {size!r}")
    if isinstance(max_images, bool) or int(max_images) != max_images or max_images < 0:
        raise ConfigError(f"image-folder max_images must be 0 (all) or more, got {max_images!r}")
    size, max_images = int(size), int(max_images)

    folder = Path(os.path.abspath(os.path.expanduser(str(root))))
    if not folder.exists():
        raise DatasetError(
            f"image folder {str(folder)!r} does not exist; check the path or choose another folder"
        )
    if not folder.is_dir():
        raise DatasetError(
            f"{str(folder)!r} is a file, not a folder; choose the folder that holds the images"
        )

    files = _image_files(folder)
    skipped: list[SkippedFile] = []
    class_names: list[str] | None = None
    class_of: dict[Path, int] = {}
    if labels_from_subfolders:
        files, class_names, class_of, outside = _assign_classes(folder, files)
        skipped.extend(
            SkippedFile(str(path), "not inside a class subfolder (labels_from_subfolders is on)")
            for path in outside
        )
        if not class_names:
            raise DatasetError(
                f"labels_from_subfolders is on but {str(folder)!r} has no subfolders with "
                "images; put each class's images in its own subfolder (root/cat/*.png, "
                "root/dog/*.png) or turn labels_from_subfolders off"
            )
        if max_images:
            files = _round_robin(files, class_of)
    elif not files:
        raise DatasetError(
            f"no image files ({', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))}) in "
            f"{str(folder)!r} or its subfolders; choose a folder that holds images"
        )

    arrays: list[np.ndarray] = []
    labels: list[int] = []
    for path in files:
        if max_images and len(arrays) >= max_images:
            break
        array, reason = _read_image(path, size, mode)
        if array is None:
            skipped.append(SkippedFile(str(path), reason))
            continue
        arrays.append(array)
        if class_names is not None:
            labels.append(class_of[path])

    if not arrays:
        examples = "; ".join(
            f"{Path(item.path).name}: {item.reason}" for item in skipped[:_EXAMPLES_IN_ERROR]
        )
        more = f" (and {len(skipped) - _EXAMPLES_IN_ERROR} more)" if (
            len(skipped) > _EXAMPLES_IN_ERROR
        ) else ""
        raise DatasetError(
            f"no readable images in {str(folder)!r}: all {len(skipped)} files were skipped "
            f"({examples}{more}); re-export or replace the images, or choose another folder"
        )

    stacked = torch.from_numpy(np.stack(arrays))  # (N, H, W) or (N, H, W, 3), uint8
    if stacked.ndim == 3:
        stacked = stacked.unsqueeze(-1)
    data = stacked.permute(0, 3, 1, 2).to(torch.float32).div_(127.5).sub_(1.0).contiguous()
    return Dataset(
        name=folder.name or str(folder),
        data=data,
        kind="image",
        labels=torch.tensor(labels, dtype=torch.int64) if class_names is not None else None,
        num_classes=len(class_names) if class_names is not None else None,
        class_names=class_names,
        skipped=skipped,
        source=str(folder),
    )


def _channel_mode(channels: str) -> str:
    key = str(channels).strip().lower()
    if key not in CHANNELS:
        raise ConfigError(
            f"image-folder channels must be one of {sorted(CHANNELS)}, got {channels!r}"
        )
    return CHANNELS[key]


def _image_files(folder: Path) -> list[Path]:
    """Every entry under ``folder`` (recursively) named like an image file, sorted by its path
    relative to ``folder``; whether it can be read is decided by :func:`open_image`."""

    def walk() -> Iterator[Path]:
        for directory, subdirectories, names in os.walk(folder):
            subdirectories.sort()
            for name in names:
                if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                    yield Path(directory, name)  # links, FIFOs, devices: refused when read
            # A directory named like an image is listed too, and skipped with its reason.
            for name in subdirectories:
                if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                    yield Path(directory, name)

    return sorted(walk(), key=lambda path: path.relative_to(folder).parts)


def _assign_classes(
    folder: Path, files: list[Path]
) -> tuple[list[Path], list[str], dict[Path, int], list[Path]]:
    """Split ``files`` into those in a first-level subfolder (labelled) and those outside."""
    inside = [path for path in files if len(path.relative_to(folder).parts) > 1]
    outside = [path for path in files if len(path.relative_to(folder).parts) == 1]
    class_names = sorted({path.relative_to(folder).parts[0] for path in inside})
    index = {name: i for i, name in enumerate(class_names)}
    class_of = {path: index[path.relative_to(folder).parts[0]] for path in inside}
    return inside, class_names, class_of, outside


def _round_robin(files: list[Path], class_of: dict[Path, int]) -> list[Path]:
    """Reorder ``files`` to take one of each class in turn (each class keeps its order)."""
    by_class: dict[int, list[Path]] = {}
    for path in files:
        by_class.setdefault(class_of[path], []).append(path)
    queues = [by_class[label] for label in sorted(by_class)]
    ordered: list[Path] = []
    for position in range(max(len(queue) for queue in queues)):
        ordered.extend(queue[position] for queue in queues if position < len(queue))
    return ordered


def _read_image(path: Path, size: int, mode: str) -> tuple[np.ndarray | None, str]:
    """Decode ``path`` to a uint8 array (size, size) for "L" or (size, size, 3) for "RGB".

    Returns ``(array, "")``, or ``(None, reason)`` when the file cannot be used.
    """
    image, reason = open_image(path, draft=(mode, (size, size)))
    if image is None:
        return None, reason
    source_mode = image.mode
    try:
        converted = _to_mode(_upright(image), mode)
        return np.asarray(_resize_and_crop(converted, size), dtype=np.uint8), ""
    except MemoryError as exc:
        return None, f"too large to decode in memory ({short_error(exc)})"
    except Exception as exc:
        return None, f"cannot convert a {source_mode} image to {mode} ({short_error(exc)})"


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (phone photos); a malformed tag leaves the image as is."""
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:
        return image


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert to ``mode`` ("RGB" or "L"): high bit depths are scaled (not clipped) to 8 bits,
    and transparency is composited onto a white background."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = values.max(initial=0.0)
        if image.mode.startswith("I;16") or top > 255.0:
            scale = 255.0 / 65535.0 if top <= 65535.0 else 255.0 / top
        elif image.mode == "F" and top <= 1.0:
            scale = 255.0
        else:
            scale = 1.0
        image = Image.fromarray(np.clip(values * scale + 0.5, 0, 255).astype(np.uint8), "L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (_BACKGROUND,) * 3 + (255,))
        image = Image.alpha_composite(background, rgba)
    return image.convert(mode) if image.mode != mode else image


def _resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize so the short side is ``size`` (Lanczos down, bicubic up), then centre-crop."""
    width, height = image.size
    short = min(width, height)
    if short != size:
        scale = size / short
        new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
        resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
        image = image.resize(new_size, resample=resample)
        width, height = image.size
    left, top = (width - size) // 2, (height - size) // 2
    if (width, height) != (size, size):
        image = image.crop((left, top, left + size, top + size))
    return image
