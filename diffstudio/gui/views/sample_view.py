"""The Sample page: choose a run, a sampler and its parameters, the number of samples and the
seed; watch x_t and the predicted x_0 as the sampler steps (particles for 2-D data), with a
trajectory strip of the first sample; cancel; save; export the result (saved or not) with the
Gallery's export controls and job. Further tabs compare samplers on identical
initial noise and decode a DDIM interpolation between two seeds.

Live frames are throttled by time in the worker (at most "Live fps" a second, 10 by default)
and only the newest is kept, so the view costs the sampler a few percent at most; see
``bench/bench_gui.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from diffstudio.app.sample import (
    outcome_sample_metadata,
    save_outcome,
    save_outcome_sample,
    unset_parameter_values,
)
from diffstudio.app.sources import ModelSource
from diffstudio.engine.runs import Run
from diffstudio.errors import ConfigError, DiffstudioError
from diffstudio.gui.export_controls import ExportControls
from diffstudio.gui.forms import ContributionPicker, ParamForm, PathEdit
from diffstudio.gui.images import ImageView, grid_rgb8
from diffstudio.gui.panels import FormScroll, ask_question, form_column
from diffstudio.gui.plots import ParticlePlot
from diffstudio.gui.run_chooser import RunChooser
from diffstudio.gui.sample_grid import SampleGridView
from diffstudio.gui.sampling_jobs import (
    ModelSummary,
    SampleFrame,
    SampleJob,
    SampleOutcome,
    SampleRequest,
    TrajectoryFrame,
)
from diffstudio.gui.studio import Studio
from diffstudio.gui.switch import SourceSwitch
from diffstudio.gui.views.compare_panel import ComparePanel
from diffstudio.gui.views.interpolation_panel import InterpolationPanel
from diffstudio.gui.views.lab_panel import LabPanel
from diffstudio.gui.workers import CallJob
from diffstudio.specs import Param

__all__ = ["SAMPLE_PARAMS", "SampleView"]

SAMPLE_PARAMS: tuple[Param, ...] = (
    Param("num_samples", "int", 16, minimum=1, maximum=1_000_000, help="how many samples"),
    Param("seed", "int", 0, minimum=0, maximum=2**31 - 1,
          help="sample i uses seed + i (its initial noise and every step's noise)"),
    Param("batch_size", "int", 64, minimum=1, maximum=65_536, help="samples per network call"),
    Param("live_view", "bool", True,
          help="show x_t and the predicted x_0 while sampling (throttled by time)"),
    Param("live_fps", "int", 10, minimum=1, maximum=30,
          help="most live-view updates per second; frames the screen cannot show are skipped"),
    Param("strip_steps", "int", 8, minimum=2, maximum=32,
          help="steps of the first sample shown in the trajectory strip"),
)


def _strip_grid(trajectory: list[TrajectoryFrame], final: np.ndarray | None) -> np.ndarray:
    """Two rows, x_t (top) and predicted x_0 (bottom), one column per kept step (+ final x_0)."""
    tops = [frame.x for frame in trajectory]
    bottoms = [frame.x0_pred for frame in trajectory]
    if final is not None:
        tops.append(final)
        bottoms.append(final)
    return grid_rgb8(np.stack(tops + bottoms), columns=len(tops))


class SampleView(QWidget):
    """See the module docstring."""

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.job: SampleJob | None = None
        self.outcome: SampleOutcome | None = None
        self._run_timesteps: int | None = None
        self.summary: ModelSummary | None = None
        self.frames_painted = 0
        self.last_frame: SampleFrame | None = None
        self._status_time = 0.0
        self._strip_length = 0
        self.recalled_params: dict[str, dict[str, Any]] = {}  # sampler id -> values recalled
        self._class_applies = False  # the run was trained with class labels
        self.enlarged: QDialog | None = None  # the last sample shown alone
        self.sample_menu: QMenu | None = None  # the last right-click menu

        # -- left: what to sample -----------------------------------------------------------------
        self.runs = RunChooser(lambda: studio.workspace, minimum_length=16)
        self.run_combo = self.runs.combo
        self.checkpoint_combo = QComboBox()
        self.ema_box = QCheckBox("Use the EMA weights")
        self.ema_box.setChecked(True)
        self.backend_combo = QComboBox()
        self.backend_combo.setObjectName("backendCombo")
        self.backend_combo.addItem("PyTorch", "torch")
        self.backend_combo.addItem("ONNX (onnxruntime)", "onnx")
        self.backend_combo.setToolTip(
            "ONNX runs the network exported with the Runs page's 'Export to ONNX' (or "
            "'diffstudio onnx export RUN') on onnxruntime: CUDA when granted, else CPU")
        self.backend_label = QLabel("")
        self.backend_label.setObjectName("backendLabel")
        self.backend_label.setWordWrap(True)
        self.backend_label.setStyleSheet("color: #5a5a5a;")
        self.pretrained_edit = PathEdit(directory=True)
        self.pretrained_edit.line.setPlaceholderText("folder, or a hub id: google/ddpm-cifar10-32")
        pretrained_note = QLabel(
            "A diffusers model folder (save_pretrained, or 'hf download ID --local-dir DIR' on "
            "a machine online), or a hub id already in the local Hugging Face cache: the window "
            "does not download. DDPM/DDIM-family and score-SDE (VE) schedulers.")
        pretrained_note.setWordWrap(True)
        pretrained_note.setStyleSheet("color: #5a5a5a;")
        run_page = QWidget()
        run_layout = QVBoxLayout(run_page)
        run_layout.setContentsMargins(0, 0, 0, 0)
        run_layout.addWidget(self.runs)
        checkpoint_row = QHBoxLayout()
        checkpoint_row.addWidget(QLabel("Checkpoint"))
        checkpoint_row.addWidget(self.checkpoint_combo, 1)
        run_layout.addLayout(checkpoint_row)
        run_layout.addWidget(self.ema_box)
        backend_row = QHBoxLayout()
        backend_row.addWidget(QLabel("Backend"))
        backend_row.addWidget(self.backend_combo, 1)
        run_layout.addLayout(backend_row)
        run_layout.addWidget(self.backend_label)
        pretrained_page = QWidget()
        pretrained_layout = QVBoxLayout(pretrained_page)
        pretrained_layout.setContentsMargins(0, 0, 0, 0)
        pretrained_layout.addWidget(self.pretrained_edit)
        pretrained_layout.addWidget(pretrained_note)
        self.source = SourceSwitch([("run", "Trained run", run_page),
                                    ("pretrained", "Pretrained (diffusers)", pretrained_page)])
        self.from_run = self.source.button("run")
        self.from_pretrained = self.source.button("pretrained")
        model_box = QGroupBox("Model")
        QVBoxLayout(model_box).addWidget(self.source)
        self.model_box = model_box
        self.sampler_picker = ContributionPicker("sampler")
        sampler_box = QGroupBox("Sampler")
        QVBoxLayout(sampler_box).addWidget(self.sampler_picker)
        self.sampler_box = sampler_box
        self.options = ParamForm(SAMPLE_PARAMS)
        options_box = QGroupBox("Samples")
        QVBoxLayout(options_box).addWidget(self.options)
        self.options_box = options_box
        self.class_combo = QComboBox()
        self.class_combo.setObjectName("classCombo")
        self.guidance_spin = QDoubleSpinBox()
        self.guidance_spin.setObjectName("guidanceSpin")
        self.guidance_spin.setRange(0.0, 50.0)
        self.guidance_spin.setSingleStep(0.5)
        self.guidance_spin.setDecimals(2)
        self.guidance_spin.setValue(1.0)
        self.guidance_spin.setToolTip(
            "Classifier-free guidance scale gamma: 1 samples the conditional model, 0 the "
            "unconditional one, above 1 closer to the class and less diverse (two network "
            "evaluations per step)")
        self.class_box = QGroupBox("Class")
        class_form = QFormLayout(self.class_box)
        class_form.addRow("Class", self.class_combo)
        class_form.addRow("Guidance (gamma)", self.guidance_spin)
        self.class_note = QLabel("")
        self.class_note.setWordWrap(True)
        self.class_note.setStyleSheet("color: #5a5a5a;")
        class_form.addRow(self.class_note)
        self.sample_button = QPushButton("Sample")
        self.sample_button.setObjectName("sampleButton")
        self.cancel_button = QPushButton("Cancel")
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Write PNGs with their parameters, samples.npz and a grid "
                                    "into the run's samples folder")
        # Live denoising's own buttons: the other tabs have theirs, so these hide there (a
        # "Save" under the Compare tab must not save the Live result).
        self.live_buttons = QWidget()
        self.live_buttons.setObjectName("liveButtons")
        live_column = QVBoxLayout(self.live_buttons)
        live_column.setContentsMargins(0, 0, 0, 0)
        live_row = QHBoxLayout()
        live_row.addWidget(self.sample_button)
        live_row.addWidget(self.cancel_button)
        live_row.addWidget(self.save_button)
        self.queue_button = QPushButton("Queue")
        self.queue_button.setObjectName("queueSamplingButton")
        self.queue_button.setToolTip(
            "Add this sampling to the job queue instead of running it now: the Queue page (or "
            "'diffstudio queue run') runs it in its own process and saves it into the run's "
            "samples folder, like 'diffstudio sample'")
        live_row.addWidget(self.queue_button)
        live_column.addLayout(live_row)
        # The Gallery's export (format, captions, Export…, progress) for the result shown:
        # its saved PNGs, or, not saved yet, the PNGs Save would write.
        self.ask: Callable[[str, str], bool] = lambda title, text: ask_question(self, title,
                                                                                 text)
        self.exporter = ExportControls(studio, "Sample", lambda title, text: self.ask(title,
                                                                                     text),
                                       role="export-sample")
        self.exporter.export_button.setToolTip(
            "Export the samples shown (saved or not) as PNG copies with their metadata, a "
            "contact sheet, an HTML gallery or a zip of all three")
        self.exporter.finished.connect(self.update_buttons)
        live_column.addWidget(self.exporter)
        buttons = QHBoxLayout()
        buttons.addWidget(self.live_buttons)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(model_box)
        left_layout.addWidget(sampler_box)
        left_layout.addWidget(self.class_box)
        left_layout.addWidget(options_box)
        left_layout.addStretch(1)
        scroll = FormScroll(left)  # never narrower than its fields

        # -- right: live view ---------------------------------------------------------------------
        self.status = QLabel("Choose a trained run and press Sample.")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.x_view = SampleGridView("x_t: the current noisy samples")
        self.x0_view = SampleGridView("predicted x_0: the network's estimate of the clean "
                                      "samples")
        for grid_view in (self.x_view, self.x0_view):
            grid_view.clicked.connect(self.enlarge)
            grid_view.context_requested.connect(self._sample_menu)
        self.x_particles = ParticlePlot("x_t")
        self.x0_particles = ParticlePlot("predicted x_0")
        image_pair = QWidget()
        image_layout = QHBoxLayout(image_pair)
        image_layout.setContentsMargins(0, 0, 0, 0)
        image_layout.addWidget(self._titled("x_t", self.x_view))
        image_layout.addWidget(self._titled("predicted x_0", self.x0_view))
        points_pair = QWidget()
        points_layout = QHBoxLayout(points_pair)
        points_layout.setContentsMargins(0, 0, 0, 0)
        points_layout.addWidget(self.x_particles)
        points_layout.addWidget(self.x0_particles)
        self.live_stack = QStackedWidget()
        self.live_stack.addWidget(image_pair)
        self.live_stack.addWidget(points_pair)
        self.strip_view = ImageView("The first sample at the chosen steps: x_t above, "
                                    "predicted x_0 below.")
        self.strip_view.setMinimumHeight(150)
        self.strip_box = QGroupBox("Trajectory of the first sample")
        strip_layout = QVBoxLayout(self.strip_box)
        strip_layout.addWidget(self.strip_view)
        live = QWidget()
        live_layout = QVBoxLayout(live)
        live_layout.addWidget(self.status)
        # What the left form means on the current tab (parts that do not apply are disabled).
        self.scope_note = QLabel("")
        self.scope_note.setObjectName("scopeNote")
        self.scope_note.setWordWrap(True)
        self.scope_note.setStyleSheet("color: #5a5a5a;")
        self.scope_note.setVisible(False)
        left_layout.insertWidget(0, self.scope_note)
        # The values the sampler runs with where the form was left at its defaults, and why.
        self.used_values = QLabel("")
        self.used_values.setWordWrap(True)
        self.used_values.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        live_layout.addWidget(self.used_values)
        live_splitter = QSplitter(Qt.Orientation.Vertical)
        live_splitter.addWidget(self.live_stack)
        live_splitter.addWidget(self.strip_box)
        live_splitter.setSizes([500, 200])
        live_layout.addWidget(live_splitter, 1)

        self.tabs = QTabWidget()
        self.tabs.addTab(live, "Live denoising")
        self.compare = ComparePanel(studio, self)
        self.interpolation = InterpolationPanel(studio, self)
        self.tabs.addTab(self.compare, "Compare samplers")
        self.tabs.addTab(self.interpolation, "Interpolation (DDIM)")
        self.lab = LabPanel(studio)
        self.tabs.addTab(self.lab, "2-D lab")

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(form_column(scroll, buttons))  # the buttons never scroll away
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 1000])
        self.splitter = splitter
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)

        self.sample_button.clicked.connect(self.start)
        self.queue_button.clicked.connect(self.add_to_queue)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(self.save)
        self.exporter.export_button.clicked.connect(lambda: self.export_result())
        self.runs.changed.connect(self._on_run_changed)
        # What an unset field will be given (the run's data suggests it), below each field.
        self._hints: dict[tuple[str, str], dict[str, str]] = {}  # (run, sampler) -> hints
        self._hints_job: CallJob | None = None
        self._hints_again = False
        self.sampler_picker.changed.connect(lambda _: self.load_hints())
        self.tabs.currentChanged.connect(lambda _: self._apply_tab_scope())
        self.compare.samplers_list.currentItemChanged.connect(self._on_compare_row)
        self.backend_combo.currentIndexChanged.connect(lambda _: self.backend_label.setText(""))
        self.source.changed.connect(self._on_source_changed)
        self.source.changed.connect(lambda *_: self.load_hints())
        self.pretrained_edit.textChanged.connect(lambda _: self.update_buttons())
        self._fill_classes(None)
        self.class_combo.currentIndexChanged.connect(
            lambda _: self.guidance_spin.setEnabled(self.class_combo.currentData() is not None))
        self._on_source_changed()
        studio.registry_changed.connect(self._on_registry)
        studio.runs_changed.connect(self.set_runs)
        studio.engine_ready.connect(lambda _: (self._on_run_changed(), self.update_buttons()))
        studio.jobs_changed.connect(self.update_buttons)
        studio.open_run_for_sampling.connect(self.select_run)
        if studio.registry is not None:
            self._on_registry(studio.registry)
        self.update_buttons()

    @staticmethod
    def _titled(title: str, widget: QWidget) -> QGroupBox:
        box = QGroupBox(title)
        QVBoxLayout(box).addWidget(widget)
        return box

    # -- runs and plugins -------------------------------------------------------------------------
    def _on_registry(self, registry: Any) -> None:
        self.sampler_picker.set_contributions(registry.contributions("sampler"))
        self.compare.set_samplers(registry.contributions("sampler"))

    def set_runs(self, runs: list[Any]) -> None:
        """Offer the runs that have a checkpoint (keeps the current choice)."""
        self.runs.set_runs(runs)

    def select_run(self, path: str) -> None:
        """Choose the run at ``path`` (added to the list if it is not in the workspace)."""
        self.runs.select_run(path)

    def current_run(self) -> str | None:
        return self.runs.current_run()

    # -- what the Compare and Interpolate panels ask (SampleContext) ------------------------------
    def run_source(self) -> ModelSource:
        run = self.current_run()
        if run is None:
            raise ConfigError("choose a trained run first")
        return ModelSource(run=run, checkpoint=self.checkpoint_combo.currentData(),
                           ema=self.ema_box.isChecked(),
                           backend=self.backend_combo.currentData() or "torch")

    def run_timesteps(self) -> int | None:
        return self._run_timesteps

    def sampling_options(self) -> dict[str, Any]:
        return self.options.validated()

    def sampler_values(self, sampler_id: str) -> dict[str, Any]:
        form = self.sampler_picker.form(sampler_id)
        if form is None:
            raise ConfigError(f"no sampler {sampler_id!r} is installed")
        try:
            return form.validated()
        except ConfigError:
            self.sampler_picker.select(sampler_id)
            raise

    # -- what unset fields will be given --------------------------------------------------------
    def load_hints(self) -> None:
        """Show below each sampler field the value sampling gives it while it is left at its
        default (the data's suggestion, the model's own value), worked out in the background
        for the chosen run and sampler; hints of another run or sampler are cleared at once."""
        for form in self.sampler_picker.forms.values():
            form.set_hints({})
        run, sampler_id = self.current_run(), self.sampler_picker.current_id()
        if (run is None or sampler_id is None or self.from_pretrained.isChecked()
                or not self.studio.ready or self.studio.closing):
            return
        key = (run, sampler_id)
        if key in self._hints:
            self._show_hints(key)
            return
        if self._hints_job is not None and self._hints_job.isRunning():
            self._hints_again = True
            return
        job = CallJob("sampler-hints", unset_parameter_values, ModelSource(run=run),
                      sampler_id, self.studio.registry)
        job.succeeded.connect(lambda hints: (self._hints.__setitem__(key, hints),
                                             self._show_hints(key)))
        job.failed.connect(lambda message, details: self._hints.__setitem__(key, {}))
        job.finished.connect(self._on_hints_finished)
        self._hints_job = job
        self.studio.add_job("sampler-hints", job)
        job.start()

    def _show_hints(self, key: tuple[str, str]) -> None:
        form = self.sampler_picker.form(key[1])
        if form is not None and key == (self.current_run(), self.sampler_picker.current_id()) \
                and not self.from_pretrained.isChecked():
            form.set_hints(self._hints.get(key, {}))

    def _on_hints_finished(self) -> None:
        self._hints_job = None
        if self._hints_again:
            self._hints_again = False
            self.load_hints()

    def _on_run_changed(self, *_: Any) -> None:
        self.load_hints()
        self.checkpoint_combo.clear()
        self.backend_label.setText("")  # the provider shown belonged to the previous run
        path = self.current_run()
        if path is None or not self.studio.ready:
            self._fill_classes(None)
            self.update_buttons()
            return
        run = Run(path)
        self._fill_classes(run)
        latest = run.latest_checkpoint()
        self.checkpoint_combo.addItem(f"latest ({latest.name if latest else 'none'})", "latest")
        for step, folder in reversed(run.checkpoints()):
            self.checkpoint_combo.addItem(f"step {step:,}", folder.name)
        self.update_buttons()

    def _fill_classes(self, run: Any | None) -> None:
        """Offer the run's classes when its network was trained class-conditionally."""

        self.class_combo.clear()
        self.class_combo.addItem("Unconditional", None)
        try:
            config = run.config() if run is not None else None
        except (DiffstudioError, OSError, ValueError):
            config = None
        self._run_timesteps = config.num_timesteps if config is not None else None
        conditional = config is not None and config.class_conditional
        count = (config.num_classes or 0) if config is not None else 0
        names = list((config.dataset_info.get("class_names") if config else None)
                     or [str(i) for i in range(count)])
        if conditional and count:
            for index, name in enumerate(names[:count]):
                self.class_combo.addItem(f"{index}: {name}" if name != str(index) else name,
                                         index)
            dropout = config.train.get("label_dropout") if config else None
            self.class_note.setText(
                f"Trained with {count} class labels"
                + (f" (label dropout {dropout:g})" if isinstance(dropout, int | float) else "")
                + ": 1 = conditional, 0 = unconditional, > 1 classifier-free guidance.")
        elif run is None:
            self.class_note.setText("For runs trained with class labels.")
        else:
            self.class_note.setText("This run was trained without class labels (enable "
                                    "'class conditional' on the network to train one).")
        self._class_applies = conditional and count > 0
        self.class_box.setEnabled(self._class_applies)
        self.guidance_spin.setEnabled(False)
        self._apply_tab_scope()

    # -- the left form follows the tab ------------------------------------------------------------
    _TAB_SCOPES: dict[str, str] = {
        "live": "",
        "compare": "Compare: each ticked sampler uses its form below (click a sampler in the "
                   "list to edit it), with the number of samples and the seed; each sampler "
                   "draws them in one batch, unconditionally, without live view.",
        "interpolation": "Interpolation: the model below, decoded with DDIM (eta 0); seeds, "
                         "points and steps are set in the tab.",
        "lab": "The 2-D lab samples the exact score of the seed's mixture, not a run: the "
               "form below does not apply.",
    }

    def current_tab(self) -> str:
        """"live", "compare", "interpolation" or "lab"."""
        widget = self.tabs.currentWidget()
        if widget is self.compare:
            return "compare"
        if widget is self.interpolation:
            return "interpolation"
        if widget is self.lab:
            return "lab"
        return "live"

    def tab_buttons(self) -> tuple[QPushButton, QPushButton | None]:
        """(run, stop) of the current tab: what Ctrl+Enter and Esc press on this page."""
        tab = self.current_tab()
        if tab == "compare":
            return self.compare.compare_button, self.compare.cancel_button
        if tab == "interpolation":
            return self.interpolation.button, self.interpolation.cancel_button
        if tab == "lab":
            return self.lab.run_button, self.lab.cancel_button
        return self.sample_button, self.cancel_button

    def _apply_tab_scope(self) -> None:
        """Disable what the current tab does not use, and say why in one line above."""
        tab = self.current_tab()
        note = self._TAB_SCOPES[tab]
        self.scope_note.setText(note)
        self.scope_note.setVisible(bool(note))
        self._show_live_buttons()
        self.model_box.setEnabled(tab != "lab")
        self.sampler_box.setEnabled(tab in ("live", "compare"))
        self.class_box.setEnabled(self._class_applies and tab == "live")
        self.options_box.setEnabled(tab in ("live", "compare"))
        why = "not used by the comparison: each sampler draws its samples in one batch, " \
              "without live view"
        for name in ("batch_size", "live_view", "live_fps", "strip_steps"):
            self.options.set_field_enabled(name, tab == "live", why)

    def _show_live_buttons(self) -> None:
        """Sample / Cancel / Save belong to Live denoising; elsewhere they show only while a
        live sampling runs, so it can still be cancelled from any tab."""
        self.live_buttons.setVisible(self.current_tab() == "live" or self.is_running())

    def _on_compare_row(self, item: Any, _previous: Any = None) -> None:
        """Clicking a sampler in the Compare list shows its form on the left."""
        if item is not None:
            self.sampler_picker.select(item.data(Qt.ItemDataRole.UserRole))

    # -- state ------------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.job is not None and self.job.isRunning()

    def pretrained_source(self) -> str | None:
        """The pretrained model to sample (folder or hub id), or None when sampling a run."""
        if not self.from_pretrained.isChecked():
            return None
        return self.pretrained_edit.text().strip() or None

    def _on_source_changed(self, *_: Any) -> None:
        if self.from_pretrained.isChecked():
            self._fill_classes(None)
            self.class_note.setText("The window does not offer a pretrained model's classes "
                                    "yet: sample a class-conditional one with 'diffstudio "
                                    "sample --pretrained SOURCE --class-label K'.")
        else:
            self._on_run_changed()
        self.update_buttons()

    def update_buttons(self) -> None:
        running = self.is_running()
        run_ready = self.studio.ready and self.current_run() is not None
        if self.from_pretrained.isChecked():
            ready = self.studio.ready and self.pretrained_source() is not None
            run_ready = False  # comparing and interpolating work on runs
        else:
            ready = run_ready
        self.sample_button.setEnabled(ready and not running)
        self.queue_button.setEnabled(ready)
        self.sample_button.setText("Sample" if self.studio.ready else "Sample (loading engine…)")
        self.cancel_button.setEnabled(running)
        self.save_button.setEnabled(self.outcome is not None and not running)
        self.exporter.set_available(self.outcome is not None and self.outcome.samples.ndim == 4
                                    and not running)
        self._show_live_buttons()
        self.compare.update_buttons(run_ready)
        self.interpolation.update_buttons(run_ready)

    # -- sampling ---------------------------------------------------------------------------------
    def build_request(self) -> SampleRequest:
        """The request from the forms, or :class:`ConfigError` (shown inline)."""
        pretrained = self.pretrained_source()
        run = self.current_run()
        if self.from_pretrained.isChecked() and pretrained is None:
            raise ConfigError("give the pretrained model's folder or hub id")
        if pretrained is None and run is None:
            raise ConfigError("choose a trained run first (train one on the Train page)")
        sampler_id, params = self.sampler_picker.validated()
        # A value left at the schema default is "not set": the run's data may suggest a better
        # one (issue 17), which the job reports as a note shown under the status line.
        defaults = self.studio.registry.get("sampler", sampler_id).defaults()
        recalled = self.recalled_params.get(sampler_id, {})  # a recall sets every value
        params = {name: value for name, value in params.items()
                  if value != defaults.get(name) or (name in recalled and recalled[name] == value)}
        options = self.options.validated()
        source = ModelSource(pretrained=pretrained) if pretrained is not None else \
            self.run_source()
        class_label = self.class_combo.currentData()
        return SampleRequest(
            source=source, sampler=sampler_id, params=params,
            num_samples=options["num_samples"], seed=options["seed"],
            batch_size=options["batch_size"], device=self.studio.device.id,
            live=options["live_view"], strip_length=options["strip_steps"],
            max_fps=float(options["live_fps"]), class_label=class_label,
            guidance=float(self.guidance_spin.value()) if class_label is not None else None,
        )

    def add_to_queue(self) -> int | None:
        """Queue the sampling the forms describe as the ``diffstudio sample`` command that
        makes it (saved); returns the job's number, None when a setting is invalid (shown
        inline) or the queue cannot be written (a notification says why)."""
        from diffstudio.cli.sample import sample_argv
        from diffstudio.gui.views.queue_view import queue_from_page

        return queue_from_page(
            self.studio, "sample", lambda: sample_argv(self.build_request(),
                                                       self.studio.registry),
            "Sampling (saved into the run's samples folder)", "Sample", self.status.setText)

    def start(self) -> bool:
        """Start sampling; False when a setting is invalid (shown inline)."""
        if not self.studio.ready or self.is_running():
            return False
        try:
            request = self.build_request()
        except ConfigError as exc:
            self.studio.notifications.warning(f"Sampling not started: {exc}", source="Sample")
            return False
        job = SampleJob(request, registry=self.studio.registry)
        job.model_loaded.connect(self._on_model_loaded)
        job.note.connect(self._on_note)
        self.used_values.setText("")
        job.frame_ready.connect(self._on_frame)
        job.succeeded.connect(self._on_succeeded)
        job.cancelled.connect(self._on_cancelled)
        job.failed.connect(self._on_failed)
        job.finished.connect(self._on_finished)
        self.job, self.outcome, self.frames_painted, self.last_frame = job, None, 0, None
        self._strip_length = 0
        self._started = time.perf_counter()
        self.status.setText(f"Loading {request.source.describe()}…")
        self.tabs.setCurrentIndex(0)
        self.studio.add_job("sample", job)
        job.start()
        self.update_buttons()
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.request_stop()
            self.status.setText("Cancelling before the next step…")

    def _on_note(self, text: str, level: str) -> None:
        lines = [line for line in self.used_values.text().split("\n") if line]
        self.used_values.setText("\n".join([*lines, ("⚠ " if level == "warning" else "") + text]))

    def _on_model_loaded(self, summary: ModelSummary) -> None:
        self.summary = summary
        points = summary.kind == "points"
        self.live_stack.setCurrentIndex(1 if points else 0)
        self.strip_box.setVisible(not points)
        if points:
            for plot in (self.x_particles, self.x0_particles):
                plot.set_background(summary.data, summary.density, summary.extent)
                plot.set_particles(None)
        else:
            self.x_view.set_image(None)
            self.x0_view.set_image(None)
            self.strip_view.set_image(None)
        if summary.backend:
            self.backend_label.setText(f"Computing on {summary.backend}")
        if self.job is not None and self.job.request.source.pretrained:
            self.status.setText(f"Sampling the pretrained {Path(summary.run).name} "
                                f"({summary.checkpoint})…")
        else:
            self.status.setText(f"Sampling from {Path(summary.run).name} at step "
                                f"{summary.step:,} ({summary.checkpoint})…")

    def _on_frame(self) -> None:
        if self.job is None:
            return
        frame = self.job.take_frame()
        if frame is None:
            return
        self.show_frame(frame)

    def show_frame(self, frame: SampleFrame) -> None:
        """Paint one live frame (x_t, predicted x_0, the strip so far)."""
        self.frames_painted += 1
        self.last_frame = frame
        caption = f"step {frame.index + 1}/{frame.num_steps}, t = {frame.t:g}"
        if frame.x.ndim == 2:
            self.x_particles.set_particles(frame.x)
            self.x0_particles.set_particles(frame.x0_pred)
        else:
            self.x_view.set_array(grid_rgb8(frame.x), caption)
            self.x0_view.set_array(grid_rgb8(frame.x0_pred), caption)
            if frame.trajectory and len(frame.trajectory) != self._strip_length:
                self._strip_length = len(frame.trajectory)  # redrawn only when it grows
                self.strip_view.set_array(_strip_grid(frame.trajectory, None),
                                          self._strip_caption(frame.trajectory))
        now = time.perf_counter()
        if now - self._status_time < 0.25 and frame.index + 1 < frame.num_steps:
            return  # the text relayouts the page: four times a second is enough
        self._status_time = now
        rate = (frame.index + 1) / frame.elapsed if frame.elapsed > 0 else 0.0
        batch = f" · batch {frame.batch_index + 1}/{frame.num_batches}" \
            if frame.num_batches > 1 else ""
        self.status.setText(f"{caption}{batch} · {rate:.1f} steps/s · "
                            f"{frame.network_evaluations} network evaluations so far")

    @staticmethod
    def _strip_caption(trajectory: list[TrajectoryFrame]) -> str:
        return "steps " + ", ".join(f"{f.index + 1} (t={f.t:g})" for f in trajectory)

    def _on_succeeded(self, outcome: SampleOutcome) -> None:
        self.outcome = outcome
        result = outcome.result
        samples = outcome.samples
        if samples.ndim == 2:
            self.x_particles.set_particles(samples)
            self.x0_particles.set_particles(samples)
        else:
            shown = samples[:64]
            tips = [self.sample_tip(index) for index in range(len(shown))]
            more = f" (the first {len(shown)} shown)" if len(samples) > len(shown) else ""
            self.x_view.set_tiles(shown, tips, f"x_0: {len(samples)} samples{more}; point "
                                               "at one for its seed, click to enlarge")
            self.x0_view.set_tiles(shown, tips, "final")
            if outcome.trajectory:
                self.strip_view.set_array(
                    _strip_grid(outcome.trajectory, samples[0]),
                    self._strip_caption(outcome.trajectory) + ", then x_0")
        self.status.setText(
            f"{len(result.seeds)} samples with {result.sampler}: {result.network_evaluations} "
            f"network evaluations each, {result.seconds:.2f} s"
            f"{' on ' + outcome.summary.backend if outcome.summary.backend else ''} "
            f"({outcome.frames_sent} live frames sent, {outcome.frames_skipped} skipped). "
            "Save writes them into the run's samples folder.")

    # -- one sample: hover, enlarge, copy, save --------------------------------------------------
    def sample_metadata(self, index: int) -> dict[str, Any]:
        """What sample ``index`` of the last result records (its PNG's metadata)."""
        if self.outcome is None:
            raise ConfigError("no samples yet")
        return outcome_sample_metadata(self.outcome, index)

    def sample_tip(self, index: int) -> str:
        """The hover text of sample ``index``: number, seed, sampler and its parameters."""
        meta = self.sample_metadata(index)
        params = ", ".join(f"{k}={v}" for k, v in sorted((meta.get("sampler_params")
                                                            or {}).items()))
        lines = [f"sample {index + 1} · seed {meta.get('seed')}",
                 f"{meta.get('sampler')}: {params}" if params else str(meta.get("sampler")),
                 f"{meta.get('network_evaluations')} network evaluations"]
        if meta.get("class_label") is not None:
            lines.append(f"class {meta['class_label']}, guidance {meta.get('guidance')}")
        lines.append("click to enlarge · right-click to copy or save")
        return "\n".join(lines)

    def enlarge(self, index: int) -> QDialog | None:
        """Show sample ``index`` alone, large (nearest-neighbour), with its parameters."""
        if self.outcome is None or self.outcome.samples.ndim != 4:
            return None
        from diffstudio.engine.pngmeta import parameters_line

        dialog = QDialog(self)
        dialog.setWindowTitle(f"Sample {index + 1} (seed {self.sample_metadata(index)['seed']})")
        view = ImageView()
        view.setMinimumSize(384, 384)
        view.set_array(grid_rgb8(self.outcome.samples[index:index + 1], pad=0))
        text = QLabel(parameters_line(self.sample_metadata(index)))
        text.setWordWrap(True)
        text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(dialog)
        layout.addWidget(view, 1)
        layout.addWidget(text)
        dialog.resize(480, 540)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.enlarged = dialog
        return dialog

    def copy_sample_parameters(self, index: int) -> str:
        """Put sample ``index``'s metadata (JSON, as its PNG records it) on the clipboard."""
        text = json.dumps(self.sample_metadata(index), indent=2, sort_keys=True, default=str)
        QGuiApplication.clipboard().setText(text)
        return text

    def save_sample(self, index: int, path: str) -> None:
        """Write sample ``index`` alone as a PNG with its metadata (in the background)."""
        if self.outcome is None:
            return
        job = CallJob("save-sample", save_outcome_sample, self.outcome, index, path)
        job.succeeded.connect(lambda written: self.studio.notifications.info(
            f"Saved sample {index + 1} to {written}", source="Sample"))
        job.failed.connect(lambda message, details: self.studio.notifications.error(
            f"Saving the sample failed: {message}", details, source="Sample"))
        self.studio.add_job("save", job)
        job.start()

    def _sample_menu(self, index: int, where: Any) -> None:
        menu = QMenu(self)
        menu.addAction("Enlarge", lambda: self.enlarge(index))
        menu.addAction("Copy parameters", lambda: self.copy_sample_parameters(index))
        menu.addAction(f"Copy seed ({self.sample_metadata(index)['seed']})",
                       lambda: QGuiApplication.clipboard().setText(
                           str(self.sample_metadata(index)["seed"])))
        menu.addAction("Save this image…", lambda: self._ask_save_sample(index))
        self.sample_menu = menu
        menu.popup(where)

    def _ask_save_sample(self, index: int) -> None:
        seed = self.sample_metadata(index)["seed"]
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the sample", str(self.studio.workspace / f"sample-seed{seed}.png"),
            "PNG images (*.png)")
        if path:
            self.save_sample(index, path)

    def _on_cancelled(self, message: str) -> None:
        self.status.setText(f"Cancelled: {message}.")

    def _on_failed(self, message: str, details: str) -> None:
        self.status.setText(f"Sampling failed: {message}")
        self.studio.notifications.error(f"Sampling failed: {message}", details, source="Sample")

    def _on_finished(self) -> None:
        self.job = None
        self.update_buttons()

    # -- saving -----------------------------------------------------------------------------------
    def save(self) -> None:
        """Save the last result into ``<run>/samples/<sampler>-<time>`` (in the background)."""
        if self.outcome is None:
            return
        outcome = self.outcome
        stamp = time.strftime("%Y%m%d-%H%M%S")
        if "run" in outcome.metadata:
            out_dir = Run(outcome.metadata["run"]).new_samples_dir(outcome.result.sampler)
        else:  # a pretrained model: its own folder may be read-only or a cache
            name = Path(str(outcome.metadata.get("pretrained", "pretrained"))).name
            out_dir = self.studio.workspace / "pretrained-samples" / (
                f"{name}-{outcome.result.sampler}-{stamp}")
        job = CallJob("save-samples", save_outcome, outcome, out_dir)
        job.succeeded.connect(lambda folder: self.studio.notifications.info(
            f"Saved {len(outcome.result.seeds)} samples ({len(outcome.paths)} PNGs + "
            f"samples.npz) to {folder}", source="Sample"))
        job.failed.connect(lambda message, details: self.studio.notifications.error(
            f"Saving failed: {message}", details, source="Sample"))
        self.studio.add_job("save", job)
        job.start()

    def export_result(self, folder: str | None = None) -> bool:
        """Export the samples shown (the last result) with the Gallery's export job: its saved
        PNGs, or, when it was not saved, the PNGs Save would write (made in the job). False
        when nothing started."""
        from diffstudio.app.export import export_outcome, outcome_records

        if self.outcome is None or self.is_running():
            return False
        outcome = self.outcome
        try:
            records = outcome_records(outcome)
        except ConfigError as exc:
            self.studio.notifications.warning(f"Export not started: {exc}", source="Sample")
            return False
        name = Path(str(outcome.metadata.get("run") or outcome.metadata.get("pretrained")
                        or "samples")).name
        return self.exporter.start(
            records, folder, title=f"{name} · {outcome.result.sampler}",
            make_events=lambda request, stop: export_outcome(request, outcome, records=records,
                                                             should_stop=stop))

    # -- recall (from the Gallery) ------------------------------------------------------------
    def apply_recall(self, recall: Any) -> None:
        """Load a recalled sample's request (``diffstudio.app.recall.Recall``): its run and
        checkpoint (or pretrained model), sampler and every parameter, first seed, number and
        batch size (the batch it was drawn in, so that Sample redraws it bit for bit), class
        and guidance. The recalled sample is number ``recall.position + 1`` of the batch."""
        request = recall.request
        source = request.source
        if source.pretrained:
            self.from_pretrained.setChecked(True)
            self.pretrained_edit.setText(str(source.pretrained))
        else:
            self.from_run.setChecked(True)
            self.select_run(str(source.run))
            found = self.checkpoint_combo.findData(source.checkpoint)
            if found >= 0:
                self.checkpoint_combo.setCurrentIndex(found)
            self.ema_box.setChecked(bool(source.ema))
        contribution = self.studio.registry.get("sampler", request.sampler) \
            if request.sampler in self.studio.registry.ids("sampler") else None
        if contribution is None:
            raise ConfigError(f"the sample was made with the sampler {request.sampler!r}, "
                              "which is not installed")
        known = {param.name for param in contribution.params}
        values = {k: v for k, v in dict(request.params).items() if k in known}
        self.recalled_params = {request.sampler: values}
        self.sampler_picker.select(request.sampler, values)
        self.options.set_values({"num_samples": request.num_samples, "seed": request.seed,
                                 "batch_size": request.batch_size})
        found = self.class_combo.findData(request.class_label)
        self.class_combo.setCurrentIndex(max(0, found))
        if request.guidance is not None:
            self.guidance_spin.setValue(float(request.guidance))
        self.status.setText(
            f"Recalled seed {request.seed + recall.position} ({request.sampler}): press Sample; "
            + (f"it is sample {recall.position + 1} of {request.num_samples} (its batch)."
               if recall.exact else "its batch was not recorded, so the last bits may differ."))

    # -- settings ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"sampler": self.sampler_picker.state(), "options": self.options.values(),
                "run": self.current_run(), "ema": self.ema_box.isChecked(),
                "backend": self.backend_combo.currentData(),
                "source": "pretrained" if self.from_pretrained.isChecked() else "run",
                "pretrained": self.pretrained_edit.text()}

    def restore(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.sampler_picker.restore(state.get("sampler"))
        if isinstance(state.get("options"), dict):
            known = {p.name for p in SAMPLE_PARAMS}
            self.options.set_values({k: v for k, v in state["options"].items() if k in known})
        self.ema_box.setChecked(bool(state.get("ema", True)))
        backend = self.backend_combo.findData(state.get("backend") or "torch")
        self.backend_combo.setCurrentIndex(max(0, backend))
        run = state.get("run")
        if run and Run.is_run(run):
            self.select_run(run)
        self.pretrained_edit.setText(str(state.get("pretrained") or ""))
        (self.from_pretrained if state.get("source") == "pretrained" else
         self.from_run).setChecked(True)
