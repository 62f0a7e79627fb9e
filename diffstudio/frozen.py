"""Whether this diffstudio runs from a frozen application bundle (PyInstaller), and what that
means for plugins.

A bundle carries its own Python inside the application folder: ``sys.executable`` is the app
itself, there is no pip, and nothing installed later lands on its import path (napari issues
2965 and 2972 hit exactly this). So in a bundle the plugin installer is refused with
:data:`FROZEN_PLUGIN_INSTALL_REFUSAL`; the plugins built into the bundle still work.

The plugin installer calls :func:`check_plugin_install_possible` before it runs pip::

    from diffstudio.frozen import check_plugin_install_possible
    check_plugin_install_possible()  # raises PluginError in a bundle
"""

from __future__ import annotations

import sys
from pathlib import Path

from diffstudio.errors import PluginError

__all__ = [
    "FROZEN_PLUGIN_INSTALL_REFUSAL",
    "bundle_dir",
    "check_plugin_install_possible",
    "installation",
    "is_frozen",
    "plugin_install_refusal",
]

FROZEN_PLUGIN_INSTALL_REFUSAL = (
    "plugins cannot be installed into this diffstudio: it is a self-contained application "
    "bundle, with its own Python inside the application folder and no pip, so an installed "
    "plugin would have nowhere to go. The plugins built into the bundle work. To add plugins, "
    "install diffstudio into a Python environment instead: packaging/install.sh (Linux, macOS) "
    "or packaging/install.ps1 (Windows), or 'pipx install diffstudio'; then run "
    "'diffstudio plugins install NAME' there"
)


def is_frozen() -> bool:
    """True inside a PyInstaller (or similar) bundle: ``sys.frozen`` is set by the bootloader."""
    return bool(getattr(sys, "frozen", False))


def bundle_dir() -> Path | None:
    """The folder the bundle unpacked its files into (PyInstaller's ``sys._MEIPASS``), or None
    when not frozen."""
    if not is_frozen():
        return None
    return Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))


def plugin_install_refusal() -> str | None:
    """Why plugins cannot be installed here (a sentence for a message), or None when they can."""
    return FROZEN_PLUGIN_INSTALL_REFUSAL if is_frozen() else None


def check_plugin_install_possible() -> None:
    """Raise :class:`~diffstudio.errors.PluginError` with the explanation in a frozen bundle."""
    refusal = plugin_install_refusal()
    if refusal is not None:
        raise PluginError(refusal)


def installation() -> str:
    """One line saying what this diffstudio runs from: a bundle folder or a Python environment."""
    if is_frozen():
        return f"application bundle {bundle_dir()}"
    return f"Python environment {sys.prefix}"
