"""Settings that persist between launches, stored with QSettings in an INI file.

Where the file lives can be overridden, so that tests and benchmarks never touch the user's
own settings:

* ``DIFFSTUDIO_SETTINGS_FILE=/some/file.ini`` uses that file;
* otherwise ``QSettings(IniFormat, UserScope, organisation, application)`` with the names
  ``DIFFSTUDIO_SETTINGS_ORG`` / ``DIFFSTUDIO_SETTINGS_APP`` (default ``diffstudio``/``diffstudio``),
  for example ``~/.config/diffstudio/diffstudio.ini`` on Linux.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

__all__ = [
    "APPLICATION",
    "ORGANISATION",
    "SETTINGS_FILE_VARIABLE",
    "Preferences",
    "default_workspace",
    "open_settings",
]

ORGANISATION = "diffstudio"
APPLICATION = "diffstudio"
SETTINGS_FILE_VARIABLE = "DIFFSTUDIO_SETTINGS_FILE"
ORGANISATION_VARIABLE = "DIFFSTUDIO_SETTINGS_ORG"
APPLICATION_VARIABLE = "DIFFSTUDIO_SETTINGS_APP"


def default_workspace() -> Path:
    """Where runs go unless the user chose another folder: ``~/diffstudio-runs``."""
    return Path.home() / "diffstudio-runs"


def open_settings(path: str | os.PathLike[str] | None = None) -> QSettings:
    """The QSettings to use: ``path``, else ``$DIFFSTUDIO_SETTINGS_FILE``, else the user's."""
    path = path or os.environ.get(SETTINGS_FILE_VARIABLE)
    if path:
        return QSettings(str(path), QSettings.Format.IniFormat)
    return QSettings(
        QSettings.Format.IniFormat,
        QSettings.Scope.UserScope,
        os.environ.get(ORGANISATION_VARIABLE, ORGANISATION),
        os.environ.get(APPLICATION_VARIABLE, APPLICATION),
    )


class Preferences:
    """Typed access to the settings: plain values, JSON documents and Qt byte blobs.

    INI files store everything as text, so values are read back with the type asked for.
    """

    def __init__(self, settings: QSettings | None = None) -> None:
        self.settings = settings if settings is not None else open_settings()

    # -- plain values -----------------------------------------------------------------------
    def get_str(self, key: str, default: str = "") -> str:
        value = self.settings.value(key, default)
        return default if value is None else str(value)

    def get_bool(self, key: str, default: bool = False) -> bool:
        value = self.settings.value(key, default)
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in {"1", "true", "yes", "on"}

    def get_int(self, key: str, default: int = 0) -> int:
        try:
            return int(self.settings.value(key, default))
        except (TypeError, ValueError):
            return default

    def set(self, key: str, value: Any) -> None:
        self.settings.setValue(key, value)

    # -- structured values --------------------------------------------------------------------
    def get_json(self, key: str, default: Any = None) -> Any:
        """A JSON document stored under ``key`` (``default`` when absent or unreadable)."""
        text = self.settings.value(key)
        if not text:
            return default
        try:
            return json.loads(str(text))
        except json.JSONDecodeError:
            return default

    def set_json(self, key: str, value: Any) -> None:
        self.settings.setValue(key, json.dumps(value, sort_keys=True))

    def get_bytes(self, key: str) -> QByteArray | None:
        """A Qt blob (window geometry, splitter state), or None."""
        value = self.settings.value(key)
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    # -- the workspace --------------------------------------------------------------------------
    @property
    def workspace(self) -> Path:
        """The folder that holds the runs (chosen by the user, else ``~/diffstudio-runs``)."""
        text = self.get_str("workspace")
        return Path(text).expanduser() if text else default_workspace()

    @workspace.setter
    def workspace(self, path: str | os.PathLike[str]) -> None:
        self.set("workspace", str(Path(path).expanduser()))

    # -- how training runs ------------------------------------------------------------------------
    @property
    def train_worker_process(self) -> bool:
        """"Run training in a separate process" (on unless turned off): a crash there fails
        the training with its log and leaves the window running."""
        return self.get_bool("train_worker_process", True)

    @train_worker_process.setter
    def train_worker_process(self, enabled: bool) -> None:
        self.set("train_worker_process", bool(enabled))

    def sync(self) -> None:
        self.settings.sync()
