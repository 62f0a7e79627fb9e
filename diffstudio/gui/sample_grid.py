"""A grid of samples that knows which sample is where: hovering shows the sample's seed and
parameters, a click enlarges it, a right click offers to copy its parameters or save it.

Only geometry here (which tile is under the mouse); what a tile says comes from the page.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt, Signal
from PySide6.QtGui import QContextMenuEvent, QMouseEvent
from PySide6.QtWidgets import QToolTip, QWidget

from diffstudio.gui.images import ImageView, grid_rgb8

__all__ = ["SampleGridView"]


class SampleGridView(ImageView):
    """An :class:`ImageView` of a grid laid out by :func:`grid_rgb8` whose tiles can be
    pointed at. ``set_tiles`` gives the images and one tooltip per tile; ``set_array`` (a
    live frame) shows a picture without tiles."""

    clicked = Signal(int)  # the tile's index
    context_requested = Signal(int, QPoint)  # the tile's index, the global position

    def __init__(self, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(placeholder, parent)
        self.setMouseTracking(True)
        self._count = 0
        self._columns = 1
        self._tile = (1, 1)  # height, width in grid pixels
        self._pad = 1
        self._tips: list[str] = []
        self._hovered: int | None = None

    def set_tiles(self, images: np.ndarray, tips: list[str], caption: str = "",
                  columns: int | None = None, pad: int = 1) -> None:
        """Show ``images`` (N, C, H, W) in [-1, 1] as a grid; ``tips[i]`` describes tile i."""
        count = len(images)
        columns = max(1, min(columns or math.ceil(math.sqrt(count)), count))
        super().set_array(grid_rgb8(images, columns, pad), caption)  # clears the old tiles
        self._columns, self._count, self._pad = columns, count, pad
        self._tile = (int(images.shape[2]), int(images.shape[3]))
        self._tips = list(tips)

    def set_image(self, image: Any, caption: str = "") -> None:
        """Any other picture (a live frame, None) has no tiles."""
        self._count, self._tips, self._hovered = 0, [], None
        super().set_image(image, caption)

    def tile_count(self) -> int:
        return self._count

    def index_at(self, position: QPointF) -> int | None:
        """The tile under ``position`` (widget coordinates), None between tiles or outside."""
        target = self.image_rect()
        image = self.image()
        if not self._count or target.isEmpty() or image is None:
            return None
        x = (position.x() - target.left()) * image.width() / target.width()
        y = (position.y() - target.top()) * image.height() / target.height()
        height, width = self._tile
        column, inside_x = divmod(x - self._pad, width + self._pad)
        row, inside_y = divmod(y - self._pad, height + self._pad)
        if x < self._pad or y < self._pad or inside_x >= width or inside_y >= height:
            return None
        if column >= self._columns:
            return None
        index = int(row) * self._columns + int(column)
        return index if 0 <= index < self._count else None

    def tile_center(self, index: int) -> QPoint:
        """Where tile ``index`` is drawn (its centre, widget coordinates): for tests."""
        target, image = self.image_rect(), self.image()
        height, width = self._tile
        row, column = divmod(index, self._columns)
        x = self._pad + column * (width + self._pad) + width / 2
        y = self._pad + row * (height + self._pad) + height / 2
        return QPoint(int(target.left() + x * target.width() / image.width()),
                      int(target.top() + y * target.height() / image.height()))

    def tip(self, index: int) -> str:
        return self._tips[index] if 0 <= index < len(self._tips) else ""

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        index = self.index_at(event.position())
        if index != self._hovered:
            self._hovered = index
            if index is None:
                QToolTip.hideText()
            else:
                QToolTip.showText(event.globalPosition().toPoint(), self.tip(index), self)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        index = self.index_at(event.position())
        if index is not None and event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(index)
        super().mouseReleaseEvent(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        index = self.index_at(QPointF(event.pos()))
        if index is not None:
            self.context_requested.emit(index, event.globalPos())
            event.accept()
        else:
            super().contextMenuEvent(event)
