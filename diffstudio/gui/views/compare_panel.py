"""The Sample page's "Compare samplers" tab: several samplers from one run on identical initial
noise (the same seeds), side by side with their network evaluations and wall time."""

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

from diffstudio.errors import ConfigError
from diffstudio.gui.images import ImageView, grid_rgb8
from diffstudio.gui.plots import ParticlePlot
from diffstudio.gui.sampling_jobs import CompareEntry, CompareJob, CompareRequest
from diffstudio.gui.studio import Studio
from diffstudio.gui.views.sample_context import SampleContext

__all__ = ["ComparePanel"]

_MAX_SAMPLES = 64


class ComparePanel(QWidget):
    """Each ticked sampler runs with the parameters of its form on the Sample page."""

    def __init__(self, studio: Studio, sample_view: SampleContext,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.sample_view = sample_view
        self.job: CompareJob | None = None
        self.samplers_list = QListWidget()
        self.samplers_list.setMaximumHeight(120)
        self.compare_button = QPushButton("Compare")
        self.compare_button.setObjectName("compareButton")
        self.cancel_button = QPushButton("Cancel")
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
        column.addStretch(1)
        row.addLayout(column)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(results, 1)
        self.compare_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)

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

    def is_running(self) -> bool:
        return self.job is not None and self.job.isRunning()

    def update_buttons(self, ready: bool) -> None:
        self.compare_button.setEnabled(ready and not self.is_running())
        self.cancel_button.setEnabled(self.is_running())

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
        count = min(options["num_samples"], _MAX_SAMPLES)
        request = CompareRequest(source, samplers, num_samples=count, seed=options["seed"],
                                 device=self.studio.device.id)
        job = CompareJob(request, registry=self.studio.registry)
        job.entry_ready.connect(self._on_entry)
        job.succeeded.connect(lambda entries: self.status.setText(
            f"Done: {len(entries)} samplers on identical initial noise (seeds "
            f"{options['seed']}..{options['seed'] + count - 1})."))
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
