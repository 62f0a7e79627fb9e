"""Opening image files that may be anything: one safe way, shared by the dataset loader and by
evaluation's samples folders.

A path named ``*.png`` may be a directory, a dangling symlink, a FIFO (opening it would block),
a device such as ``/dev/zero``, an empty or truncated file, a text file, or a decompression bomb
(a small file that decodes to gigapixels). :func:`open_image` never blocks and never raises for
any of them: it returns the decoded image or the reason it was refused, and the callers list
every refused file with its reason.

Pixel limit: images over :data:`MAX_IMAGE_PIXELS` (64 megapixels, e.g. 8192 x 8192) are refused
from their header, before anything is decoded. Pillow's own limit (about 89 megapixels, a
warning up to twice that) is not relied on: its warning would leak into the terminal.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

__all__ = ["MAX_IMAGE_PIXELS", "file_problem", "open_image", "short_error"]

MAX_IMAGE_PIXELS = 64 * 1024 * 1024
_REASON_LIMIT = 160  # characters of an exception message kept in a reason


def short_error(exc: BaseException) -> str:
    """``Type: message`` on one line, at most about 160 characters."""
    text = " ".join(str(exc).split())
    if len(text) > _REASON_LIMIT:
        text = text[: _REASON_LIMIT - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def file_problem(path: str | os.PathLike[str]) -> str:
    """Why ``path`` cannot be read as an image file ("" when it is a non-empty regular file),
    decided from ``lstat``/``stat`` alone: nothing is opened, so a FIFO cannot block."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return ("a dangling symbolic link (its target does not exist)" if path.is_symlink()
                else "the file disappeared while it was being read")
    except OSError as exc:
        return f"cannot open the file ({short_error(exc)})"
    if stat.S_ISDIR(info.st_mode):
        return "a directory, not an image file"
    if not stat.S_ISREG(info.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode)
                else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
        return f"{kind}, not an image file"
    if info.st_size == 0:
        return "empty file (0 bytes)"
    return ""


def open_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_IMAGE_PIXELS,
               draft: tuple[str, tuple[int, int]] | None = None) -> tuple[Image.Image | None, str]:
    """Decode ``path`` fully; ``(image, "")`` or ``(None, reason)``. ``draft`` (mode, size)
    lets a JPEG decode at a reduced scale (never below ``size``)."""
    problem = file_problem(path)
    if problem:
        return None, problem
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return None, (f"{width} x {height} pixels is over the {max_pixels:,}-pixel "
                                  "limit (refused unread, as a possible decompression bomb)")
                if draft is not None and image.format == "JPEG":
                    image.draft(*draft)
                image.load()  # decode everything now: truncated data raises here
                # Leaving the block closes the file only; the decoded pixels stay usable.
                return image, ""
    except Image.DecompressionBombError as exc:
        return None, ("too many pixels, refused as a possible decompression bomb "
                      f"({short_error(exc)})")
    except UnidentifiedImageError:
        return None, "not an image Pillow can read (UnidentifiedImageError)"
    except MemoryError as exc:
        return None, f"too large to decode in memory ({short_error(exc)})"
    except Exception as exc:  # OSError, SyntaxError, ValueError, EOFError, struct.error, ...
        return None, f"truncated or corrupt image ({short_error(exc)})"

