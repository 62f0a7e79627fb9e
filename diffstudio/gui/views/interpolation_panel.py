"""The Sample page's "Interpolation (DDIM)" tab: deterministic DDIM decodes points on the great
circle between the initial noises of two seeds (``diffstudio.engine.interpolation.slerp``),
so the row moves smoothly from one sample to the other (Song, Meng & Ermon, DDIM, arXiv
2010.02502, sec. 5.3). Progress and ETA while it decodes; Save writes the row like samples
(:func:`diffstudio.app.sample.save_interpolation`)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from diffstudio.app.sample import save_interpolation
from diffstudio.engine.runs import Run
from diffstudio.errors import ConfigError
from diffstudio.gui.forms import ParamForm
from diffstudio.gui.images import ImageView, grid_rgb8
from diffstudio.gui.plots import ParticlePlot
from diffstudio.gui.sampling_jobs import InterpolateRequest, Interpolation, InterpolationJob
from diffstudio.gui.studio import Studio
from diffstudio.gui.views.sample_context import SampleContext
from diffstudio.gui.workers import CallJob
from diffstudio.specs import Param

__all__ = ["INTERPOLATION_PARAMS", "InterpolationPanel"]

INTERPOLATION_PARAMS: tuple[Param, ...] = (
    Param("seed_a", "int", 0, minimum=0, maximum=2**31 - 1, help="the noise at one end"),
    Param("seed_b", "int", 1, minimum=0, maximum=2**31 - 1, help="the noise at the other end"),
    Param("frames", "int", 10, minimum=2, maximum=64, help="points along the path"),
    Param("steps", "int", 50, minimum=1, maximum=10_000, help="DDIM steps (eta = 0)"),
)


class InterpolationPanel(QWidget):
    """Seeds, number of points and DDIM steps; the decoded row (or path, for 2-D points)."""

    def __init__(self, studio: Studio, sample_view: SampleContext,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.sample_view = sample_view
        self.job: InterpolationJob | None = None
        self.result: Interpolation | None = None
        self.form = ParamForm(INTERPOLATION_PARAMS, validator=self._check_steps)
        self.saved_to: str | None = None
        self.button = QPushButton("Interpolate")
        self.button.setObjectName("interpolateButton")
        self.cancel_button = QPushButton("Cancel")
        self.save_button = QPushButton("Save")
        self.save_button.setObjectName("interpolationSaveButton")
        self.save_button.setToolTip("Write the row (a PNG per point with both seeds and its "
                                    "position, and row.png) into the run's samples folder")
        note = QLabel("Deterministic DDIM (eta = 0) decodes points on the great circle between "
                      "the initial noises of two seeds (spherical interpolation, slerp), so the "
                      "row moves smoothly from one sample to the other (DDIM paper, sec. 5.3).")
        note.setWordWrap(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.view = ImageView("The decoded row appears here.")
        self.points = ParticlePlot("decoded path")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.view)
        self.stack.addWidget(self.points)
        row = QHBoxLayout()
        row.addWidget(self.form, 1)
        column = QVBoxLayout()
        for button in (self.button, self.cancel_button, self.save_button):
            column.addWidget(button)
        column.addStretch(1)
        row.addLayout(column)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.stack, 1)
        self.button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(lambda: self.save())
        self.update_buttons(False)

    def _check_steps(self, values: dict[str, Any]) -> dict[str, Any]:
        """DDIM takes at most T steps of the run's schedule: say so before anything starts."""
        limit = self.sample_view.run_timesteps()
        if limit is not None and values["steps"] > limit:
            raise ConfigError(f"steps {values['steps']} is more than the run's schedule has: "
                              f"T = {limit}, so at most {limit} DDIM steps")
        return values

    def is_running(self) -> bool:
        return self.job is not None and self.job.isRunning()

    def update_buttons(self, ready: bool) -> None:
        self.button.setEnabled(ready and not self.is_running())
        self.cancel_button.setEnabled(self.is_running())
        self.save_button.setEnabled(self.result is not None and not self.is_running())

    def cancel(self) -> None:
        if self.job is not None:
            self.job.request_stop()

    def start(self) -> bool:
        """Decode a slerp path between two seeds' noises with DDIM (in the background)."""
        if not self.studio.ready or self.is_running():
            return False
        view = self.sample_view
        try:
            source = view.run_source()
            values = self.form.validated()
        except ConfigError as exc:
            self.status.setText(f"Not started: {exc}")
            return False
        request = InterpolateRequest(source, seed_a=values["seed_a"], seed_b=values["seed_b"],
                                     count=values["frames"], steps=values["steps"],
                                     device=self.studio.device.id)
        self.result, self.saved_to = None, None  # a new row replaces the old one
        job = InterpolationJob(request, registry=self.studio.registry)
        job.progress_ready.connect(self._on_progress)
        job.cancelled.connect(lambda message: self.status.setText(f"Cancelled: {message}"))
        job.succeeded.connect(self._on_decoded)
        job.failed.connect(self._on_failed)
        job.finished.connect(self._on_finished)
        self.job = job
        self.status.setText("Decoding…")
        self.studio.add_job("interpolate", job)
        job.start()
        view.update_buttons()
        return True

    def _on_decoded(self, path: Interpolation) -> None:
        self.result = path
        caption = (f"seed {path.seed_a} → seed {path.seed_b}: {len(path.alphas)} points, "
                   f"DDIM {path.steps} steps, {path.seconds:.2f} s")
        if path.samples.ndim == 4:
            self.stack.setCurrentWidget(self.view)
            self.view.set_array(grid_rgb8(path.samples, columns=len(path.alphas)), caption)
        else:
            self.stack.setCurrentWidget(self.points)
            summary = self.sample_view.summary
            if summary is not None and summary.kind == "points":
                self.points.set_background(summary.data, summary.density, summary.extent)
            self.points.set_particles(path.samples)
        self.status.setText(caption)

    def _on_progress(self) -> None:
        progress = self.job.take_progress() if self.job is not None else None
        if progress is not None:
            self.status.setText(f"Decoding: {progress.describe()}")

    def save(self, out: str | None = None) -> bool:
        """Save the decoded row (in the background) into ``out``, by default a new
        ``<run>/samples/interpolation-<time>`` folder; True when the save started."""
        if self.result is None or self.is_running():
            return False
        path = self.result
        if out is None:
            run = path.metadata.get("run")
            if not run:
                self.status.setText("Not saved: the interpolation names no run.")
                return False
            out = str(Run(run).new_samples_dir("interpolation"))
        job = CallJob("save-interpolation", save_interpolation, path, out)
        job.succeeded.connect(self._on_saved)
        job.failed.connect(lambda message, details: self.studio.notifications.error(
            f"Saving the interpolation failed: {message}", details, source="Interpolation"))
        self.studio.add_job("save", job)
        job.start()
        return True

    def _on_saved(self, folder: Any) -> None:
        self.saved_to = str(folder)
        self.studio.notifications.info(f"Saved the interpolation ({len(self.result.alphas)} "
                                       f"points and row.png) to {folder}",
                                       source="Interpolation")

    def _on_failed(self, message: str, details: str) -> None:
        self.status.setText(f"Failed: {message}")
        self.studio.notifications.error(f"Interpolation failed: {message}", details,
                                        source="Interpolation")

    def _on_finished(self) -> None:
        self.job = None
        self.sample_view.update_buttons()
