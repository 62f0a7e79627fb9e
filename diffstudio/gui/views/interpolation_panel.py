"""The Sample page's "Interpolation (DDIM)" tab: deterministic DDIM decodes points on the great
circle between the initial noises of two seeds (``diffstudio.engine.interpolation.slerp``),
so the row moves smoothly from one sample to the other (Song, Meng & Ermon, DDIM, arXiv
2010.02502, sec. 5.3)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from diffstudio.errors import ConfigError
from diffstudio.gui.forms import ParamForm
from diffstudio.gui.images import ImageView, grid_rgb8
from diffstudio.gui.plots import ParticlePlot
from diffstudio.gui.sampling_jobs import InterpolateRequest, Interpolation, InterpolationJob
from diffstudio.gui.studio import Studio
from diffstudio.gui.views.sample_context import SampleContext
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
        self.form = ParamForm(INTERPOLATION_PARAMS)
        self.button = QPushButton("Interpolate")
        self.button.setObjectName("interpolateButton")
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
        row.addWidget(self.button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.stack, 1)
        self.button.clicked.connect(self.start)

    def is_running(self) -> bool:
        return self.job is not None and self.job.isRunning()

    def update_buttons(self, ready: bool) -> None:
        self.button.setEnabled(ready and not self.is_running())

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
        job = InterpolationJob(request, registry=self.studio.registry)
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

    def _on_failed(self, message: str, details: str) -> None:
        self.status.setText(f"Failed: {message}")
        self.studio.notifications.error(f"Interpolation failed: {message}", details,
                                        source="Interpolation")

    def _on_finished(self) -> None:
        self.job = None
        self.sample_view.update_buttons()
