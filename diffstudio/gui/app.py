"""Start the desktop studio: ``run_app()`` is what bare ``diffstudio`` calls.

The window is shown before anything heavy is imported: torch, diffusers, the engine and the
plugins load in a background thread afterwards (:class:`diffstudio.gui.workers.EngineLoader`)
while the status bar shows a busy indicator.

``DIFFSTUDIO_LAUNCH_PROBE=1`` prints, on stderr, how long after the process started the window
was first painted and the engine became ready; ``DIFFSTUDIO_LAUNCH_PROBE=quit`` also quits once
the engine is ready (``bench/bench_gui.py`` measures launch time this way).
"""

from __future__ import annotations

import os
import sys
import traceback
from types import TracebackType

from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QApplication

from diffstudio.gui import refcount_guard, wheel_guard
from diffstudio.gui.main_window import MainWindow
from diffstudio.gui.settings import APPLICATION, ORGANISATION, Preferences, open_settings
from diffstudio.gui.workers import running_jobs
from diffstudio.resources import APP_ID, ICON_SIZES, icon_png

__all__ = ["application_icon", "create_application", "process_age", "run_app"]

PROBE_VARIABLE = "DIFFSTUDIO_LAUNCH_PROBE"


def process_age() -> float | None:
    """Seconds since this process was started (Linux ``/proc``; None elsewhere)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])  # field 22, starttime, in clock ticks since boot
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
        return uptime - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def application_icon() -> QIcon:
    """The window icon, from the PNGs at each size in the package's resources (read as bytes,
    so it works wherever the package is: a wheel, an editable install or a frozen bundle)."""
    icon = QIcon()
    for size in ICON_SIZES:
        pixmap = QPixmap()
        if pixmap.loadFromData(icon_png(size).read_bytes(), "PNG"):
            icon.addPixmap(pixmap)
    return icon


def create_application() -> QApplication:
    """The QApplication (created once), named for diffstudio."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("diffstudio")
    app.setDesktopFileName(APP_ID)  # Wayland matches the window to its .desktop entry
    app.setWindowIcon(application_icon())
    refcount_guard.install(app)  # PySide6 6.12.0 on Python < 3.12: see the module
    wheel_guard.install(app)  # the wheel changes only the field that has the focus
    return app  # type: ignore[return-value]


def run_app(safe_mode: bool = False) -> int:
    """Open the main window and run the event loop; returns the exit status."""
    app = create_application()
    window = MainWindow(Preferences(open_settings()), safe_mode=safe_mode)

    previous_hook = sys.excepthook

    def report(kind: type[BaseException], value: BaseException,
               trace: TracebackType | None) -> None:
        # An exception in a slot must not be lost: it goes to the notification area.
        details = "".join(traceback.format_exception(kind, value, trace))
        window.notifications.error(f"Unexpected {kind.__name__}: {value}", details,
                                   source="diffstudio")
        print(details, file=sys.stderr)

    sys.excepthook = report
    probe = os.environ.get(PROBE_VARIABLE, "").strip().lower()
    if probe:
        def on_painted() -> None:
            print(f"diffstudio-launch window_shown_s={process_age()}", file=sys.stderr,
                  flush=True)

        def on_ready(_: object) -> None:
            print(f"diffstudio-launch engine_ready_s={process_age()}", file=sys.stderr,
                  flush=True)
            if probe == "quit":
                window.close()

        window.first_painted.connect(on_painted)
        window.studio.engine_ready.connect(on_ready)
    window.show()
    try:
        status = app.exec()
    finally:
        sys.excepthook = previous_hook
        for job in running_jobs():  # the window stops its jobs on close; make sure they ended
            job.request_stop()
            job.wait(30_000)
    return int(status)


