"""The Data page: choose a dataset and its parameters, and look at it (a grid of images, or
the points in the plane with the exact density of the analytic mixture)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGroupBox,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from diffstudio.errors import ConfigError
from diffstudio.gui.forms import ContributionPicker
from diffstudio.gui.images import ImageView, grid_rgb8
from diffstudio.gui.plots import ParticlePlot
from diffstudio.gui.sampling_jobs import DatasetPreview, load_dataset_preview
from diffstudio.gui.studio import Studio
from diffstudio.gui.workers import CallJob

__all__ = ["DataView"]


class DataView(QWidget):
    """The dataset picker (forms from the plugins' schemas) and a preview of the data."""

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.preview: DatasetPreview | None = None
        self._job: CallJob | None = None
        self._loaded_once = False
        self.picker = ContributionPicker("dataset")
        self.load_button = QPushButton("Load and preview")
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box = QGroupBox("Dataset")
        box_layout = QVBoxLayout(box)
        box_layout.addWidget(self.picker)
        box_layout.addWidget(self.load_button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(box)
        left_layout.addWidget(self.info)
        left_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(330)

        self.images = ImageView("Press “Load and preview” to see the data.")
        self.points = ParticlePlot()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.images)
        self.stack.addWidget(self.points)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(scroll)
        splitter.addWidget(self.stack)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 900])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)

        self.load_button.clicked.connect(self.load)
        # A previous dataset's error (or description) does not belong to the new choice.
        self.picker.changed.connect(lambda _: self.info.clear())
        studio.registry_changed.connect(
            lambda registry: self.picker.set_contributions(registry.contributions("dataset")))
        studio.engine_ready.connect(self._on_engine_ready)
        studio.jobs_changed.connect(self._update_buttons)
        if studio.registry is not None:
            self.picker.set_contributions(studio.registry.contributions("dataset"))
        self._update_buttons()

    def _update_buttons(self) -> None:
        loading = self._job is not None and self._job.isRunning()
        self.load_button.setEnabled(self.studio.ready and not loading)
        self.load_button.setText("Loading…" if loading else "Load and preview")

    def _on_engine_ready(self, _: Any) -> None:
        self._update_buttons()
        if not self._loaded_once:
            self.load()  # the default (digits) is small: show it straight away

    def selection(self) -> tuple[str, dict[str, Any]]:
        """(dataset id, validated parameters); :class:`ConfigError` is shown inline."""
        return self.picker.validated()

    def load(self) -> bool:
        if not self.studio.ready or (self._job is not None and self._job.isRunning()):
            return False
        try:
            dataset_id, params = self.selection()
        except ConfigError as exc:
            self.info.setText(f"<span style='color:#b52a25'>{exc}</span>")
            return False
        self._loaded_once = True
        job = CallJob("load-dataset", load_dataset_preview, self.studio.registry, dataset_id,
                      params)
        job.succeeded.connect(self._on_loaded)
        job.failed.connect(self._on_failed)
        job.finished.connect(self._on_finished)
        self._job = job
        self.info.setText(f"Loading {dataset_id}…")
        self.studio.add_job("dataset", job)
        job.start()
        self._update_buttons()
        return True

    def _on_finished(self) -> None:
        self._job = None
        self._update_buttons()

    def _on_failed(self, message: str, details: str) -> None:
        # The old preview and caption would pass for this dataset's: clear them.
        self.images.set_image(None)
        self.points.set_background(None)
        self.points.set_particles(None)
        self.stack.setCurrentWidget(self.images)
        self.info.setText(f"<span style='color:#b52a25'>Could not load the dataset: "
                          f"{message}</span>")
        self.studio.notifications.error(f"Could not load the dataset: {message}", details,
                                        source="Data")

    def _on_loaded(self, preview: DatasetPreview) -> None:
        self.preview = preview
        dataset = preview.dataset
        noun = "images" if dataset.kind == "image" else "points"
        lines = [f"<b>{dataset.name}</b>: {len(dataset):,} {noun} of shape "
                 f"{tuple(dataset.sample_shape)}"]
        if dataset.num_classes:
            names = ", ".join((dataset.class_names or [])[:10])
            lines.append(f"{dataset.num_classes} classes: {names}")
        if dataset.source:
            lines.append(f"source: {dataset.source}")
        if dataset.skipped:
            lines.append(f"<span style='color:#b5651d'>{len(dataset.skipped)} file(s) skipped:"
                         "</span>")
            lines += [f"&nbsp;&nbsp;{s.path}: {s.reason}" for s in dataset.skipped[:20]]
            if len(dataset.skipped) > 20:
                lines.append(f"&nbsp;&nbsp;… and {len(dataset.skipped) - 20} more")
        self.info.setText("<br>".join(lines))
        if preview.samples.ndim == 4:
            self.stack.setCurrentWidget(self.images)
            self.images.set_array(grid_rgb8(preview.samples),
                                  f"the first {len(preview.samples)} of {len(dataset):,}")
        else:
            self.stack.setCurrentWidget(self.points)
            self.points.set_background(preview.samples, preview.density, preview.extent)
        self.studio.dataset = dataset
        self.studio.dataset_loaded.emit(dataset)

    def state(self) -> dict[str, Any]:
        return self.picker.state()

    def restore(self, state: dict[str, Any] | None) -> None:
        self.picker.restore(state)
