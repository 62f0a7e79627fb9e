"""The guard against PySide6 6.12.0's lost references to None/True keeps the process alive."""

from __future__ import annotations

import os
import subprocess
import sys

from diffstudio.gui.refcount_guard import FLOOR, RefcountGuard

STRESS = """
import sys
from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QApplication
from diffstudio.gui.refcount_guard import RefcountGuard
app = QApplication([])
guard = RefcountGuard(interval_ms=20)
guard.start()
for _ in range(60_000):  # on an affected PySide6 this alone drops None's count by 60,000
    QCoreApplication.processEvents()
assert sys.getrefcount(None) > 1000, sys.getrefcount(None)
print("survived")
"""


def test_tick_tops_the_counts_up_to_the_floor(qapp):
    guard = RefcountGuard()
    guard.tick()
    for singleton in (None, True, False):
        assert sys.getrefcount(singleton) >= FLOOR
    assert guard.tick() == 0  # nothing missing any more


def test_guarded_process_survives_many_event_loop_calls():
    result = subprocess.run([sys.executable, "-c", STRESS], capture_output=True, text=True,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "survived" in result.stdout
