"""The Gallery page: every sample PNG of the workspace, as a virtualised grid of thumbnails.

The index (:class:`diffstudio.engine.sample_index.SampleIndex`) is rescanned in a job when the
page is first shown, on Rescan and when the workspace changes (the thumbnail cache pruned with
it); the date range is the index's query (read again in a job when it changes); the other
filters, sorting and grouping (a header row per run or sampler) then work on the records in
memory. Only the thumbnails the view paints are asked for, made (or read
from the on-disk cache) in a thread pool and turned into pixmaps on the window's thread; small
images are enlarged with nearest-neighbour, never smoothed. A result that belongs to an earlier
workspace (its generation number) is dropped, so nothing stale is shown.

The detail pane shows the selected sample at 1x and enlarged with every metadata field and,
when an evaluation retrieved them, its nearest training images (the Evaluate page's retrieval
grid; :mod:`diffstudio.engine.evaluation.sample_neighbours` finds the evaluation); it
stars, deletes to the system trash (the index follows), opens the folder, copies the
parameters, exports the selection (the application layer's export job) and recalls the sample
into the Sample page (:func:`diffstudio.app.recall.recall_request`). A PNG dropped onto the page
or opened from disk is shown and can be recalled the same way.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QDate,
    QDateTime,
    QEvent,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    QTime,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QIntValidator,
    QPainter,
    QPixmap,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from diffstudio.engine.sample_index import (
    SORT_KEYS,
    STATE_DIR,
    SampleFilter,
    SampleIndex,
    SampleRecord,
    group_records,
    period_bounds,
    read_record,
    sort_records,
)
from diffstudio.engine.thumbnails import ThumbnailCache
from diffstudio.errors import ConfigError, DiffstudioError
from diffstudio.gui.export_controls import ExportControls
from diffstudio.gui.panels import ask_question
from diffstudio.gui.retrieval_grid import RetrievalGrid
from diffstudio.gui.studio import Studio
from diffstudio.gui.workers import CallJob, JobWorker

__all__ = ["GalleryModel", "GalleryView", "GroupHeader", "ThumbnailDelegate"]

RECORD_ROLE = Qt.ItemDataRole.UserRole + 1
HEADER_ROLE = Qt.ItemDataRole.UserRole + 2
_PIXMAP_LIMIT = 3000  # pixmaps kept (128 px: about 200 MB at most); the rest are re-read
_ALL = "All"


def thumbnail_folder(workspace: Path) -> Path:
    """Where the workspace's thumbnails are cached."""
    return workspace / STATE_DIR / "thumbnails"


def _load(workspace: Path, where: SampleFilter, scan: bool
          ) -> tuple[Any, list[SampleRecord], int]:
    """(the scan's report or None, the records of the date range, how many the index holds):
    the index rescanned first when ``scan`` (and the thumbnail cache pruned to what it holds,
    within its size cap); the date range is the index query's."""
    index = SampleIndex(workspace)
    report = None
    if scan:
        report = index.scan()
        ThumbnailCache(thumbnail_folder(workspace)).prune(index.file_states())
    return report, index.records(where), index.count()


class _ThumbnailSignals(QObject):
    ready = Signal(str, object, int, QImage)  # path, mtime_ns (int64), generation, image
    failed = Signal(str, object, int, str)


class _ThumbnailTask(QRunnable):
    """Make (or read from the cache) one thumbnail and load it as a QImage, off the main
    thread (a QImage, unlike a QPixmap, may be made in any thread)."""

    def __init__(self, cache: ThumbnailCache, record: SampleRecord, generation: int,
                 signals: _ThumbnailSignals) -> None:
        super().__init__()
        self.cache, self.record, self.generation, self.signals = cache, record, generation, \
            signals

    def run(self) -> None:
        record = self.record
        try:
            file = self.cache.thumbnail(record.path, record.mtime_ns, record.size)
            image = QImage(str(file))
            if image.isNull():
                raise DiffstudioError(f"the thumbnail {file} is unreadable")
            self.signals.ready.emit(record.path, record.mtime_ns, self.generation, image)
        except Exception as exc:  # a vanished or broken file: shown as such, never raised
            self.signals.failed.emit(record.path, record.mtime_ns, self.generation, str(exc))


@dataclass(frozen=True)
class GroupHeader:
    """A row of the list that heads a group (a run or a sampler) and is no sample."""

    title: str
    count: int

    def text(self) -> str:
        return f"{self.title} · {self.count:,} sample{'s' if self.count != 1 else ''}"


class GalleryModel(QAbstractListModel):
    """The filtered, sorted records; thumbnails asked for when the view paints them. When
    grouped, each group starts with a :class:`GroupHeader` row (``entries``), which is neither
    selectable nor draggable; ``records`` are the samples alone, in the order shown."""

    def __init__(self, parent: QObject | None = None, threads: int = 2) -> None:
        super().__init__(parent)
        self.records: list[SampleRecord] = []
        self.entries: list[SampleRecord | GroupHeader] = []
        self.cache: ThumbnailCache | None = None
        self.generation = 0
        self.pixmaps: OrderedDict[tuple[str, int], QPixmap] = OrderedDict()
        self.pending: set[tuple[str, int]] = set()
        self.failed: dict[tuple[str, int], str] = {}
        self.rows: dict[str, int] = {}
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self.signals = _ThumbnailSignals(self)
        self.signals.ready.connect(self._on_ready)
        self.signals.failed.connect(self._on_failed)

    def set_cache(self, cache: ThumbnailCache) -> None:
        """A new workspace: forget every pixmap; late results of the old one are dropped."""
        self.generation += 1
        self.cache = cache
        self.pool.clear()
        self.pixmaps.clear()
        self.pending.clear()
        self.failed.clear()

    def set_records(self, records: list[SampleRecord],
                    groups: list[tuple[str, list[SampleRecord]]] | None = None) -> None:
        """Show ``records``; or, with ``groups`` ((title, records) pairs), each group under a
        header row."""
        self.beginResetModel()
        if groups is None:
            self.entries = list(records)
            self.records = list(records)
        else:
            self.entries, self.records = [], []
            for title, members in groups:
                self.entries.append(GroupHeader(title, len(members)))
                self.entries.extend(members)
                self.records.extend(members)
        self.rows = {entry.path: row for row, entry in enumerate(self.entries)
                     if isinstance(entry, SampleRecord)}
        self.endResetModel()

    def is_grouped(self) -> bool:
        return len(self.entries) != len(self.records)

    def record_at(self, row: int) -> SampleRecord | None:
        """The sample at ``row``; None for a group header (or no such row)."""
        entry = self.entries[row] if 0 <= row < len(self.entries) else None
        return entry if isinstance(entry, SampleRecord) else None

    def row_of(self, record: SampleRecord) -> int | None:
        return self.rows.get(record.path)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.entries)

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.entries):
            return None
        record = self.entries[index.row()]
        if isinstance(record, GroupHeader):
            if role == HEADER_ROLE:
                return record
            return record.text() if role in (Qt.ItemDataRole.DisplayRole,
                                             Qt.ItemDataRole.AccessibleTextRole) else None
        if role == RECORD_ROLE:
            return record
        if role == Qt.ItemDataRole.DisplayRole:
            return record.caption()
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{record.path}\n{record.caption()}"
        if role == Qt.ItemDataRole.DecorationRole:
            return self.pixmap(record)
        return None

    def pixmap(self, record: SampleRecord) -> QPixmap | None:
        """The thumbnail if made; else asks for it (once) and returns None for now."""
        key = (record.path, record.mtime_ns)
        found = self.pixmaps.get(key)
        if found is not None:
            self.pixmaps.move_to_end(key)
            return found
        if key not in self.pending and key not in self.failed and self.cache is not None:
            self.pending.add(key)
            self.pool.start(_ThumbnailTask(self.cache, record, self.generation, self.signals))
        return None

    def _on_ready(self, path: str, mtime_ns: int, generation: int, image: QImage) -> None:
        if generation != self.generation:
            return
        key = (path, mtime_ns)
        self.pending.discard(key)
        self.pixmaps[key] = QPixmap.fromImage(image)
        while len(self.pixmaps) > _PIXMAP_LIMIT:
            self.pixmaps.popitem(last=False)
        self._changed(path)

    def _on_failed(self, path: str, mtime_ns: int, generation: int, message: str) -> None:
        if generation != self.generation:
            return
        self.pending.discard((path, mtime_ns))
        self.failed[(path, mtime_ns)] = message
        self._changed(path)

    def _changed(self, path: str) -> None:
        row = self.rows.get(path)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    def refresh_record(self, record: SampleRecord) -> None:
        self._changed(record.path)

    # -- dragging images out as files ---------------------------------------------------------
    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        if not index.isValid():
            return base
        if self.record_at(index.row()) is None:  # a group header
            return Qt.ItemFlag.ItemIsEnabled
        return base | Qt.ItemFlag.ItemIsDragEnabled

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list"]

    def mimeData(self, indexes: Any) -> QMimeData:
        data = QMimeData()
        chosen = [self.record_at(i.row()) for i in indexes if i.isValid()]
        data.setUrls([QUrl.fromLocalFile(record.path) for record in chosen
                      if record is not None])
        return data

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction

    def wait(self) -> None:
        """Let the thumbnail threads finish (closing the window, tests)."""
        self.pool.clear()
        self.pool.waitForDone()


class ThumbnailDelegate(QStyledItemDelegate):
    """A cell: the thumbnail, enlarged by whole factors without smoothing, a caption, a star."""

    def __init__(self, cell: int = 128, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.cell = cell
        self.view: QListView | None = None  # set by the page: a header spans its width

    def sizeHint(self, option: QStyleOptionViewItem,
                 index: QModelIndex | QPersistentModelIndex) -> QSize:
        if index.data(HEADER_ROLE) is not None:
            return self.header_size(option)
        return QSize(self.cell + 12, self.cell + 40)

    def header_size(self, option: QStyleOptionViewItem) -> QSize:
        """Nearly the list's width, so that the header has a line of its own: no cell fits
        beside it (yet never wider than the viewport: no horizontal scroll bar)."""
        width = self.cell + 12
        if self.view is not None:
            width = max(width, self.view.viewport().width() - 2 * self.view.spacing() - 4)
        return QSize(width, option.fontMetrics.height() + 14)  # type: ignore[attr-defined]

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        header: GroupHeader | None = index.data(HEADER_ROLE)
        if header is not None:
            self.paint_header(painter, option, header)
            return
        record: SampleRecord | None = index.data(RECORD_ROLE)
        if record is None:
            return
        painter.save()
        rect: QRect = option.rect  # type: ignore[attr-defined]
        palette = option.palette  # type: ignore[attr-defined]
        if option.state & QStyle.StateFlag.State_Selected:  # type: ignore[attr-defined]
            painter.fillRect(rect.adjusted(1, 1, -1, -1), palette.highlight())
        pixmap: QPixmap | None = index.data(Qt.ItemDataRole.DecorationRole)
        area = QRect(rect.x() + 6, rect.y() + 4, self.cell, self.cell)
        if pixmap is not None and not pixmap.isNull():
            longest = max(pixmap.width(), pixmap.height(), 1)
            factor = self.cell / longest
            if factor >= 1:
                factor = float(max(1, int(factor)))  # whole factors: square pixels
            width, height = round(pixmap.width() * factor), round(pixmap.height() * factor)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, factor < 1)
            painter.drawPixmap(QRect(area.x() + (self.cell - width) // 2,
                                     area.y() + (self.cell - height) // 2, width, height),
                               pixmap)
        else:
            painter.fillRect(area, QColor(60, 60, 60))
        painter.setPen(palette.highlightedText().color()
                       if option.state & QStyle.StateFlag.State_Selected  # type: ignore[attr-defined]
                       else palette.text().color())
        metrics = option.fontMetrics  # type: ignore[attr-defined]
        first, _, second = record.caption().partition(" · ")  # sampler / steps, seed...
        for line, text in enumerate((first, second)):
            text_rect = QRect(rect.x() + 4, area.bottom() + 3 + line * (metrics.height() + 1),
                              rect.width() - 8, metrics.height())
            painter.drawText(text_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             metrics.elidedText(text, Qt.TextElideMode.ElideRight,
                                                text_rect.width()))
        if record.starred:
            painter.setPen(QColor(255, 200, 40))
            painter.drawText(QRect(area.right() - 18, area.y(), 18, 18),
                             Qt.AlignmentFlag.AlignCenter, "★")
        painter.restore()

    def paint_header(self, painter: QPainter, option: QStyleOptionViewItem,
                     header: GroupHeader) -> None:
        """A group's header: its name and count in bold over a rule."""
        painter.save()
        rect: QRect = option.rect  # type: ignore[attr-defined]
        palette = option.palette  # type: ignore[attr-defined]
        font = option.font  # type: ignore[attr-defined]
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(palette.text().color())
        text_rect = rect.adjusted(6, 2, -6, -4)
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         painter.fontMetrics().elidedText(header.text(),
                                                          Qt.TextElideMode.ElideMiddle,
                                                          text_rect.width()))
        painter.setPen(palette.mid().color())
        painter.drawLine(rect.left() + 4, rect.bottom() - 1, rect.right() - 4, rect.bottom() - 1)
        painter.restore()


class GalleryView(QWidget):
    """See the module docstring. ``recall_requested(Recall)`` asks the window to load a sample
    into the Sample page. ``ask(title, text) -> bool`` and ``trash(path)`` replace the question
    before deleting or overwriting and the system trash (tests)."""

    recall_requested = Signal(object)  # diffstudio.app.recall.Recall
    scanned = Signal(object)  # ScanReport

    def __init__(self, studio: Studio, parent: QWidget | None = None, *,
                 ask: Callable[[str, str], bool] | None = None,
                 trash: Callable[[str], None] | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.ask = ask or (lambda title, text: ask_question(self, title, text))
        self.trash = trash
        self.all_records: list[SampleRecord] = []
        self.loose: SampleRecord | None = None  # a PNG dropped or opened from outside
        self.scan_job: CallJob | None = None
        self._pending: bool | None = None  # after this job: True rescan, False query again
        self._query_where: SampleFilter | None = None
        self.total = 0  # samples in the index, whatever the date
        self._shown_once = False
        self.index = SampleIndex(studio.workspace)

        self.summary = QLabel("")
        self.summary.setWordWrap(True)  # a long summary must not widen the window
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.rescan_button = QPushButton("Rescan")
        self.open_button = QPushButton("Open PNG…")
        self.open_button.setToolTip("Show a PNG from anywhere and recall its parameters (or "
                                    "drop one onto this page)")
        self.run_combo, self.sampler_combo, self.steps_combo, self.class_combo = (
            QComboBox(), QComboBox(), QComboBox(), QComboBox())
        self.guidance_combo = QComboBox()
        for combo, name in ((self.run_combo, "galleryRun"), (self.sampler_combo,
                            "gallerySampler"), (self.steps_combo, "gallerySteps"),
                            (self.class_combo, "galleryClass"),
                            (self.guidance_combo, "galleryGuidance")):
            combo.setObjectName(name)
            combo.setMinimumContentsLength(6)
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_combo.setMinimumContentsLength(10)
        self.seed_edit = QLineEdit()
        self.seed_edit.setPlaceholderText("any")
        self.seed_edit.setValidator(QIntValidator(0, 2**31 - 1, self))
        self.seed_edit.setMinimumWidth(70)
        self.seed_edit.setMaximumWidth(90)
        self.starred_box = QCheckBox("Starred only")
        self.sort_combo = QComboBox()
        for key in SORT_KEYS:
            self.sort_combo.addItem(key.replace("_", " "), key)
        self.descending_box = QCheckBox("Descending")
        self.descending_box.setChecked(True)
        self.group_combo = QComboBox()
        self.group_combo.setObjectName("galleryGroup")
        for label, key in (("None", None), ("Run", "run"), ("Sampler", "sampler")):
            self.group_combo.addItem(label, key)
        self.group_combo.setToolTip("A header row per run or per sampler, each group sorted "
                                    "as chosen")
        # The date range is the index's query (rows outside it are not even read).
        self.date_combo = QComboBox()
        self.date_combo.setObjectName("galleryDate")
        for label, key in (("Any date", "all"), ("Today", "today"), ("Last 7 days", "7d"),
                           ("Last 30 days", "30d"), ("From – to", "range")):
            self.date_combo.addItem(label, key)
        today = QDate.currentDate()
        self.from_edit, self.to_edit = QDateEdit(today.addDays(-30)), QDateEdit(today)
        for edit, name, tip in ((self.from_edit, "galleryFrom", "from this day"),
                                (self.to_edit, "galleryTo", "to this day, included")):
            edit.setObjectName(name)
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setToolTip(f"With 'From – to': samples made {tip}")
            edit.setEnabled(False)
        self.to_edit.setMinimumDate(self.from_edit.date())
        # Two rows, and combos sized by a few characters rather than their longest entry (a
        # long run name): the page fits a 1024-pixel-wide window.
        for combo in (self.run_combo, self.sampler_combo, self.steps_combo, self.class_combo,
                      self.guidance_combo, self.sort_combo, self.group_combo, self.date_combo):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        for combo in (self.steps_combo, self.class_combo, self.guidance_combo):
            combo.setMinimumContentsLength(5)
        # Three rows: what (run ... guidance), which (seed, date, star), in what order.
        first, second, third = QHBoxLayout(), QHBoxLayout(), QHBoxLayout()
        for row, pairs in ((first, (("Run", self.run_combo), ("Sampler", self.sampler_combo),
                                    ("Steps", self.steps_combo), ("Class", self.class_combo),
                                    ("Guidance", self.guidance_combo))),
                           (second, (("Seed", self.seed_edit), ("Date", self.date_combo))),
                           (third, (("Sort by", self.sort_combo),))):
            for label, widget in pairs:
                row.addWidget(QLabel(label))
                row.addWidget(widget, 1)
        second.addWidget(self.from_edit)
        second.addWidget(QLabel("to"))
        second.addWidget(self.to_edit)
        second.addSpacing(12)
        second.addWidget(self.starred_box)
        second.addStretch(1)
        third.addWidget(self.descending_box)
        third.addSpacing(12)
        third.addWidget(QLabel("Group by"))
        third.addWidget(self.group_combo, 1)
        third.addStretch(2)
        filters = QVBoxLayout()
        filters.setSpacing(2)
        for row in (first, second, third):
            filters.addLayout(row)

        self.model = GalleryModel(self)
        self.delegate = ThumbnailDelegate(128, self)
        self.list = QListView()
        self.list.setObjectName("galleryList")
        self.list.setModel(self.model)
        self.list.setItemDelegate(self.delegate)
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setUniformItemSizes(True)  # layout in O(1) per item: 10,000 stay smooth
        self.delegate.view = self.list  # (not while grouped: a header is a wide row)
        self.list.setLayoutMode(QListView.LayoutMode.Batched)
        self.list.setBatchSize(500)
        self.list.setSpacing(2)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setDragEnabled(True)
        self.list.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)

        # -- detail pane ----------------------------------------------------------------------
        self.image_1x = QLabel()
        self.image_1x.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image_big = QLabel()
        self.image_big.setObjectName("galleryEnlarged")
        self.image_big.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # Sized by the pane, not by its pixmap (a large image must not widen or heighten the
        # window); the pixmap is fitted to it on every resize.
        self.image_big.setMinimumSize(128, 128)
        self.image_big.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.image_big.installEventFilter(self)
        self._big_source: QPixmap | None = None
        self.detail_title = QLabel("Select a sample.")
        self.detail_title.setWordWrap(True)
        self.detail_title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail_title.setTextFormat(Qt.TextFormat.PlainText)
        self.metadata = QTableWidget(0, 2)
        self.metadata.setObjectName("galleryMetadata")
        self.metadata.setHorizontalHeaderLabels(("Field", "Value"))
        self.metadata.verticalHeader().setVisible(False)
        self.metadata.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.metadata.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # The nearest training images, when an evaluation retrieved them for this sample.
        self.neighbours_grid = RetrievalGrid(tile=48)
        self.neighbours_grid.setObjectName("galleryNeighbours")
        self.neighbours_note = QLabel("")
        self.neighbours_note.setObjectName("galleryNeighboursNote")
        self.neighbours_note.setWordWrap(True)
        self.neighbours_note.setSizePolicy(QSizePolicy.Policy.Ignored,
                                           QSizePolicy.Policy.Preferred)
        self.neighbours_note.setTextFormat(Qt.TextFormat.PlainText)
        neighbours_scroll = QScrollArea()
        neighbours_scroll.setWidget(self.neighbours_grid)
        neighbours_scroll.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        neighbours_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        neighbours = QWidget()
        neighbours_layout = QVBoxLayout(neighbours)
        neighbours_layout.setContentsMargins(4, 4, 4, 4)
        neighbours_layout.addWidget(self.neighbours_note)
        neighbours_layout.addWidget(neighbours_scroll, 1)
        self.neighbours_scroll = neighbours_scroll
        self.detail_tabs = QTabWidget()
        self.detail_tabs.addTab(self.metadata, "Metadata")
        self.detail_tabs.addTab(neighbours, "Nearest training images")
        self.neighbours_job: CallJob | None = None
        self._neighbours_wanted: SampleRecord | None = None
        self.star_button = QPushButton("Star")
        self.recall_button = QPushButton("Recall in Sample")
        self.recall_button.setToolTip("Load its run, checkpoint, sampler, parameters, seed, "
                                      "class and guidance into the Sample page")
        self.copy_button = QPushButton("Copy parameters")
        self.folder_button = QPushButton("Open folder")
        self.delete_button = QPushButton("Delete to trash")
        self.exporter = ExportControls(studio, "Gallery", lambda title, text: self.ask(title,
                                                                                      text))
        self.exporter.export_button.setToolTip("Export the selection, or everything shown "
                                               "when nothing is selected")
        self.format_combo = self.exporter.format_combo
        self.captions_box = self.exporter.captions_box
        self.export_button = self.exporter.export_button
        images = QHBoxLayout()
        images.addWidget(self.image_1x)
        images.addWidget(self.image_big, 1)
        row1 = QHBoxLayout()
        for button in (self.star_button, self.recall_button, self.copy_button):
            row1.addWidget(button)
        row2 = QHBoxLayout()
        for button in (self.folder_button, self.delete_button):
            row2.addWidget(button)
        row2.addStretch(1)
        detail = QWidget()
        detail_layout = QVBoxLayout(detail)
        detail_layout.setContentsMargins(6, 0, 0, 0)
        detail_layout.addLayout(images, 2)
        detail_layout.addWidget(self.detail_title)
        detail_layout.addWidget(self.detail_tabs, 3)
        detail_layout.addLayout(row1)
        detail_layout.addLayout(row2)
        detail_layout.addWidget(self.exporter)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.list)
        splitter.addWidget(detail)
        splitter.setStretchFactor(0, 1)
        splitter.setSizes([820, 420])
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.open_button)
        top.addWidget(self.rescan_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(filters)
        layout.addWidget(splitter, 1)
        self.setAcceptDrops(True)

        self.rescan_button.clicked.connect(self.refresh)
        self.open_button.clicked.connect(self._open_png)
        for combo in (self.run_combo, self.sampler_combo, self.steps_combo, self.class_combo,
                      self.guidance_combo, self.sort_combo):
            combo.currentIndexChanged.connect(self.apply_filter)
        self.seed_edit.textChanged.connect(self.apply_filter)
        self.group_combo.currentIndexChanged.connect(self.apply_filter)
        self.date_combo.currentIndexChanged.connect(self._on_date_changed)
        self.from_edit.dateChanged.connect(self._on_range_edited)
        self.to_edit.dateChanged.connect(self._on_range_edited)
        self.starred_box.toggled.connect(self.apply_filter)
        self.descending_box.toggled.connect(self.apply_filter)
        self.list.selectionModel().selectionChanged.connect(self._on_selection)
        self.list.doubleClicked.connect(lambda _: self.recall_selected())
        self.star_button.clicked.connect(self.toggle_star)
        self.recall_button.clicked.connect(self.recall_selected)
        self.copy_button.clicked.connect(self.copy_parameters)
        self.folder_button.clicked.connect(self._open_folder)
        self.delete_button.clicked.connect(self.delete_selected)
        self.export_button.clicked.connect(lambda: self.export_selected())
        self.exporter.finished.connect(self._on_selection)
        studio.workspace_changed.connect(lambda _: self._on_workspace())
        studio.jobs_changed.connect(self._rescan_after_saving)
        self._saving = False
        self._on_workspace(scan=False)
        self._on_selection()

    # -- workspace and scanning ---------------------------------------------------------------
    def _on_workspace(self, scan: bool = True) -> None:
        workspace = self.studio.workspace
        self.index = SampleIndex(workspace)
        self.model.set_cache(ThumbnailCache(thumbnail_folder(workspace)))
        self.all_records = []
        self.total = 0
        self.loose = None
        self.model.set_records([])
        self.summary.setText(f"Samples in <b>{workspace}</b>")
        if scan:
            self.refresh()

    def _rescan_after_saving(self) -> None:
        """Samples saved from the Sample page join the index once their job ends."""
        saving = any(role in self.studio.jobs for role in ("save", "sample"))
        finished = self._saving and not saving
        self._saving = saving
        if finished and self._shown_once:
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            QTimer.singleShot(0, self.refresh)

    def refresh(self, scan: bool = True) -> None:
        """Rescan the workspace in the background (again, if a scan is under way) and read
        the samples of the date range from the index; ``scan`` False only reads them."""
        if self.studio.closing:
            return
        if self.scan_job is not None:  # running, or its end not handled yet
            self._pending = scan or bool(self._pending)
            return
        workspace = self.studio.workspace
        where = self.date_filter()
        self._query_where = where
        job = CallJob("scan-gallery", _load, workspace, where, scan)
        job.succeeded.connect(lambda result, folder=workspace, query=where:
                              self._on_scanned(folder, query, result))
        job.failed.connect(lambda message, details: self.studio.notifications.error(
            f"Could not index the samples in {workspace}: {message}", details,
            source="Gallery"))
        job.finished.connect(lambda finished=job: self._on_scan_finished(finished))
        job.cpu_threads = 0  # no torch here: do not import it to set its threads
        self.scan_job = job
        if scan:
            self.summary.setText(f"Indexing the samples in <b>{workspace}</b>…")
        self.studio.add_job("gallery-scan", job)
        job.start()

    def _on_scan_finished(self, job: CallJob) -> None:
        if job is not self.scan_job:
            return
        self.scan_job = None
        if self._pending is not None:
            scan, self._pending = self._pending, None
            self.refresh(scan)

    def _on_scanned(self, workspace: Path, where: SampleFilter,
                    result: tuple[Any, list[SampleRecord], int]) -> None:
        if workspace != self.studio.workspace or where is not self._query_where:
            return  # the workspace or the date range changed meanwhile: stale
        report, records, self.total = result
        self.set_records(records)
        if report is not None:
            self.scanned.emit(report)

    # -- the date range -------------------------------------------------------------------------
    def date_filter(self) -> SampleFilter:
        """The date range chosen, as the index query's filter (the other filters apply to
        the records in memory)."""
        period = self.date_combo.currentData() or "all"
        if period != "range":
            since, until = period_bounds(period)
            return SampleFilter(since=since, until=until)
        first, last = self.from_edit.date(), self.to_edit.date().addDays(1)  # last day included
        return SampleFilter(since=float(QDateTime(first, QTime(0, 0)).toSecsSinceEpoch()),
                            until=float(QDateTime(last, QTime(0, 0)).toSecsSinceEpoch()))

    def _on_date_changed(self, *_: Any) -> None:
        ranged = self.date_combo.currentData() == "range"
        self.from_edit.setEnabled(ranged)
        self.to_edit.setEnabled(ranged)
        self.refresh(scan=False)

    def _on_range_edited(self, *_: Any) -> None:
        self.to_edit.setMinimumDate(self.from_edit.date())  # never an empty, inverted range
        if self.date_combo.currentData() == "range":
            self.refresh(scan=False)

    def set_records(self, records: list[SampleRecord]) -> None:
        self.all_records = records
        self._fill_choices()
        self.apply_filter()

    def _fill_choices(self) -> None:
        choices = {
            self.run_combo: sorted({r.run for r in self.all_records if r.run}),
            self.sampler_combo: sorted({r.sampler for r in self.all_records if r.sampler}),
            self.steps_combo: sorted({r.steps for r in self.all_records if r.steps is not None}),
            self.class_combo: sorted({r.class_label for r in self.all_records
                                      if r.class_label is not None}),
            self.guidance_combo: sorted({r.guidance for r in self.all_records
                                         if r.guidance is not None}),
        }
        for combo, values in choices.items():
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(_ALL, None)
            for value in values:
                combo.addItem(f"{value:g}" if isinstance(value, float) else str(value), value)
            found = combo.findData(current) if current is not None else 0
            combo.setCurrentIndex(max(0, found))
            combo.blockSignals(False)

    # -- filtering ----------------------------------------------------------------------------
    def current_filter(self) -> SampleFilter:
        seed = self.seed_edit.text().strip()
        return SampleFilter(
            run=self.run_combo.currentData(), sampler=self.sampler_combo.currentData(),
            steps=self.steps_combo.currentData(), class_label=self.class_combo.currentData(),
            guidance=self.guidance_combo.currentData(),
            seed=int(seed) if seed else None,
            starred=True if self.starred_box.isChecked() else None)

    def apply_filter(self, *_: Any) -> None:
        where = self.current_filter()
        shown = [record for record in self.all_records if where.matches(record)]
        shown = sort_records(shown, self.sort_combo.currentData() or "date",
                             descending=self.descending_box.isChecked())
        selected = {record.path for record in self.selected()}
        by = self.group_combo.currentData()
        # A header spans the list's width: item sizes differ while grouped (QListView then
        # asks every item its size; without groups one size does for all, O(1) per item).
        self.list.setUniformItemSizes(by is None)
        self.model.set_records(shown, group_records(shown, by) if by else None)
        for record in shown:
            if record.path in selected:
                self.list.selectionModel().select(
                    self.model.index(self.model.rows[record.path]),
                    self.list.selectionModel().SelectionFlag.Select)
        self._update_summary()
        self._on_selection()

    def _update_summary(self) -> None:
        stars = sum(1 for record in self.all_records if record.starred)
        period = self.date_combo.currentData()
        when = {"today": "made today", "7d": "in the last 7 days", "30d": "in the last 30 days",
                "range": f"from {self.from_edit.date().toString('yyyy-MM-dd')} to "
                         f"{self.to_edit.date().toString('yyyy-MM-dd')}"}.get(period, "")
        dated = f" ({len(self.all_records):,} {when})" if when else ""
        self.summary.setText(f"<b>{len(self.model.records):,}</b> of {self.total:,} samples"
                             f"{dated} in <b>{self.studio.workspace}</b> · {stars} starred")

    # -- selection and the detail pane --------------------------------------------------------
    def selected(self) -> list[SampleRecord]:
        rows = sorted(index.row() for index in self.list.selectionModel().selectedIndexes())
        return [record for record in map(self.model.record_at, rows) if record is not None]

    def current(self) -> SampleRecord | None:
        chosen = self.selected()
        return chosen[0] if chosen else self.loose

    def _on_selection(self, *_: Any) -> None:
        if self.selected():
            self.loose = None
        record = self.current()
        indexed = bool(self.selected())
        for button in (self.star_button, self.delete_button):
            button.setEnabled(indexed)
        for button in (self.recall_button, self.copy_button):
            button.setEnabled(record is not None and record.has_metadata)
        self.folder_button.setEnabled(record is not None)
        self.exporter.set_available(bool(self.model.records))
        self.star_button.setText("Unstar" if record is not None and record.starred else "Star")
        self.show_record(record)

    def show_record(self, record: SampleRecord | None) -> None:
        """The sample at 1x and enlarged (nearest), with every metadata field."""
        self.metadata.setRowCount(0)
        if record is None:
            self.look_up_neighbours(None)
            self.image_1x.clear()
            self.image_big.clear()
            self._big_source = None
            self.detail_title.setText("Select a sample." if self.all_records else
                                      "No samples yet: sample a run on the Sample page.")
            return
        image = QImage(record.path)
        if image.isNull():
            self.image_1x.setText("unreadable")
            self.image_big.clear()
            self._big_source = None
        else:
            pixmap = QPixmap.fromImage(image)
            self.image_1x.setPixmap(pixmap if max(image.width(), image.height()) <= 128 else
                                    pixmap.scaled(128, 128, Qt.AspectRatioMode.KeepAspectRatio,
                                                  Qt.TransformationMode.SmoothTransformation))
            self._big_source = pixmap
            self._fit_enlarged()
        self.detail_title.setText(f"{record.name}\n{record.caption()}")
        self.look_up_neighbours(record)
        rows = [("path", record.path), ("size", f"{record.width} x {record.height}")]
        if not record.has_metadata:
            rows.append(("parameters", "unknown parameters"))
        for key, value in sorted(record.meta.items()):
            rows.append((key, value if isinstance(value, str)
                         else json.dumps(value, sort_keys=True, default=str)))
        self.metadata.setRowCount(len(rows))
        for row, (key, value) in enumerate(rows):
            self.metadata.setItem(row, 0, QTableWidgetItem(key))
            self.metadata.setItem(row, 1, QTableWidgetItem(value))
        self.metadata.resizeColumnToContents(0)

    def _fit_enlarged(self) -> None:
        """The enlarged image fitted to its box: small images by the largest whole factor
        with nearest-neighbour (sharp pixels), large ones reduced smoothly."""
        source = self._big_source
        if source is None or source.isNull():
            return
        box = max(64, min(self.image_big.width(), self.image_big.height()))
        longest = max(source.width(), source.height(), 1)
        if longest <= box:
            factor = box // longest
            fitted = source.scaled(source.width() * factor, source.height() * factor,
                                   Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.FastTransformation)
        else:
            fitted = source.scaled(box, box, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)
        self.image_big.setPixmap(fitted)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.image_big and event.type() == QEvent.Type.Resize:
            self._fit_enlarged()
        return super().eventFilter(watched, event)

    # -- the nearest training images -------------------------------------------------------------
    _NO_EVALUATION = ("No evaluation has retrieved this sample's nearest training images. To "
                      "see them here, evaluate its samples folder on the Evaluate page with "
                      "'Nearest training images' and the 'Memorisation check' ticked (or its "
                      "run, with the same sampler, parameters and seeds).")

    def look_up_neighbours(self, record: SampleRecord | None) -> None:
        """Find, in a job, an evaluation that retrieved ``record``'s nearest training images
        and show them (:mod:`diffstudio.engine.evaluation.sample_neighbours`); otherwise say
        how to compute them. One lookup at a time: the newest selection is looked up next."""
        self.neighbours_grid.clear()
        if record is None:
            self._neighbours_wanted = None
            self.neighbours_note.setText("")
            return
        if self.studio.closing:
            return  # no new job while the window closes
        if not self.studio.ready or self.studio.registry is None:
            self.neighbours_note.setText("The nearest training images are looked up once the "
                                         "engine has loaded: select the sample again then.")
            return
        if self.neighbours_job is not None:
            self._neighbours_wanted = record
            self.neighbours_note.setText("Looking for an evaluation of this sample…")
            return
        from diffstudio.engine.evaluation.sample_neighbours import load_sample_neighbours

        self._neighbours_wanted = None
        job = CallJob("gallery-neighbours", load_sample_neighbours, record,
                      self.studio.registry)
        job.succeeded.connect(lambda found, asked=record: self._on_neighbours(asked, found))
        job.failed.connect(lambda message, details, asked=record: self._on_neighbours(
            asked, None, message))
        job.finished.connect(self._on_neighbours_finished)
        self.neighbours_job = job
        self.neighbours_note.setText("Looking for an evaluation of this sample…")
        self.studio.add_job("gallery-neighbours", job)
        job.start()

    def _is_shown(self, record: SampleRecord) -> bool:
        current = self.current()
        return current is not None and (current.path, current.mtime_ns) == (record.path,
                                                                           record.mtime_ns)

    def _on_neighbours(self, record: SampleRecord, found: Any, problem: str = "") -> None:
        if self._neighbours_wanted is not None or not self._is_shown(record):
            return  # another sample is selected now: its own lookup follows
        if problem:
            self.neighbours_note.setText(f"The nearest training images could not be shown: "
                                         f"{problem}")
            return
        if found is None:
            self.neighbours_note.setText(self._NO_EVALUATION)
            return
        k = len(found.indices)
        flagged = [0] if found.flagged else []
        ratios = None if found.ratio is None else np.asarray([found.ratio])
        self.neighbours_grid.set_data(
            found.sample[None], found.images, {int(i): row for row, i in
                                               enumerate(found.indices)},
            found.indices[None], found.distances[None], space=found.space, flagged=flagged,
            ratios=ratios, names=["sample"])
        space = {"inception": "Inception features", "pixel": "pixels"}.get(found.space,
                                                                            found.space)
        verdict = ""
        if found.ratio is not None:
            verdict = (" Flagged by the memorisation check: possibly a copy of a training "
                       "image." if found.flagged else " Not flagged by the memorisation "
                       "check.")
        self.neighbours_note.setText(
            f"Its {k} nearest training images by distance between {space}, from "
            f"{found.evaluation.name} ({found.how}).{verdict}")

    def _on_neighbours_finished(self) -> None:
        self.neighbours_job = None
        wanted, self._neighbours_wanted = self._neighbours_wanted, None
        if wanted is not None and self._is_shown(wanted):
            self.look_up_neighbours(wanted)

    # -- actions ------------------------------------------------------------------------------
    def toggle_star(self) -> None:
        chosen = self.selected()
        if not chosen:
            return
        starred = not all(record.starred for record in chosen)
        self.index.set_starred([record.path for record in chosen], starred)
        for record in chosen:
            record.starred = starred
            self.model.refresh_record(record)
        if self.starred_box.isChecked() and not starred:
            self.apply_filter()
        else:
            self._update_summary()
            self._on_selection()

    def recall_selected(self) -> bool:
        """Ask the window to load the current sample into the Sample page, once a job has
        checked that its run, checkpoint and network are still the ones that made it (hashing
        the weights is no work for the window's thread)."""
        from diffstudio.app.recall import recall_problems, recall_request

        record = self.current()
        if record is None:
            return False
        try:
            recall = recall_request(record.meta if record.meta else record.path)
        except ConfigError as exc:
            self.studio.notifications.warning(f"Cannot recall {record.name}: {exc}",
                                              source="Gallery")
            return False

        def checked(problems: list[str]) -> None:
            for problem in problems:
                self.studio.notifications.warning(f"Recall: {problem}", source="Gallery")
            self.recall_requested.emit(recall)

        job = CallJob("recall-check", recall_problems, recall.metadata)
        job.cpu_threads = 0
        job.succeeded.connect(checked)
        job.failed.connect(lambda message, details: checked([message]))
        self.studio.add_job("recall-check", job)
        job.start()
        return True

    def copy_parameters(self) -> None:
        record = self.current()
        if record is not None and record.has_metadata:
            QGuiApplication.clipboard().setText(json.dumps(record.meta, indent=2,
                                                           sort_keys=True, default=str))

    def _open_folder(self) -> None:
        record = self.current()
        if record is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(record.path).parent)))

    def delete_selected(self) -> int:
        """Send the selected files to the system trash (after asking); the index follows."""
        chosen = self.selected()
        if not chosen or not self.ask(
                "Delete samples", f"Move {len(chosen)} sample PNG(s) to the trash?"):
            return 0
        trash = self.trash
        if trash is None:
            from send2trash import send2trash as trash
        removed, errors = [], []
        for record in chosen:
            try:
                trash(record.path)
                removed.append(record.path)
            except Exception as exc:  # send2trash raises OSError subclasses and its own
                errors.append(f"{record.path}: {exc}")
        self.index.forget(removed)
        self.total -= len(removed)
        gone = set(removed)
        self.all_records = [record for record in self.all_records if record.path not in gone]
        self.list.clearSelection()
        self.apply_filter()
        if errors:
            self.studio.notifications.error(
                f"{len(errors)} sample(s) could not be moved to the trash", "\n".join(errors),
                source="Gallery")
        return len(removed)

    @property
    def export_job(self) -> JobWorker | None:
        return self.exporter.job

    def export_selected(self, folder: str | None = None) -> bool:
        """Export the selection (or every sample shown) in the chosen format as a job."""
        return self.exporter.start(self.selected() or list(self.model.records), folder)

    # -- PNGs from outside ----------------------------------------------------------------------
    def show_file(self, path: str) -> SampleRecord | None:
        """Show a PNG from anywhere (dropped or opened) in the detail pane, ready to recall."""
        record = read_record(path) if Path(path).is_file() else None
        if record is None:
            self.studio.notifications.warning(f"{path} is not a readable PNG", source="Gallery")
            return None
        self.list.clearSelection()
        self.loose = record
        self._on_selection()
        return record

    def _open_png(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a sample PNG",
                                              str(self.studio.workspace), "PNG images (*.png)")
        if path:
            self.show_file(path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls()
        if urls and all(u.isLocalFile() and u.toLocalFile().lower().endswith(".png")
                        for u in urls) and event.source() is not self.list:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = event.mimeData().urls()
        if urls:
            self.show_file(urls[0].toLocalFile())
            event.acceptProposedAction()
