"""Layout and dialog helpers shared by the pages."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QLayout, QMessageBox, QScrollArea, QStyle, QVBoxLayout, QWidget

__all__ = ["FormScroll", "ask_question", "form_column"]


def ask_question(parent: QWidget | None, title: str, text: str) -> bool:
    """A Yes/No question, No the default (the way every page asks before it deletes,
    replaces or quits; tests give the pages an ``ask`` of their own instead)."""
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


class FormScroll(QScrollArea):
    """A page's form that scrolls up and down only and is never narrower than its fields:
    its minimum width is the form's own plus the vertical scroll bar (a plain scroll area
    with the horizontal bar off cut the fields' right edges at 1024x700)."""

    def __init__(self, widget: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidget(widget)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        widget = self.widget()
        if widget is None:
            return hint
        bar = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        width = widget.minimumSizeHint().width() + bar + 2 * self.frameWidth()
        return QSize(max(hint.width(), width), hint.height())


def form_column(scroll: QScrollArea, actions: QLayout) -> QWidget:
    """A page's left column: its form scrolls, its action buttons (Sample, Evaluate...) stay
    pinned below it, visible without scrolling at any window height."""
    column = QWidget()
    layout = QVBoxLayout(column)
    layout.setContentsMargins(0, 0, 0, 4)
    layout.addWidget(scroll, 1)
    layout.addLayout(actions)
    return column
