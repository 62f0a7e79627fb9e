"""A guard against a reference-counting bug of PySide6 6.12.0 on Python older than 3.12.

PySide6 6.12.0 drops one reference to ``None`` each time the event loop calls a Python slot
(timer ticks, queued signals) or Python calls ``QCoreApplication.processEvents()``, and one
reference to ``True`` for each signal emitted from Python. Measured side by side on Python
3.11.7: -1.00 per call with 6.12.0, 0.00 with 6.11.3; on Python 3.12+ ``None``, ``True`` and
``False`` are immortal and the bug is harmless. On 3.11 the count of ``None`` (about 200,000
once torch is loaded) reaches zero after hours of live plots and the interpreter aborts with
"Fatal Python error: none_dealloc: deallocating None".

When the bug is detected, :func:`install` keeps the three counts above a floor: once a second
it adds the missing references to a list that is never freed (8 bytes each, a few MB a day at
worst; freeing it at exit would hand the lost references back and abort the interpreter then).
The real fix is a PySide6 without the bug, or Python 3.12+.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

__all__ = ["FLOOR", "RefcountGuard", "affected", "install"]

FLOOR = 50_000  # references kept to None, True and False at least
_SINGLETONS = (None, True, False)


class _Probe(QObject):
    ping = Signal()


def affected(calls: int = 200) -> bool:
    """Whether this Python + PySide6 loses references to None/True (measured, not guessed)."""
    if sys.version_info >= (3, 12):
        return False  # immortal singletons: the lost references do no harm
    probe = _Probe()
    true_before, none_before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(calls):
        probe.ping.emit()
    for _ in range(calls):
        QCoreApplication.processEvents()
    lost_true = true_before - sys.getrefcount(True)
    lost_none = none_before - sys.getrefcount(None)
    return lost_true > calls // 2 or lost_none > calls // 2


class RefcountGuard(QObject):
    """Tops up the reference counts of None, True and False to :data:`FLOOR` once a second."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = 1000) -> None:
        super().__init__(parent)
        self.ballast: list[object] = []
        # Never freed, not even at exit: its references stand in for the ones PySide6 lost.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(self.ballast))
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)

    def tick(self) -> int:
        """Add the references missing below the floor; returns how many were added."""
        added = 0
        for singleton in _SINGLETONS:
            missing = FLOOR - sys.getrefcount(singleton)
            if missing > 0:
                self.ballast.extend([singleton] * missing)
                added += missing
        return added

    def start(self) -> None:
        self.tick()
        self.timer.start()


_GUARD: RefcountGuard | None = None


def install(app: QCoreApplication) -> RefcountGuard | None:
    """Start the guard once per process if this PySide6 has the bug; None otherwise."""
    global _GUARD
    if _GUARD is None and affected():
        _GUARD = RefcountGuard(app)
        _GUARD.start()
    return _GUARD
