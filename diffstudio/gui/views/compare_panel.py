"""The Sample page's "Compare samplers" tab: several samplers from one run on identical initial
noise (the same seeds), side by side with their network evaluations and wall time, with
progress while they run; Save writes them like samples (:func:`diffstudio.app.sample.
save_comparison`: one folder of PNGs with metadata per sampler and one grid)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from diffstudio.app.sample import save_comparison
from diffstudio.engine.runs import Run
from diffstudio.errors import ConfigError
from diffstudio.gui.images import ImageView, grid_rgb8
from diffstudio.gui.plots import ParticlePlot
from diffstudio.gui.sampling_jobs import CompareEntry, CompareJob, CompareRequest
from diffstudio.gui.studio import Studio
from diffstudio.gui.views.sample_context import SampleContext
from diffstudio.gui.workers import CallJob

__all__ = ["ComparePanel"]

_MAX_SAMPLES = 64
_VISIBLE_ROWS = 8  # the sampler list shows this many rows before it scrolls


class ComparePanel(QWidget):
    """Each ticked sampler runs with the parameters of its form on the Sample page."""

    def __init__(self, studio: Studio, sample_view: SampleContext,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.sample_view = sample_view
        self.job: CompareJob | None = None
        self.entries: list[CompareEntry] = []  # the last finished comparison (what Save writes)
        self.saved_to: str | None = None
        self.samplers_list = QListWidget()
        self.samplers_list.setObjectName("compareSamplers")
        self.samplers_list.setSizePolicy(QSizePolicy.Policy.Expanding,
                                         QSizePolicy.Policy.Fixed)
        self.compare_button = QPushButton("Compare")
        self.compare_button.setObjectName("compareButton")
        self.cancel_button = QPushButton("Cancel")
        self.save_button = QPushButton("Save")
        self.save_button.setObjectName("compareSaveButton")
        self.save_button.setToolTip("Write each sampler's samples (PNGs with their parameters) "
                                    "and one grid, a row per sampler, into the run's samples "
                                    "folder")
        note = QLabel("Each ticked sampler runs with the parameters set in its form on the left, "
                      "from the same run, on identical initial noise (the same seeds), "
                      "with the number of samples and seed set there.")
        note.setWordWrap(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.grid = QGridLayout()
        results = QWidget()
        results.setLayout(self.grid)
        row = QHBoxLayout()
        row.addWidget(self.samplers_list, 1)
        column = QVBoxLayout()
        column.addWidget(self.compare_button)
        column.addWidget(self.cancel_button)
        column.addWidget(self.save_button)
        column.addStretch(1)
        row.addLayout(column)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(results, 1)
        self.compare_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(lambda: self.save())
        self.update_buttons(False)

    def set_samplers(self, contributions: list[Any]) -> None:
        """Offer every sampler; DDPM and DDIM are ticked to begin with."""
        self.samplers_list.clear()
        for contribution in contributions:
            item = QListWidgetItem(f"{contribution.display_name}  [{contribution.id}]")
            item.setData(Qt.ItemDataRole.UserRole, contribution.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            checked = contribution.id in ("ddim", "ddpm")
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            self.samplers_list.addItem(item)
        self._fit_list()

    def _fit_list(self) -> None:
        """Tall enough for every sampler (up to eight rows, then it scrolls): never cut off."""
        rows = max(1, min(self.samplers_list.count(), _VISIBLE_ROWS))
        row_height = max(self.samplers_list.sizeHintForRow(0), self.fontMetrics().height() + 4)
        frame = 2 * self.samplers_list.frameWidth()
        self.samplers_list.setFixedHeight(rows * row_height + frame + 2)

    def is_running(self) -> bool:
        return self.job is not None and self.job.isRunning()

    def update_buttons(self, ready: bool) -> None:
        self.compare_button.setEnabled(ready and not self.is_running())
        self.cancel_button.setEnabled(self.is_running())
        self.save_button.setEnabled(bool(self.entries) and not self.is_running())

    def chosen(self) -> list[tuple[str, dict[str, Any]]]:
        """The ticked samplers with their forms' values (validated; ConfigError inline)."""
        chosen = []
        for row in range(self.samplers_list.count()):
            item = self.samplers_list.item(row)
            if item.checkState() == Qt.CheckState.Checked:
                sampler_id = item.data(Qt.ItemDataRole.UserRole)
                chosen.append((sampler_id, self.sample_view.sampler_values(sampler_id)))
        if len(chosen) < 2:
            raise ConfigError("tick at least two samplers to compare")
        return chosen

    def start(self) -> bool:
        if not self.studio.ready or self.is_running():
            return False
        view = self.sample_view
        try:
            source = view.run_source()
            samplers = self.chosen()
            options = view.sampling_options()
        except ConfigError as exc:
            self.status.setText(f"Not started: {exc}")
            return False
        while self.grid.count():
            widget = self.grid.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        self.entries, self.saved_to = [], None
        count = min(options["num_samples"], _MAX_SAMPLES)
        request = CompareRequest(source, samplers, num_samples=count, seed=options["seed"],
                                 device=self.studio.device.id)
        job = CompareJob(request, registry=self.studio.registry)
        job.entry_ready.connect(self._on_entry)
        job.progress_ready.connect(self._on_progress)
        job.succeeded.connect(lambda entries: self._on_succeeded(entries, options["seed"],
                                                                 count))
        job.cancelled.connect(lambda message: self.status.setText(f"Cancelled: {message}"))
        job.failed.connect(self._on_failed)
        job.finished.connect(self._on_finished)
        self.job = job
        self.status.setText(f"Running {len(samplers)} samplers…")
        self.studio.add_job("compare", job)
        job.start()
        view.update_buttons()
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.request_stop()

    def _on_progress(self) -> None:
        progress = self.job.take_progress() if self.job is not None else None
        if progress is not None:
            self.status.setText(progress.describe())

    def _on_succeeded(self, entries: list[CompareEntry], seed: int, count: int) -> None:
        self.entries = list(entries)
        self.status.setText(f"Done: {len(entries)} samplers on identical initial noise (seeds "
                            f"{seed}..{seed + count - 1}). Save writes them into the run's "
                            "samples folder.")

    def save(self, out: str | None = None) -> bool:
        """Save the last comparison (in the background) into ``out``, by default a new
        ``<run>/samples/compare-<time>`` folder; True when the save started."""
        if not self.entries or self.is_running():
            return False
        entries = list(self.entries)
        if out is None:
            run = entries[0].metadata.get("run")
            if not run:
                self.status.setText("Not saved: the comparison names no run.")
                return False
            out = str(Run(run).new_samples_dir("compare"))
        job = CallJob("save-comparison", save_comparison, entries, out)
        job.succeeded.connect(self._on_saved)
        job.failed.connect(lambda message, details: self.studio.notifications.error(
            f"Saving the comparison failed: {message}", details, source="Compare"))
        self.studio.add_job("save", job)
        job.start()
        return True

    def _on_saved(self, folder: Any) -> None:
        self.saved_to = str(folder)
        self.studio.notifications.info(
            f"Saved the comparison of {len(self.entries)} samplers (a folder of PNGs per "
            f"sampler and comparison.png) to {folder}", source="Compare")

    def _on_entry(self, entry: CompareEntry) -> None:
        column = self.grid.count()
        title = f"{entry.sampler}: {entry.network_evaluations} network evaluations, " \
                f"{entry.seconds:.2f} s"
        params = ", ".join(f"{k}={v}" for k, v in entry.params.items())
        if entry.samples.ndim == 4:
            view: QWidget = ImageView()
            view.set_array(grid_rgb8(entry.samples), title)
        else:
            view = ParticlePlot(title)
            summary = self.sample_view.summary
            if summary is not None and summary.kind == "points":
                view.set_background(summary.data, summary.density, summary.extent)
            view.set_particles(entry.samples)
        view.setToolTip(params)
        self.grid.addWidget(view, 0, column)

    def captions(self) -> list[str]:
        """What each result says (sampler, network evaluations, wall time), in order."""
        return [self.grid.itemAt(i).widget().caption() for i in range(self.grid.count())
                if isinstance(self.grid.itemAt(i).widget(), ImageView)]

    def _on_failed(self, message: str, details: str) -> None:
        self.status.setText(f"Failed: {message}")
        self.studio.notifications.error(f"Comparison failed: {message}", details,
                                        source="Compare")

    def _on_finished(self) -> None:
        self.job = None
        self.sample_view.update_buttons()
