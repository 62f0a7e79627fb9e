"""The Queue page: the workspace's persistent job queue (:mod:`diffstudio.app.job_queue`), the
same one ``diffstudio queue`` shows -- every job with its status, progress and ETA, read from
the queue file once a second off the main thread; run or stop the queue, cancel, retry,
reorder, remove a job, read its log. Trainings come from the Train page's "Add to queue",
experiments from the Experiments page's, anything else from ``diffstudio queue add``. The
runner is the application layer's :func:`~diffstudio.app.job_queue.run_queue` (each job its
own process): closing the window stops it after the running job's checkpoint, and Run (or
``diffstudio queue resume``) continues."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from diffstudio.app.events import format_duration
from diffstudio.app.job_queue import JobQueue, QueuedJob, run_queue
from diffstudio.errors import DiffstudioError
from diffstudio.gui.studio import Studio
from diffstudio.gui.wheel_guard import guard_tree
from diffstudio.gui.workers import CallJob, JobWorker

__all__ = ["QueueRunJob", "QueueView", "queue_from_page"]

_COLOURS = {"pending": "#ffffff", "running": "#fff4c2", "done": "#dff0d8",
            "failed": "#f2dede", "cancelled": "#eeeeee"}
COLUMNS = ("#", "Status", "Job", "Progress", "ETA", "Tries", "Result")
_LOG_TAIL_BYTES = 200_000


class QueueRunJob(JobWorker):
    """Runs the queue of ``workspace`` until it is empty; a stop lets the running job
    checkpoint (it stays pending) and ends the runner."""

    stop_by_closing = False

    def __init__(self, workspace: Path) -> None:
        super().__init__("queue", lambda stop: run_queue(workspace, should_stop=stop))
        self.workspace = workspace


def queue_from_page(studio: Studio, verb: str, make_argv: Callable[[], list[str]], what: str,
                    source: str, say: Callable[[str], None] | None = None) -> int | None:
    """A page's "Queue": ``diffstudio VERB make_argv()`` into the workspace's queue, run in
    the workspace; returns the job's number, or None when the page's settings or the queue
    refuse (said by ``say`` on the page and in a notification)."""
    if not studio.ready:
        return None
    try:
        workspace = studio.workspace
        job = JobQueue(workspace).add(verb, make_argv(), cwd=workspace)
    except DiffstudioError as exc:
        if say is not None:
            say(f"Not queued: {exc}")
        studio.notifications.warning(f"{what} not queued: {exc}", source=source)
        return None
    studio.notifications.info(f"{what} queued as job #{job.id}; the Queue page runs it.",
                              source=source)
    return job.id


def _progress_text(job: QueuedJob) -> str:
    """Where the running job is, in the words of its log (the ETA has its own column)."""
    progress = job.progress
    if job.status != "running" or progress is None:
        return ""
    text = f"{progress.stage} {progress.done}"
    if progress.total:
        text += f"/{progress.total} ({100 * progress.done / progress.total:.0f}%)"
    if progress.rate is not None and progress.stage == "train":
        text += f" · {progress.rate:.1f} images/s"
    return text


def _result_text(job: QueuedJob) -> str:
    if job.status in ("failed", "cancelled"):
        # "diffstudio sample: error: no checkpoint" -> "no checkpoint": the row says the verb
        return job.error.split(": error: ", 1)[-1]
    if job.status == "done" and job.started and job.finished:
        return f"took {format_duration(job.finished - job.started)}"
    if job.status == "pending" and job.error:  # interrupted before: it continues
        return job.error
    return ""


class QueueView(QWidget):
    """The queue of the studio's workspace; ``jobs`` is what the table shows."""

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.jobs: list[QueuedJob] = []
        self.runner: QueueRunJob | None = None
        self._read_job: CallJob | None = None
        self._shown_for: Path | None = None
        self.where_label = QLabel("")
        self.where_label.setWordWrap(True)
        self.where_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.run_button = QPushButton("Run queue")
        self.run_button.setToolTip("Run the pending jobs one after another, each in its own "
                                   "process; a training that was interrupted continues from "
                                   "its last checkpoint")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the queue: the running job is interrupted (a "
                                    "training writes its checkpoint) and stays pending")
        self.cancel_button = QPushButton("Cancel job")
        self.retry_button = QPushButton("Retry")
        self.up_button = QPushButton("Move up")
        self.down_button = QPushButton("Move down")
        self.remove_button = QPushButton("Remove")
        self.log_button = QPushButton("Show log")
        self.clear_button = QPushButton("Clear finished")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("queueTable")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("Job"), QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COLUMNS.index("Result"), QHeaderView.ResizeMode.Interactive)
        header.resizeSection(COLUMNS.index("Result"), 180)
        runner = QHBoxLayout()
        for button in (self.run_button, self.stop_button):
            runner.addWidget(button)
        runner.addWidget(self.status_label, 1)
        actions = QHBoxLayout()
        for button in (self.cancel_button, self.retry_button, self.up_button, self.down_button,
                       self.remove_button, self.log_button, self.clear_button):
            actions.addWidget(button)
        actions.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.where_label)
        layout.addLayout(runner)
        layout.addLayout(actions)
        layout.addWidget(self.table, 1)
        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop)
        self.cancel_button.clicked.connect(lambda: self._act("cancel"))
        self.retry_button.clicked.connect(lambda: self._act("retry"))
        self.up_button.clicked.connect(lambda: self._move(-1))
        self.down_button.clicked.connect(lambda: self._move(+1))
        self.remove_button.clicked.connect(lambda: self._act("remove"))
        self.log_button.clicked.connect(self.show_log)
        self.clear_button.clicked.connect(lambda: self._act("clear"))
        self.table.itemSelectionChanged.connect(self.update_buttons)
        studio.workspace_changed.connect(lambda _path: (self._on_workspace(),
                                                        self._check_waiting()))
        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        guard_tree(self)
        self._on_workspace()
        self._check_waiting()

    def _check_waiting(self) -> None:
        """At start-up and for each workspace: say once when its queue has jobs waiting that
        no runner runs (diffstudio was closed, killed, or the machine rebooted). Nothing runs
        by itself: Run queue continues them."""
        workspace = self.studio.workspace
        if not JobQueue(workspace).path.is_file():  # a stat: no thread for an empty queue
            return

        job = CallJob("queue-waiting", lambda: JobQueue(workspace).waiting())
        job.succeeded.connect(lambda result: self._on_waiting(workspace, result))
        job.start()

    def _on_waiting(self, workspace: Path, result: tuple[int, list[QueuedJob]]) -> None:
        count, interrupted = result
        if workspace != self.studio.workspace or count == 0 or self.runner is not None:
            return
        text = f"The job queue has {count} job(s) waiting"
        if interrupted:
            text += (f"; job #{interrupted[0].id} was interrupted when diffstudio last stopped "
                     "(a training continues from its last checkpoint)")
        self.status_label.setText(f"{text}. Run queue continues.")
        self.studio.notifications.info(f"{text}. The Queue page's Run queue (or 'diffstudio "
                                       "queue resume') continues.", source="Queue")

    # -- reading the queue --------------------------------------------------------------------
    @property
    def queue(self) -> JobQueue:
        return JobQueue(self.studio.workspace)

    def _on_workspace(self) -> None:
        """Another workspace: its queue, and nothing of the old one left on screen."""
        self.where_label.setText(f"The job queue of the workspace {self.studio.workspace} "
                                 "(also <tt>diffstudio queue list</tt>).")
        self.status_label.setText("")
        self.jobs = []
        self.table.setRowCount(0)
        self.update_buttons()
        if self.isVisible():
            self.refresh()

    def _tick(self) -> None:
        """Once a second while the page is shown or the queue runs: no reads for nobody."""
        if self.isVisible() or self.runner is not None:
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> bool:
        """Read the queue in the background (one read at a time); False when one is under
        way."""
        if self._read_job is not None or self.studio.closing:
            return False
        workspace = self.studio.workspace

        def read() -> tuple[Path, list[QueuedJob]]:
            return workspace, JobQueue(workspace).jobs()

        job = CallJob("queue-read", read)
        self._read_job = job
        job.succeeded.connect(lambda result: self._on_read(job, result))
        job.failed.connect(lambda message, _details: self._on_read_failed(job, message))
        job.start()
        return True

    def _on_read(self, job: CallJob, result: tuple[Path, list[QueuedJob]]) -> None:
        if job is self._read_job:
            self._read_job = None
        workspace, jobs = result
        if workspace != self.studio.workspace:  # read for a workspace no longer shown
            return
        self.show_jobs(jobs)

    def _on_read_failed(self, job: CallJob, message: str) -> None:
        if job is self._read_job:
            self._read_job = None
        self.status_label.setText(f"The queue cannot be read: {message}")

    def show_jobs(self, jobs: list[QueuedJob]) -> None:
        selected = self.selected()
        chosen = selected.id if selected is not None else None
        self.jobs = jobs
        self.table.setRowCount(len(jobs))
        for row, job in enumerate(jobs):
            progress = job.progress if job.status == "running" else None
            eta = progress.eta if progress is not None else None
            cells = (str(job.id), job.status, job.command(short=True), _progress_text(job),
                     format_duration(eta) if eta is not None else "", str(job.attempts),
                     _result_text(job))
            for column, text in enumerate(cells):
                item = self.table.item(row, column)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, column, item)
                item.setText(text)
                item.setBackground(QBrush(QColor(_COLOURS.get(job.status, "#ffffff"))))
                item.setToolTip(f"{job.command()}\nin {job.cwd}\nlog: {job.log}"
                                if column == COLUMNS.index("Job") else
                                job.error if column == COLUMNS.index("Result") and job.error
                                else text)
                item.setData(Qt.ItemDataRole.UserRole, job.id)
        if chosen is not None:
            for row, job in enumerate(jobs):
                if job.id == chosen:
                    self.table.selectRow(row)
        self.update_buttons()

    def selected(self) -> QueuedJob | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.jobs):
            return None
        return self.jobs[rows[0].row()]

    def select_job(self, job_id: int) -> None:
        for row, job in enumerate(self.jobs):
            if job.id == job_id:
                self.table.selectRow(row)

    # -- changing it --------------------------------------------------------------------------
    def _act(self, action: str) -> None:
        job = self.selected()
        try:
            if action == "clear":
                self.queue.clear(("done", "cancelled"))
            elif job is not None:
                getattr(self.queue, action)(job.id)
        except DiffstudioError as exc:
            self.studio.notifications.warning(str(exc), source="Queue")
        self._read_now()

    def _move(self, step: int) -> None:
        job = self.selected()
        if job is None or job.status != "pending":
            return
        pending = [j.id for j in self.jobs if j.status == "pending"]
        index = pending.index(job.id) + step
        if 0 <= index < len(pending):
            self.queue.move(job.id, index)
        self._read_now()

    def _read_now(self) -> None:
        try:
            self.show_jobs(self.queue.jobs())
        except DiffstudioError as exc:
            self.status_label.setText(f"The queue cannot be read: {exc}")

    def show_log(self) -> QDialog | None:
        """The selected job's output (its end, when it is long), in a dialog."""
        job = self.selected()
        if job is None:
            return None
        try:
            with open(job.log, "rb") as file:
                file.seek(0, 2)
                size = file.tell()
                file.seek(max(0, size - _LOG_TAIL_BYTES))
                text = file.read().decode("utf-8", errors="replace")
        except OSError:
            text = "(no output yet)"
        text = text.replace("\r", "\n")
        dialog = QDialog(self)
        dialog.setWindowTitle(f"Job #{job.id}: {job.log.name}")
        view = QPlainTextEdit(text)
        view.setReadOnly(True)
        view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dialog.reject)
        layout = QVBoxLayout(dialog)
        layout.addWidget(QLabel(f"{job.command()}<br>in {job.cwd}"))
        layout.addWidget(view, 1)
        layout.addWidget(buttons)
        dialog.resize(820, 520)
        view.moveCursor(view.textCursor().MoveOperation.End)
        dialog.open()
        return dialog

    # -- running it ---------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.runner is not None

    def run(self) -> bool:
        if self.runner is not None:
            return False
        job = QueueRunJob(self.studio.workspace)
        job.progress_ready.connect(lambda: self._on_progress(job))
        job.events_ready.connect(lambda: self._on_events(job))
        job.note.connect(lambda text, level: (
            self.studio.notifications.warning if level == "warning"
            else self.studio.notifications.info)(text, source="Queue"))
        job.succeeded.connect(lambda outcome: self._on_done(job, outcome))
        job.failed.connect(lambda message, details: self._on_failed(job, message, details))
        job.finished.connect(lambda: self._on_finished(job))
        self.runner = job
        self.status_label.setText("Running the queue…")
        self.studio.add_job("queue", job)
        job.start()
        self.update_buttons()
        return True

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.request_stop()
            self.status_label.setText("Stopping: the running job writes its checkpoint…")

    def _on_progress(self, job: QueueRunJob) -> None:
        progress = job.take_progress()
        if job is self.runner and progress is not None:
            self.status_label.setText(progress.describe())

    def _on_events(self, job: QueueRunJob) -> None:
        job.drain_events()  # status changes: the next read shows them
        if job is self.runner:
            self.refresh()

    def _on_done(self, job: QueueRunJob, outcome: Any) -> None:
        if job is not self.runner:
            return
        text = "Stopped; Run continues it." if outcome.status == "stopped" else \
            "The queue is empty."
        self.status_label.setText(f"{text} {outcome.done} done, {outcome.failed} failed, "
                                  f"{outcome.cancelled} cancelled.")

    def _on_failed(self, job: QueueRunJob, message: str, details: str) -> None:
        if job is self.runner:
            self.status_label.setText(f"The queue could not run: {message}")
            self.studio.notifications.error(f"The queue could not run: {message}", details,
                                            source="Queue")

    def _on_finished(self, job: QueueRunJob) -> None:
        if job is self.runner:
            self.runner = None
        self.refresh()
        self.update_buttons()

    def update_buttons(self) -> None:
        job = self.selected()
        status = job.status if job is not None else None
        chosen = job.id if job is not None else None
        running = self.runner is not None
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.cancel_button.setEnabled(status in ("pending", "running"))
        self.retry_button.setEnabled(status in ("done", "failed", "cancelled"))
        pending = [j.id for j in self.jobs if j.status == "pending"]
        self.up_button.setEnabled(status == "pending" and pending[:1] != [chosen])
        self.down_button.setEnabled(status == "pending" and pending[-1:] != [chosen])
        self.remove_button.setEnabled(status is not None and status != "running")
        self.log_button.setEnabled(job is not None)
        self.clear_button.setEnabled(any(j.status in ("done", "cancelled") for j in self.jobs))
