"""Render the application icon at the sizes desktops want, from the one SVG.

    python tools/make_icons.py            # rewrites diffstudio/resources/icons/ and the .ico/.icns

Qt's SVG renderer rasterises ``diffstudio/resources/diffstudio.svg`` at each size (rendering
each size from the vector, not scaling one bitmap, keeps small icons sharp); Pillow writes the
Windows ``.ico`` (16-256 px in one file) and the macOS ``.icns`` (16-1024 px). The outputs are
committed, so neither a build nor an install needs Qt or this script; run it again after
editing the SVG.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = ROOT / "diffstudio" / "resources"
SVG = RESOURCES / "diffstudio.svg"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render(size: int) -> Image.Image:
    """The SVG drawn into a ``size`` x ``size`` RGBA image."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _ = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"{SVG} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return Image.open(io.BytesIO(bytes(data))).convert("RGBA")


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    icons = RESOURCES / "icons"
    icons.mkdir(exist_ok=True)
    for size in PNG_SIZES:
        render(size).save(icons / f"diffstudio-{size}.png", optimize=True)
    largest = render(1024)
    # Pillow scales the largest image down for the sizes it writes; the ICO's own 16-48 px
    # entries come from the vector renders, which are sharper.
    ico_images = [render(size) for size in ICO_SIZES]
    ico_images[-1].save(RESOURCES / "diffstudio.ico", sizes=[(s, s) for s in ICO_SIZES],
                        append_images=ico_images[:-1])
    largest.save(RESOURCES / "diffstudio.icns")
    print(f"wrote {len(PNG_SIZES)} PNGs to {icons.relative_to(ROOT)}, diffstudio.ico and "
          "diffstudio.icns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
