"""The Model & schedule page: the network and the noise schedule (forms from the plugins'
schemas), T and the prediction type, and the forward-process explorer: x_t ~ q(x_t | x_0) of a
few training samples for a slider over the chosen schedule's grid, next to the alpha-bar and SNR
curves of linear, cosine and the chosen schedule against t in [0, 1]. Every schedule (DDPM,
NCSN, the SDEs, a plugin's) is an engine :class:`~diffstudio.engine.processes.DiffusionProcess`
and every number comes from its methods (``grid``, ``marginal``, ``alpha_bar``, ``snr``,
``q_sample``); nothing here computes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from diffstudio.engine.train_config import DEFAULT_COMPONENTS
from diffstudio.errors import ConfigError, DiffstudioError
from diffstudio.gui.forms import ContributionPicker, ParamForm
from diffstudio.gui.images import ImageView, grid_rgb8
from diffstudio.gui.plots import ParticlePlot, SchedulePlot
from diffstudio.gui.studio import Studio
from diffstudio.gui.train_settings import DIFFUSION_PARAMS, diffusion_params

__all__ = ["ModelView"]

_EXPLORER_IMAGES = 8
_EXPLORER_POINTS = 2000


class ModelView(QWidget):
    """Network, schedule and diffusion settings, with the forward-process explorer."""

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.schedules: dict[str, Any] = {}
        self._x0: Any = None  # torch tensor of the explorer's clean samples
        self._noise: Any = None
        self.chosen_name = ""
        self.network_picker = ContributionPicker("network")
        self.schedule_picker = ContributionPicker("schedule")
        self.diffusion_form = ParamForm(DIFFUSION_PARAMS)
        network_box = QGroupBox("Network")
        QVBoxLayout(network_box).addWidget(self.network_picker)
        schedule_box = QGroupBox("Noise schedule")
        schedule_layout = QVBoxLayout(schedule_box)
        schedule_layout.addWidget(self.schedule_picker)
        self._scale: Any = None  # the loaded data's NoiseScale (points), for the levels' hints
        self._level_suggestions: dict[str, Any] = {}
        self.levels_button = QPushButton("Use the data's noise levels")
        self.levels_button.setObjectName("useDataLevelsButton")
        self.levels_button.setToolTip("Set sigma_max and sigma_min to the loaded data's range "
                                      "(the hints below the fields say what and why)")
        self.levels_button.setVisible(False)
        self.levels_button.clicked.connect(self.use_data_levels)
        schedule_layout.addWidget(self.levels_button)
        diffusion_box = QGroupBox("Diffusion")
        self._diffusion_layout = QVBoxLayout(diffusion_box)
        self._diffusion_layout.addWidget(self.diffusion_form)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(network_box)
        left_layout.addWidget(schedule_box)
        left_layout.addWidget(diffusion_box)
        left_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(330)

        self.curves = SchedulePlot()
        self.t_slider = QSlider(Qt.Orientation.Horizontal)
        self.t_slider.setRange(0, 999)
        self.t_slider.setValue(250)
        self.t_label = QLabel("")
        self.t_label.setMinimumWidth(360)
        self.t_label.setWordWrap(True)  # a narrow window: two lines, not a cut-off line
        self.xt_view = ImageView("x_t of the Data page's samples appears here once the data "
                                 "is loaded.")
        self.xt_points = ParticlePlot("x_t")
        self.xt_stack = QStackedWidget()
        self.xt_stack.addWidget(self.xt_view)
        self.xt_stack.addWidget(self.xt_points)
        slider_row = QHBoxLayout()
        slider_row.addWidget(QLabel("t"))
        slider_row.addWidget(self.t_slider, 1)
        slider_row.addWidget(self.t_label)
        explorer = QGroupBox("Forward process q(x_t | x_0) under the chosen schedule")
        explorer_layout = QVBoxLayout(explorer)
        explorer_layout.addLayout(slider_row)
        explorer_layout.addWidget(self.xt_stack, 1)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.curves)
        right.addWidget(explorer)
        right.setSizes([330, 420])

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(scroll)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 900])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)

        studio.registry_changed.connect(self._on_registry)
        studio.engine_ready.connect(self._on_engine_ready)
        studio.dataset_loaded.connect(self.set_dataset)
        self.schedule_picker.changed.connect(lambda _: self.update_schedules())
        self.schedule_picker.changed.connect(lambda _: self.update_level_hints())
        for form in self._schedule_forms():
            form.changed.connect(self.update_schedules)
            form.changed.connect(self.update_level_hints)
        self.diffusion_form.changed.connect(self.update_schedules)
        self.t_slider.valueChanged.connect(self.update_explorer)
        if studio.registry is not None:
            self._on_registry(studio.registry)

    def _on_engine_ready(self, _: Any = None) -> None:
        """Offer the engine's own prediction types (the list may grow with the engine)."""
        from diffstudio.engine.parameterization import PREDICTION_TYPES

        offered = next(p for p in self.diffusion_form.params if p.name == "prediction_type")
        if tuple(offered.choices or ()) != tuple(PREDICTION_TYPES):
            values = self.diffusion_form.values()
            form = ParamForm(diffusion_params(tuple(PREDICTION_TYPES)))
            form.set_values(values)
            self._diffusion_layout.replaceWidget(self.diffusion_form, form)
            self.diffusion_form.deleteLater()
            self.diffusion_form = form
            form.changed.connect(self.update_schedules)
        self.update_schedules()

    def _schedule_forms(self) -> list[ParamForm]:
        return list(self.schedule_picker.forms.values())

    def _on_registry(self, registry: Any) -> None:
        first = self.schedule_picker.current_id() is None
        self.network_picker.set_contributions(registry.contributions("network"))
        self.schedule_picker.set_contributions(registry.contributions("schedule"))
        if first:  # the schedule a training gets when it names none, as on the command line
            self.schedule_picker.select(DEFAULT_COMPONENTS["schedule"])
        for form in self._schedule_forms():
            form.changed.connect(self.update_schedules)
            form.changed.connect(self.update_level_hints)
        self.update_schedules()
        self.update_level_hints()

    # -- selections -------------------------------------------------------------------------------
    def selection(self) -> dict[str, Any]:
        """network, schedule (ids and validated params), num_timesteps, prediction_type."""
        network_id, network_params = self.network_picker.validated()
        schedule_id, schedule_params = self.schedule_picker.validated()
        diffusion = self.diffusion_form.validated()
        return {"network": network_id, "network_params": network_params,
                "schedule": schedule_id, "schedule_params": schedule_params, **diffusion}

    def suggest_network(self, dataset_tags: tuple[str, ...]) -> None:
        """Pick a network made for the data (by contribution tags: "image" or "points")."""
        current = self.network_picker.current_contribution()
        wanted = "points" if "points" in dataset_tags else "image"
        if current is not None and wanted in current.tags:
            return
        for contribution in self.network_picker.contributions.values():
            if wanted in contribution.tags:
                self.network_picker.select(contribution.id)
                return

    # -- the explorer -----------------------------------------------------------------------------
    def update_schedules(self) -> None:
        """Rebuild linear, cosine and the chosen schedule with the engine; redraw the curves."""
        registry = self.studio.registry
        if registry is None or not self.studio.ready:
            return
        from diffstudio.engine.components import build_schedule

        try:
            steps = int(self.diffusion_form.validated()["num_timesteps"])
            chosen_id, chosen_params = self.schedule_picker.validated()
        except ConfigError:
            return
        wanted = {"linear": ("linear", {}), "cosine": ("cosine", {})}
        if chosen_id in wanted and chosen_params == registry.get("schedule", chosen_id).validate():
            self.chosen_name = chosen_id
        else:
            self.chosen_name = f"{chosen_id} (chosen)"
            wanted[self.chosen_name] = (chosen_id, chosen_params)
        schedules = {}
        for name, (schedule_id, params) in wanted.items():
            if schedule_id not in registry.ids("schedule"):
                continue
            try:
                schedules[name] = build_schedule(registry, schedule_id, params, steps)
            except DiffstudioError as exc:
                self.schedule_picker.form(schedule_id).show_error(str(exc))
        self.schedules = schedules
        curves = {}
        for name, process in schedules.items():
            grid = process.grid
            curves[name] = (grid.numpy(), process.alpha_bar(grid).numpy(),
                            process.snr(grid).numpy())
        self.curves.set_curves(curves)
        chosen = schedules.get(self.chosen_name)
        if chosen is not None:
            self._set_slider_steps(chosen.num_timesteps)
        self.update_explorer()

    def _set_slider_steps(self, steps: int) -> None:
        """One slider position per grid point, keeping the slider's place along [0, 1]."""
        old_maximum = self.t_slider.maximum()
        if old_maximum == steps - 1:
            return
        fraction = self.t_slider.value() / old_maximum if old_maximum > 0 else 0.0
        self.t_slider.blockSignals(True)
        try:
            self.t_slider.setRange(0, steps - 1)
            self.t_slider.setValue(round(fraction * (steps - 1)))
        finally:
            self.t_slider.blockSignals(False)

    # -- noise levels that fit the data ---------------------------------------------------------
    def clear_data_scale(self) -> None:
        """The data changed (its new scale is not known yet): no hints of the old one."""
        self._scale = None
        self.update_level_hints()

    def update_level_hints(self) -> None:
        """Below sigma_max and sigma_min of a schedule that has them, the levels the loaded
        data suggests (engine ``suggest_schedule_levels``), with a warning when sigma_max is
        too small to carry samples between modes; the fields keep their values until "Use the
        data's noise levels" is pressed."""
        for form in self._schedule_forms():
            form.set_hints({})
        self._level_suggestions = {}
        contribution = self.schedule_picker.current_contribution()
        form = self.schedule_picker.form()
        if contribution is None or form is None or self._scale is None:
            self.levels_button.setVisible(False)
            return
        from diffstudio.engine.suggestions import suggest_schedule_levels

        suggestions = suggest_schedule_levels([p.name for p in contribution.params],
                                              self._scale)
        self._level_suggestions = suggestions
        values = form.values()
        hints = {}
        for name, suggestion in suggestions.items():
            hint = f"the data suggests {suggestion.value:.3g} ({suggestion.reason})"
            current = values.get(name)
            if name == "sigma_max" and isinstance(current, float) and \
                    current < 0.5 * suggestion.value:
                hint = (f"⚠ below half the data's largest distance: noise this small cannot "
                        f"carry samples between modes, so their weights come out wrong; {hint}")
            hints[name] = hint
        form.set_hints(hints)
        differs = any(not isinstance(values.get(name), float)
                      or abs(values[name] - s.value) > 1e-3 * s.value
                      for name, s in suggestions.items())
        self.levels_button.setVisible(bool(suggestions) and differs)

    def use_data_levels(self) -> None:
        """Put the suggested sigma_max and sigma_min into the schedule form (the user asked)."""
        form = self.schedule_picker.form()
        if form is None or not self._level_suggestions:
            return
        rounded = {name: float(f"{s.value:.3g}") for name, s in self._level_suggestions.items()}
        form.set_values({**form.values(), **rounded})
        self.update_level_hints()

    def set_dataset(self, dataset: Any) -> None:
        """Take the explorer's clean samples x_0 from a loaded dataset, with fixed noise."""
        import torch

        from diffstudio.engine.suggestions import noise_scale

        self._scale = noise_scale(dataset)
        self.update_level_hints()
        count = _EXPLORER_IMAGES if dataset.kind == "image" else _EXPLORER_POINTS
        self._x0 = dataset.data[:count].float()
        generator = torch.Generator().manual_seed(0)
        self._noise = torch.randn(self._x0.shape, generator=generator)
        self.xt_stack.setCurrentWidget(self.xt_view if dataset.kind == "image" else
                                       self.xt_points)
        if dataset.kind == "points":
            self.xt_points.set_background(self._x0.numpy())
        self.update_explorer()

    def update_explorer(self) -> None:
        """Show x_t at the slider's grid point of the chosen schedule, and its m, s, alpha-bar
        and SNR."""
        process = self.schedules.get(self.chosen_name)
        if process is None:
            return
        steps = process.num_timesteps
        index = min(self.t_slider.value(), steps - 1)
        t = process.grid[index]
        m, s = (float(v) for v in process.marginal(t))
        alpha_bar, snr = float(process.alpha_bar(t)), float(process.snr(t))
        self.curves.set_marker(float(t))
        self.t_label.setText(f"step {index + 1}/{steps}   t = {float(t):.4g}   m = {m:.4g}   "
                             f"s = {s:.4g}   alpha-bar = {alpha_bar:.4f}   SNR = {snr:.4g}   "
                             f"({self.chosen_name})")
        if self._x0 is None:
            return
        x_t = process.q_sample(self._x0, t, self._noise).numpy()
        if x_t.ndim == 4:
            # Row 1: x_0; row 2: x_t (values beyond [-1, 1] are clipped for display).
            both = np.concatenate([self._x0.numpy(), x_t])
            self.xt_view.set_array(grid_rgb8(both, columns=len(x_t)),
                                   f"x_0 (top) and x_t at t = {float(t):.4g} (bottom)")
        else:
            self.xt_points.set_particles(x_t)

    # -- settings ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"network": self.network_picker.state(), "schedule": self.schedule_picker.state(),
                "diffusion": self.diffusion_form.values()}

    def restore(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.network_picker.restore(state.get("network"))
        self.schedule_picker.restore(state.get("schedule"))
        if isinstance(state.get("diffusion"), dict):
            known = {p.name for p in DIFFUSION_PARAMS}
            self.diffusion_form.set_values(
                {k: v for k, v in state["diffusion"].items() if k in known})
        self.update_schedules()
