"""The Runs page: the run folders under the workspace with what they train, how far they got
and their last loss; open one to continue training or to sample from it, or export its network
to ONNX (in the background, verified against PyTorch)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QFileSystemWatcher, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from diffstudio.gui.panels import ask_question
from diffstudio.gui.plots import RunsLossPlot
from diffstudio.gui.run_list import RunSummary, read_loss_curves, scan_workspace
from diffstudio.gui.run_summary_text import readable_config
from diffstudio.gui.studio import Studio
from diffstudio.gui.workers import CallJob, JobWorker

__all__ = ["RunsView"]

_COLUMNS = ("Run", "Dataset", "Network", "Schedule", "Step", "Last loss", "Checkpoint",
            "Modified", "Note")
_NOTE_COLUMN = len(_COLUMNS) - 1


class RunsView(QWidget):
    """A table of runs; scanning the workspace happens in the background."""

    scanned = Signal(list)  # list[RunSummary], after each scan

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.runs: list[RunSummary] = []
        self._scan_job: CallJob | None = None
        self._select_after_scan: str | None = None
        self._rescan = False
        self.workspace_label = QLabel()
        self.workspace_label.setWordWrap(True)
        self.change_button = QPushButton("Change workspace…")
        self.refresh_button = QPushButton("Refresh")
        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setObjectName("runsTable")
        self.table.setHorizontalHeaderLabels(_COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        # Several runs may be selected (their loss curves overlay); the actions act on the
        # current one, whose config and note are shown.
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.continue_button = QPushButton("Continue training")
        self.new_from_button = QPushButton("New run with its settings")
        self.new_from_button.setObjectName("newRunFromButton")
        self.new_from_button.setToolTip("Put this run's dataset, network, schedule and training "
                                        "settings on the Train page as a new run")
        self.sample_button = QPushButton("Sample from it")
        self.evaluate_button = QPushButton("Evaluate it")
        self.evaluate_button.setToolTip("FID@N, KID, nearest training images and the "
                                        "memorisation check, on the Evaluate page")
        self.export_button = QPushButton("Export to ONNX")
        self.export_button.setObjectName("exportOnnxButton")
        self.export_button.setToolTip(
            "Export the latest checkpoint's EMA network to RUN/onnx/ (dynamic batch), checked "
            "against PyTorch; sample it with the Sample page's ONNX backend")
        self.export_status = QLabel("")
        self.export_status.setWordWrap(True)
        self._export_job: JobWorker | None = None
        self.open_button = QPushButton("Open folder")
        self.rename_button = QPushButton("Rename…")
        self.delete_button = QPushButton("Move to trash…")
        self.delete_button.setToolTip("Move the run folder to the system trash (it can be "
                                      "restored from there)")
        # Replaced by the window (its question dialog) and by tests.
        self.ask: Callable[[str, str], bool] = lambda title, text: ask_question(self, title,
                                                                                 text)
        self.get_text: Callable[[str, str, str], str | None] = self._get_text
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setPlaceholderText("Select a run to see its configuration.")
        # The user's note about the selected run: typed text stays (per run) until Save note,
        # across selection changes and rescans; nothing is written without Save.
        self.note_edit = QPlainTextEdit()
        self.note_edit.setObjectName("runNote")
        self.note_edit.setPlaceholderText("A note about this run (what you tried, what you "
                                          "saw); saved as note.txt in the run folder.")
        self.save_note_button = QPushButton("Save note")
        self.note_status = QLabel("")
        self.note_status.setWordWrap(True)
        self._drafts: dict[str, str] = {}  # run path -> unsaved note text
        self._note_path: str | None = None  # the run the editor shows
        note_box = QWidget()
        note_layout = QVBoxLayout(note_box)
        note_layout.setContentsMargins(0, 0, 0, 0)
        note_layout.addWidget(QLabel("Note"))
        note_layout.addWidget(self.note_edit, 1)
        note_row = QHBoxLayout()
        note_row.addWidget(self.note_status, 1)
        note_row.addWidget(self.save_note_button)
        note_layout.addLayout(note_row)
        self.curves_plot = RunsLossPlot()
        self.curves_plot.setObjectName("runsLossPlot")
        self._curve_cache: dict[str, Any] = {}  # read_loss_curves' cache, used by its job only
        self._curves_job: CallJob | None = None
        self._curves_again = False
        self._curves_timer = QTimer(self)  # a selected run being trained: its curve follows
        self._curves_timer.setInterval(2000)
        self._curves_timer.timeout.connect(self.load_curves)
        text_column = QSplitter(Qt.Orientation.Vertical)
        text_column.addWidget(self.details)
        text_column.addWidget(note_box)
        text_column.setSizes([160, 120])
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(text_column)
        lower.addWidget(self.curves_plot)
        lower.setSizes([560, 520])
        top = QHBoxLayout()
        top.addWidget(self.workspace_label, 1)
        top.addWidget(self.change_button)
        top.addWidget(self.refresh_button)
        actions = QHBoxLayout()
        actions.addWidget(self.continue_button)
        actions.addWidget(self.new_from_button)
        actions.addWidget(self.sample_button)
        actions.addWidget(self.evaluate_button)
        actions.addWidget(self.export_button)
        actions.addStretch(1)
        # Two rows: one row of nine buttons made the page (and so the window) wider than the
        # 1024x700 the product supports.
        manage = QHBoxLayout()
        manage.addWidget(self.export_status, 1)
        manage.addWidget(self.open_button)
        manage.addWidget(self.rename_button)
        manage.addWidget(self.delete_button)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(lower)
        splitter.setSizes([330, 330])  # the config, note and curves need room as much as the table
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        layout.addLayout(actions)
        layout.addLayout(manage)

        self.refresh_button.clicked.connect(self.refresh)
        self.change_button.clicked.connect(self.choose_workspace)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.doubleClicked.connect(lambda _: self.sample_selected())
        self.continue_button.clicked.connect(self.continue_selected)
        self.new_from_button.clicked.connect(self.new_run_from_selected)
        self.sample_button.clicked.connect(self.sample_selected)
        self.evaluate_button.clicked.connect(self.evaluate_selected)
        self.open_button.clicked.connect(self._open_folder)
        self.rename_button.clicked.connect(self.rename_selected)
        self.delete_button.clicked.connect(self.trash_selected)
        self.save_note_button.clicked.connect(self.save_note)
        self.note_edit.textChanged.connect(self._on_note_typed)
        # The list follows the workspace by itself: a run made or removed elsewhere (the CLI,
        # a file manager) appears or goes without Refresh; bursts of changes scan once.
        self.watcher = QFileSystemWatcher(self)
        self._watch_timer = QTimer(self)
        self._watch_timer.setSingleShot(True)
        self._watch_timer.setInterval(700)
        self._watch_timer.timeout.connect(self.refresh)
        self.watcher.directoryChanged.connect(lambda _: self._watch_timer.start())
        studio.workspace_changed.connect(lambda _: self._watch_workspace())
        self._watch_workspace()
        self.export_button.clicked.connect(self.export_selected)
        studio.workspace_changed.connect(lambda _: self.refresh())
        studio.engine_ready.connect(lambda _: self.refresh())
        studio.jobs_changed.connect(self._refresh_after_training)
        self._was_training = False
        self._update_label()
        self._on_selection()

    def _update_label(self) -> None:
        self.workspace_label.setText(f"Workspace: <b>{self.studio.workspace}</b> — new runs go "
                                     "here; each folder is one run.")

    def choose_workspace(self) -> None:
        """Ask for another workspace folder (runs are listed from it and new runs go there)."""
        chosen = QFileDialog.getExistingDirectory(self, "Choose the workspace folder",
                                                  str(self.studio.workspace))
        if chosen:
            self.studio.set_workspace(chosen)

    def _refresh_after_training(self) -> None:
        training = "train" in self.studio.jobs
        finished = self._was_training and not training
        self._was_training = training
        if finished:
            self.refresh()

    # -- scanning ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Scan the workspace in the background (again, if a scan is under way)."""
        self._update_label()
        if not self.watcher.directories():  # the workspace may have been made since
            self._watch_workspace()
        if not self.studio.ready or self.studio.closing:
            return
        if self._scan_job is not None and self._scan_job.isRunning():
            self._rescan = True
            return
        job = CallJob("scan-runs", scan_workspace, self.studio.workspace)
        job.succeeded.connect(self.set_runs)
        job.failed.connect(lambda message, details: self.studio.notifications.error(
            f"Could not list the runs in {self.studio.workspace}: {message}", details,
            source="Runs"))
        job.finished.connect(self._on_scan_finished)
        self._scan_job = job
        self.studio.add_job("scan", job)
        job.start()

    def _on_scan_finished(self) -> None:
        self._scan_job = None
        if self._rescan:
            self._rescan = False
            self.refresh()

    def set_runs(self, runs: list[RunSummary]) -> None:
        selected = self.selected()
        self.runs = runs
        self.table.setRowCount(len(runs))
        for row, run in enumerate(runs):
            loss = f"{run.last_loss:.4g}" if run.last_loss is not None else ""
            step = f"{run.step:,} / {run.total_steps:,}" if run.total_steps else f"{run.step:,}"
            if run.training:
                step += " (training)"
            checkpoint = f"step {run.checkpoint_step:,}" if run.checkpoint_step is not None \
                else "none"
            modified = f"{run.modified:%Y-%m-%d %H:%M}" if run.modified else ""
            first_line = run.note.strip().splitlines()[0] if run.note.strip() else ""
            cells = (run.name, run.dataset, run.network, run.schedule, step, loss, checkpoint,
                     modified, first_line)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(run.note if column == _NOTE_COLUMN and run.note else
                                run.error or (f"{run.path}\nbeing trained by {run.training}"
                                              if run.training else run.path))
                self.table.setItem(row, column, item)
        for column in range(1, len(_COLUMNS) - 1):
            self.table.resizeColumnToContents(column)
        self.table.setColumnWidth(_NOTE_COLUMN, 220)  # elided; the whole note is its tooltip
        wanted = self._select_after_scan or (selected.path if selected is not None else None)
        self._select_after_scan = None
        if wanted is not None:
            for row, run in enumerate(runs):
                if run.path == wanted:
                    self.table.selectRow(row)
        self._on_selection()
        self.studio.set_runs(runs)
        self.scanned.emit(runs)

    # -- actions ----------------------------------------------------------------------------------
    def selected(self) -> RunSummary | None:
        """The current run (the one the actions act on), when it is selected."""
        rows = [index.row() for index in self.table.selectionModel().selectedRows()]
        current = self.table.currentRow()
        row = current if current in rows else (min(rows) if rows else None)
        return self.runs[row] if row is not None and row < len(self.runs) else None

    def selected_runs(self) -> list[RunSummary]:
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        return [self.runs[row] for row in rows if row < len(self.runs)]

    # -- overlaid loss curves -----------------------------------------------------------------
    def load_curves(self) -> None:
        """Read the selected runs' metrics in the background and overlay their losses."""
        if self.studio.closing:
            return
        if self._curves_job is not None and self._curves_job.isRunning():
            self._curves_again = True
            return
        chosen = [run for run in self.selected_runs() if not run.error]
        following = any(run.training for run in chosen) or "train" in self.studio.jobs
        if following and chosen:
            self._curves_timer.start()
        else:
            self._curves_timer.stop()
        if not chosen:
            self.curves_plot.set_curves({})
            return
        paths = [run.path for run in chosen]
        names = {run.path: run.name for run in chosen}
        job = CallJob("read-curves", read_loss_curves, paths, self._curve_cache)
        job.cpu_threads = 0  # no torch here
        job.succeeded.connect(lambda curves: self.curves_plot.set_curves(
            {names[path]: curve for path, curve in curves.items()}))
        job.failed.connect(lambda message, details: self.curves_plot.note.setText(
            f"Could not read the loss curves: {message}"))
        job.finished.connect(self._on_curves_finished)
        self._curves_job = job
        self.studio.add_job("read-curves", job)
        job.start()

    def _on_curves_finished(self) -> None:
        self._curves_job = None
        if self._curves_again:
            self._curves_again = False
            self.load_curves()

    def select_path(self, path: str) -> bool:
        for row, run in enumerate(self.runs):
            if run.path == path:
                self.table.selectRow(row)
                return True
        return False

    def _on_selection(self) -> None:
        run = self.selected()
        self.continue_button.setEnabled(run is not None and not run.error)
        self.new_from_button.setEnabled(run is not None and not run.error)
        self.sample_button.setEnabled(run is not None and run.can_sample)
        self.evaluate_button.setEnabled(run is not None and run.can_sample
                                        and run.kind == "image")
        self.open_button.setEnabled(run is not None)
        for button in (self.rename_button, self.delete_button):
            button.setEnabled(run is not None and not run.training)
            button.setToolTip("it is being trained; stop the training first"
                              if run is not None and run.training else "")
        exporting = self._export_job is not None
        self.export_button.setEnabled(run is not None and run.can_sample
                                      and run.kind == "image" and not exporting)
        self._show_note(run)
        self.load_curves()
        if run is None:
            self.details.clear()
            return
        if run.error:
            self.details.setPlainText(f"{run.path}\n\nThis run cannot be read: {run.error}")
            return
        try:
            from diffstudio.engine.runs import Run

            config: Any = Run(run.path).read_config()
            text = readable_config(run.path, config)
        except Exception as exc:  # shown, not raised: the list stays usable
            text = f"{run.path}\n\ncannot read the config: {exc}"
        self.details.setPlainText(text)

    # -- the note ---------------------------------------------------------------------------------
    def _show_note(self, run: RunSummary | None) -> None:
        path = run.path if run is not None and not run.error else None
        if path == self._note_path:
            return  # a rescan of the same run: the editor (and what is typed) stays
        self._note_path = None  # loading the text below is not the user typing
        self.note_edit.setEnabled(path is not None)
        self.note_edit.setPlainText("" if run is None else self._drafts.get(run.path, run.note))
        self._note_path = path
        self._update_note_status()

    def _saved_note(self, path: str) -> str:
        return next((run.note for run in self.runs if run.path == path), "")

    def _on_note_typed(self) -> None:
        if self._note_path is None:
            return
        text = self.note_edit.toPlainText()
        if text == self._saved_note(self._note_path):
            self._drafts.pop(self._note_path, None)
        else:
            self._drafts[self._note_path] = text
        self._update_note_status()

    def _update_note_status(self) -> None:
        unsaved = self._note_path is not None and self._note_path in self._drafts
        self.save_note_button.setEnabled(unsaved)
        self.note_status.setText("unsaved changes" if unsaved else "")

    def save_note(self) -> bool:
        """Write the editor's text as the selected run's note.txt (atomically)."""
        path = self._note_path
        if path is None:
            return False
        from diffstudio.engine.runs import Run
        from diffstudio.errors import DiffstudioError

        text = self.note_edit.toPlainText()
        try:
            Run(path).write_note(text)
        except (DiffstudioError, OSError) as exc:
            self.note_status.setText(f"Not saved: {exc}")
            return False
        self._drafts.pop(path, None)
        for row, run in enumerate(self.runs):
            if run.path == path:
                run.note = text if text.strip() else ""
                item = self.table.item(row, _NOTE_COLUMN)
                if item is not None:
                    item.setText(run.note.strip().splitlines()[0] if run.note else "")
                    item.setToolTip(run.note or run.path)
        self._update_note_status()
        self.note_status.setText("saved")
        self.refresh()
        return True

    def continue_selected(self) -> None:
        run = self.selected()
        if run is not None:
            self.studio.open_run_for_training.emit(run.path)

    def new_run_from_selected(self) -> None:
        run = self.selected()
        if run is not None:
            self.studio.new_run_from.emit(run.path)

    def sample_selected(self) -> None:
        run = self.selected()
        if run is not None and run.can_sample:
            self.studio.open_run_for_sampling.emit(run.path)

    def evaluate_selected(self) -> None:
        run = self.selected()
        if run is not None and run.can_sample and run.kind == "image":
            self.studio.open_run_for_evaluation.emit(run.path)

    def _watch_workspace(self) -> None:
        if self.watcher.directories():
            self.watcher.removePaths(self.watcher.directories())
        workspace = str(self.studio.workspace)
        if os.path.isdir(workspace):
            self.watcher.addPath(workspace)

    def _get_text(self, title: str, label: str, value: str) -> str | None:
        text, ok = QInputDialog.getText(self, title, label, text=value)
        return text if ok else None

    def rename_selected(self) -> None:
        run = self.selected()
        if run is None:
            return
        name = self.get_text("Rename run", "New name of the run folder:", run.name)
        if name is None or name.strip() == run.name:
            return
        from diffstudio.engine.run_admin import rename_run
        from diffstudio.errors import DiffstudioError

        try:
            target = rename_run(run.path, name)
        except (DiffstudioError, OSError) as exc:
            self.studio.notifications.warning(f"Not renamed: {exc}", source="Runs")
            return
        self.studio.notifications.info(f"Renamed {run.name} to {target.name}.", source="Runs")
        if run.path in self._drafts:  # the unsaved note follows the run to its new name
            self._drafts[str(target)] = self._drafts.pop(run.path)
        if self._note_path == run.path:
            self._note_path = str(target)
        self._select_after_scan = str(target)
        self.refresh()

    def trash_selected(self) -> None:
        run = self.selected()
        if run is None or not self.ask(
                "Move the run to the trash?",
                f"Move {run.path} to the system trash? Its checkpoints and samples go with it; "
                "it can be restored from the trash."):
            return
        from diffstudio.engine.run_admin import trash_run
        from diffstudio.errors import DiffstudioError

        try:
            trash_run(run.path)
        except (DiffstudioError, OSError) as exc:
            self.studio.notifications.warning(f"Not moved to the trash: {exc}", source="Runs")
            return
        self.studio.notifications.info(f"Moved {run.name} to the trash.", source="Runs")
        self.refresh()
    def confirm_overwrite(self, path: str) -> bool:
        """Ask before replacing an earlier export (exports never overwrite without asking)."""
        answer = QMessageBox.question(self, "Replace the ONNX file?",
                                      f"{path} already exists. Export again and replace it?")
        return answer == QMessageBox.StandardButton.Yes

    def export_selected(self) -> bool:
        """Export the selected run's latest EMA network to ONNX in the background."""
        run = self.selected()
        if run is None or not run.can_sample or self._export_job is not None:
            return False
        from diffstudio.app.onnx import OnnxExportRequest, export_onnx
        from diffstudio.engine.runs import Run
        from diffstudio.errors import DiffstudioError

        try:
            folder = Run(run.path).resolve_checkpoint(None)
        except DiffstudioError as exc:
            self.studio.notifications.warning(f"Cannot export: {exc}", source="Runs")
            return False
        target = Run(run.path).onnx_path(folder)
        overwrite = target.exists()
        if overwrite and not self.confirm_overwrite(str(target)):
            return False
        request = OnnxExportRequest(run=run.path, checkpoint=folder.name, overwrite=overwrite)
        registry = self.studio.registry
        job = JobWorker("onnx-export", lambda stop: export_onnx(request, registry=registry,
                                                                should_stop=stop))
        name = run.name
        job.succeeded.connect(lambda outcome: self._on_exported(name, outcome))
        job.failed.connect(lambda message, details: self._on_export_failed(name, message,
                                                                           details))
        job.finished.connect(self._on_export_finished)
        self._export_job = job
        self.export_status.setText(f"Exporting {name} ({folder.name}) to ONNX…")
        self.studio.add_job("onnx-export", job)
        job.start()
        self._on_selection()
        return True

    def _on_exported(self, name: str, outcome: Any) -> None:
        self.export_status.setText(f"{name}: exported {outcome.path.name} — {outcome.summary}")
        for note in outcome.notes:
            self.studio.notifications.warning(f"ONNX export of {name}: {note}", source="Runs")
        self.studio.notifications.info(f"Exported {outcome.path} ({outcome.summary})",
                                       source="Runs")

    def _on_export_failed(self, name: str, message: str, details: str) -> None:
        self.export_status.setText(f"{name}: ONNX export failed: {message}")
        self.studio.notifications.error(f"ONNX export of {name} failed: {message}", details,
                                        source="Runs")

    def _on_export_finished(self) -> None:
        self._export_job = None
        self._on_selection()

    def _open_folder(self) -> None:
        run = self.selected()
        if run is not None and not QDesktopServices.openUrl(QUrl.fromLocalFile(run.path)):
            # No file manager registered (a bare desktop, a remote session): say it here, not
            # only on the terminal Qt writes to.
            self.studio.notifications.warning(
                f"No file manager could be started to show {run.path}; open it yourself "
                "(the path can be copied from the details).", source="Runs")
