"""The mouse wheel never changes a field the user has not clicked into.

Qt lets a spin box, a combo box or a slider take the wheel as the pointer merely passes over
it, so scrolling a long form silently edits whatever field scrolls under the pointer (the
Evaluate page's "Reference limit" went from 0 to 9 that way). :func:`guard_tree` puts one
shared event filter on every such field under a widget, and:

- gives it ``Qt.StrongFocus`` (tab and click, not the wheel), so a wheel turn does not give it
  the focus either;
- while it does not have the focus, hands the wheel to the nearest enclosing scroll area
  (which scrolls, as the user meant) instead of letting the field change its value.

A field the user has clicked or tabbed into takes the wheel as usual. Scroll bars always take
it. The filter sits on the fields only, not on the application: an application-wide filter
calls Python for every event of every widget (about 22,000 while the window first paints,
which made it appear 0.3 s later). The window guards its pages once built and again when the
plugins' forms arrive; :class:`~diffstudio.gui.forms.ParamForm` guards the fields it builds.
"""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QScrollBar,
    QWidget,
)

__all__ = ["WheelGuard", "guard", "guard_tree", "guards", "install"]

_GUARDED = (QAbstractSpinBox, QComboBox, QAbstractSlider)
_WHEEL = QEvent.Type.Wheel
_filter: WheelGuard | None = None


def guards(widget: QObject) -> bool:
    """Whether ``widget`` is a field whose value the wheel could change (scroll bars are not)."""
    return isinstance(widget, _GUARDED) and not isinstance(widget, QScrollBar)


def _enclosing_scroll_area(widget: QWidget) -> QAbstractScrollArea | None:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QAbstractScrollArea) and not guards(parent):
            return parent
        parent = parent.parentWidget()
    return None


class WheelGuard(QObject):
    """The filter every guarded field shares; see the module docstring."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() != _WHEEL or not guards(watched):
            return False
        assert isinstance(watched, QWidget)
        if watched.hasFocus():
            return False  # the user is in this field: the wheel edits it
        assert isinstance(event, QWheelEvent)
        area = _enclosing_scroll_area(watched)
        if area is not None:
            viewport = area.viewport()
            forwarded = QWheelEvent(
                viewport.mapFromGlobal(event.globalPosition()), event.globalPosition(),
                event.pixelDelta(), event.angleDelta(), event.buttons(), event.modifiers(),
                event.phase(), event.inverted(), event.source(), event.pointingDevice())
            QApplication.sendEvent(viewport, forwarded)
            event.accept()
        else:
            event.ignore()  # nothing to scroll: the value stays as it is
        return True


def _shared_filter() -> WheelGuard:
    global _filter
    app = QApplication.instance()
    if _filter is None or not shiboken6.isValid(_filter) or _filter.parent() is not app:
        _filter = WheelGuard(app)
    return _filter


def guard(widget: QWidget) -> None:
    """Guard one field (idempotent: Qt installs the same filter once)."""
    if guards(widget):
        if widget.focusPolicy() == Qt.FocusPolicy.WheelFocus:
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        widget.installEventFilter(_shared_filter())


def guard_tree(root: QWidget) -> None:
    """Guard ``root`` and every field under it."""
    guard(root)
    for kind in _GUARDED:
        for widget in root.findChildren(kind):
            guard(widget)


def install(app: QApplication | None = None) -> WheelGuard:
    """Guard every field of the application's current windows; returns the shared filter."""
    for widget in QApplication.topLevelWidgets():
        guard_tree(widget)
    return _shared_filter()
