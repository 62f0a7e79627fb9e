"""Edit > Preferences: the workspace, the FID weights, the default device and precision, the
live-view rate, whether training runs in a separate process, and the theme, in one dialog.
Each value is the one the window already uses (the toolbar's device, the Evaluate page's
weights, the Sample page's live fps): the dialog edits them in one place and nothing else keeps
a copy."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from diffstudio.gui import wheel_guard

__all__ = ["THEMES", "PreferencesDialog", "apply_theme"]

THEMES = ("system", "light", "dark")


def apply_theme(theme: str) -> None:
    """Light, dark or the system's colours. Qt >= 6.8 switches its own colour scheme; older Qt
    gets the Fusion style's palette darkened by hand."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return
    hints = QGuiApplication.styleHints()
    scheme = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}.get(
        theme, Qt.ColorScheme.Unknown)
    if hasattr(hints, "setColorScheme"):
        hints.setColorScheme(scheme)
        return
    if theme == "dark":  # pragma: no cover - Qt < 6.8
        palette = QPalette()
        for role, colour in ((QPalette.ColorRole.Window, "#2b2b2b"),
                             (QPalette.ColorRole.WindowText, "#e6e6e6"),
                             (QPalette.ColorRole.Base, "#1f1f1f"),
                             (QPalette.ColorRole.Text, "#e6e6e6"),
                             (QPalette.ColorRole.Button, "#353535"),
                             (QPalette.ColorRole.ButtonText, "#e6e6e6"),
                             (QPalette.ColorRole.Highlight, "#3d6fb4")):
            palette.setColor(role, colour)
        app.setPalette(palette)
    else:  # pragma: no cover - Qt < 6.8
        app.setPalette(app.style().standardPalette())


class PreferencesDialog(QDialog):
    """See the module docstring. :meth:`apply` writes the values back where they live."""

    def __init__(self, window: Any) -> None:  # the MainWindow, which imports this module
        super().__init__(window)
        self.setWindowTitle("Preferences")
        self.window_ = window
        studio, prefs = window.studio, window.preferences

        self.workspace_edit = QLineEdit(str(studio.workspace))
        browse_workspace = QPushButton("Browse…")
        browse_workspace.clicked.connect(lambda: self._browse_folder(self.workspace_edit))
        self.weights_edit = QLineEdit(window.evaluate_view.weights_edit.text())
        self.weights_edit.setPlaceholderText("pytorch-fid's pt_inception-2015-12-05-"
                                             "6726825d.pth (empty: the torch hub cache)")
        browse_weights = QPushButton("Browse…")
        browse_weights.clicked.connect(self._browse_weights)
        self.device_combo = QComboBox()
        for index in range(window.device_combo.count()):
            self.device_combo.addItem(window.device_combo.itemText(index),
                                      window.device_combo.itemData(index))
        self.device_combo.setCurrentIndex(window.device_combo.currentIndex())
        self.device_combo.currentIndexChanged.connect(self._fill_precisions)
        self.precision_combo = QComboBox()
        self._fill_precisions()
        self.fps_spin = QSpinBox()
        self.fps_spin.setRange(1, 30)
        self.fps_spin.setSuffix(" frames/s")
        self.fps_spin.setValue(int(window.sample_view.options.values().get("live_fps", 10)))
        self.worker_check = QCheckBox("Run training in a separate process")
        self.worker_check.setToolTip(
            "A crash, an out-of-memory kill or a failing plugin then ends that process, not the "
            "window: the training fails with its log. Applies to the next training.")
        self.worker_check.setChecked(prefs.train_worker_process)
        self.theme_combo = QComboBox()
        for theme in THEMES:
            self.theme_combo.addItem(theme.capitalize(), theme)
        self.theme_combo.setCurrentIndex(max(0, THEMES.index(prefs.get_str("theme", "system"))
                                             if prefs.get_str("theme", "system") in THEMES
                                             else 0))

        form = QFormLayout()
        form.addRow("Workspace", _row(self.workspace_edit, browse_workspace))
        form.addRow("FID weights", _row(self.weights_edit, browse_weights))
        form.addRow("Default device", self.device_combo)
        form.addRow("Precision", self.precision_combo)
        form.addRow("Live view", self.fps_spin)
        form.addRow("Training", self.worker_check)
        form.addRow("Theme", self.theme_combo)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.resize(640, self.sizeHint().height())
        wheel_guard.guard_tree(self)

    def _fill_precisions(self, *_: object) -> None:
        device = self.device_combo.currentData()
        self.precision_combo.clear()
        labels = {self.window_.precision_combo.itemData(i): self.window_.precision_combo.itemText(i)
                  for i in range(self.window_.precision_combo.count())}
        for precision in getattr(device, "precisions", ("no",)):
            self.precision_combo.addItem(labels.get(precision, precision), precision)
        current = self.window_.studio.precision
        if self.precision_combo.findData(current) >= 0:
            self.precision_combo.setCurrentIndex(self.precision_combo.findData(current))
        self.precision_combo.setEnabled(self.precision_combo.count() > 1)

    def _browse_folder(self, edit: QLineEdit) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Choose a folder", edit.text())
        if chosen:
            edit.setText(chosen)

    def _browse_weights(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "Inception FID weights",
                                                self.weights_edit.text(),
                                                "PyTorch weights (*.pth *.pt);;All files (*)")
        if chosen:
            self.weights_edit.setText(chosen)

    def apply(self) -> None:
        """Put each value where the window keeps it (and so into the settings file)."""
        window = self.window_
        workspace = self.workspace_edit.text().strip()
        if workspace and workspace != str(window.studio.workspace):
            window.studio.set_workspace(workspace)
        window.evaluate_view.weights_edit.setText(self.weights_edit.text().strip())
        window.device_combo.setCurrentIndex(self.device_combo.currentIndex())
        precision = window.precision_combo.findData(self.precision_combo.currentData())
        if precision >= 0:
            window.precision_combo.setCurrentIndex(precision)
        options = window.sample_view.options  # set_values resets what it is not given
        options.set_values({**options.values(), "live_fps": self.fps_spin.value()})
        window.preferences.train_worker_process = self.worker_check.isChecked()
        theme = self.theme_combo.currentData()
        window.menus.set_theme(theme)


def _row(*widgets: QWidget) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget, 1 if isinstance(widget, QLineEdit) else 0)
    return row
