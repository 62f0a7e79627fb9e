"""A choice between a few sources, each with its own widgets: radio buttons in a row, and under
them the chosen option's page only (the Sample page's run / pretrained model, the Evaluate
page's run / samples folder)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QRadioButton, QVBoxLayout, QWidget

__all__ = ["SourceSwitch"]


class SourceSwitch(QWidget):
    """``options``: (key, label, page) in order; the first is chosen at the start.

    Hidden pages take no room, unlike a stacked widget, which keeps the tallest page's height.
    ``changed(key)`` is emitted when the choice changes.
    """

    changed = Signal(str)

    def __init__(self, options: Sequence[tuple[str, str, QWidget]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._buttons: dict[str, QRadioButton] = {}
        self._pages: dict[str, QWidget] = {}
        group = QButtonGroup(self)
        row = QHBoxLayout()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        for key, label, page in options:
            button = QRadioButton(label)
            group.addButton(button)
            row.addWidget(button)
            layout.addWidget(page)
            self._buttons[key], self._pages[key] = button, page
            button.toggled.connect(lambda checked, key=key: checked and self._show(key))
        next(iter(self._buttons.values())).setChecked(True)
        self._show(self.current())

    def button(self, key: str) -> QRadioButton:
        return self._buttons[key]

    def current(self) -> str:
        return next(key for key, button in self._buttons.items() if button.isChecked())

    def set_current(self, key: str) -> None:
        self._buttons[key].setChecked(True)

    def _show(self, key: str) -> None:
        for name, page in self._pages.items():
            page.setVisible(name == key)
        self.changed.emit(key)
