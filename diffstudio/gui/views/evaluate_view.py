"""The Evaluate page: FID@N (with N), KID, precision/recall, density/coverage, the nearest
training images of each sample and the memorisation check, for samples generated from a run in
memory or read from a samples folder, computed in the background with progress.

Tabs: the metrics (with their N, warnings and where the JSON went); the retrieval grid (each
sample, then its 5 nearest training images with distances, in Inception or pixel space; flagged
samples highlighted); the comparison table of every evaluation in the workspace with the plot
of FID (or KID) against network evaluations (:mod:`.comparison_panel`).

The Inception FID weights are looked for in the path set here, ``$DIFFSTUDIO_FID_WEIGHTS`` and
the torch hub cache, and downloaded (with a timeout, in the worker) only when allowed; the page
says where they were found or where to put the file.
"""

from __future__ import annotations

import dataclasses
import html
import time
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from diffstudio.app.events import format_duration
from diffstudio.engine.evaluation.progress import NOT_CACHED_NOTE
from diffstudio.engine.runs import Run
from diffstudio.errors import ConfigError, DiffstudioError
from diffstudio.gui.eval_jobs import EvalJob, EvalOutcome, EvalRequest
from diffstudio.gui.forms import ContributionPicker, ParamForm, PathEdit
from diffstudio.gui.panels import FormScroll, form_column
from diffstudio.gui.retrieval_grid import RetrievalGrid
from diffstudio.gui.run_chooser import RunChooser
from diffstudio.gui.studio import Studio
from diffstudio.gui.switch import SourceSwitch
from diffstudio.gui.views.comparison_panel import ComparisonPanel
from diffstudio.specs import Param

__all__ = ["EVAL_PARAMS", "METRIC_LABELS", "EvaluateView"]

#: Options that only apply when the samples are generated from a run.
FROM_RUN_ONLY = ("seed", "sample_batch_size", "step_sweep")

EVAL_PARAMS: tuple[Param, ...] = (
    Param("num_samples", "int", 2048, minimum=2, maximum=1_000_000,
          help="samples to generate (for a folder: use its first N; 0 is not allowed). FID@N "
               "is biased below 2048 and comparable only at the same N"),
    Param("seed", "int", 0, minimum=0, maximum=2**31 - 1,
          help="seed of the first generated sample; also of KID's subsets"),
    Param("sample_batch_size", "int", 64, minimum=1, maximum=65_536,
          help="samples per network call while generating"),
    Param("reference_limit", "int", 0, minimum=0, maximum=10_000_000,
          help="use a random subset of this many reference images for Inception features "
               "(0: all of them)"),
    Param("step_sweep", "str", "",
          help="a run only: comma-separated step counts (e.g. 10, 20, 50, 100), one evaluation "
               "each, for the plot of FID against network evaluations; empty: the sampler's "
               "own steps"),
)

METRIC_LABELS = {
    "fid": "FID@N (KID always beside it)",
    "kid": "KID (unbiased)",
    "precision_recall": "Precision / recall (k = 3)",
    "density_coverage": "Density / coverage (k = 5)",
    "retrieval": "Nearest training images (5)",
    "memorization": "Memorisation check (pixel space)",
}
REFERENCE_OFFER = 500  # the smaller reference subset offered on a first, large encoding
_STAGES = {"weights": "Inception weights", "reference": "Reference features",
           "generate": "Generating samples", "samples": "Features of the samples",
           "metrics": "Metrics", "done": "Done"}
_SPACES = {"inception": "Inception features", "pixel": "Pixels"}


class EvaluateView(QWidget):
    """See the module docstring."""

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.job: EvalJob | None = None
        self.outcome: EvalOutcome | None = None
        self.last_progress: Any = None

        # -- what to evaluate ---------------------------------------------------------------------
        self.runs = RunChooser(lambda: studio.workspace, minimum_length=14,
                               object_name="evalRunCombo",
                               accepts=lambda run: run.can_sample and run.kind == "image")
        self.ema_box = QCheckBox("EMA weights (latest checkpoint)")
        self.ema_box.setToolTip("Sample with the EMA copy of the weights of the run's latest "
                                "checkpoint (unticked: the raw weights)")
        self.ema_box.setChecked(True)
        self.sampler_picker = ContributionPicker("sampler")
        run_page = QWidget()
        run_layout = QVBoxLayout(run_page)
        run_layout.setContentsMargins(0, 0, 0, 0)
        run_layout.addWidget(self.runs)
        run_layout.addWidget(self.ema_box)
        run_layout.addWidget(QLabel("Sampler"))
        run_layout.addWidget(self.sampler_picker)
        self.folder_edit = PathEdit(directory=True)
        folder_page = QWidget()
        folder_layout = QVBoxLayout(folder_page)
        folder_layout.setContentsMargins(0, 0, 0, 0)
        folder_layout.addWidget(self.folder_edit)
        note = QLabel("A folder written by Save on the Sample page or by 'diffstudio sample' "
                      "(samples.npz, else its PNGs).")
        note.setWordWrap(True)
        folder_layout.addWidget(note)
        self.source = SourceSwitch([("run", "Generate from a run", run_page),
                                    ("folder", "Read a samples folder", folder_page)])
        self.from_run, self.from_folder = self.source.button("run"), self.source.button("folder")
        self.options = ParamForm(EVAL_PARAMS)
        source_box = QGroupBox("Samples")
        source_layout = QVBoxLayout(source_box)
        source_layout.addWidget(self.source)
        source_layout.addWidget(self.options)

        self.training_reference = QCheckBox("The run's training set")
        self.training_reference.setChecked(True)
        self.reference_picker = ContributionPicker("dataset")
        self.reference_picker.setEnabled(False)
        reference_box = QGroupBox("Reference images")
        reference_layout = QVBoxLayout(reference_box)
        reference_layout.addWidget(self.training_reference)
        reference_layout.addWidget(self.reference_picker)
        cached = QLabel("Reference features are cached: a repeated evaluation pays only for the "
                        "samples.")
        cached.setWordWrap(True)
        reference_layout.addWidget(cached)

        self.metric_boxes: dict[str, QCheckBox] = {}
        metrics_box = QGroupBox("Metrics")
        metrics_layout = QVBoxLayout(metrics_box)
        for name, label in METRIC_LABELS.items():
            box = QCheckBox(label)
            box.setChecked(name != "density_coverage")
            self.metric_boxes[name] = box
            metrics_layout.addWidget(box)

        self.weights_edit = PathEdit(directory=False)
        self.weights_edit.line.setPlaceholderText("found automatically (see below)")
        self.download_box = QCheckBox("Download if missing (internet, 92 MB)")
        self.download_box.setToolTip("Fetch pytorch-fid's Inception weights (92 MB) into the "
                                     "cache when no file is found; needs internet")
        self.download_box.setChecked(True)
        self.random_box = QCheckBox("Random Inception weights (no real FID)")
        self.random_box.setToolTip("Seeded random weights: checks the pipeline end to end; the "
                                   "numbers are not comparable with any published FID")
        self.weights_status = QLabel("")
        self.weights_status.setWordWrap(True)
        self.weights_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        weights_box = QGroupBox("Inception FID weights")
        weights_layout = QVBoxLayout(weights_box)
        weights_layout.addWidget(self.weights_edit)
        weights_layout.addWidget(self.download_box)
        weights_layout.addWidget(self.random_box)
        weights_layout.addWidget(self.weights_status)

        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setObjectName("evaluateButton")
        self.cancel_button = QPushButton("Cancel")
        buttons = QHBoxLayout()
        buttons.addWidget(self.evaluate_button)
        buttons.addWidget(self.cancel_button)
        self.queue_button = QPushButton("Queue")
        self.queue_button.setObjectName("queueEvaluationButton")
        self.queue_button.setToolTip(
            "Add this evaluation to the job queue instead of running it now: the Queue page "
            "(or 'diffstudio queue run') runs it in its own process as 'diffstudio eval' and "
            "writes its result file where Evaluate would")
        buttons.addWidget(self.queue_button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        for box in (source_box, reference_box, metrics_box, weights_box):
            left_layout.addWidget(box)
        left_layout.addStretch(1)
        scroll = FormScroll(left)  # never narrower than its fields

        # -- results ------------------------------------------------------------------------------
        self.stage_label = QLabel("Choose samples and press Evaluate.")
        self.stage_label.setWordWrap(True)
        self.stage_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        # The first evaluation against a reference set encodes all of it with Inception
        # (minutes on a CPU): said when it starts, with the offer of a smaller subset.
        self.reference_note = QLabel("")
        self.reference_note.setObjectName("referenceNote")
        self.reference_note.setWordWrap(True)
        self.reference_note.setSizePolicy(QSizePolicy.Policy.Ignored,
                                          QSizePolicy.Policy.Preferred)
        self.smaller_button = QPushButton(f"Use {REFERENCE_OFFER:,} instead")
        self.smaller_button.setObjectName("smallerReferenceButton")
        self.smaller_button.setToolTip(
            "Stop and start again with 'Reference limit' set to a random subset of "
            f"{REFERENCE_OFFER:,} reference images (FID against fewer reference images is "
            "noisier; the subset is cached too)")
        self.smaller_button.clicked.connect(self.use_smaller_reference)
        self.reference_row = QWidget()
        reference_row = QHBoxLayout(self.reference_row)
        reference_row.setContentsMargins(0, 0, 0, 0)
        reference_row.addWidget(self.reference_note, 1)
        reference_row.addWidget(self.smaller_button)
        self.reference_row.setVisible(False)
        self._restart_smaller: EvalRequest | None = None  # the request to start once stopped
        self.metrics_label = QLabel("")
        self.metrics_label.setObjectName("metricsLabel")
        self.metrics_label.setWordWrap(True)
        self.metrics_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.metrics_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        metrics_scroll = QScrollArea()
        metrics_scroll.setWidget(self.metrics_label)
        metrics_scroll.setWidgetResizable(True)

        self.space_combo = QComboBox()
        self.show_combo = QComboBox()
        self.show_combo.addItem("All samples", "all")
        self.show_combo.addItem("Flagged samples only", "flagged")
        self.sort_combo = QComboBox()
        self.sort_combo.addItem("In sample order", "index")
        self.sort_combo.addItem("Closest nearest neighbour first", "distance")
        self.sort_combo.addItem("Lowest memorisation ratio first", "ratio")
        self.grid = RetrievalGrid()
        self.grid.setObjectName("retrievalGrid")
        grid_scroll = QScrollArea()
        grid_scroll.setWidget(self.grid)
        grid_scroll.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.retrieval_note = QLabel("Each generated sample, then its nearest training images "
                                     "with their Euclidean distances (similarity retrieval as in "
                                     "Carlini et al. 2023). Samples "
                                     "the memorisation check flags are shaded red.")
        self.retrieval_note.setWordWrap(True)
        for combo in (self.space_combo, self.show_combo, self.sort_combo):  # fit 1024 px
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(7)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Space"))
        controls.addWidget(self.space_combo)
        controls.addWidget(self.show_combo)
        controls.addWidget(self.sort_combo)
        controls.addStretch(1)
        retrieval = QWidget()
        retrieval_layout = QVBoxLayout(retrieval)
        retrieval_layout.addWidget(self.retrieval_note)
        retrieval_layout.addLayout(controls)
        retrieval_layout.addWidget(grid_scroll, 1)

        self.comparison = ComparisonPanel(studio, self)
        self.tabs = QTabWidget()
        self.tabs.addTab(metrics_scroll, "Metrics")
        self.tabs.addTab(retrieval, "Nearest training images")
        self.tabs.addTab(self.comparison, "Comparison")
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.stage_label)
        right_layout.addWidget(self.progress)
        right_layout.addWidget(self.reference_row)
        right_layout.addWidget(self.tabs, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(form_column(scroll, buttons))  # the buttons never scroll away
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([420, 1000])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)

        # -- wiring -------------------------------------------------------------------------------
        self.source.changed.connect(self._on_source_changed)
        self.training_reference.toggled.connect(
            lambda checked: self.reference_picker.setEnabled(not checked))
        self.runs.changed.connect(self.update_buttons)
        self.random_box.toggled.connect(self._on_weights_changed)
        self.weights_edit.textChanged.connect(self._on_weights_changed)
        self.download_box.toggled.connect(self._on_weights_changed)
        self.evaluate_button.clicked.connect(lambda: self.start())
        self.queue_button.clicked.connect(self.add_to_queue)
        self.cancel_button.clicked.connect(self.cancel)
        self.space_combo.currentIndexChanged.connect(lambda _: self._show_retrieval())
        self.show_combo.currentIndexChanged.connect(lambda _: self._apply_order())
        self.sort_combo.currentIndexChanged.connect(lambda _: self._apply_order())
        studio.registry_changed.connect(self._on_registry)
        studio.runs_changed.connect(self.set_runs)
        studio.engine_ready.connect(lambda _: (self._on_weights_changed(), self.update_buttons()))
        studio.jobs_changed.connect(self.update_buttons)
        self.weights_edit.setText(studio.preferences.get_str("fid_weights", ""))
        if studio.registry is not None:
            self._on_registry(studio.registry)
        self._on_source_changed()
        self.update_buttons()

    # -- choices ----------------------------------------------------------------------------------
    def _on_registry(self, registry: Any) -> None:
        self.sampler_picker.set_contributions(registry.contributions("sampler"))
        self.reference_picker.set_contributions(
            [c for c in registry.contributions("dataset") if "image" in c.tags]
            or registry.contributions("dataset"))

    def _on_source_changed(self, *_: Any) -> None:
        generating = self.from_run.isChecked()
        self.training_reference.setText("The run's training set" if generating
                                        else "The training set of the run its PNGs name")
        for name in FROM_RUN_ONLY:  # a folder's samples exist already: nothing to generate
            self.options.set_field_enabled(
                name, generating, "" if generating else "only when generating from a run")
        self.update_buttons()

    def set_runs(self, runs: list[Any]) -> None:
        """Offer the image runs that have a checkpoint (keeps the current choice)."""
        self.runs.set_runs(runs)

    def select_run(self, path: str) -> None:
        """Evaluate the run at ``path`` (added to the list if it is not in the workspace)."""
        self.runs.select_run(path)
        self.from_run.setChecked(True)

    def current_run(self) -> str | None:
        return self.runs.current_run()

    def _on_weights_changed(self, *_: Any) -> None:
        """Say where the weights will come from (a file check: no torch work here)."""
        self.studio.preferences.set("fid_weights", self.weights_edit.text().strip())
        self.weights_edit.setEnabled(not self.random_box.isChecked())
        self.download_box.setEnabled(not self.random_box.isChecked())
        self.weights_status.setText(self.weights_message())

    def weights_message(self) -> str:
        """The engine's description of where the weights will come from (files are stat'ed, not
        hashed; torch-free, so it is safe on the main thread before the engine has loaded)."""
        from diffstudio.engine.evaluation.fid_weights import RANDOM_WEIGHTS, describe_fid_weights

        setting = RANDOM_WEIGHTS if self.random_box.isChecked() else self.weights_edit.text()
        return describe_fid_weights(setting, download=self.download_box.isChecked()).message

    # -- state ------------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.job is not None and self.job.isRunning()

    def update_buttons(self) -> None:
        running = self.is_running()
        has_source = (self.current_run() is not None) if self.from_run.isChecked() else bool(
            self.folder_edit.text().strip())
        self.evaluate_button.setEnabled(self.studio.ready and not running)
        self.queue_button.setEnabled(self.studio.ready)
        self.evaluate_button.setText("Evaluate" if self.studio.ready else
                                     "Evaluate (loading engine…)")
        self.evaluate_button.setToolTip("" if has_source else
                                        "Choose a trained run or a samples folder first")
        self.cancel_button.setEnabled(running)

    def build_request(self) -> EvalRequest:
        """The request from the forms, or :class:`ConfigError` saying what is missing."""
        options = self.options.validated()
        metrics = tuple(name for name, box in self.metric_boxes.items() if box.isChecked())
        if not metrics:
            raise ConfigError("tick at least one metric")
        if self.from_run.isChecked():
            run = self.current_run()
            if run is None:
                raise ConfigError("choose a trained run (train one on the Train page) or a "
                                  "samples folder")
            sampler, params = self.sampler_picker.validated()
            source: dict[str, Any] = dict(location=run, sampler=sampler,
                                          sampler_params=params, ema=self.ema_box.isChecked())
        else:
            folder = self.folder_edit.text().strip()
            if not folder:
                raise ConfigError("choose a samples folder")
            source = dict(location=folder)
        reference, reference_params = None, {}
        if not self.training_reference.isChecked():
            reference, reference_params = self.reference_picker.validated()
        weights = "random" if self.random_box.isChecked() else self.weights_edit.text().strip()
        sweep = self._step_sweep(options["step_sweep"], source)
        return EvalRequest(
            **source, num_samples=options["num_samples"], seed=options["seed"],
            sample_batch_size=options["sample_batch_size"],
            reference_limit=options["reference_limit"], reference=reference,
            reference_params=reference_params, metrics=metrics, weights=weights,
            download=self.download_box.isChecked(), device=self.studio.device.id,
            step_sweep=sweep,
        )

    def _step_sweep(self, text: str, source: dict[str, Any]) -> tuple[int, ...]:
        """The step counts of a sweep, each checked against the sampler's own limits."""
        if not text.strip():
            return ()
        if source.get("sampler") is None:
            raise ConfigError("a step sweep samples a run: choose 'Generate from a run', or "
                              "clear the step sweep")
        try:
            counts = tuple(dict.fromkeys(int(part) for part in text.replace(";", ",").split(",")
                                         if part.strip()))
        except ValueError as exc:
            raise ConfigError(f"step sweep {text!r}: give whole numbers separated by commas, "
                              "e.g. 10, 20, 50") from exc
        contribution = self.sampler_picker.current_contribution()
        if contribution is None or "steps" not in {p.name for p in contribution.params}:
            raise ConfigError(f"the sampler {source['sampler']!r} has no 'steps' parameter to "
                              "sweep; clear the step sweep")
        limit = self._run_timesteps(source["location"])
        for count in counts:
            contribution.validate({**source["sampler_params"], "steps": count})
            if limit and count > limit:
                raise ConfigError(f"step sweep: {count} steps, but the run has {limit} "
                                  "timesteps; use at most that many")
        return counts

    @staticmethod
    def _run_timesteps(run_dir: str) -> int:
        """The run's number of timesteps (0 when its config does not say)."""
        from diffstudio.engine.runs import Run

        try:
            train = Run(run_dir).read_config().get("train", {})
            return int(train.get("num_timesteps") or 0)
        except (DiffstudioError, OSError, ValueError, TypeError):
            return 0

    # -- the job ----------------------------------------------------------------------------------
    def add_to_queue(self) -> int | None:
        """Queue the evaluation the forms describe as the ``diffstudio eval`` command that
        makes it; returns the job's number, None when a setting is invalid or the queue cannot
        be written (said in the page and a notification)."""
        from diffstudio.cli.evaluate import eval_argv
        from diffstudio.gui.views.queue_view import queue_from_page

        return queue_from_page(
            self.studio, "eval", lambda: eval_argv(self.build_request(), self.studio.registry),
            "Evaluation", "Evaluate", self.stage_label.setText)

    def start(self, request: EvalRequest | None = None) -> bool:
        """Start an evaluation (of ``request``, else of the forms); False when a setting is
        missing or invalid (said in the notification bar)."""
        if not self.studio.ready or self.is_running():
            return False
        try:
            request = request or self.build_request()
        except ConfigError as exc:
            self.studio.notifications.warning(f"Evaluation not started: {exc}",
                                              source="Evaluate")
            return False
        job = EvalJob(request, registry=self.studio.registry)
        job.progress_ready.connect(self._on_progress)
        job.succeeded.connect(self._on_succeeded)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        job.finished.connect(self._on_finished)
        self.job, self.last_progress = job, None
        self._started = time.perf_counter()
        self.stage_label.setText(f"Evaluating {request.describe()}…")
        self.progress.setRange(0, 0)
        if self.outcome is not None:  # keep the last result readable, marked as such
            self.metrics_label.setText("<p style='color:#5a5a5a'><i>The previous evaluation, "
                                       "until this one finishes:</i></p>"
                                       + self.metrics_html(self.outcome))
        self.studio.add_job("evaluate", job)
        job.start()
        self.update_buttons()
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.request_stop()
            self.stage_label.setText("Cancelling at the next batch…")

    def _on_progress(self) -> None:
        if self.job is None:
            return
        event = self.job.take_progress()
        if event is None:
            return
        self.last_progress = event
        stage = _STAGES.get(event.stage, event.stage)
        if event.total > 0:
            self.progress.setRange(0, int(event.total))
            self.progress.setValue(min(int(event.done), int(event.total)))
        else:
            self.progress.setRange(0, 0)
        # The stage names what is computed; the message adds only where it says more.
        encoding = event.stage == "reference" and event.detail.startswith(NOT_CACHED_NOTE)
        detail = f": {event.detail}" if event.detail and not encoding and (
            event.stage in ("weights", "generate") or "cache" in event.detail) else ""
        count = f" ({event.done:,} of {event.total:,})" if event.total > 1 and \
            event.stage != "weights" else ""
        eta = event.eta if event.done > 0 else None
        eta_text = f" · ETA {format_duration(eta)}" if eta is not None and \
            event.done < event.total else ""
        self.stage_label.setText(f"{self.job.sweep_status}{stage}{count}{detail}{eta_text}")
        self._show_reference_note(event, encoding)

    def _show_reference_note(self, event: Any, encoding: bool) -> None:
        """While the reference features are computed (not cached yet): how many, how long,
        and the offer of a smaller subset when the set is large."""
        if not encoding or event.done >= event.total:
            self.reference_row.setVisible(False)
            self.reference_note.setText("")
            return
        eta = event.eta if event.done > 0 else None
        how_long = f"about {format_duration(eta)} left at the rate so far" if eta is not None \
            else "timing the first batch…"
        self.reference_note.setText(
            f"First evaluation against this reference set: encoding {event.total:,} "
            f"reference images with Inception once ({how_long}); later evaluations read "
            "them from the cache and take seconds. Cancel stops it.")
        limit = self.job.request.reference_limit if self.job is not None else 0
        self.smaller_button.setVisible(event.total > REFERENCE_OFFER and limit == 0)
        self.reference_row.setVisible(True)

    def use_smaller_reference(self) -> None:
        """Stop the running evaluation and start it again on a random subset of
        ``REFERENCE_OFFER`` reference images (the form's Reference limit says so)."""
        if self.job is None:
            return
        self.options.set_values({**self.options.values(), "reference_limit": REFERENCE_OFFER})
        self._restart_smaller = dataclasses.replace(self.job.request,
                                                    reference_limit=REFERENCE_OFFER)
        self.reference_row.setVisible(False)
        self.cancel()

    def _on_succeeded(self, outcome: EvalOutcome) -> None:
        self.outcome = outcome
        seconds = time.perf_counter() - self._started
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.stage_label.setText(f"Evaluated {outcome.result.n_generated} samples in "
                                 f"{seconds:.1f} s.")
        self.metrics_label.setText(self.metrics_html(outcome))
        self.space_combo.blockSignals(True)
        self.space_combo.clear()
        for space in outcome.retrieval:
            self.space_combo.addItem(_SPACES.get(space, space), space)
        self.space_combo.blockSignals(False)
        self._show_retrieval()
        if outcome.write_error:
            self.studio.notifications.warning(outcome.write_error, source="Evaluate")
        for path in outcome.paths:
            self.comparison.add_result_file(str(path))
        if outcome.path is not None:
            self.comparison.refresh()
        sweep = len(outcome.results) > 1
        if sweep:
            self.stage_label.setText(f"{len(outcome.results)} evaluations in {seconds:.1f} s;"
                                     " the last one is shown, all are in Comparison.")
        self.tabs.setCurrentIndex(2 if sweep else 0)
        # Announced in the bar (which also retires an older error of this page there).
        where = f" Results: {outcome.path}" if outcome.path is not None else ""
        self.studio.notifications.info(f"{self.stage_label.text()}{where}", source="Evaluate")

    @staticmethod
    def metrics_html(outcome: EvalOutcome) -> str:
        """The metrics with their N, then warnings (orange) and notes (grey)."""
        result = outcome.result
        lines = []
        for line in outcome.summary:
            escaped = html.escape(line)
            if line.startswith("warning"):
                lines.append(f"<p style='color:#a15c00'>{escaped}</p>")
            elif line.startswith("note"):
                lines.append(f"<p style='color:#5a5a5a'>{escaped}</p>")
            else:
                lines.append(f"<p><b>{escaped}</b></p>")
        if result.memorization is not None:
            flagged = ", ".join(str(i) for i in outcome.flagged[:20]) or "none"
            more = " …" if len(outcome.flagged) > 20 else ""
            lines.append(f"<p>Flagged samples: {flagged}{more} (see Nearest training "
                         "images)</p>")
        source = result.source
        where = (f"run {html.escape(str(source.get('run')))}, sampler "
                 f"{html.escape(str(source.get('sampler')))}, "
                 f"{source.get('network_evaluations')} network evaluations per sample"
                 if source.get("kind") == "run" else
                 f"folder {html.escape(str(source.get('folder')))}")
        reference = result.reference
        lines.append(f"<p style='color:#5a5a5a'>Samples: {where}. Reference: "
                     f"{html.escape(str(reference.get('name')))} ({reference.get('used')} of "
                     f"{reference.get('size')} images"
                     f"{', from the cache' if reference.get('from_cache') else ''}).</p>")
        if outcome.path is not None:
            lines.append(f"<p style='color:#5a5a5a'>Written to "
                         f"{html.escape(str(outcome.path))}</p>")
        return "".join(lines)

    def _on_failed(self, message: str, details: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.stage_label.setText(f"Evaluation failed: {message}")
        self.studio.notifications.error(f"Evaluation failed: {message}", details,
                                        source="Evaluate")

    def _on_cancelled(self, message: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.stage_label.setText(f"Cancelled: {message}.")

    def _on_finished(self) -> None:
        self.job = None
        self.reference_row.setVisible(False)
        self.update_buttons()
        if self._restart_smaller is not None:
            request, self._restart_smaller = self._restart_smaller, None
            self.start(request)

    # -- the retrieval grid -----------------------------------------------------------------------
    def _show_retrieval(self) -> None:
        outcome, space = self.outcome, self.space_combo.currentData()
        if outcome is None or space not in outcome.retrieval:
            self.grid.clear()
            return
        found = outcome.retrieval[space]
        self.grid.set_data(outcome.samples, outcome.reference_images, outcome.reference_rows,
                           found.indices, found.distances, space=_SPACES.get(space, space),
                           flagged=outcome.flagged, ratios=outcome.ratios)
        self._apply_order()

    def _apply_order(self) -> None:
        outcome, space = self.outcome, self.space_combo.currentData()
        if outcome is None or space not in outcome.retrieval:
            return
        order = np.arange(len(outcome.samples))
        if self.show_combo.currentData() == "flagged":
            order = np.asarray(outcome.flagged, dtype=np.int64)
        how = self.sort_combo.currentData()
        if how == "distance":
            nearest = outcome.retrieval[space].distances[:, 0]
            order = order[np.argsort(nearest[order], kind="stable")]
        elif how == "ratio" and outcome.ratios is not None:
            order = order[np.argsort(outcome.ratios[order], kind="stable")]
        self.grid.set_order(order.tolist())

    # -- settings ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "source": "run" if self.from_run.isChecked() else "folder",
            "run": self.current_run(), "folder": self.folder_edit.text(),
            "sampler": self.sampler_picker.state(), "options": self.options.values(),
            "training_reference": self.training_reference.isChecked(),
            "reference": self.reference_picker.state(),
            "metrics": [name for name, box in self.metric_boxes.items() if box.isChecked()],
            "download": self.download_box.isChecked(), "ema": self.ema_box.isChecked(),
        }

    def restore(self, state: dict[str, Any] | None) -> None:
        if not isinstance(state, dict):
            return
        self.sampler_picker.restore(state.get("sampler"))
        self.reference_picker.restore(state.get("reference"))
        if isinstance(state.get("options"), dict):
            known = {p.name for p in EVAL_PARAMS}
            self.options.set_values({k: v for k, v in state["options"].items() if k in known})
        if isinstance(state.get("metrics"), list):
            for name, box in self.metric_boxes.items():
                box.setChecked(name in state["metrics"])
        self.training_reference.setChecked(bool(state.get("training_reference", True)))
        self.download_box.setChecked(bool(state.get("download", True)))
        self.ema_box.setChecked(bool(state.get("ema", True)))
        self.folder_edit.setText(str(state.get("folder") or ""))
        run = state.get("run")
        if run and Run.is_run(run):
            self.select_run(run)
        (self.from_folder if state.get("source") == "folder" else self.from_run).setChecked(True)
