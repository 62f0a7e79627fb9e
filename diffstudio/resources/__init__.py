"""Files the application reads at run time, shipped inside the package (wheel, sdist and the
frozen bundle alike): the icon as SVG and as PNGs at the sizes desktops want
(``icons/diffstudio-<N>.png``, made by ``tools/make_icons.py``), the Windows ``.ico``, the macOS
``.icns``, the freedesktop ``.desktop`` entry and the AppStream metainfo.

Found through :mod:`importlib.resources`, never by a path relative to the source tree, so an
installed or frozen diffstudio finds them too.
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable

__all__ = ["APP_ID", "ICON_SIZES", "icon_png", "resource"]

APP_ID = "io.github.diffstudio.diffstudio"  # the desktop entry, AppStream and Wayland app id
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def resource(name: str) -> Traversable:
    """A file of this package by its name, e.g. ``resource("diffstudio.svg")``."""
    return resources.files(__name__).joinpath(name)


def icon_png(size: int) -> Traversable:
    """The PNG icon of ``size`` pixels (one of :data:`ICON_SIZES`)."""
    if size not in ICON_SIZES:
        raise ValueError(f"no {size} px icon; the sizes are {ICON_SIZES}")
    return resource(f"icons/diffstudio-{size}.png")
