"""The retrieval grid of the Evaluate page (similarity retrieval, Carlini et al. arXiv
2301.13188): each row is a generated sample followed by its nearest training images, each with
its distance; rows the memorisation check flags are highlighted with their ratio.

Only the rows in view are painted, and their tiles are turned into QImages as they first come
into view, so a grid of thousands of samples scrolls smoothly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QHelpEvent, QImage, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QToolTip, QWidget

from diffstudio.gui.images import to_qimage, to_rgb8

__all__ = ["RetrievalGrid"]

_FLAG_FILL = QColor(253, 226, 224)
_FLAG_PEN = QColor(181, 42, 37)


class RetrievalGrid(QWidget):
    """See the module docstring. Feed it with :meth:`set_data`, then :meth:`set_order`."""

    def __init__(self, tile: int = 64, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tile = tile
        self._samples = np.zeros((0, 1, 1, 3), np.uint8)
        self._reference = np.zeros((0, 1, 1, 3), np.uint8)
        self._rows: dict[int, int] = {}
        self._indices = np.zeros((0, 0), np.int64)
        self._distances = np.zeros((0, 0))
        self._flagged: set[int] = set()
        self._ratios: np.ndarray | None = None
        self._order: list[int] = []
        self._names: list[str] | None = None
        self._cache: dict[tuple[str, int], QImage] = {}
        self.space = ""
        self.setMouseTracking(False)

    # -- data ------------------------------------------------------------------------------------
    def set_data(
        self,
        samples: np.ndarray,
        reference_images: np.ndarray,
        reference_rows: dict[int, int],
        indices: np.ndarray,
        distances: np.ndarray,
        *,
        space: str,
        flagged: Sequence[int] = (),
        ratios: np.ndarray | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        """samples (N, C, H, W) and reference images (U, C, H, W) in [-1, 1];
        ``reference_rows`` maps a dataset index to its row of ``reference_images``; indices and
        distances (N, k), nearest first; ``names`` label the samples (default "sample i")."""
        self._samples = to_rgb8(samples) if len(samples) else self._samples[:0]
        self._reference = to_rgb8(reference_images) if len(reference_images) else \
            self._reference[:0]
        self._rows = dict(reference_rows)
        self._indices = np.asarray(indices)
        self._distances = np.asarray(distances)
        self._flagged = {int(i) for i in flagged}
        self._ratios = None if ratios is None else np.asarray(ratios)
        self.space = space
        self._names = None if names is None else [str(name) for name in names]
        self._cache.clear()
        self.set_order(list(range(len(self._samples))))

    def clear(self) -> None:
        self.set_data(np.zeros((0, 1, 1, 1)), np.zeros((0, 1, 1, 1)), {}, np.zeros((0, 0)),
                      np.zeros((0, 0)), space="")

    def set_order(self, order: Sequence[int]) -> None:
        """The samples to show, top to bottom (a filter and a sort of range(N))."""
        self._order = [int(i) for i in order]
        self.setFixedSize(self.sizeHint())
        self.update()

    def order(self) -> list[int]:
        return list(self._order)

    @property
    def k(self) -> int:
        return int(self._indices.shape[1]) if self._indices.ndim == 2 else 0

    # -- geometry --------------------------------------------------------------------------------
    def _text_height(self) -> int:
        return self.fontMetrics().height()

    def row_height(self) -> int:
        return self.tile + 2 * self._text_height() + 10

    def _column_x(self, column: int) -> int:
        """Left edge of column 0 (the sample) .. k (the k-th neighbour); a gap after the sample."""
        gap = 18 if column > 0 else 0
        return 8 + column * (self.tile + 8) + gap

    def sizeHint(self) -> QSize:
        width = self._column_x(self.k + 1) + 8 if self.k else 200
        return QSize(max(width, 200), max(self.row_height() * len(self._order), 40))

    def cell_at(self, x: int, y: int) -> tuple[int, int] | None:
        """(sample index, column) under a point; column 0 is the sample, j > 0 its j-th
        neighbour; None outside the tiles."""
        position = y // self.row_height()
        if not 0 <= position < len(self._order):
            return None
        for column in range(self.k + 1):
            left = self._column_x(column)
            if left <= x < left + self.tile:
                return self._order[position], column
        return None

    # -- painting --------------------------------------------------------------------------------
    def _image(self, kind: str, index: int) -> QImage | None:
        key = (kind, index)
        image = self._cache.get(key)
        if image is None:
            if kind == "sample":
                array = self._samples[index]
            else:
                row = self._rows.get(index)
                if row is None:
                    return None
                array = self._reference[row]
            image = self._cache[key] = to_qimage(array)
        return image

    def _draw_tile(self, painter: QPainter, image: QImage | None, rect: QRect) -> None:
        painter.fillRect(rect, QColor(0, 0, 0))
        if image is not None:
            scale = min(rect.width() / image.width(), rect.height() / image.height())
            target = QRectF(0, 0, image.width() * scale, image.height() * scale)
            target.moveCenter(QRectF(rect).center())
            painter.drawImage(target, image)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        palette = self.palette()
        painter.fillRect(event.rect(), palette.color(QPalette.ColorRole.Base))
        if not self._order:
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                             "No samples to show.")
            painter.end()
            return
        height, text = self.row_height(), self._text_height()
        first = max(0, event.rect().top() // height)
        last = min(len(self._order), event.rect().bottom() // height + 1)
        text_pen = palette.color(QPalette.ColorRole.Text)
        for position in range(first, last):
            sample = self._order[position]
            top = position * height
            flagged = sample in self._flagged
            if flagged:
                painter.fillRect(QRect(0, top, self.width(), height - 2), _FLAG_FILL)
            tile_top = top + text + 4
            for column in range(self.k + 1):
                rect = QRect(self._column_x(column), tile_top, self.tile, self.tile)
                if column == 0:
                    self._draw_tile(painter, self._image("sample", sample), rect)
                    label = self.name(sample)
                    caption = self._ratio_text(sample)
                else:
                    index = int(self._indices[sample, column - 1])
                    self._draw_tile(painter, self._image("reference", index), rect)
                    label = f"#{index}"
                    caption = f"d = {self._distances[sample, column - 1]:.3g}"
                painter.setPen(text_pen)
                painter.drawText(QRect(rect.left() - 4, top + 2, self.tile + 8, text),
                                 Qt.AlignmentFlag.AlignCenter, label)
                if flagged and column == 0:
                    painter.setPen(_FLAG_PEN)
                painter.drawText(QRect(rect.left() - 4, rect.bottom() + 2, self.tile + 8, text),
                                 Qt.AlignmentFlag.AlignCenter, caption)
            if flagged:
                painter.setPen(QPen(_FLAG_PEN, 2))
                sample_rect = QRect(self._column_x(0), tile_top, self.tile, self.tile)
                painter.drawRect(sample_rect.adjusted(-2, -2, 2, 2))
        painter.end()

    def name(self, sample: int) -> str:
        if self._names is not None and sample < len(self._names):
            return self._names[sample]
        return f"sample {sample}"

    def _ratio_text(self, sample: int) -> str:
        if self._ratios is None or sample >= len(self._ratios):
            return ""
        ratio = float(self._ratios[sample])
        return f"ratio {ratio:.2f}" + (" ⚑" if sample in self._flagged else "")

    def event(self, event: object) -> bool:
        if isinstance(event, QHelpEvent) and event.type() == QHelpEvent.Type.ToolTip:
            cell = self.cell_at(event.pos().x(), event.pos().y())
            if cell is None:
                QToolTip.hideText()
                return True
            QToolTip.showText(event.globalPos(), self.tooltip_for(*cell), self)
            return True
        return super().event(event)

    def tooltip_for(self, sample: int, column: int) -> str:
        """What the tile at (sample, column) is, in words."""
        if column == 0:
            text = f"generated {self.name(sample)}"
            if self._ratios is not None and sample < len(self._ratios):
                verdict = ("flagged: its nearest training image is much closer than its typical "
                           "neighbours (possible copy)") if sample in self._flagged else \
                    "not flagged"
                text += (f"; memorisation ratio {float(self._ratios[sample]):.3f} (pixel space,"
                         f" nearest / (0.5 x mean of the 50 nearest)): {verdict}")
            return text
        index = int(self._indices[sample, column - 1])
        distance = float(self._distances[sample, column - 1])
        return (f"training image #{index}: neighbour {column} of {self.name(sample)}, "
                f"{self.space} distance {distance:.4g}")
