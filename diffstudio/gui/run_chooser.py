"""Choosing a trained run: a list of the workspace's runs that have a checkpoint, plus any run
folder browsed to elsewhere (the Sample and Evaluate pages)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QPushButton, QWidget

__all__ = ["RunChooser"]


class RunChooser(QWidget):
    """A combo of runs (data: the run folder) and a Browse button.

    ``accepts(summary)`` picks which workspace runs are offered (default: those with a
    checkpoint). ``changed`` is emitted when the chosen run changes.
    """

    changed = Signal()

    def __init__(
        self,
        workspace: Callable[[], Path],
        *,
        accepts: Callable[[Any], bool] | None = None,
        minimum_length: int = 24,
        object_name: str = "runCombo",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._workspace = workspace
        self._accepts = accepts or (lambda run: run.can_sample)
        self._extra_runs: list[str] = []
        self.combo = QComboBox()
        self.combo.setObjectName(object_name)
        self.combo.setMinimumContentsLength(minimum_length)
        self.combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.browse_button = QPushButton("Browse…")
        self.browse_button.setToolTip("Choose a run folder outside the workspace")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.browse_button)
        self.combo.currentIndexChanged.connect(lambda _: self.changed.emit())
        self.browse_button.clicked.connect(self._browse)

    def set_runs(self, runs: list[Any]) -> None:
        """Offer the accepted ``runs`` and the browsed ones (keeps the current choice)."""
        current = self.current_run()
        self.combo.blockSignals(True)
        self.combo.clear()
        for run in runs:
            if self._accepts(run):
                self.combo.addItem(
                    f"{run.name}  ({run.dataset}, step {run.checkpoint_step:,})", run.path)
        for path in self._extra_runs:
            if self.combo.findData(path) < 0:
                self.combo.addItem(f"{Path(path).name}  ({path})", path)
        self.combo.blockSignals(False)
        if current and self.combo.findData(current) >= 0:
            self.combo.setCurrentIndex(self.combo.findData(current))
        self.changed.emit()

    def select_run(self, path: str) -> None:
        """Choose the run at ``path`` (added to the list if it is not in the workspace)."""
        path = str(Path(path).expanduser().resolve())
        if self.combo.findData(path) < 0:
            self._extra_runs.append(path)
            self.combo.addItem(f"{Path(path).name}  ({path})", path)
        self.combo.setCurrentIndex(self.combo.findData(path))

    def current_run(self) -> str | None:
        return self.combo.currentData()

    def _browse(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Choose a run folder",
                                                  str(self._workspace()))
        if chosen:
            self.select_run(chosen)
