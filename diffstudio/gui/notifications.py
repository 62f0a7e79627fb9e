"""A non-blocking notification area: messages and errors at the bottom of the window.

Nothing is modal and nothing is lost: every notification is kept in a list with its time, its
source and its details (a traceback for errors), shown on demand.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from datetime import datetime

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["LEVELS", "Notification", "NotificationArea", "NotificationCenter"]

LEVELS = ("info", "warning", "error")
_BAR_COLOURS = {"info": "#eef3fb", "warning": "#fff4d6", "error": "#fde2e1"}
_ICONS = {
    "info": QStyle.StandardPixmap.SP_MessageBoxInformation,
    "warning": QStyle.StandardPixmap.SP_MessageBoxWarning,
    "error": QStyle.StandardPixmap.SP_MessageBoxCritical,
}


@dataclass
class Notification:
    """One message: ``level`` is "info", "warning" or "error"; ``details`` may be a traceback."""

    level: str
    message: str
    details: str = ""
    source: str = ""
    time: datetime = field(default_factory=datetime.now)

    def summary(self) -> str:
        where = f"[{self.source}] " if self.source else ""
        return f"{self.time:%H:%M:%S}  {where}{self.message}"


class NotificationCenter(QObject):
    """Collects notifications from anywhere in the GUI (main thread) and announces them."""

    posted = Signal(object)  # Notification

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.items: list[Notification] = []

    def post(self, level: str, message: str, details: str = "", source: str = "") -> Notification:
        if level not in LEVELS:
            raise ValueError(f"notification level {level!r} is not one of {LEVELS}")
        notification = Notification(level, message, details, source)
        self.items.append(notification)
        self.posted.emit(notification)
        return notification

    def info(self, message: str, details: str = "", source: str = "") -> Notification:
        return self.post("info", message, details, source)

    def warning(self, message: str, details: str = "", source: str = "") -> Notification:
        return self.post("warning", message, details, source)

    def error(self, message: str, details: str = "", source: str = "") -> Notification:
        return self.post("error", message, details, source)

    def exception(self, exc: BaseException, source: str = "") -> Notification:
        """An error from an exception: its message, with the traceback as details."""
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return self.error(f"{type(exc).__name__}: {exc}", details, source)

    def count(self, level: str) -> int:
        return sum(1 for item in self.items if item.level == level)


class NotificationArea(QWidget):
    """A one-line bar with the latest notification, and on demand the full list with details."""

    def __init__(self, center: NotificationCenter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.center = center
        self.bar = QFrame()
        self.bar.setObjectName("notificationBar")
        self.icon = QLabel()
        self.message = QLabel("No messages.")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setMinimumWidth(100)
        self.message.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.counts = QLabel("")
        self.details_button = QToolButton()
        self.details_button.setText("Details")
        self.details_button.setCheckable(True)
        self.details_button.setToolTip("Show every message with its details (tracebacks)")
        self.dismiss_button = QToolButton()
        self.dismiss_button.setText("Dismiss")
        self.dismiss_button.setToolTip("Clear the bar; the message stays in the list")
        bar_layout = QHBoxLayout(self.bar)
        bar_layout.setContentsMargins(6, 2, 6, 2)
        bar_layout.addWidget(self.icon)
        bar_layout.addWidget(self.message, 1)
        bar_layout.addWidget(self.counts)
        bar_layout.addWidget(self.details_button)
        bar_layout.addWidget(self.dismiss_button)

        self.panel = QSplitter(Qt.Orientation.Horizontal)
        self.list = QListWidget()
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setPlaceholderText("Select a message to see its details.")
        self.copy_button = QPushButton("Copy details")
        details_box = QWidget()
        details_layout = QVBoxLayout(details_box)
        details_layout.setContentsMargins(0, 0, 0, 0)
        details_layout.addWidget(self.details, 1)
        details_layout.addWidget(self.copy_button, 0, Qt.AlignmentFlag.AlignRight)
        self.panel.addWidget(self.list)
        self.panel.addWidget(details_box)
        self.panel.setSizes([400, 600])
        self.panel.setVisible(False)
        self.panel.setMinimumHeight(140)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.panel)
        layout.addWidget(self.bar)

        self.details_button.toggled.connect(self.panel.setVisible)
        self.dismiss_button.clicked.connect(self.dismiss)
        self.list.currentRowChanged.connect(self._show_details)
        self.copy_button.clicked.connect(
            lambda: QGuiApplication.clipboard().setText(self.details.toPlainText())
        )
        center.posted.connect(self._on_posted)
        for item in center.items:
            self._on_posted(item)
        self._set_bar(None)

    def _set_bar(self, notification: Notification | None) -> None:
        level = notification.level if notification else "info"
        self.bar.setStyleSheet(
            f"#notificationBar {{ background: {_BAR_COLOURS[level]}; "
            "border-top: 1px solid #c8c8c8; }"
        )
        pixmap = self.style().standardIcon(_ICONS[level]).pixmap(16, 16)
        self.icon.setPixmap(pixmap)
        self.icon.setVisible(notification is not None)
        if notification is None:
            self.message.setText("No new messages." if self.center.items else "No messages.")
        else:
            hint = "  (Details shows the traceback)" if notification.details else ""
            self.message.setText(f"{notification.summary()}{hint}")
        self.message.setToolTip(notification.message if notification else "")
        errors, warnings = self.center.count("error"), self.center.count("warning")
        parts = [f"{errors} error(s)"] if errors else []
        parts += [f"{warnings} warning(s)"] if warnings else []
        self.counts.setText(", ".join(parts))

    def _on_posted(self, notification: Notification) -> None:
        item = QListWidgetItem(self.style().standardIcon(_ICONS[notification.level]),
                               notification.summary())
        item.setData(Qt.ItemDataRole.UserRole, len(self.center.items) - 1)
        self.list.insertItem(0, item)
        self._set_bar(notification)
        if self.panel.isVisible():
            self.list.setCurrentRow(0)

    def _show_details(self, row: int) -> None:
        item = self.list.item(row)
        if item is None:
            self.details.clear()
            return
        notification = self.center.items[int(item.data(Qt.ItemDataRole.UserRole))]
        text = f"{notification.summary()}\n\n{notification.message}"
        if notification.details:
            text += f"\n\n{notification.details}"
        self.details.setPlainText(text)

    def latest_text(self) -> str:
        """What the bar shows now (for tests and screenshots)."""
        return self.message.text()

    def dismiss(self) -> None:
        self._set_bar(None)

    def show_details(self, index: int = 0) -> None:
        """Open the list and select the ``index``-th newest notification."""
        self.details_button.setChecked(True)
        self.list.setCurrentRow(index)
