"""The main window: a sidebar of places (Data, Model & schedule, Train, Sample, Evaluate, Runs,
Plugins), a toolbar with the device, precision and workspace, the notification area at the
bottom and a busy indicator while the engine loads in the background."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QBrush,
    QCloseEvent,
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QPaintEvent,
)
from PySide6.QtWidgets import (
    QComboBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QProgressBar,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QStyle,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from diffstudio.errors import ConfigError
from diffstudio.gui import wheel_guard
from diffstudio.gui.menus import Menus
from diffstudio.gui.notifications import NotificationArea, NotificationCenter
from diffstudio.gui.panels import ask_question
from diffstudio.gui.preferences_dialog import apply_theme
from diffstudio.gui.settings import Preferences
from diffstudio.gui.studio import Studio
from diffstudio.gui.views.data_view import DataView
from diffstudio.gui.views.evaluate_view import EvaluateView
from diffstudio.gui.views.experiments_view import ExperimentsView
from diffstudio.gui.views.gallery_view import GalleryView
from diffstudio.gui.views.model_view import ModelView
from diffstudio.gui.views.plugins_view import PluginsView
from diffstudio.gui.views.queue_view import QueueView
from diffstudio.gui.views.runs_view import RunsView
from diffstudio.gui.views.sample_view import SampleView
from diffstudio.gui.views.train_view import TrainView
from diffstudio.gui.workers import CallJob, DeviceInfo, EngineInfo, EngineLoader, TrainJob

__all__ = ["PAGES", "MainWindow"]

PAGES = ("Data", "Model & schedule", "Train", "Sample", "Gallery", "Evaluate", "Experiments",
         "Queue", "Runs", "Plugins")
_PAGE_ICONS = (
    QStyle.StandardPixmap.SP_DirIcon,
    QStyle.StandardPixmap.SP_FileDialogDetailedView,
    QStyle.StandardPixmap.SP_MediaPlay,
    QStyle.StandardPixmap.SP_MediaSeekForward,
    QStyle.StandardPixmap.SP_FileDialogListView,
    QStyle.StandardPixmap.SP_FileDialogContentsView,
    QStyle.StandardPixmap.SP_FileDialogInfoView,
    QStyle.StandardPixmap.SP_BrowserReload,
    QStyle.StandardPixmap.SP_DirOpenIcon,
    QStyle.StandardPixmap.SP_ComputerIcon,
)
_PRECISION_LABELS = {"no": "fp32", "bf16": "bf16 (mixed)", "fp16": "fp16 (mixed)"}
_USER_JOBS = ("train", "sample", "compare", "evaluate", "experiment", "queue")
# Jobs the status bar follows, with the words it says for them.
_JOB_LABELS = {"train": "Training", "sample": "Sampling", "compare": "Comparing samplers",
               "evaluate": "Evaluating", "interpolate": "Interpolating", "lab": "2-D lab",
               "export": "Exporting", "export-sample": "Exporting samples",
               "experiment": "Experiment", "queue": "Queue",
               "onnx-export": "Exporting to ONNX"}


def _read_run(path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from diffstudio.engine.runs import Run

    run = Run(path)
    return run.read_config(), run.metrics()


class MainWindow(QMainWindow):
    """See the module docstring.

    ``registry`` replaces plugin discovery (tests); ``ask(title, text) -> bool`` replaces the
    question asked before closing while a job runs; ``start_engine=False`` leaves loading the
    engine to the caller (:meth:`start_engine`).
    """

    first_painted = Signal()

    def __init__(
        self,
        preferences: Preferences | None = None,
        *,
        safe_mode: bool = False,
        registry: Any = None,
        ask: Callable[[str, str], bool] | None = None,
        start_engine: bool = True,
    ) -> None:
        super().__init__()
        self.setWindowTitle("diffstudio")
        self.preferences = preferences or Preferences()
        self.notifications = NotificationCenter(self)
        self.studio = Studio(self.preferences, self.notifications, safe_mode=safe_mode,
                             parent=self)
        self._registry_override = registry
        self._ask = ask or (lambda title, text: ask_question(self, title, text))
        self._closing = False
        self._painted = False
        self.engine_seconds: float | None = None

        # -- places -------------------------------------------------------------------------------
        self.data_view = DataView(self.studio)
        self.model_view = ModelView(self.studio)
        self.train_view = TrainView(self.studio, self.training_setup)
        self.sample_view = SampleView(self.studio)
        self.gallery_view = GalleryView(self.studio,
                                        ask=lambda title, text: self._ask(title, text))
        self.evaluate_view = EvaluateView(self.studio)
        self.experiments_view = ExperimentsView(self.studio)
        self.queue_view = QueueView(self.studio)
        self.runs_view = RunsView(self.studio)
        self.runs_view.ask = self._ask
        self.sample_view.ask = self._ask
        self.plugins_view = PluginsView(self.studio)
        self.pages = (self.data_view, self.model_view, self.train_view, self.sample_view,
                      self.gallery_view, self.evaluate_view, self.experiments_view,
                      self.queue_view, self.runs_view, self.plugins_view)
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setIconSize(QSize(20, 20))
        self.sidebar.setSpacing(2)
        self.sidebar.setMinimumWidth(160)
        self.stack = QStackedWidget()
        for name, page, icon in zip(PAGES, self.pages, _PAGE_ICONS, strict=True):
            self.sidebar.addItem(QListWidgetItem(self.style().standardIcon(icon), name))
            self.stack.addWidget(page)
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.sidebar.setCurrentRow(PAGES.index("Train"))
        self.notification_area = NotificationArea(self.notifications)
        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(self.sidebar)
        body.addWidget(self.stack)
        body.setStretchFactor(1, 1)
        body.setCollapsible(0, False)
        body.setSizes([190, 1250])
        central = QWidget()
        central_layout = QVBoxLayout(central)
        central_layout.setContentsMargins(0, 0, 0, 0)
        central_layout.setSpacing(0)
        central_layout.addWidget(body, 1)
        central_layout.addWidget(self.notification_area)
        self.setCentralWidget(central)

        # -- toolbar: device, precision, workspace ------------------------------------------------
        toolbar = QToolBar("Device and workspace")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        self.device_combo = QComboBox()
        self.device_combo.setObjectName("deviceCombo")
        self.device_combo.addItem("CPU", DeviceInfo("cpu", "CPU"))
        self.device_combo.setToolTip("Where training and sampling run (CUDA and MPS are listed "
                                     "when available)")
        self.precision_combo = QComboBox()
        self.precision_combo.setObjectName("precisionCombo")
        self.precision_combo.setToolTip("Training precision: bf16/fp16 mixed precision on CUDA")
        self.threads_spin = QSpinBox()
        self.threads_spin.setObjectName("threadsSpin")
        self.threads_spin.setRange(1, max(1, os.cpu_count() or 1))
        self.threads_spin.setValue(min(self.studio.cpu_threads, self.threads_spin.maximum()))
        self.threads_spin.setToolTip("PyTorch CPU threads for training and sampling (applies to "
                                     "the next job). One core fewer than the machine has keeps "
                                     "the window responsive.")
        self.workspace_button = QToolButton()
        self.workspace_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        toolbar.addWidget(QLabel(" Device "))
        toolbar.addWidget(self.device_combo)
        toolbar.addWidget(QLabel("  Precision "))
        toolbar.addWidget(self.precision_combo)
        toolbar.addWidget(QLabel("  CPU threads "))
        toolbar.addWidget(self.threads_spin)
        toolbar.addSeparator()
        toolbar.addWidget(QLabel(" Workspace "))
        toolbar.addWidget(self.workspace_button)
        self.addToolBar(toolbar)
        self._fill_precisions()

        # -- status bar: the busy indicator -------------------------------------------------------
        self.busy_label = QLabel("Loading PyTorch, diffusers and the plugins…")
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)  # indeterminate
        self.busy_bar.setMaximumWidth(160)
        self.busy_bar.setMaximumHeight(14)
        self.engine_label = QLabel("")
        self.statusBar().addWidget(self.busy_bar)
        self.statusBar().addWidget(self.busy_label, 1)
        self.statusBar().addPermanentWidget(self.engine_label)
        # Four times a second while a job runs, text only: once a second left the status line up
        # to a second behind the page's own counter (step 907 there, 921 in the header).
        self._progress_timer = QTimer(self)
        self._progress_timer.setInterval(250)
        self._progress_timer.timeout.connect(self._show_job_progress)

        # -- wiring -------------------------------------------------------------------------------
        self.studio.registry_changed.connect(self._on_registry)
        self.studio.engine_ready.connect(self._on_engine_ready)
        self.studio.workspace_changed.connect(lambda _: self._update_workspace_button())
        self.studio.open_run_for_training.connect(self.open_run_for_training)
        self.studio.new_run_from.connect(lambda path: self.open_run_for_training(path, True))
        self.studio.open_run_for_sampling.connect(
            lambda _: self.show_page("Sample"))
        self.studio.open_run_for_evaluation.connect(self.open_run_for_evaluation)
        self.gallery_view.recall_requested.connect(self.recall_sample)
        self.setAcceptDrops(True)
        self.studio.jobs_changed.connect(self._on_jobs_changed)
        self.data_view.picker.changed.connect(self._on_dataset_changed)
        self._watched_network_forms: set[int] = set()
        self.model_view.network_picker.changed.connect(self._on_network_changed)
        self.train_view.fields_enabled.connect(self._on_network_changed)
        for picker in (self.data_view.picker, self.model_view.network_picker,
                       self.model_view.schedule_picker):
            picker.changed.connect(self._on_setup_changed)
        self.train_view.setup_label.linkActivated.connect(self.show_page)
        self.device_combo.currentIndexChanged.connect(self._on_device_changed)
        self.precision_combo.currentIndexChanged.connect(self._on_precision_changed)
        self.workspace_button.clicked.connect(self.runs_view.choose_workspace)
        self.threads_spin.valueChanged.connect(self._on_threads_changed)
        self.plugins_view.errors_changed.connect(self._set_plugin_badge)
        self._update_workspace_button()
        self._restore_window()
        self.train_view.form.set_values(self._known(self.preferences.get_json("train"),
                                                    self.train_view.form))
        self.menus = Menus(self)
        apply_theme(self.preferences.get_str("theme", "system"))
        wheel_guard.guard_tree(self)  # every field of the pages and the toolbar
        if start_engine:
            QTimer.singleShot(0, self.start_engine)

    # -- start-up ---------------------------------------------------------------------------------
    def start_engine(self) -> None:
        """Load plugins, torch, diffusers and the engine in the background."""
        loader = EngineLoader(self.studio.safe_mode, self._registry_override,
                              self.studio.cpu_threads)
        loader.plugins_loaded.connect(self.studio.set_registry)
        loader.succeeded.connect(self.studio.set_engine)
        loader.failed.connect(self._on_engine_failed)
        self._engine_started = time.perf_counter()
        self.studio.add_job("engine", loader)
        loader.start()

    def _on_engine_failed(self, message: str, details: str) -> None:
        self.busy_bar.setVisible(False)
        self.busy_label.setText(f"The engine could not be loaded: {message}")
        self.notifications.error(f"The engine could not be loaded: {message}", details,
                                 source="Start-up")

    def _on_registry(self, registry: Any) -> None:
        wheel_guard.guard_tree(self)  # the plugin forms just built
        self.data_view.restore(self.preferences.get_json("data"))
        self.model_view.restore(self.preferences.get_json("model"))
        self.sample_view.restore(self.preferences.get_json("sample"))
        self.evaluate_view.restore(self.preferences.get_json("evaluate"))
        self._on_network_changed()
        self._on_setup_changed()
        if registry.errors:
            names = ", ".join(p.name for p in registry.errors)
            details = "\n\n".join(f"{p.name} ({p.distribution} {p.version}), failed while "
                                  f"{p.error_stage}:\n{p.traceback}" for p in registry.errors)
            self.notifications.warning(
                f"{len(registry.errors)} plugin(s) failed to load: {names}. The others work; "
                "see the Plugins page.", details, source="Plugins")
        if registry.slow:
            self.notifications.warning(registry.slow_message()[0].upper()
                                       + registry.slow_message()[1:] + ".", source="Plugins")
        if registry.safe_mode:
            self.notifications.info("Safe mode: only the built-in plugins are loaded.",
                                    source="Plugins")

    def _on_engine_ready(self, engine: EngineInfo) -> None:
        # torch and the engine are loaded: move their objects out of the collector's reach, so
        # that a full collection, triggered by whichever thread allocates, stays short and does
        # not hold the GIL (and the window) for hundreds of milliseconds.
        gc.freeze()
        self.engine_seconds = time.perf_counter() - getattr(self, "_engine_started",
                                                            time.perf_counter())
        self.busy_bar.setVisible(False)
        self.busy_label.setText("Ready.")
        versions = ", ".join(f"{k} {v}" for k, v in engine.versions.items())
        self.engine_label.setText(versions)
        saved_device = self.preferences.get_str("device", "cpu")
        self.device_combo.blockSignals(True)
        self.device_combo.clear()
        for device in engine.devices:
            self.device_combo.addItem(device.label, device)
        self.device_combo.blockSignals(False)
        index = next((i for i, d in enumerate(engine.devices) if d.id == saved_device), 0)
        self.device_combo.setCurrentIndex(index)
        self._on_device_changed()
        self.notifications.info(f"Engine ready in {engine.seconds:.1f} s ({versions}).",
                                source="Start-up")

    # -- device, precision, workspace -------------------------------------------------------------
    def _fill_precisions(self) -> None:
        device: DeviceInfo = self.device_combo.currentData()
        saved = self.preferences.get_str("precision", "")
        self.precision_combo.blockSignals(True)
        self.precision_combo.clear()
        for precision in device.precisions:
            self.precision_combo.addItem(_PRECISION_LABELS.get(precision, precision), precision)
        if saved and self.precision_combo.findData(saved) >= 0:
            self.precision_combo.setCurrentIndex(self.precision_combo.findData(saved))
        self.precision_combo.setEnabled(len(device.precisions) > 1)
        self.precision_combo.blockSignals(False)

    def _on_device_changed(self, *_: Any) -> None:
        self._fill_precisions()
        self._on_precision_changed()

    def _on_precision_changed(self, *_: Any) -> None:
        device = self.device_combo.currentData()
        precision = self.precision_combo.currentData() or "no"
        if device is not None:
            self.studio.set_device(device, precision)

    def _on_threads_changed(self, count: int) -> None:
        self.studio.cpu_threads = count
        self.preferences.set("cpu_threads", count)

    def _update_workspace_button(self) -> None:
        self.workspace_button.setText(str(self.studio.workspace))
        self.workspace_button.setToolTip("Where new runs go; click to choose another folder")

    def _on_dataset_changed(self, dataset_id: str) -> None:
        contribution = self.data_view.picker.contributions.get(dataset_id)
        self.model_view.clear_data_scale()  # the new data's range is known once it loads
        if contribution is not None:
            self.model_view.suggest_network(contribution.tags)

    def _setup_ids(self) -> dict[str, str]:
        return {"dataset": self.data_view.picker.current_id() or "",
                "network": self.model_view.network_picker.current_id() or "",
                "schedule": self.model_view.schedule_picker.current_id() or ""}

    def _on_setup_changed(self, *_: Any) -> None:
        """The Train page's summary follows the Data and Model pages; a run being continued
        is left when they no longer describe it (Continue would otherwise train the old run
        while the pages show another setup)."""
        ids = self._setup_ids()
        pages = {"dataset": "Data", "network": "Model & schedule",
                 "schedule": "Model & schedule"}
        self.train_view.set_setup_summary([(pages[k], v or "(none)") for k, v in ids.items()])
        train = self.train_view
        if train.resume_config is None or train.is_running():
            return
        changed = [kind for kind, value in ids.items()
                   if value and value != train.resume_config.get(kind)]
        if changed:
            run = train.resume_dir
            train.new_run()
            self._on_network_changed()
            self.notifications.info(
                f"The {' and '.join(changed)} no longer match {run}: Train now starts a new "
                "run (Continue it from the Runs page).", source="Train")

    def _on_network_changed(self, *_: Any) -> None:
        """Label dropout trains the unconditional half of a class-conditional network: off
        (and said why) for a network without class labels."""
        picker = self.model_view.network_picker
        form = picker.form()
        if form is not None and id(form) not in self._watched_network_forms:
            self._watched_network_forms.add(id(form))  # its class_conditional box, live
            form.changed.connect(self._on_network_changed)
        conditional = False
        if form is not None and "class_conditional" in form.editors:
            conditional = bool(form.values().get("class_conditional"))
        elif form is not None:
            conditional = True  # a network that does not say: leave the choice to the user
        if self.train_view.resume_dir is None:
            self.train_view.form.set_field_enabled(
                "label_dropout", conditional,
                "" if conditional else "only for class-conditional networks (Model page)")

    def _set_plugin_badge(self, errors: int) -> None:
        item = self.sidebar.item(PAGES.index("Plugins"))
        if errors:
            item.setText(f"Plugins  ({errors} failed)")
            item.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))
            item.setForeground(QBrush(QColor("#b52a25")))
            item.setToolTip(f"{errors} plugin(s) failed to load; open to see why")
        else:
            item.setText("Plugins")
            item.setIcon(self.style().standardIcon(_PAGE_ICONS[PAGES.index("Plugins")]))
            item.setForeground(QBrush())
            item.setToolTip("")

    def plugin_badge(self) -> str:
        """The Plugins entry of the sidebar as shown (with its failure count)."""
        return self.sidebar.item(PAGES.index("Plugins")).text()

    # -- places -----------------------------------------------------------------------------------
    def show_page(self, name: str) -> None:
        self.sidebar.setCurrentRow(PAGES.index(name))

    @staticmethod
    def page_names() -> tuple[str, ...]:
        return PAGES

    def recall_sample(self, recall: Any) -> None:
        """A sample from the Gallery (or a dropped PNG) into the Sample page."""
        try:
            self.sample_view.apply_recall(recall)
        except ConfigError as exc:
            self.notifications.warning(f"Cannot recall: {exc}", source="Gallery")
            return
        self.show_page("Sample")

    def current_page(self) -> str:
        return PAGES[self.stack.currentIndex()]

    def training_setup(self) -> dict[str, Any]:
        """Dataset, network, schedule and diffusion settings from their pages, validated; on a
        bad value the page that holds it is shown with the error inline."""
        try:
            dataset_id, dataset_params = self.data_view.selection()
        except ConfigError:
            self.show_page("Data")
            raise
        try:
            model = self.model_view.selection()
        except ConfigError:
            self.show_page("Model & schedule")
            raise
        return {"dataset": dataset_id, "dataset_params": dataset_params, **model}

    def open_run_for_training(self, path: str, as_new: bool = False) -> None:
        """Read the run (in the background), then show it on the Train page to continue, or
        (``as_new``) its dataset, network, schedule and training settings as a new run."""
        if self.train_view.is_running():
            self.notifications.warning("Stop the running training before opening another run.",
                                       source="Runs")
            return
        job = CallJob("read-run", _read_run, path)

        def opened(result: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
            config, metrics = result
            train = config.get("train", {})
            pickers = ((self.data_view.picker, "dataset"),
                       (self.model_view.network_picker, "network"),
                       (self.model_view.schedule_picker, "schedule"))
            missing = [f"{kind} {train.get(kind)!r}" for picker, kind in pickers
                       if picker.combo.findData(train.get(kind, "")) < 0]
            if missing:  # half a setup would train something else than the run
                self.notifications.warning(
                    f"Cannot open {Path(path).name}: its {', '.join(missing)} is not available "
                    "(a plugin that is disabled, failed or not installed; see the Plugins "
                    "page).", source="Runs")
                return
            for picker, kind in pickers:
                picker.select(train[kind], train.get(f"{kind}_params"))
            self.model_view.diffusion_form.set_values(
                {k: train[k] for k in ("num_timesteps", "prediction_type") if k in train})
            try:
                if as_new:
                    self.train_view.new_run_from(config)
                else:
                    self.train_view.open_run(path, config, metrics)
            except ConfigError as exc:
                self.notifications.warning(str(exc), source="Runs")
                return
            self.show_page("Train")

        job.succeeded.connect(opened)
        job.failed.connect(lambda message, details: self.notifications.error(
            f"Could not open the run {path}: {message}", details, source="Runs"))
        self.studio.add_job("read-run", job)
        job.start()

    def open_run_for_evaluation(self, path: str) -> None:
        self.evaluate_view.select_run(path)
        self.show_page("Evaluate")

    # -- jobs and closing -------------------------------------------------------------------------
    def _on_jobs_changed(self) -> None:
        if self._closing:
            QTimer.singleShot(0, self._close_when_idle)
            return
        running = self.studio.running()
        if "engine" not in running and self.studio.ready:
            # Text only: an animated busy bar repaints all the time and costs the job speed.
            self.busy_bar.setVisible(False)
            self._show_job_progress()
            if any(role in _JOB_LABELS for role in self.studio.jobs):
                self._progress_timer.start()
            else:
                self._progress_timer.stop()

    def job_status(self) -> str:
        """The status bar's line: each running job with its progress and ETA, in the words
        the terminal prints (:meth:`Progress.describe`), images/s for training as logged."""
        parts = []
        for role, job in self.studio.jobs.items():
            if role not in _JOB_LABELS:
                continue
            progress = getattr(job, "last_progress", None)
            text = _JOB_LABELS[role]
            if progress is not None:
                text += f": {progress.describe()}"
                if progress.rate is not None and role == "train":
                    text += f" · {progress.rate:,.0f} images/s"
            parts.append(text)
        return "; ".join(parts) if parts else "Ready."

    def _show_job_progress(self) -> None:
        if self.studio.ready and "engine" not in self.studio.running():
            self.busy_label.setText(self.job_status())

    def _close_when_idle(self) -> None:
        """Close once the jobs stopped on closing have finished (called as they finish)."""
        if self._closing and not self.studio.running():
            self._closing = False
            self.studio.closing = False
            self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        try:
            self._close_event(event)
        except Exception as exc:  # never let an error keep the window from closing
            self.notifications.exception(exc, source="Closing")
            event.accept()

    def _close_event(self, event: QCloseEvent) -> None:
        running = self.studio.running()
        if running:
            user_jobs = [role for role in running if role in _USER_JOBS]
            if self._closing:
                if self._ask("Quit now?", "The running jobs are still stopping. Quit without "
                             "waiting for them?"):
                    self._save_settings()
                    event.accept()
                else:
                    event.ignore()
                return
            if user_jobs:
                what = "Training" if "train" in user_jobs else (
                    "An evaluation" if user_jobs == ["evaluate"] else
                    "An experiment" if "experiment" in user_jobs else
                    "The job queue" if "queue" in user_jobs else "Sampling")
                if not self._ask("Quit diffstudio?",
                                 f"{what} is running. Stop it and quit? A stopped training keeps "
                                 "a checkpoint at the step where it stops."):
                    event.ignore()
                    return
            self._closing = True
            self.studio.closing = True  # no new background work from now on
            for job in running.values():
                job.request_stop()
                if isinstance(job, TrainJob):
                    job.set_paused(False)
            self.busy_bar.setVisible(True)
            self.busy_label.setText("Stopping the running jobs before closing…")
            event.ignore()
            return
        self._save_settings()
        self.studio.closing = True  # closed: no background work starts after this
        event.accept()

    # -- settings ---------------------------------------------------------------------------------
    @staticmethod
    def _known(values: Any, form: Any) -> dict[str, Any]:
        if not isinstance(values, dict):
            return {}
        names = {param.name for param in form.params}
        return {key: value for key, value in values.items() if key in names}

    def _restore_window(self) -> None:
        geometry = self.preferences.get_bytes("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1440, 900)
        state = self.preferences.get_bytes("window/state")
        if state is not None:
            self.restoreState(state)
        page = self.preferences.get_str("window/page", "Train")
        if page in PAGES:
            self.show_page(page)

    def _save_settings(self) -> None:
        prefs = self.preferences
        prefs.set("window/geometry", self.saveGeometry())
        prefs.set("window/state", self.saveState())
        prefs.set("window/page", self.current_page())
        if self.studio.registry is not None:
            prefs.set_json("data", self.data_view.state())
            prefs.set_json("model", self.model_view.state())
            prefs.set_json("sample", self.sample_view.state())
            prefs.set_json("evaluate", self.evaluate_view.state())
        if self.train_view.resume_dir is None:
            prefs.set_json("train", self.train_view.form.values())
        if self.studio.ready:
            prefs.set("device", self.studio.device.id)
            prefs.set("precision", self.studio.precision)
        prefs.sync()

    # -- a sample PNG dropped anywhere on the window: shown in the Gallery, ready to recall --------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls()
        if urls and all(u.isLocalFile() and u.toLocalFile().lower().endswith(".png")
                        for u in urls):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = event.mimeData().urls()
        if urls:
            self.show_page("Gallery")
            self.gallery_view.show_file(urls[0].toLocalFile())
            event.acceptProposedAction()

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            self.first_painted.emit()
