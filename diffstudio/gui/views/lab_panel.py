"""The Sample page's "2-D lab" tab: the seed's experiment in one click -- the mixture
0.8 N((5, 5), I) + 0.2 N((-5, -5), I), its exact score, annealed against plain Langevin side by
side, and the fraction of points near each mode next to the 0.8 / 0.2 truth. The numbers come
from :mod:`diffstudio.app.lab` (no math here)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from diffstudio.app.lab import LabOutcome
from diffstudio.gui import wheel_guard
from diffstudio.gui.plots import ParticlePlot
from diffstudio.gui.sampling_jobs import LabEntry, LabJob, LabRequest
from diffstudio.gui.studio import Studio

__all__ = ["LabPanel"]

_TITLES = {"annealed-langevin": "Annealed Langevin", "langevin": "Plain Langevin"}


class LabPanel(QWidget):
    """See the module docstring."""

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.job: LabJob | None = None
        note = QLabel(
            "Song &amp; Ermon 2019, Fig. 3: on the mixture 0.8 N((5,5), I) + 0.2 N((-5,-5), I) "
            "with its <b>exact</b> score, plain Langevin dynamics finds both modes but not their "
            "weights; annealed Langevin, starting from noise levels that connect the modes, "
            "does. Both samplers run with the defaults the data suggests (see the Sample "
            "page's values); no training is needed.")
        note.setWordWrap(True)
        self.points_spin = QSpinBox()
        self.points_spin.setRange(100, 20_000)
        self.points_spin.setSingleStep(500)
        self.points_spin.setValue(2000)
        self.points_spin.setSuffix(" points")
        self.run_button = QPushButton("Run the experiment")
        self.run_button.setObjectName("labButton")
        self.cancel_button = QPushButton("Cancel")
        self.status = QLabel("Press Run: two samplers, 1,000 score evaluations each.")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.plots: dict[str, ParticlePlot] = {}
        self.captions: dict[str, QLabel] = {}
        grid = QGridLayout()
        for column, sampler in enumerate(_TITLES):
            plot = ParticlePlot(_TITLES[sampler])
            caption = QLabel("")
            caption.setWordWrap(True)
            self.plots[sampler], self.captions[sampler] = plot, caption
            grid.addWidget(plot, 0, column)
            grid.addWidget(caption, 1, column)
        controls = QHBoxLayout()
        controls.addWidget(self.points_spin)
        controls.addWidget(self.run_button)
        controls.addWidget(self.cancel_button)
        controls.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        layout.addLayout(grid, 1)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        studio.engine_ready.connect(lambda _: self.update_buttons())
        wheel_guard.guard_tree(self)
        self.update_buttons()

    def is_running(self) -> bool:
        return self.job is not None and self.job.isRunning()

    def update_buttons(self) -> None:
        self.run_button.setEnabled(self.studio.ready and not self.is_running())
        self.cancel_button.setEnabled(self.is_running())

    def start(self) -> bool:
        if not self.studio.ready or self.is_running():
            return False
        for sampler in self.plots:  # the last run's points do not stay beside the new ones
            self.plots[sampler].set_particles(None)
            self.plots[sampler].set_background(None)
            self.captions[sampler].setText("waiting…")
        request = LabRequest(num_points=self.points_spin.value())
        job = LabJob(request, registry=self.studio.registry)
        job.entry_ready.connect(self._on_entry)
        job.succeeded.connect(self._on_succeeded)
        job.cancelled.connect(lambda message: self.status.setText(f"Cancelled: {message}"))
        job.failed.connect(self._on_failed)
        job.finished.connect(self._on_finished)
        self.job = job
        self.status.setText(f"Running annealed and plain Langevin on {request.num_points:,} "
                            "points…")
        self.studio.add_job("lab", job)
        job.start()
        self.update_buttons()
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.request_stop()

    def _on_entry(self, entry: LabEntry) -> None:
        if entry.sampler not in self.plots:
            return
        near, far = entry.fractions
        self.plots[entry.sampler].set_particles(entry.points)
        self.captions[entry.sampler].setText(
            f"<b>{near:.3f}</b> near (5, 5), <b>{far:.3f}</b> near (-5, -5); truth "
            f"<b>0.8 / 0.2</b><br>{entry.network_evaluations:,} score evaluations, "
            f"{entry.seconds:.1f} s")
        self.captions[entry.sampler].setToolTip(
            "\n".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                      for k, v in entry.params.items()))

    def _on_succeeded(self, outcome: LabOutcome) -> None:
        for sampler, plot in self.plots.items():
            plot.set_background(outcome.data)
            entry = next((e for e in outcome.entries if e.sampler == sampler), None)
            if entry is not None:
                plot.set_particles(entry.points)
        self.status.setText("Done: the particles in blue, the mixture's own points in grey.")

    def _on_failed(self, message: str, details: str) -> None:
        self.status.setText(f"Failed: {message}")
        self.studio.notifications.error(f"The 2-D lab failed: {message}", details,
                                        source="2-D lab")

    def _on_finished(self) -> None:
        self.job = None
        self.update_buttons()
