"""Exporting samples: a folder of PNG copies, a contact sheet, a self-contained HTML gallery,
or a zip of all three.

Safety rules, kept here once for the CLI and the window alike:

* nothing is written outside the chosen folder: every file name is built by
  :func:`safe_component` from the run, folder and file names (a run called ``../../x``
  becomes ``x``, ``a/b`` becomes ``a_b``), then checked to resolve directly inside it;
* nothing is overwritten unless asked: :func:`planned_targets` lists what an export would
  write, and the caller refuses when any exists;
* every file is written atomically (temporary name, then rename), so a full disk or a kill
  leaves no half-written PNG, sheet, HTML page or zip behind;
* PNG copies are the original bytes, so both text chunks (``diffstudio`` JSON and the one-line
  ``parameters``) survive;
* the HTML page embeds every image as a ``data:`` URI, loads nothing from the network (its
  Content-Security-Policy forbids it) and HTML-escapes every piece of metadata.

Torch-free and Qt-free.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from diffstudio.engine.image_files import open_image
from diffstudio.engine.io import atomic_write_bytes, atomic_write_text, atomic_write_with
from diffstudio.engine.sample_index import SampleRecord
from diffstudio.engine.thumbnails import fit_nearest, png_bytes
from diffstudio.errors import ConfigError, DatasetError

__all__ = [
    "FORMATS",
    "HTML_NAME",
    "SHEET_NAME",
    "ZIP_NAME",
    "contact_sheet",
    "export_names",
    "html_gallery",
    "inside",
    "planned_targets",
    "safe_component",
    "write_contact_sheet",
    "write_html",
    "write_png_copies",
    "write_zip",
]

FORMATS = ("png", "sheet", "html", "zip")
SHEET_NAME = "contact-sheet.png"
HTML_NAME = "gallery.html"
ZIP_NAME = "gallery.zip"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
Progress = Callable[[int], None]


def safe_component(text: str, limit: int = 80) -> str:
    """``text`` as one safe file-name component: only letters, digits and ``._+-`` (anything
    else, slashes included, becomes ``_``), no leading dots, at most ``limit`` characters,
    never empty."""
    cleaned = _UNSAFE.sub("_", str(text)).strip("._") or "_"
    return cleaned[:limit].rstrip(".") or "_"


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refusing (ConfigError) anything that would not land directly in it."""
    root = folder.resolve()
    target = (root / name).resolve()
    if target.parent != root:
        raise ConfigError(f"refusing to write {name!r}: it would land outside {root}")
    return target


def export_names(records: Sequence[SampleRecord]) -> list[str]:
    """One unique safe PNG name per record: ``<run>__<folder>__<file>.png``."""
    names: list[str] = []
    used: set[str] = set()
    for record in records:
        stem = Path(record.path).stem
        parts = [record.run or "samples", record.folder, stem]
        base = "__".join(safe_component(part) for part in parts if part)
        name, number = f"{base}.png", 2
        while name.lower() in used:
            name, number = f"{base}-{number}.png", number + 1
        used.add(name.lower())
        names.append(name)
    return names


def planned_targets(records: Sequence[SampleRecord], out: Path, fmt: str) -> list[Path]:
    """Every file an export of ``records`` as ``fmt`` into ``out`` would write."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "png":
        return [inside(out, name) for name in export_names(records)]
    return [inside(out, {"sheet": SHEET_NAME, "html": HTML_NAME, "zip": ZIP_NAME}[fmt])]


def _load(record: SampleRecord) -> Image.Image:
    picture, reason = open_image(record.path)
    if picture is None:
        raise DatasetError(f"cannot export {record.path}: {reason}")
    return picture if picture.mode in ("L", "RGB") else picture.convert("RGB")


def write_png_copies(records: Sequence[SampleRecord], out: Path,
                     progress: Progress | None = None) -> list[Path]:
    """Copy each PNG byte for byte (its text chunks with it) into ``out``, atomically."""
    written = []
    for number, (record, target) in enumerate(
            zip(records, planned_targets(records, out, "png"), strict=True), 1):
        atomic_write_bytes(target, Path(record.path).read_bytes())
        written.append(target)
        if progress is not None:
            progress(number)
    return written


def _caption(record: SampleRecord) -> str:
    if not record.has_metadata:
        return "unknown parameters"
    parts = [record.sampler]
    if record.steps is not None:
        parts.append(f"{record.steps} st")
    if record.seed is not None:
        parts.append(f"seed {record.seed}")
    return " ".join(parts)


def contact_sheet(records: Sequence[SampleRecord], *, columns: int | None = None,
                  cell: int = 128, captions: bool = True, pad: int = 4,
                  progress: Progress | None = None) -> Image.Image:
    """A grid of the samples, each fitted into ``cell`` px (small ones enlarged with
    nearest-neighbour), with a caption line under each (sampler, steps, seed) when asked."""
    if not records:
        raise ConfigError("a contact sheet needs at least one sample")
    columns = max(1, min(columns or math.ceil(math.sqrt(len(records))), len(records)))
    rows = math.ceil(len(records) / columns)
    font = ImageFont.load_default()
    caption_height = 14 if captions else 0
    width = columns * (cell + pad) + pad
    height = rows * (cell + caption_height + pad) + pad
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for number, record in enumerate(records):
        row, column = divmod(number, columns)
        left, top = pad + column * (cell + pad), pad + row * (cell + caption_height + pad)
        tile = fit_nearest(_load(record), cell).convert("RGB")
        sheet.paste(tile, (left + (cell - tile.width) // 2, top + (cell - tile.height) // 2))
        if captions:
            text = _caption(record)
            while text and draw.textlength(text, font=font) > cell:
                text = text[:-1]
            draw.text((left, top + cell + 1), text, fill=(220, 220, 220), font=font)
        if progress is not None:
            progress(number + 1)
    return sheet


def write_contact_sheet(records: Sequence[SampleRecord], target: Path, **options: Any) -> Path:
    atomic_write_bytes(target, png_bytes(contact_sheet(records, **options)))
    return target


def _image_uri(record: SampleRecord, box: int) -> str:
    picture = _load(record)
    if max(picture.size) > box:
        picture = fit_nearest(picture, box)
    return "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode("ascii")


def _metadata_rows(record: SampleRecord) -> list[tuple[str, str]]:
    rows = [("file", record.name)]
    if not record.has_metadata:
        rows.append(("parameters", "unknown parameters"))
    for key, value in sorted(record.meta.items()):
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True,
                                                                default=str)
        rows.append((str(key), text))
    return rows


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; \
style-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font: 13px system-ui, sans-serif; background: #1b1b1b; color: #ddd; margin: 16px; }}
main {{ display: flex; flex-wrap: wrap; gap: 16px; }}
figure {{ margin: 0; background: #262626; padding: 8px; border-radius: 4px; width: 300px; }}
img {{ width: {display}px; height: auto; image-rendering: pixelated; display: block; }}
table {{ border-collapse: collapse; margin-top: 6px; width: 100%; }}
td {{ border-top: 1px solid #333; padding: 2px 4px; vertical-align: top;
      word-break: break-all; font-family: ui-monospace, monospace; font-size: 11px; }}
td:first-child {{ color: #9ab; white-space: nowrap; word-break: normal; }}
</style></head>
<body><h1>{title}</h1><p>{count} samples</p>
<main>
{figures}
</main></body></html>
"""


def html_gallery(records: Sequence[SampleRecord], *, title: str = "diffstudio gallery",
                 box: int = 256, display: int = 256, progress: Progress | None = None) -> str:
    """One self-contained HTML page: each image as a base64 ``data:`` URI (larger than ``box``
    px: reduced first), shown ``display`` px wide without smoothing, with a table of every
    metadata field. Every value is HTML-escaped."""
    figures = []
    for number, record in enumerate(records):
        cells = "".join(
            f"<tr><td>{html.escape(key, quote=True)}</td><td>{html.escape(value, quote=True)}"
            "</td></tr>" for key, value in _metadata_rows(record))
        figures.append(
            f'<figure><img src="{_image_uri(record, box)}" '
            f'alt="{html.escape(record.name, quote=True)}">'
            f"<figcaption>{html.escape(record.caption(), quote=True)}</figcaption>"
            f"<table>{cells}</table></figure>")
        if progress is not None:
            progress(number + 1)
    return _PAGE.format(title=html.escape(title, quote=True), count=len(records),
                        display=int(display), figures="\n".join(figures))


def write_html(records: Sequence[SampleRecord], target: Path, **options: Any) -> Path:
    atomic_write_text(target, html_gallery(records, **options))
    return target


def write_zip(records: Sequence[SampleRecord], target: Path, *, captions: bool = True,
              columns: int | None = None, title: str = "diffstudio gallery",
              progress: Progress | None = None) -> Path:
    """A zip holding the PNG copies, the contact sheet and the HTML gallery. Written to a
    temporary file renamed into place: a full disk leaves no half-written zip."""
    names = export_names(records)

    def write(temp: Path) -> None:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_STORED) as archive:
            for number, (record, name) in enumerate(zip(records, names, strict=True), 1):
                archive.writestr(f"png/{name}", Path(record.path).read_bytes())
                if progress is not None:
                    progress(number)
            sheet = contact_sheet(records, columns=columns, captions=captions)
            archive.writestr(SHEET_NAME, png_bytes(sheet))
            archive.writestr(HTML_NAME, html_gallery(records, title=title))

    atomic_write_with(target, write)
    return target
