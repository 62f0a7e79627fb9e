"""The Evaluate page's "Comparison" tab: DDPM/DDIM x schedule x steps tables (as in
Song et al.'s DDIM paper, arXiv 2010.02502, Tables 1-2) for the user's own runs.

Every evaluation result of the workspace's runs (``RUN/evaluations/*.json``,
``RUN/samples/*/evaluation-*.json``) and of this session, one row each: model, schedule, sampler,
steps, network evaluations, FID@N, KID, training time and sampling time per 100 samples; a plot
of FID (or KID) against network evaluations, one line per run and sampler; export as CSV or
Markdown. Results are read in the background.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from diffstudio.gui.eval_jobs import load_comparison
from diffstudio.gui.plots import SERIES_COLOURS, PlainLogAxis, major_grid
from diffstudio.gui.studio import Studio
from diffstudio.gui.workers import CallJob

__all__ = ["COLUMNS", "ComparisonPanel"]

COLUMNS = ("Run", "Model", "Schedule", "Sampler", "Steps", "NFE", "FID@N", "KID ± std",
           "Training", "Sampling / 100")
_COLUMN_TIPS = {
    "NFE": "network evaluations per sample",
    "FID@N": "FID with the number of samples N it was computed from; * marks random or "
             "unverified Inception weights (not a comparable FID)",
    "Training": "training time of the checkpoint",
    "Sampling / 100": "wall time to generate 100 samples",
}


def _cells(row: Any) -> list[tuple[str, float | None]]:
    """(text, sort value) per column."""
    from diffstudio.engine.evaluation.tables import fid_text, format_duration, kid_text

    fid, kid = fid_text(row), kid_text(row)
    return [
        (row.run, None), (row.model, None), (row.schedule or "-", None),
        (row.sampler or "-", None),
        ("-" if row.steps is None else str(row.steps), row.steps),
        ("-" if row.network_evaluations is None else str(row.network_evaluations),
         row.network_evaluations),
        (fid, row.fid), (kid, row.kid),
        (format_duration(row.training_seconds), row.training_seconds),
        (format_duration(row.sampling_seconds_per_100), row.sampling_seconds_per_100),
    ]


class _Item(QTableWidgetItem):
    """Sorts by its number when it has one."""

    def __init__(self, text: str, value: float | None) -> None:
        super().__init__(text)
        self.value = value
        self.setFlags(self.flags() & ~Qt.ItemFlag.ItemIsEditable)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        # Never super().__lt__: PySide dispatches QTableWidgetItem::operator< back to this
        # override, which recursed until the stack overflowed (a crash, found in the window).
        if isinstance(other, _Item) and (self.value is not None or other.value is not None):
            if self.value is None or other.value is None:
                return other.value is None  # numbers first, unknowns ("-") last
            return float(self.value) < float(other.value)
        return self.text().casefold() < other.text().casefold()


class ComparisonPanel(QWidget):
    """See the module docstring. :meth:`refresh` rereads the results."""

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.rows: list[Any] = []
        self.problems: list[str] = []
        self.extra_files: list[str] = []  # results written outside the workspace's runs
        self.job: CallJob | None = None
        self._pending = False

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("comparisonTable")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setMaximumSectionSize(240)
        for column, name in enumerate(COLUMNS):
            if name in _COLUMN_TIPS:
                self.table.horizontalHeaderItem(column).setToolTip(_COLUMN_TIPS[name])
        self.metric_combo = QComboBox()
        self.metric_combo.addItem("FID", "fid")
        self.metric_combo.addItem("KID", "kid")
        self.plot_widget = pg.PlotWidget(axisItems={"bottom": PlainLogAxis("bottom")})
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setLogMode(x=True, y=False)
        self.plot.setLabel("bottom", "network evaluations per sample (log scale)")
        major_grid(self.plot)
        self.plot.getViewBox().setDefaultPadding(0.12)  # room for the N labels above points
        self.legend = self.plot.addLegend(offset=(-10, 10))
        self.refresh_button = QPushButton("Refresh")
        self.csv_button = QPushButton("Export CSV…")
        self.markdown_button = QPushButton("Export Markdown…")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        buttons = QHBoxLayout()
        buttons.addWidget(self.refresh_button)
        buttons.addStretch(1)
        buttons.addWidget(QLabel("Plot"))
        buttons.addWidget(self.metric_combo)
        buttons.addWidget(self.csv_button)
        buttons.addWidget(self.markdown_button)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.plot_widget)
        splitter.setSizes([300, 300])
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status)

        self.refresh_button.clicked.connect(self.refresh)
        self.metric_combo.currentIndexChanged.connect(lambda _: self._draw_plot())
        self.csv_button.clicked.connect(lambda: self.export_dialog(".csv"))
        self.markdown_button.clicked.connect(lambda: self.export_dialog(".md"))
        studio.runs_changed.connect(lambda _: self.refresh())
        self._update_buttons()

    # -- reading ---------------------------------------------------------------------------------
    def add_result_file(self, path: str) -> None:
        if path not in self.extra_files:
            self.extra_files.append(path)

    def refresh(self) -> None:
        """Reread every result in the background (once more after a running read ends)."""
        if self.studio.closing or not self.studio.ready:
            return  # reading results imports the engine: not on the main thread before it loads
        if self.job is not None:
            self._pending = True
            return
        folders = [run.path for run in self.studio.runs]
        job = CallJob("read-evaluations", load_comparison, folders, list(self.extra_files))
        job.succeeded.connect(self._on_loaded)
        job.failed.connect(lambda message, details: self.studio.notifications.error(
            f"Could not read the evaluation results: {message}", details, source="Evaluate"))
        job.finished.connect(self._on_finished)
        self.job = job
        self.studio.add_job("read-evaluations", job)
        job.start()

    def _on_finished(self) -> None:
        self.job = None
        if self._pending:
            self._pending = False
            self.refresh()

    def _on_loaded(self, loaded: tuple[list[Any], list[str]]) -> None:
        self.set_rows(*loaded)

    def set_rows(self, rows: list[Any], problems: list[str] | None = None) -> None:
        # By run, sampler, then network evaluations: the table's (stable) sort by a column keeps
        # this order within equal cells, so a step sweep reads top to bottom.
        self.rows = sorted(rows, key=lambda r: (r.run, r.sampler or "",
                                                r.network_evaluations or 0, r.n))
        self.problems = list(problems or [])
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            for c, (text, value) in enumerate(_cells(row)):
                item = _Item(text, value)
                if row.result_file:
                    item.setToolTip(row.result_file)
                item.setData(Qt.ItemDataRole.UserRole, r)
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self._draw_plot()
        text = f"{len(self.rows)} evaluation(s)."
        if any(row.fid is not None and not row.comparable_fid for row in self.rows):
            text += " * not a comparable FID (random or unverified Inception weights)."
        if len({row.n for row in self.rows if row.fid is not None}) > 1:
            text += " FIDs at different N are not comparable: each point is labelled with N."
        if self.problems:
            text += f" Skipped {len(self.problems)}: " + "; ".join(self.problems[:3])
        self.status.setText(text)
        self._update_buttons()

    def _draw_plot(self) -> None:
        from diffstudio.engine.evaluation import fid_vs_evaluations

        metric = self.metric_combo.currentData()
        self.plot.clear()
        if self.legend is not None:
            self.legend.clear()
        self.plot.setLabel("left", "FID@N" if metric == "fid" else "KID")
        for index, series in enumerate(fid_vs_evaluations(self.rows, metric)):
            colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
            self.plot.plot(np.asarray(series.network_evaluations, float),
                           np.asarray(series.values, float), pen=pg.mkPen(colour, width=2),
                           symbol="o", symbolBrush=colour, symbolSize=7, name=series.label)
            if metric == "fid":
                for x, y, n in zip(series.network_evaluations, series.values, series.n,
                                   strict=True):
                    label = pg.TextItem(f"N={n}", color=colour, anchor=(0.5, 1.3))
                    self.plot.addItem(label)
                    label.setPos(np.log10(max(x, 1)), y)

    def series_count(self) -> int:
        return len(self.plot.listDataItems())

    # -- export ----------------------------------------------------------------------------------
    def _update_buttons(self) -> None:
        self.csv_button.setEnabled(bool(self.rows))
        self.markdown_button.setEnabled(bool(self.rows))

    def export_dialog(self, suffix: str) -> None:
        kind = "CSV (*.csv)" if suffix == ".csv" else "Markdown (*.md)"
        start = str(self.studio.workspace / f"comparison{suffix}")
        chosen, _ = QFileDialog.getSaveFileName(self, "Export the comparison table", start, kind)
        if chosen:
            if not chosen.lower().endswith(suffix):
                chosen += suffix
            self.export(chosen, overwrite=True)  # the dialog asked before replacing a file

    def export(self, path: str, *, overwrite: bool = False) -> str | None:
        """Write the table (rows in the order shown) as CSV or Markdown, by the suffix."""
        from diffstudio.engine.evaluation import write_table
        from diffstudio.errors import DiffstudioError

        try:
            written = write_table(self.rows_in_view(), path, overwrite=overwrite)
        except (DiffstudioError, OSError) as exc:
            self.studio.notifications.error(f"Export failed: {exc}", source="Evaluate")
            return None
        self.studio.notifications.info(f"Comparison table written to {written}",
                                       source="Evaluate")
        return str(written)

    def rows_in_view(self) -> list[Any]:
        """The rows in the order the table shows them (as sorted by the user)."""
        items = (self.table.item(r, 0) for r in range(self.table.rowCount()))
        return [self.rows[int(item.data(Qt.ItemDataRole.UserRole))] for item in items
                if item is not None]
