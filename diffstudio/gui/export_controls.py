"""The export controls the Gallery and the Sample page share: a format (PNG copies, contact
sheet, HTML gallery, zip of all), captions for the sheet, Export… (a folder dialog, then the
question before replacing files) and a status line with the job's progress.

The export itself is the application layer's job (:func:`diffstudio.app.export.export`, or
:func:`~diffstudio.app.export.export_outcome` for the Sample page's result), run in a
:class:`~diffstudio.gui.workers.JobWorker`: the window never waits for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from diffstudio.errors import ConfigError
from diffstudio.gui.studio import Studio
from diffstudio.gui.workers import JobWorker

__all__ = ["EXPORT_FORMATS", "ExportControls"]

EXPORT_FORMATS = (("PNG copies", "png"), ("Contact sheet", "sheet"),
                  ("HTML gallery", "html"), ("Zip of all", "zip"))

# (request, should_stop) -> the job's events; default: export(request, records=...)
MakeEvents = Callable[[Any, Callable[[], bool]], Iterator[Any]]


class ExportControls(QWidget):
    """See the module docstring. ``source`` names the page in notifications; ``ask(title,
    text) -> bool`` is the page's question (replaced in tests). ``finished`` is emitted when
    a job ends, however it ends; ``exported(ExportOutcome)`` when it succeeded. ``role`` is
    the job's name in the studio (the status bar follows it)."""

    finished = Signal()
    exported = Signal(object)

    def __init__(self, studio: Studio, source: str, ask: Callable[[str, str], bool],
                 parent: QWidget | None = None, *, role: str = "export") -> None:
        super().__init__(parent)
        self.studio = studio
        self.role = role
        self.source = source
        self.ask = ask
        self.job: JobWorker | None = None
        self._available = False
        self.format_combo = QComboBox()
        self.format_combo.setObjectName(f"{source.lower()}ExportFormat")
        for label, fmt in EXPORT_FORMATS:
            self.format_combo.addItem(label, fmt)
        self.captions_box = QCheckBox("Captions")
        self.captions_box.setChecked(True)
        self.captions_box.setToolTip("Sampler, steps and seed under each image of the contact "
                                     "sheet")
        self.export_button = QPushButton("Export…")
        self.status = QLabel("")
        self.status.setWordWrap(True)  # a long folder name must not widen the window
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.format_combo, 1)
        row.addWidget(self.captions_box)
        row.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.status.setVisible(False)
        self.set_available(False)

    def is_running(self) -> bool:
        return self.job is not None

    def set_available(self, available: bool) -> None:
        """Whether there is anything to export; Export… is enabled only then and while no
        export runs."""
        self._available = available
        self.export_button.setEnabled(available and self.job is None)

    def format(self) -> str:
        return str(self.format_combo.currentData())

    def _show(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def start(self, records: Sequence[Any], folder: str | None = None, *,
              make_events: MakeEvents | None = None, title: str = "diffstudio gallery",
              ) -> bool:
        """Export ``records`` (the samples planned: their names decide the files) into
        ``folder`` (asked for when None) as a job; False when nothing started (nothing to
        export, one already running, cancelled, or replacing files refused). ``make_events``
        builds the job's events from the request (default: export these records)."""
        from diffstudio.app.export import ExportRequest, export
        from diffstudio.engine.export import planned_targets

        if not records or self.job is not None:
            return False
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Export into folder",
                                                      str(self.studio.workspace))
            if not folder:
                return False
        fmt = self.format()
        try:
            existing = [p for p in planned_targets(records, Path(folder), fmt) if p.exists()]
        except ConfigError as exc:
            self.studio.notifications.warning(f"Export not started: {exc}", source=self.source)
            return False
        overwrite = bool(existing) and self.ask(
            "Replace files?", f"{existing[0].name}" + (f" and {len(existing) - 1} more"
                                                      if len(existing) > 1 else "")
            + f" already exist in {folder}. Replace them?")
        if existing and not overwrite:
            return False
        request = ExportRequest(sources=[r.path for r in records], out=folder, format=fmt,
                                overwrite=overwrite, captions=self.captions_box.isChecked(),
                                title=title)
        chosen = list(records)
        make = make_events or (lambda req, stop: export(req, records=chosen, should_stop=stop))
        job = JobWorker(self.role, lambda stop: make(request, stop))
        job.progress_ready.connect(self._on_progress)
        job.succeeded.connect(self._on_exported)
        job.failed.connect(lambda message, details: (
            self._show(f"Export failed: {message}"),
            self.studio.notifications.error(f"Export failed: {message}", details,
                                            source=self.source)))
        job.cancelled.connect(lambda message: self._show(f"Export cancelled: {message}"))
        job.finished.connect(self._on_finished)
        job.cpu_threads = 0  # exporting needs no torch threads
        self.job = job
        self._show(f"Exporting {len(chosen)} samples…")
        self.studio.add_job(self.role, job)
        job.start()
        self.set_available(self._available)
        return True

    def _on_progress(self) -> None:
        if self.job is not None:
            progress = self.job.take_progress()
            if progress is not None:
                self._show(progress.describe())

    def _on_exported(self, outcome: Any) -> None:
        where = outcome.files[0] if len(outcome.files) == 1 else outcome.out
        self._show(f"Exported {outcome.count} samples to {where}")
        self.studio.notifications.info(f"Exported {outcome.count} samples as {outcome.format} "
                                       f"to {where}", source=self.source)
        self.exported.emit(outcome)

    def _on_finished(self) -> None:
        self.job = None
        self.set_available(self._available)
        self.finished.emit()
