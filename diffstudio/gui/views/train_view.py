"""The Train page: settings, start/pause/stop, progress with ETA and images/s, the live loss
curve and the preview samples with the step they came from.

Training runs in a :class:`diffstudio.gui.workers.TrainJob`, by default in a worker process
(Preferences > "Run training in a separate process"): a crash there fails the job with its log,
never the window. This page only draws what the engine reports. A new run goes to
``<workspace>/<dataset>-<network>-<schedule>-<time>``; a run
opened from the Runs page continues (``Trainer(resume=True)``) with what a resume may change
(its length, optimiser and intervals) editable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from diffstudio.engine.runs import Run
from diffstudio.errors import ConfigError, DiffstudioError
from diffstudio.gui.forms import ParamForm
from diffstudio.gui.images import ImageView, grid_rgb8
from diffstudio.gui.panels import FormScroll
from diffstudio.gui.plots import LossPlot, ParticlePlot
from diffstudio.gui.studio import Studio
from diffstudio.gui.train_settings import RESUMABLE, TRAIN_PARAMS
from diffstudio.gui.workers import PreviewFrame, TrainJob

__all__ = ["TrainView", "format_duration"]


def format_duration(seconds: float) -> str:
    """12 s, 4 min 05 s, 2 h 03 min."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class TrainView(QWidget):
    """See the module docstring. ``setup`` returns the dataset/network/schedule choices and
    diffusion settings from the other pages (validated, or :class:`ConfigError`).
    ``fields_enabled`` says :meth:`new_run` enabled every field again (the window then disables
    what does not apply, e.g. label dropout for an unconditional network)."""

    fields_enabled = Signal()

    def __init__(
        self, studio: Studio, setup: Callable[[], dict[str, Any]], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.studio = studio
        self.setup = setup
        self.job: TrainJob | None = None
        self.resume_dir: str | None = None
        self.resume_config: dict[str, Any] | None = None
        self.run_dir: str | None = None
        self.previews: list[PreviewFrame] = []
        self._logged = False  # a loss of the running job was shown
        self._first_step = 0
        self._last_status: str | None = None

        # -- left: the run and its settings -----------------------------------------------------
        self.run_label = QLabel()
        self.run_label.setWordWrap(True)
        self.run_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # What Train will train, each part a link to the page that sets it (set by the window).
        self.setup_label = QLabel()
        self.setup_label.setObjectName("setupLabel")
        self.setup_label.setWordWrap(True)
        self.setup_label.setTextFormat(Qt.TextFormat.RichText)
        self.new_run_button = QPushButton("Start a new run instead")
        self.new_run_button.setVisible(False)
        self.form = ParamForm(TRAIN_PARAMS)
        settings_box = QGroupBox("Training settings")
        settings_layout = QVBoxLayout(settings_box)
        settings_layout.addWidget(self.form)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.run_label)
        left_layout.addWidget(self.setup_label)
        left_layout.addWidget(self.new_run_button)
        left_layout.addWidget(settings_box)
        self.queue_button = QPushButton("Add to queue")
        self.queue_button.setObjectName("queueTrainingButton")
        self.queue_button.setToolTip(
            "Queue this training instead of starting it now: the Queue page (or 'diffstudio "
            "queue run') runs it in its own process after the jobs before it, and continues it "
            "from its checkpoint after a crash or a reboot")
        left_layout.addStretch(1)
        scroll = FormScroll(left)  # never narrower than its fields

        # -- right: controls, progress, curve, previews -------------------------------------------
        self.train_button = QPushButton("Train")
        self.train_button.setObjectName("trainButton")
        self.train_button.setDefault(True)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.stop_button = QPushButton("Stop")
        self.progress = QProgressBar()
        self.progress.setFormat("not started")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("Press Train to train the chosen dataset, network and schedule.")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        # Data-parallel training (accelerate launch), offered only when several GPUs are seen.
        self.gpus_label = QLabel("GPUs")
        self.gpus_spin = QSpinBox()
        self.gpus_spin.setRange(1, 1)
        self.gpus_spin.setToolTip("Train data-parallel on this many GPUs (accelerate launch): "
                                  "each steps on its own batch, so the effective batch is this "
                                  "many times the batch size")
        self.gpus_label.setBuddy(self.gpus_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.pause_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.queue_button)
        buttons.addWidget(self.gpus_label)
        buttons.addWidget(self.gpus_spin)
        buttons.addWidget(self.progress, 1)

        self.loss_plot = LossPlot()
        self.preview_image = ImageView("Preview samples from the EMA weights appear here "
                                       "every few hundred steps.")
        self.preview_particles = ParticlePlot()
        self.preview_stack = QStackedWidget()
        self.preview_stack.addWidget(self.preview_image)
        self.preview_stack.addWidget(self.preview_particles)
        self.preview_caption = QLabel("No preview yet.")
        self.preview_caption.setSizePolicy(QSizePolicy.Policy.Ignored,
                                           QSizePolicy.Policy.Preferred)
        self.preview_slider = QSlider(Qt.Orientation.Horizontal)
        self.preview_slider.setEnabled(False)
        self.preview_slider.setToolTip("Earlier previews of this run")
        self.preview_stack.setMinimumWidth(120)  # the page fits a 1024-pixel-wide window
        preview_box = QGroupBox("Previews (EMA weights)")
        preview_layout = QVBoxLayout(preview_box)
        preview_layout.addWidget(self.preview_stack, 1)
        preview_layout.addWidget(self.preview_caption)
        preview_layout.addWidget(self.preview_slider)
        curve_box = QGroupBox("Loss")
        curve_layout = QVBoxLayout(curve_box)
        curve_layout.addWidget(self.loss_plot)
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(curve_box)
        lower.addWidget(preview_box)
        lower.setStretchFactor(0, 3)
        lower.setStretchFactor(1, 2)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addLayout(buttons)
        right_layout.addWidget(self.status)
        right_layout.addWidget(lower, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(scroll)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([340, 1000])
        self.splitter = splitter
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)

        self.train_button.clicked.connect(self.start)
        self.queue_button.clicked.connect(self.add_to_queue)
        self.pause_button.toggled.connect(self._on_pause)
        self.stop_button.clicked.connect(self.stop)
        self.new_run_button.clicked.connect(self.new_run)
        self.preview_slider.valueChanged.connect(self._show_preview)
        studio.engine_ready.connect(lambda _: self._update_buttons())
        studio.engine_ready.connect(lambda _: self._update_gpus())
        studio.device_changed.connect(lambda _: self._update_gpus())
        studio.workspace_changed.connect(lambda _: self._update_run_label())
        studio.jobs_changed.connect(self._update_buttons)
        self._update_buttons()
        self._update_run_label()
        self._update_gpus()

    # -- state ------------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.job is not None and self.job.isRunning()

    def _update_buttons(self) -> None:
        running = self.is_running()
        self.train_button.setEnabled(self.studio.ready and not running)
        self.queue_button.setEnabled(self.studio.ready)
        self.train_button.setText("Train" if self.studio.ready else "Train (loading engine…)")
        if self.resume_dir and self.studio.ready:
            self.train_button.setText("Continue training")
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        self.gpus_spin.setEnabled(not running)
        self.new_run_button.setEnabled(not running)
        if not running and self.pause_button.isChecked():
            self.pause_button.setChecked(False)

    def gpu_count(self) -> int:
        """The CUDA devices the engine found (``torch.cuda.device_count()``)."""
        engine = self.studio.engine
        return sum(device.kind == "cuda" for device in engine.devices) if engine else 0

    def gpus_offered(self) -> bool:
        """Several GPUs and a CUDA device chosen: the GPUs choice is shown."""
        return self.gpu_count() > 1 and self.studio.device.kind == "cuda"

    def _update_gpus(self) -> None:
        offered = self.gpus_offered()
        self.gpus_spin.setRange(1, max(1, self.gpu_count()))
        self.gpus_label.setVisible(offered)
        self.gpus_spin.setVisible(offered)

    def processes(self) -> int:
        """How many data-parallel processes the next training uses (1 unless GPUs > 1)."""
        return self.gpus_spin.value() if self.gpus_offered() else 1

    def _update_run_label(self) -> None:
        if self.resume_dir:
            self.run_label.setText(
                f"<b>Continuing</b> {self.resume_dir}<br>Its length, optimiser and intervals may "
                "change (each change is recorded in the run); what shapes the model is its own.")
        elif self.run_dir and self.is_running():
            self.run_label.setText(f"<b>Training</b> {self.run_dir}")
        else:
            self.run_label.setText(f"<b>New run</b> in {self.studio.workspace}")

    def new_run_dir(self, config: Any) -> Path:
        """A fresh folder under the workspace named after what is trained and when."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        name = f"{config.dataset}-{config.network}-{config.schedule}-{stamp}"
        base = self.studio.workspace / name
        path, suffix = base, 1
        while path.exists():
            suffix += 1
            path = base.with_name(f"{base.name}-{suffix}")
        return path

    # -- continuing a run -------------------------------------------------------------------------
    def open_run(self, run_dir: str, config: dict[str, Any], history: list[dict[str, Any]]
                 ) -> None:
        """Continue ``run_dir``: its settings in the form (only steps editable), its curve."""
        if self.is_running():
            raise ConfigError("a training job is running; stop it before opening another run")
        train = dict(config.get("train", {}))
        self.resume_dir, self.resume_config = run_dir, train
        values = {param.name: train.get(param.name, param.default) for param in TRAIN_PARAMS}
        self.form.set_values(values)
        self._enable_resumable()
        self.new_run_button.setVisible(True)
        self.previews.clear()
        self.preview_slider.setEnabled(False)
        self.preview_image.set_image(None)
        self.preview_caption.setText("No preview yet.")
        self._set_history(history)
        total = int(config.get("total_steps", train.get("steps", 0)) or 0)
        done = int(history[-1]["step"]) if history else 0
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, max(total, 1)))
        self.progress.setFormat("%v / %m steps")
        self.status.setText(f"Opened at step {done} of {total}. Raise Steps to train longer.")
        self._update_run_label()
        self._update_buttons()

    def new_run_from(self, config: dict[str, Any]) -> None:
        """A new run with another run's training settings in the form (the window has put its
        dataset, network and schedule on their pages); nothing of that run is continued."""
        if self.is_running():
            raise ConfigError("a training job is running; stop it before starting another run")
        self.new_run()
        train = dict(config.get("train", {}))
        values = {param.name: train.get(param.name, param.default) for param in TRAIN_PARAMS}
        if train.get("epochs"):  # the form counts steps: an epoch run's real length in steps
            values["steps"] = int(config.get("total_steps") or values.get("steps") or 0)
        self.form.set_values(values)
        self.status.setText("Settings of an existing run, as a new run: press Train to start it.")
        self._update_buttons()

    def _enable_resumable(self) -> None:
        """Continuing: only what a resume may change is editable."""
        for name in self.form.editors:
            self.form.set_field_enabled(
                name, name in RESUMABLE,
                "" if name in RESUMABLE else "fixed by the run: it shapes the model")

    def _set_history(self, history: list[dict[str, Any]]) -> None:
        records = [r for r in history if r.get("loss") is not None]
        self.loss_plot.set_history(
            np.array([r["step"] for r in records], dtype=np.float64),
            np.array([r["loss"] for r in records], dtype=np.float64),
            np.array([r.get("lr", np.nan) for r in records], dtype=np.float64),
        )

    def set_setup_summary(self, parts: list[tuple[str, str]]) -> None:
        """``[(page, text), ...]``: dataset · network · schedule, each linking to its page."""
        links = " · ".join(f"<a href='{page}'>{text}</a>" for page, text in parts)
        self.setup_label.setText(f"Trains: {links}")

    def clear_results(self) -> None:
        """Forget the shown curve, previews and status (another run's, or a finished one's)."""
        self.loss_plot.clear()
        self.previews.clear()
        self.preview_slider.setEnabled(False)
        self.preview_image.set_image(None)
        self.preview_particles.set_particles(None)
        self.preview_caption.setText("No preview yet.")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("not started")
        self.status.setText("Press Train to train the chosen dataset, network and schedule.")

    def new_run(self) -> None:
        """Leave continue mode: the next Train starts a new run from the other pages' setup;
        the continued run's curve, previews and status go."""
        if self.is_running():
            return
        self.clear_results()
        self.resume_dir = self.resume_config = None
        for name in self.form.editors:
            self.form.set_field_enabled(name, True)
        self.fields_enabled.emit()
        self.new_run_button.setVisible(False)
        self._update_run_label()
        self._update_buttons()

    # -- starting and stopping --------------------------------------------------------------------
    def build_config(self) -> Any:
        """The TrainConfig to run, or :class:`ConfigError` (shown inline where it belongs)."""
        from diffstudio.engine.training import TrainConfig

        settings = self.form.validated()
        if self.resume_config is not None:  # the run's own, and what may change from the form
            values = dict(self.resume_config)
            values.update({name: value for name, value in settings.items() if name in RESUMABLE})
            values["epochs"] = 0
        else:
            values = {**self.setup(), **settings}
        # The toolbar's device and precision, also for a continued run (a CPU run goes on on a
        # GPU and back).
        values["device"] = self.studio.device.kind
        values["mixed_precision"] = self.studio.precision
        try:
            return TrainConfig.from_dict(values)
        except ConfigError as exc:
            self.form.show_error(str(exc))
            raise

    def start(self) -> bool:
        """Start (or continue) training; False when a setting is invalid (shown inline)."""
        if not self.studio.ready or self.is_running():
            return False
        try:
            config = self.build_config()
        except ConfigError as exc:
            self.studio.notifications.warning(f"Training not started: {exc}", source="Train")
            return False
        resume = self.resume_dir is not None
        run_dir = self.resume_dir or str(self.new_run_dir(config))
        if not resume:
            self.loss_plot.clear()
            self.previews.clear()
            self.preview_slider.setEnabled(False)
            self.preview_image.set_image(None)
            self.preview_particles.set_particles(None)
            self.preview_caption.setText("No preview yet.")
        device = self.studio.device
        cuda_index = int(device.id.split(":")[1]) if device.kind == "cuda" else None
        processes = self.processes()
        # Several processes are started by accelerate launch: always out of this process.
        job = TrainJob(config, run_dir, resume=resume, registry=self.studio.registry,
                       cuda_index=cuda_index, processes=processes,
                       worker_process=self.studio.preferences.train_worker_process
                       or processes > 1)
        job.events_ready.connect(self._drain_events)
        job.note.connect(lambda text, level: (
            self.studio.notifications.warning if level == "warning"
            else self.studio.notifications.info)(text, source="Train"))
        job.progress_ready.connect(self._on_progress)
        job.preview_ready.connect(self._on_preview)
        job.succeeded.connect(self._on_succeeded)
        job.failed.connect(self._on_failed)
        job.finished.connect(self._on_finished)
        self.job, self.run_dir = job, run_dir
        self._logged, self._first_step = False, 0
        self.progress.setRange(0, max(config.steps, 1))
        self.progress.setFormat("%v / %m steps")
        self.status.setText("Starting: building the dataset and the network…")
        self.studio.add_job("train", job)
        job.start()
        self._update_buttons()
        self._update_run_label()
        return True

    def add_to_queue(self) -> int | None:
        """Queue the training the form describes (a new run, or more steps of the run being
        continued) in the workspace's job queue; returns the job's number, None when a setting
        is invalid (shown inline) or the queue cannot be written (a notification says why)."""
        if not self.studio.ready:
            return None
        try:
            config = self.build_config()
        except ConfigError as exc:
            self.studio.notifications.warning(f"Training not queued: {exc}", source="Train")
            return None
        from diffstudio.app.job_queue import JobQueue
        from diffstudio.engine.io import atomic_write_json

        made: list[Path] = []  # what this add wrote, removed again when the queue refuses
        try:
            queue = JobQueue(self.studio.workspace)
            if self.resume_dir is not None:
                run_dir = Path(self.resume_dir)
                argv = ["--resume", str(run_dir)]
            else:
                run_dir = self.new_run_dir(config)
                run_dir.mkdir(parents=True)  # the name is taken: the next one queued differs
                made.append(run_dir)
                argv = ["--out", str(run_dir)]
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            settings = queue.folder / "queue-requests" / f"{run_dir.name}-{stamp}.json"
            values = config.to_dict()
            if self.studio.device.kind == "cuda":  # the toolbar's GPU, "cuda:N", for the
                values["device"] = self.studio.device.id  # process that will train
            atomic_write_json(settings, values)
            made.append(settings)
            job = queue.add("train", [*argv, "--config", str(settings)],
                            cwd=self.studio.workspace)
        except (DiffstudioError, OSError) as exc:
            for path in reversed(made):  # no empty run folder, no orphan settings file
                with contextlib.suppress(OSError):
                    if path.is_dir():
                        path.rmdir()
                    else:
                        path.unlink()
            self.studio.notifications.warning(f"Training not queued: {exc}", source="Train")
            return None
        self.studio.notifications.info(
            f"Training queued as job #{job.id} (into {run_dir}); the Queue page runs it.",
            source="Train")
        return job.id

    def stop(self) -> None:
        """Ask the running job to stop after the current step (it writes a checkpoint)."""
        if self.job is not None:
            self.job.request_stop()
            self.job.set_paused(False)
            self.status.setText("Stopping after this step; writing a checkpoint…")

    def _on_pause(self, paused: bool) -> None:
        if self.job is None:
            return
        self.job.set_paused(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        if paused:
            self.status.setText("Paused between two steps. Resume to go on.")

    # -- events from the job ----------------------------------------------------------------------
    def _drain_events(self) -> None:
        if self.job is None:
            return
        events = self.job.drain_events()
        steps = [e for e in events if e.kind == "step"]
        if steps:
            self.loss_plot.append(
                np.array([e.step for e in steps], dtype=np.float64),
                np.array([e.loss for e in steps], dtype=np.float64),
                np.array([e.lr for e in steps], dtype=np.float64),
            )
            self._show_progress(steps[-1])
        for event in events:
            if event.kind == "start":
                self._first_step = event.step
                self.progress.setRange(0, max(event.total_steps, 1))
                self.progress.setValue(event.step)
                self.status.setText(f"Training from step {event.step}: {event.message}")
                if event.skipped:
                    self.studio.notifications.warning(
                        f"Skipped {event.skipped} unreadable file(s) of the dataset; they are "
                        f"listed with their reasons in {self.run_dir}/config.json",
                        source="Train")
            elif event.kind == "checkpoint":
                self.run_label.setText(f"<b>Training</b> {self.run_dir}<br>checkpoint at step "
                                       f"{event.step}")

    def _on_progress(self) -> None:
        """Every step moves the bar; until the first loss is logged, say the step (a slow
        first run otherwise showed nothing for a minute and a half)."""
        progress = self.job.take_progress() if self.job is not None else None
        if progress is None:
            return
        self.progress.setValue(min(progress.done, self.progress.maximum()))
        if not self._logged and progress.done > self._first_step:
            log_every = self.job.config.log_every
            self.status.setText(f"step {progress.done:,} / {progress.total:,}   ·   the first "
                                f"loss is logged at step {log_every:,}"
                                + (f"   ·   ETA {format_duration(progress.eta)}"
                                   if progress.eta is not None else ""))

    def _show_progress(self, event: Any) -> None:
        self.progress.setValue(min(event.step, self.progress.maximum()))
        self._logged = True
        parts = [f"step {event.step:,} / {event.total_steps:,}", f"loss {event.loss:.4g}",
                 f"lr {event.lr:.3g}", f"{event.images_per_second:,.0f} images/s"]
        if event.eta is not None and event.step < event.total_steps:
            # The trainer's own estimate: the one the terminal and the status bar show.
            parts.append(f"ETA {format_duration(event.eta)}")
        if self.job is not None and self.job.is_paused():
            parts.append("paused")
        self.status.setText("   ·   ".join(parts))

    def _on_preview(self, frame: PreviewFrame) -> None:
        self.previews.append(frame)
        self.preview_slider.blockSignals(True)
        self.preview_slider.setRange(0, len(self.previews) - 1)
        self.preview_slider.setValue(len(self.previews) - 1)
        self.preview_slider.blockSignals(False)
        self.preview_slider.setEnabled(len(self.previews) > 1)
        self._show_preview(len(self.previews) - 1)

    def _show_preview(self, index: int) -> None:
        if not 0 <= index < len(self.previews):
            return
        frame = self.previews[index]
        caption = f"step {frame.step:,} of {frame.total_steps:,} · {len(frame.samples)} samples"
        if frame.samples.ndim == 4:
            self.preview_stack.setCurrentWidget(self.preview_image)
            self.preview_image.set_array(grid_rgb8(frame.samples), f"step {frame.step:,}")
        else:
            self.preview_stack.setCurrentWidget(self.preview_particles)
            dataset = self.studio.dataset
            if dataset is not None and dataset.kind == "points" and index == 0:
                self.preview_particles.set_background(dataset.data[:4000].numpy())
            self.preview_particles.set_particles(frame.samples)
        self.preview_caption.setText(caption + (f" · {Path(frame.path).name}" if frame.path
                                                else ""))
        self.preview_caption.setToolTip(frame.path or "")

    def _on_succeeded(self, result: Any) -> None:
        self._last_status = result.status
        loss = f"{result.last_loss:.4g}" if result.last_loss is not None else "n/a"
        # The bar shows the step the run stopped at, not the last logged one (one number).
        self.progress.setValue(min(int(result.step), self.progress.maximum()))
        if result.status == "stopped":
            message = (f"Training stopped at step {result.step:,}; its checkpoint is kept. "
                       "Press Continue training to go on from there.")
        else:
            message = f"Training completed: {result.step:,} steps, last loss {loss}."
        self.status.setText(message)
        self.studio.notifications.info(f"{message} Run: {result.run.path}", source="Train")

    def _on_failed(self, message: str, details: str) -> None:
        self.status.setText(f"Training failed: {message}")
        self.studio.notifications.error(f"Training failed: {message}", details, source="Train")

    def _on_finished(self) -> None:
        self._drain_events()
        finished_dir = self.run_dir
        stopped = self._last_status == "stopped"
        self.job, self._last_status = None, None
        if stopped and self.resume_dir is None and finished_dir \
                and Run.is_run(finished_dir):
            # A stopped run: pressing Train again continues it rather than starting over.
            self.resume_dir = finished_dir
            try:
                self.resume_config = Run(finished_dir).config().train
            except Exception:  # an unreadable config: the next Train starts a new run
                self.resume_dir = self.resume_config = None
            if self.resume_dir:
                self._enable_resumable()
                self.new_run_button.setVisible(True)
        self._update_buttons()
        self._update_run_label()
