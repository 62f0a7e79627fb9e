"""Images from the engine (numpy arrays in [-1, 1]) to QImage, and a widget that shows them.

numpy only: the workers turn tensors into numpy arrays before they cross to the main thread.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget

__all__ = ["ImageView", "grid_rgb8", "to_qimage", "to_rgb8"]


def to_rgb8(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) float in [-1, 1], C in {1, 3} -> (N, H, W, C) uint8 (clipped)."""
    array = np.asarray(images, dtype=np.float32)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1 or 3, H, W), got shape {array.shape}")
    scaled = np.clip((array + 1.0) * 127.5 + 0.5, 0.0, 255.0).astype(np.uint8)
    return np.ascontiguousarray(scaled.transpose(0, 2, 3, 1))


def grid_rgb8(images: np.ndarray, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> one (rows*(H+pad)+pad, cols*(W+pad)+pad, C) uint8 grid.

    ``columns`` defaults to ceil(sqrt(N)); padding is black.
    Copied in spirit from :func:`diffstudio.engine.gallery.make_grid`, which imports torch.
    """
    tiles = to_rgb8(images)
    count, height, width, channels = tiles.shape
    columns = max(1, min(columns or math.ceil(math.sqrt(count)), count))
    rows = math.ceil(count / columns)
    # Pad every tile on its top and left, lay the tiles out in one reshape (no Python loop:
    # this runs for every live frame), then close the bottom and right edges.
    cells = np.zeros((rows * columns, height + pad, width + pad, channels), np.uint8)
    cells[:count, pad:, pad:] = tiles
    grid = cells.reshape(rows, columns, height + pad, width + pad, channels)
    grid = grid.transpose(0, 2, 1, 3, 4).reshape(rows * (height + pad), columns * (width + pad),
                                                 channels)
    return np.pad(grid, ((0, pad), (0, pad), (0, 0)))


def to_qimage(array: np.ndarray) -> QImage:
    """(H, W), (H, W, 1) or (H, W, 3) uint8 -> a QImage that owns a copy of the pixels."""
    pixels = np.ascontiguousarray(array, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = np.ascontiguousarray(pixels[:, :, 0])
    height, width = pixels.shape[:2]
    if pixels.ndim == 2:
        image = QImage(pixels.data, width, height, pixels.strides[0],
                       QImage.Format.Format_Grayscale8)
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        image = QImage(pixels.data, width, height, pixels.strides[0], QImage.Format.Format_RGB888)
    else:
        raise ValueError(f"expected (H, W) or (H, W, 1|3) uint8, got shape {pixels.shape}")
    return image.copy()  # detach from the numpy buffer


class ImageView(QWidget):
    """Shows one image scaled to fit, keeping its aspect ratio; small images stay sharp
    (nearest-neighbour scaling). An optional caption is drawn under the image."""

    def __init__(self, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._caption = ""
        self._placeholder = placeholder
        self.setMinimumSize(64, 64)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_array(self, array: np.ndarray | None, caption: str = "") -> None:
        """Show a uint8 (H, W[, C]) array (see :func:`grid_rgb8`); None clears the view."""
        self.set_image(to_qimage(array) if array is not None else None, caption)

    def set_image(self, image: QImage | None, caption: str = "") -> None:
        self._image = image
        self._caption = caption
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def caption(self) -> str:
        return self._caption

    def sizeHint(self) -> QSize:
        return QSize(220, 220)

    def image_rect(self) -> QRectF:
        """Where the image is drawn in the widget (empty without an image)."""
        if self._image is None or self._image.isNull():
            return QRectF()
        text_height = self.fontMetrics().height() + 4 if self._caption else 0
        area = QRectF(self.rect()).adjusted(2, 2, -2, -2 - text_height)
        width, height = self._image.width(), self._image.height()
        scale = min(area.width() / width, area.height() / height)
        if scale >= 1.0:
            scale = math.floor(scale)  # whole pixels: every source pixel the same size
        target = QRectF(0, 0, width * scale, height * scale)
        target.moveCenter(area.center())
        return target

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().color(QPalette.ColorRole.Base))
        text_height = self.fontMetrics().height() + 4 if self._caption else 0
        area = QRectF(self.rect()).adjusted(2, 2, -2, -2 - text_height)
        if self._image is None or self._image.isNull():
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             self._placeholder)
        else:
            target = self.image_rect()
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform,
                                  target.width() < self._image.width())
            painter.drawImage(target, self._image)
        if self._caption:
            painter.setPen(self.palette().color(QPalette.ColorRole.Text))
            caption_area = QRectF(0, self.height() - text_height, self.width(), text_height)
            caption = self.fontMetrics().elidedText(self._caption, Qt.TextElideMode.ElideRight,
                                                    self.width() - 8)
            painter.drawText(caption_area, Qt.AlignmentFlag.AlignCenter, caption)
        painter.setPen(QColor(215, 215, 215))  # opaque: no blending on every repaint
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        painter.end()
