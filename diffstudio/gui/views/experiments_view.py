"""The Experiments page: choose an experiment file (or a shipped preset), check it, run it and
watch its grid fill in -- a row per training, a column per sampler setting and seed, each cell
its status and then its FID@N and KID. The queue is the application layer's
(:mod:`diffstudio.app.experiment`), kept in ``WORKSPACE/experiments/NAME``: stopping, closing
or a crash loses nothing, and Run continues where it stopped. Write report makes the Markdown
and CSV tables and the plots there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QBrush, QColor, QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from diffstudio.app.experiment import ExperimentRequest, experiment_folder, plan
from diffstudio.app.experiment_file import Experiment, load_experiment, presets
from diffstudio.app.experiment_report import write_report
from diffstudio.engine.evaluation.tables import fid_text, kid_text
from diffstudio.gui.experiment_jobs import ExperimentJob
from diffstudio.gui.studio import Studio
from diffstudio.gui.wheel_guard import guard_tree
from diffstudio.gui.workers import CallJob

__all__ = ["ExperimentsView"]

_COLOURS = {"pending": "#ffffff", "running": "#fff4c2", "done": "#dff0d8",
            "skipped": "#dff0d8", "failed": "#f2dede"}
_CHOOSE = "Choose a preset…"


class ExperimentsView(QWidget):
    """The grid of one experiment; ``experiment`` and ``folder`` are the file shown."""

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.experiment: Experiment | None = None
        self.folder: Path | None = None
        self.job: ExperimentJob | None = None
        self._check_job: CallJob | None = None
        self.cells: dict[str, tuple[int, int]] = {}  # job key -> (row, column)
        self.file_label = QLabel("No experiment file chosen.")
        self.file_label.setWordWrap(True)
        self.preset_combo = QComboBox()
        self.preset_combo.addItem(_CHOOSE)
        for path in presets():
            self.preset_combo.addItem(path.stem, str(path))
        self.open_button = QPushButton("Open file…")
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Run the queue; finished cells are skipped, an unfinished "
                                   "training resumes from its last checkpoint")
        self.stop_button = QPushButton("Stop")
        self.queue_button = QPushButton("Add to queue")
        self.queue_button.setToolTip("Run it later from the Queue page (or 'diffstudio queue "
                                     "run'), after the jobs before it")
        self.report_button = QPushButton("Write report")
        self.open_folder_button = QPushButton("Open folder")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setObjectName("experimentGrid")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        top = QHBoxLayout()
        top.addWidget(self.file_label, 1)
        top.addWidget(self.preset_combo)
        top.addWidget(self.open_button)
        actions = QHBoxLayout()
        for button in (self.run_button, self.stop_button, self.queue_button, self.report_button,
                       self.open_folder_button):
            actions.addWidget(button)
        actions.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(actions)
        layout.addWidget(self.status_label)
        layout.addWidget(self.table, 1)
        self.preset_combo.activated.connect(self._on_preset)
        self.open_button.clicked.connect(self._choose_file)
        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop)
        self.queue_button.clicked.connect(self.add_to_queue)
        self.report_button.clicked.connect(self.write_report)
        self.open_folder_button.clicked.connect(self._open_folder)
        studio.registry_changed.connect(lambda _registry: self.update_buttons())
        guard_tree(self)
        self.update_buttons()

    # -- choosing a file ----------------------------------------------------------------------
    def _on_preset(self, index: int) -> None:
        path = self.preset_combo.itemData(index)
        if path:
            self.open_file(path)

    def _choose_file(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "Experiment file", str(
            self.studio.workspace), "Experiment files (*.toml)")
        if chosen:
            self.open_file(chosen)

    def open_file(self, path: str | Path) -> bool:
        """Validate ``path`` and show its grid with what is done already (off the main thread
        for the disk); False while a run is under way or before the plugins are loaded."""
        if self.is_running() or self.studio.registry is None:
            return False
        registry, workspace = self.studio.registry, self.studio.workspace

        def check() -> tuple[Experiment, Path, list[Any]]:
            experiment = load_experiment(path, registry)
            here = Path(path).parent
            # The file an experiment folder keeps: that folder; any other: the workspace's.
            folder = here if (here / "state.json").is_file() and Path(path).name == \
                "experiment.toml" else experiment_folder(
                    experiment, workspace / "experiments" / experiment.name)
            return experiment, folder, plan(experiment, folder)

        job = CallJob("experiment-check", check)
        self._check_job = job
        self.file_label.setText(f"Checking {path}…")
        job.succeeded.connect(lambda result: self._on_checked(job, result))
        job.failed.connect(lambda message, details: self._on_check_failed(job, path, message,
                                                                          details))
        job.finished.connect(self.update_buttons)
        self.studio.add_job("experiment-check", job)
        job.start()
        self.update_buttons()
        return True

    def _on_checked(self, job: CallJob, result: tuple[Experiment, Path, list[Any]]) -> None:
        if job is not self._check_job:  # a newer choice replaced it: no stale grid
            return
        self._check_job = None
        self.experiment, self.folder, jobs = result
        self.file_label.setText(f"<b>{self.experiment.name}</b> — {self.experiment.path}<br>"
                                f"folder: {self.folder}")
        self._build_grid(jobs)
        done = sum(j.status == "done" for j in jobs)
        self.status_label.setText(f"{done} of {len(jobs)} jobs done.")

    def _on_check_failed(self, job: CallJob, path: Any, message: str, details: str) -> None:
        if job is not self._check_job:
            return
        self._check_job = None
        self.experiment = self.folder = None
        self.table.setRowCount(0)
        self.table.setColumnCount(0)
        self.file_label.setText(f"{path}: not runnable.")
        self.status_label.setText(message)
        self.studio.notifications.error(f"Experiment file not valid: {message}", details,
                                        source="Experiments")

    def _build_grid(self, jobs: list[Any]) -> None:
        assert self.experiment is not None
        seeds = self.experiment.evaluation.seeds
        columns: list[str] = []
        for job in jobs:
            if job.cell is not None:
                name = job.cell.sampler.name + (f" · seed {job.cell.seed}" if len(seeds) > 1
                                                 else "")
                if name not in columns:
                    columns.append(name)
        trainings = [t.name for t in self.experiment.trainings]
        self.table.clear()
        self.table.setRowCount(len(trainings))
        self.table.setColumnCount(1 + len(columns))
        self.table.setHorizontalHeaderLabels(["Training", *columns])
        self.table.setVerticalHeaderLabels(trainings)
        self.cells = {}
        for job in jobs:
            row = trainings.index(job.training)
            if job.cell is None:
                column = 0
            else:
                name = job.cell.sampler.name + (f" · seed {job.cell.seed}" if len(seeds) > 1
                                                 else "")
                column = 1 + columns.index(name)
            self.cells[job.key] = (row, column)
            self._set_cell(job.key, job.status, None)

    def _set_cell(self, key: str, status: str, row: Any) -> None:
        where = self.cells.get(key)
        if where is None:
            return
        text = status
        if row is not None:
            text = f"{fid_text(row)}\nKID {kid_text(row)}"
        item = QTableWidgetItem(text)
        item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        item.setBackground(QBrush(QColor(_COLOURS.get(status, "#ffffff"))))
        item.setData(Qt.ItemDataRole.UserRole, status)
        self.table.setItem(*where, item)
        self.table.resizeRowToContents(where[0])

    def cell_text(self, key: str) -> str:
        """What the grid shows for a job (tests, screen readers)."""
        where = self.cells.get(key)
        item = self.table.item(*where) if where else None
        return item.text() if item is not None else ""

    # -- running ------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.job is not None

    def run(self) -> bool:
        if self.is_running() or self.experiment is None or self.folder is None:
            return False
        request = ExperimentRequest(file=str(self.experiment.path), out=str(self.folder))
        job = ExperimentJob(request, self.folder, registry=self.studio.registry)
        job.cell_changed.connect(lambda update, row: self._on_cell(job, update, row))
        job.progress_ready.connect(lambda: self._on_progress(job))
        job.events_ready.connect(job.drain_events)  # trainer events: the page needs none
        job.succeeded.connect(lambda outcome: self._on_done(job, outcome))
        job.failed.connect(lambda message, details: self._on_failed(job, message, details))
        job.cancelled.connect(lambda _message: self._on_stopped(job))
        job.finished.connect(lambda: self._on_finished(job))
        self.job = job
        self.status_label.setText("Starting…")
        self.studio.add_job("experiment", job)
        job.start()
        self.update_buttons()
        return True

    def add_to_queue(self) -> int | None:
        """Queue ``diffstudio experiment run FILE --out FOLDER``; returns the job's number."""
        if self.experiment is None or self.folder is None:
            return None
        from diffstudio.gui.views.queue_view import queue_from_page

        argv = ["run", str(self.experiment.path), "--out", str(self.folder), "--quiet"]
        return queue_from_page(self.studio, "experiment", lambda: argv, "Experiment",
                               "Experiments")

    def stop(self) -> None:
        if self.job is not None:
            self.job.request_stop()
            self.status_label.setText("Stopping after a checkpoint…")

    def _on_cell(self, job: ExperimentJob, update: Any, row: Any) -> None:
        if job is self.job:
            self._set_cell(update.key, update.status, row)

    def _on_progress(self, job: ExperimentJob) -> None:
        progress = job.take_progress()
        if job is self.job and progress is not None:
            self.status_label.setText(progress.describe())

    def _on_done(self, job: ExperimentJob, outcome: Any) -> None:
        if job is not self.job:
            return
        text = {"completed": "Every job is done.", "stopped": "Stopped; Run continues it.",
                "failed": f"{len(outcome.failed)} job(s) failed; the others are done."}
        self.status_label.setText(f"{text.get(outcome.status, outcome.status)} Ran "
                                  f"{outcome.ran}, skipped {outcome.skipped} finished.")

    def _on_failed(self, job: ExperimentJob, message: str, details: str) -> None:
        if job is self.job:
            self.status_label.setText(f"Failed: {message}")
            self.studio.notifications.error(f"Experiment failed: {message}", details,
                                            source="Experiments")

    def _on_stopped(self, job: ExperimentJob) -> None:
        if job is self.job:
            self.status_label.setText("Stopped; Run continues it.")

    def _on_finished(self, job: ExperimentJob) -> None:
        if job is self.job:
            self.job = None
        self.update_buttons()

    # -- the report ---------------------------------------------------------------------------
    def write_report(self) -> bool:
        if self.experiment is None or self.folder is None:
            return False
        experiment, folder = self.experiment, self.folder
        job = CallJob("experiment-report", write_report, experiment, folder)
        job.succeeded.connect(lambda paths: self.status_label.setText(
            f"Report written: {paths[0]}" if paths else "No report."))
        job.failed.connect(lambda message, details: self.studio.notifications.warning(
            f"No report: {message}", details, source="Experiments"))
        self.studio.add_job("experiment-report", job)
        job.start()
        return True

    def _open_folder(self) -> None:
        if self.folder is not None and self.folder.is_dir():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.folder)))

    def update_buttons(self) -> None:
        ready = self.studio.registry is not None
        running = self.is_running()
        chosen = self.experiment is not None
        self.preset_combo.setEnabled(ready and not running)
        self.open_button.setEnabled(ready and not running)
        self.run_button.setEnabled(ready and chosen and not running and
                                   self._check_job is None)
        self.stop_button.setEnabled(running)
        self.report_button.setEnabled(chosen and not running)
        self.queue_button.setEnabled(chosen and not running and self._check_job is None)
        self.open_folder_button.setEnabled(chosen)
