"""Which plugins to load: the disabled list in the settings file, and ``DIFFSTUDIO_LOAD_PLUGINS``.

The list lives in the settings file the window uses (``diffstudio.gui.settings``, a QSettings
INI file), read and written here without Qt so that ``diffstudio plugins disable NAME`` and
the plugin manager work headless. The file and its location are QSettings' own:

* ``$DIFFSTUDIO_SETTINGS_FILE`` when set;
* otherwise ``<config>/<org>/<app>.ini`` with ``<org>``/``<app>`` from
  ``DIFFSTUDIO_SETTINGS_ORG``/``DIFFSTUDIO_SETTINGS_APP`` (default ``diffstudio``), ``<config>``
  ``%APPDATA%`` on Windows and ``$XDG_CONFIG_HOME`` (default ``~/.config``) elsewhere, which is
  where ``QSettings(IniFormat, UserScope, org, app)`` puts it (a test checks the two agree).

The key is ``disabled`` in the ``[plugins]`` section, written as QSettings writes a string list
(``disabled=a, b``) so that either side reads what the other wrote. Every other line of the
file is kept as it was; the file is replaced atomically.

``DIFFSTUDIO_LOAD_PLUGINS=a,b`` loads only those third-party plugins (by plugin or distribution
name; set and empty, none: safe mode), as llm and datasette do. Built-ins always load.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from diffstudio.engine.io import atomic_write_text

__all__ = [
    "LOAD_PLUGINS_VARIABLE",
    "disabled_plugins",
    "load_only_env",
    "set_plugin_disabled",
    "settings_path",
    "workspace_setting",
]

SETTINGS_FILE_VARIABLE = "DIFFSTUDIO_SETTINGS_FILE"
ORGANISATION_VARIABLE = "DIFFSTUDIO_SETTINGS_ORG"
APPLICATION_VARIABLE = "DIFFSTUDIO_SETTINGS_APP"
LOAD_PLUGINS_VARIABLE = "DIFFSTUDIO_LOAD_PLUGINS"
SECTION = "plugins"
KEY = "disabled"


def settings_path() -> Path:
    """The settings file the window uses (see the module docstring)."""
    explicit = os.environ.get(SETTINGS_FILE_VARIABLE)
    if explicit:
        return Path(explicit)
    if sys.platform == "win32":
        config = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    else:
        config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    organisation = os.environ.get(ORGANISATION_VARIABLE, "diffstudio")
    application = os.environ.get(APPLICATION_VARIABLE, "diffstudio")
    return config / organisation / f"{application}.ini"


_SECTION_LINE = re.compile(r"^\s*\[(?P<name>[^\]]*)\]\s*$")


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def _find_key(lines: list[str], wanted_section: str = SECTION,
              wanted_key: str = KEY) -> tuple[int | None, int | None]:
    """(index of the section's header, index of its ``key=`` line), None when absent."""
    header = key = None
    section = None
    for index, line in enumerate(lines):
        match = _SECTION_LINE.match(line)
        if match:
            section = match.group("name").strip()
            if section == wanted_section and header is None:
                header = index
            continue
        if section == wanted_section and line.split("=", 1)[0].strip() == wanted_key \
                and "=" in line:
            key = index
    return header, key


def _parse_list(value: str) -> list[str]:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':  # QSettings quotes a string with ","
        value = value[1:-1]
    return [name.strip() for name in value.split(",") if name.strip()]


def disabled_plugins(path: str | os.PathLike[str] | None = None) -> list[str]:
    """The plugin names disabled in the settings file (none when the file does not exist)."""
    lines = _read_lines(Path(path) if path else settings_path())
    _, key = _find_key(lines)
    if key is None:
        return []
    return _parse_list(lines[key].split("=", 1)[1])


def set_plugin_disabled(
    name: str, disabled: bool, path: str | os.PathLike[str] | None = None
) -> list[str]:
    """Add ``name`` to (or remove it from) the disabled list; returns the new list."""
    if not name or "," in name or "\n" in name:
        raise ValueError(f"not a plugin name: {name!r}")
    target = Path(path) if path else settings_path()
    lines = _read_lines(target)
    names = disabled_plugins(target)
    if disabled and name not in names:
        names.append(name)
    elif not disabled:
        names = [n for n in names if n != name]
    line = f"{KEY}={', '.join(names)}"
    header, key = _find_key(lines)
    if key is not None:
        lines[key] = line
    elif header is not None:
        lines.insert(header + 1, line)
    else:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [f"[{SECTION}]", line]
    atomic_write_text(target, "\n".join(lines) + "\n")
    return names


def workspace_setting(path: str | os.PathLike[str] | None = None) -> Path:
    """The workspace the window uses (its ``workspace`` setting, QSettings' ``[General]``
    section), else ``~/diffstudio-runs``: the headless commands find the same queue."""
    lines = _read_lines(Path(path) if path else settings_path())
    _, key = _find_key(lines, "General", "workspace")
    if key is not None:
        value = lines[key].split("=", 1)[1].strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\\\', '\\')
        if value:
            return Path(value).expanduser()
    return Path.home() / "diffstudio-runs"


def load_only_env() -> list[str] | None:
    """``DIFFSTUDIO_LOAD_PLUGINS`` as a list of names, or None when it is not set."""
    value = os.environ.get(LOAD_PLUGINS_VARIABLE)
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]
