"""Layout helpers shared by the pages."""

from __future__ import annotations

from PySide6.QtWidgets import QLayout, QScrollArea, QVBoxLayout, QWidget

__all__ = ["form_column"]


def form_column(scroll: QScrollArea, actions: QLayout) -> QWidget:
    """A page's left column: its form scrolls, its action buttons (Sample, Evaluate...) stay
    pinned below it, visible without scrolling at any window height."""
    column = QWidget()
    layout = QVBoxLayout(column)
    layout.setContentsMargins(0, 0, 0, 4)
    layout.addWidget(scroll, 1)
    layout.addLayout(actions)
    return column
