"""Thumbnails of sample PNGs, cached on disk and keyed by (path, mtime, size, box).

::

    workspace/.diffstudio/thumbnails/ab/abcdef....png

A small image (an 8x8 digit) is enlarged by a whole factor with nearest-neighbour, so its
pixels stay sharp squares; a large one is reduced to fit the box. A changed file (new mtime or
size) gets a new key, so a stale thumbnail is never shown. Thumbnails are written atomically;
:meth:`ThumbnailCache.thumbnail` is safe to call from several threads at once (the window's
thread pool). Torch-free and Qt-free.

The cache is bounded: at most ``max_bytes`` (256 MiB by default) on disk. A thumbnail's file
time is its last use (set when it is made and when it is served), and :meth:`trim` removes
the least recently used ones until the cache is under its cap again; it runs by itself after
every eighth of the cap newly written. :meth:`prune` (after each rescan of the index) also
removes the thumbnails of files that are gone or changed: every entry whose key is not one of
the index's (path, mtime, size).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from diffstudio.engine.image_files import open_image
from diffstudio.engine.io import atomic_write_bytes
from diffstudio.errors import DatasetError

__all__ = ["DEFAULT_BOX", "DEFAULT_MAX_BYTES", "PruneReport", "ThumbnailCache", "fit_nearest",
           "png_bytes"]

DEFAULT_BOX = 128
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_STALE_TEMP_SECONDS = 3600.0  # a temporary file this old was left by a killed writer


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


@dataclass
class PruneReport:
    """What :meth:`ThumbnailCache.prune` or :meth:`ThumbnailCache.trim` removed, and what is
    left."""

    orphans: int = 0  # thumbnails of files gone or changed (and stale temporary files)
    evicted: int = 0  # least recently used, over the cap
    kept: int = 0
    bytes: int = 0  # the cache's size afterwards


class ThumbnailCache:
    """Thumbnails of at most ``box`` pixels across under ``folder``, at most ``max_bytes`` of
    them on disk."""

    def __init__(self, folder: str | os.PathLike[str], box: int = DEFAULT_BOX,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = Path(folder)
        self.box = int(box)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._written = 0  # bytes made since the last trim

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
            with contextlib.suppress(OSError):  # its use, for the least-recently-used order
                os.utime(target)
            return target
        picture, reason = open_image(path)
        if picture is None:
            raise DatasetError(f"cannot make a thumbnail of {path}: {reason}")
        data = png_bytes(fit_nearest(_displayable(picture), self.box))
        atomic_write_bytes(target, data)
        with self._lock:
            self._written += len(data)
            due = self._written > self.max_bytes // 8
            if due:
                self._written = 0
        if due:
            self.trim(keep={target})
        return target

    def _entries(self) -> tuple[list[tuple[Path, os.stat_result]], int]:
        """Every thumbnail with its stat, and the stale temporary files removed."""
        entries, stale = [], 0
        now = time.time()
        try:
            shards = [entry for entry in os.scandir(self.folder) if entry.is_dir()]
        except OSError:
            return [], 0
        for shard in shards:
            try:
                files = list(os.scandir(shard.path))
            except OSError:
                continue
            for entry in files:
                try:
                    stat = entry.stat()
                except OSError:
                    continue  # removed meanwhile
                if entry.name.startswith("."):  # a writer's temporary file
                    if now - stat.st_mtime > _STALE_TEMP_SECONDS:
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
                            stale += 1
                    continue
                if entry.name.endswith(".png"):
                    entries.append((Path(entry.path), stat))
        return entries, stale

    def trim(self, keep: Iterable[Path] = ()) -> PruneReport:
        """Remove the least recently used thumbnails until the cache holds at most
        ``max_bytes`` (never those in ``keep``)."""
        return self._evict(self._entries()[0], set(keep), PruneReport())

    def prune(self, files: Iterable[tuple[str | os.PathLike[str], int, int]]) -> PruneReport:
        """Keep only the thumbnails of ``files`` ((path, mtime_ns, size) of every indexed
        sample: those gone, moved or changed lose theirs), then :meth:`trim` to the cap."""
        valid = {f"{self.key(path, mtime_ns, size)}.png" for path, mtime_ns, size in files}
        report = PruneReport()
        kept = []
        entries, report.orphans = self._entries()
        for path, stat in entries:
            if path.name in valid:
                kept.append((path, stat))
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                report.orphans += 1
        return self._evict(kept, set(), report)

    def _evict(self, entries: list[tuple[Path, os.stat_result]], keep: set[Path],
               report: PruneReport) -> PruneReport:
        total = sum(stat.st_size for _, stat in entries)
        for path, stat in sorted(entries, key=lambda item: item[1].st_mtime_ns):
            if total <= self.max_bytes:
                break
            if path in keep:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                total -= stat.st_size
                report.evicted += 1
        report.kept = len(entries) - report.evicted
        report.bytes = total
        return report
