"""Thumbnails of sample PNGs, cached on disk and keyed by (path, mtime, size, box).

::

    workspace/.diffstudio/thumbnails/ab/abcdef....png

A small image (an 8x8 digit) is enlarged by a whole factor with nearest-neighbour, so its
pixels stay sharp squares; a large one is reduced to fit the box. A changed file (new mtime or
size) gets a new key, so a stale thumbnail is never shown. Thumbnails are written atomically;
:meth:`ThumbnailCache.thumbnail` is safe to call from several threads at once (the window's
thread pool). Torch-free and Qt-free.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from PIL import Image

from diffstudio.engine.image_files import open_image
from diffstudio.engine.io import atomic_write_bytes
from diffstudio.errors import DatasetError

__all__ = ["DEFAULT_BOX", "ThumbnailCache", "fit_nearest", "png_bytes"]

DEFAULT_BOX = 128


def fit_nearest(picture: Image.Image, box: int) -> Image.Image:
    """``picture`` fitted into a ``box`` x ``box`` square: enlarged by the largest whole factor
    with nearest-neighbour when it is smaller, reduced (Lanczos) when it is larger."""
    width, height = picture.size
    longest = max(width, height, 1)
    if longest <= box:
        factor = max(1, box // longest)
        if factor == 1:
            return picture.copy()
        return picture.resize((width * factor, height * factor), Image.Resampling.NEAREST)
    scale = box / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return picture.resize(size, Image.Resampling.LANCZOS)


def png_bytes(picture: Image.Image) -> bytes:
    """A PNG of the pixels alone (no text chunks)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _displayable(picture: Image.Image) -> Image.Image:
    return picture if picture.mode in ("L", "RGB", "RGBA") else picture.convert("RGBA")


class ThumbnailCache:
    """Thumbnails of at most ``box`` pixels across under ``folder``."""

    def __init__(self, folder: str | os.PathLike[str], box: int = DEFAULT_BOX) -> None:
        self.folder = Path(folder)
        self.box = int(box)

    def key(self, path: str | os.PathLike[str], mtime_ns: int, size: int) -> str:
        text = f"{Path(path).resolve()}\0{mtime_ns}\0{size}\0{self.box}"
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def path_for(self, path: str | os.PathLike[str], mtime_ns: int, size: int) -> Path:
        key = self.key(path, mtime_ns, size)
        return self.folder / key[:2] / f"{key}.png"

    def thumbnail(self, path: str | os.PathLike[str], mtime_ns: int | None = None,
                  size: int | None = None) -> Path:
        """The cached thumbnail's file, made first when missing. ``mtime_ns``/``size`` default
        to the file's own (the index passes what it recorded). Raises DatasetError when the
        image cannot be read."""
        if mtime_ns is None or size is None:
            stat = os.stat(path)
            mtime_ns, size = stat.st_mtime_ns, stat.st_size
        target = self.path_for(path, mtime_ns, size)
        if target.is_file():
            return target
        picture, reason = open_image(path)
        if picture is None:
            raise DatasetError(f"cannot make a thumbnail of {path}: {reason}")
        atomic_write_bytes(target, png_bytes(fit_nearest(_displayable(picture), self.box)))
        return target
