"""The window part of ``diffstudio --selftest``: open the real main window, let the engine load
in the background as it does at every launch, and close it again.

It runs offscreen (``QT_QPA_PLATFORM=offscreen``, unless a QApplication already exists), so the
self-test works over ssh and in a bundle build without a display, and it uses a settings file of
its own so the user's settings are neither read nor changed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

__all__ = ["open_and_close_window", "settings_location"]


def settings_location() -> str:
    """Where the user's settings file is (QSettings' answer for this platform)."""
    from diffstudio.gui.settings import open_settings

    return open_settings().fileName()


def open_and_close_window(
    settings_file: Path, workspace: Path, *, registry: Any = None, timeout_s: float = 180.0
) -> str:
    """Open the main window on ``workspace`` with settings in ``settings_file``, wait until the
    engine has loaded and the start-up jobs have ended, then close it. Returns a one-line summary;
    raises RuntimeError when the window does not come up, the engine does not load, or the window
    does not close."""
    from PySide6.QtCore import QEventLoop, QSettings
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from diffstudio.gui.app import create_application
    from diffstudio.gui.main_window import MainWindow
    from diffstudio.gui.settings import Preferences
    from diffstudio.gui.workers import running_jobs

    app = create_application()
    preferences = Preferences(QSettings(str(settings_file), QSettings.Format.IniFormat))
    preferences.workspace = workspace
    started = time.perf_counter()
    window = MainWindow(preferences, registry=registry)
    painted: list[float] = []
    window.first_painted.connect(lambda: painted.append(time.perf_counter() - started))
    window.show()
    deadline = started + timeout_s
    # The engine loader is tracked as the "engine" job from its start (deferred to the event
    # loop) until it ends; an end without a ready engine is a failure, reported at once.
    loader_seen: list[bool] = []
    window.studio.jobs_changed.connect(
        lambda: loader_seen.append(True) if "engine" in window.studio.jobs else None)
    try:
        while time.perf_counter() < deadline:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            if window.studio.ready and not window.studio.running():
                break
            if loader_seen and "engine" not in window.studio.jobs and not window.studio.ready:
                break
            time.sleep(0.01)
        if not window.studio.ready:
            waited = "" if loader_seen and "engine" not in window.studio.jobs else \
                f" within {timeout_s:.0f} s"
            raise RuntimeError(f"the engine did not load{waited}: "
                               f"{window.busy_label.text() or 'no message'}")
        ready_s = time.perf_counter() - started
        platform = QApplication.platformName()
    finally:
        window.close()
        app.processEvents()
        for job in running_jobs():
            job.request_stop()
            job.wait(30_000)
    if window.isVisible():
        raise RuntimeError("the window did not close")
    window.deleteLater()
    app.processEvents()
    for job in running_jobs():  # a start-up job queued by an event processed while closing
        job.request_stop()
        job.wait(30_000)
    shown = f"painted after {painted[0]:.2f} s, " if painted else ""
    return f"opened on '{platform}', {shown}engine ready after {ready_s:.1f} s, closed"
