"""The mouse wheel never changes a field the user has not clicked into.

Qt lets a spin box, a combo box or a slider take the wheel as the pointer merely passes over
it, so scrolling a long form silently edits whatever field scrolls under the pointer (the
Evaluate page's "Reference limit" went from 0 to 9 that way). :func:`install` puts one
application-wide event filter in place that, for every such field of the application:

- gives it ``Qt.StrongFocus`` (tab and click, not the wheel) when it is first polished, so a
  wheel turn does not give it the focus either;
- while it does not have the focus, hands the wheel to the nearest enclosing scroll area
  (which scrolls, as the user meant) instead of letting the field change its value.

A field the user has clicked or tabbed into takes the wheel as usual. Scroll bars always take
it. One filter for the whole application: widgets created later (plugin forms, panels) are
covered without any call of their own.
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

__all__ = ["WheelGuard", "guards", "install"]

_GUARDED = (QAbstractSpinBox, QComboBox, QAbstractSlider)
_WHEEL, _POLISH = QEvent.Type.Wheel, QEvent.Type.Polish
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
    """The application-wide filter; see the module docstring."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind != _WHEEL and kind != _POLISH:  # the cheap path for every other event
            return False
        if not guards(watched):
            return False
        assert isinstance(watched, QWidget)
        if kind == _POLISH:
            if watched.focusPolicy() == Qt.FocusPolicy.WheelFocus:
                watched.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            return False
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


def install(app: QApplication | None = None) -> WheelGuard:
    """Install the guard on ``app`` (the running application by default); once per process."""
    global _filter
    app = app or QApplication.instance()  # type: ignore[assignment]
    if _filter is None or not shiboken6.isValid(_filter) or _filter.parent() is not app:
        _filter = WheelGuard(app)
        app.installEventFilter(_filter)
    return _filter
