"""Register diffstudio in the desktop's application menu, from the files in
:mod:`diffstudio.resources`; the install scripts in ``packaging/`` call it::

    python -m diffstudio.desktop install [--exec /path/to/venv/bin/diffstudio]
    python -m diffstudio.desktop uninstall

* Linux and other freedesktop systems: the ``.desktop`` entry (with ``Exec`` set to the absolute
  path of the command, which need not be on ``PATH``) in ``$XDG_DATA_HOME/applications``, the
  icon at every size in ``$XDG_DATA_HOME/icons/hicolor``, and the AppStream metainfo in
  ``$XDG_DATA_HOME/metainfo`` (``$XDG_DATA_HOME`` defaults to ``~/.local/share``).
* macOS: a small ``~/Applications/diffstudio.app`` whose executable starts the command, with
  the ``.icns`` icon, so Launchpad and Spotlight find it.
* Windows: ``packaging/install.ps1`` makes the Start-menu shortcut itself (a ``.lnk`` needs COM).

Every file is written atomically (temp + rename) and only ever inside those folders.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import diffstudio
from diffstudio.engine.io import atomic_write_bytes, atomic_write_text
from diffstudio.resources import APP_ID, ICON_SIZES, icon_png, resource

__all__ = ["install_menu_entry", "main", "uninstall_menu_entry"]

MAC_APP_NAME = "diffstudio.app"


def _data_home() -> Path:
    value = os.environ.get("XDG_DATA_HOME")
    return Path(value).expanduser() if value else Path.home() / ".local" / "share"


def _freedesktop_files(data_home: Path) -> dict[str, Path]:
    files = {
        "desktop": data_home / "applications" / f"{APP_ID}.desktop",
        "metainfo": data_home / "metainfo" / f"{APP_ID}.metainfo.xml",
        "svg": data_home / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg",
    }
    for size in ICON_SIZES:
        files[f"png-{size}"] = (data_home / "icons" / "hicolor" / f"{size}x{size}" / "apps"
                                / f"{APP_ID}.png")
    return files


_RESERVED = set(' \t\n"\'\\><~|&;$*?#()`')


def _exec_argument(path: str) -> str:
    """``path`` as one argument of a desktop entry's Exec key (Desktop Entry spec, "The Exec
    key"): quoted when it holds a reserved character, with \\ " ` $ escaped inside the quotes,
    % doubled, and each backslash doubled again for the string escaping of the file format."""
    text = path.replace("%", "%%")
    if not _RESERVED & set(text):
        return text
    for char in '\\"`$':
        text = text.replace(char, "\\" + char)
    return '"' + text.replace("\\", "\\\\") + '"'


def _desktop_entry(executable: Path) -> str:
    lines = []
    for line in resource(f"{APP_ID}.desktop").read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            line = f"Exec={_exec_argument(str(executable))}"
        elif line.startswith("TryExec="):
            continue
        lines.append(line)
    lines.insert(lines.index("[Desktop Entry]") + 1, f"TryExec={executable}")
    return "\n".join(lines) + "\n"


def _refresh_caches(data_home: Path) -> None:
    """Tell the desktop about the new entry and icons (best effort: the tools may be missing)."""
    commands = [
        ["update-desktop-database", str(data_home / "applications")],
        ["gtk-update-icon-cache", "--quiet", "--ignore-theme-index",
         str(data_home / "icons" / "hicolor")],
    ]
    for command in commands:
        if shutil.which(command[0]):
            subprocess.run(command, capture_output=True, timeout=60, check=False)


def _mac_app(applications: Path, executable: Path) -> list[Path]:
    app = applications / MAC_APP_NAME
    contents = app / "Contents"
    info = {
        "CFBundleName": "diffstudio",
        "CFBundleDisplayName": "diffstudio",
        "CFBundleIdentifier": APP_ID,
        "CFBundleVersion": diffstudio.__version__,
        "CFBundleShortVersionString": diffstudio.__version__,
        "CFBundlePackageType": "APPL",
        "CFBundleExecutable": "diffstudio",
        "CFBundleIconFile": "diffstudio.icns",
        "NSHighResolutionCapable": True,
    }
    launcher = contents / "MacOS" / "diffstudio"
    written = [contents / "Info.plist", launcher, contents / "Resources" / "diffstudio.icns"]
    for path in written:
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(written[0], plistlib.dumps(info))
    quoted = "'" + str(executable).replace("'", "'\\''") + "'"
    atomic_write_text(launcher, f"#!/bin/sh\nexec {quoted} \"$@\"\n")
    launcher.chmod(0o755)
    atomic_write_bytes(written[2], resource("diffstudio.icns").read_bytes())
    return written


def install_menu_entry(executable: str | os.PathLike[str], *,
                       platform: str | None = None) -> list[Path]:
    """Register ``executable`` (the ``diffstudio`` command) in the application menu; returns
    the files written."""
    platform = platform or sys.platform
    executable = Path(executable).expanduser().absolute()
    if platform.startswith("win"):
        raise SystemExit("on Windows, packaging/install.ps1 makes the Start-menu shortcut")
    if platform == "darwin":
        return _mac_app(Path.home() / "Applications", executable)
    data_home = _data_home()
    files = _freedesktop_files(data_home)
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(files["desktop"], _desktop_entry(executable))
    atomic_write_bytes(files["metainfo"], resource(f"{APP_ID}.metainfo.xml").read_bytes())
    atomic_write_bytes(files["svg"], resource("diffstudio.svg").read_bytes())
    for size in ICON_SIZES:
        atomic_write_bytes(files[f"png-{size}"], icon_png(size).read_bytes())
    _refresh_caches(data_home)
    return list(files.values())


def uninstall_menu_entry(*, platform: str | None = None) -> list[Path]:
    """Remove what :func:`install_menu_entry` wrote; returns the paths removed."""
    platform = platform or sys.platform
    if platform == "darwin":
        app = Path.home() / "Applications" / MAC_APP_NAME
        if app.is_dir():
            shutil.rmtree(app)
            return [app]
        return []
    removed = []
    for path in _freedesktop_files(_data_home()).values():
        if path.is_file():
            path.unlink()
            removed.append(path)
    _refresh_caches(_data_home())
    return removed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffstudio.desktop",
                                     description="Add diffstudio to the application menu, or "
                                                 "remove it.")
    parser.add_argument("action", choices=["install", "uninstall"])
    parser.add_argument("--exec", dest="executable",
                        help="the diffstudio command the entry starts (default: the one next "
                             "to this Python)")
    args = parser.parse_args(argv)
    if args.action == "uninstall":
        for path in uninstall_menu_entry():
            print(f"removed {path}")
        return 0
    executable = args.executable or shutil.which(
        "diffstudio", path=str(Path(sys.executable).parent)) or "diffstudio"
    written = install_menu_entry(executable)
    print(f"menu entry for {executable}: {written[0]} (and {len(written) - 1} more files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
