"""Training from the window: the Train button trains, the curve and previews fill in, pause and
stop work, and closing while training asks, stops cleanly and keeps a checkpoint."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from diffstudio.engine.runs import Run
from diffstudio.engine.training import TrainConfig
from diffstudio.gui.plots import LossPlot, ema_smooth
from diffstudio.gui.train_settings import DIFFUSION_PARAMS, GUI_DEFAULTS, TRAIN_PARAMS

TINY = {"steps": 20, "batch_size": 16, "warmup_steps": 2, "log_every": 2,
        "checkpoint_every": 20, "preview_every": 10, "preview_samples": 4, "preview_steps": 2}
LONG = {**TINY, "steps": 100_000, "preview_every": 0, "checkpoint_every": 100_000}


def _tiny_model(window, num_timesteps: int = 50) -> None:
    window.model_view.diffusion_form.set_values({"num_timesteps": num_timesteps})


def test_settings_schema_matches_train_config():
    defaults = TrainConfig()
    for param in TRAIN_PARAMS + DIFFUSION_PARAMS:
        assert hasattr(defaults, param.name), param.name
        expected = GUI_DEFAULTS.get(param.name, getattr(defaults, param.name))
        assert param.default == expected, param.name
    from diffstudio.engine.parameterization import PREDICTION_TYPES

    prediction = next(p for p in DIFFUSION_PARAMS if p.name == "prediction_type")
    assert set(prediction.choices) <= set(PREDICTION_TYPES)


def test_model_page_offers_the_engines_prediction_types(make_window):
    from diffstudio.engine.parameterization import PREDICTION_TYPES

    window = make_window()
    combo = window.model_view.diffusion_form.editors["prediction_type"]
    assert [combo.itemData(i) for i in range(combo.count())] == list(PREDICTION_TYPES)


def test_train_button_trains_and_the_curve_receives_points(qtbot, make_window, tmp_path):
    window = make_window()
    _tiny_model(window)
    view = window.train_view
    view.form.set_values(TINY)
    qtbot.mouseClick(view.train_button, Qt.MouseButton.LeftButton)
    assert view.is_running()
    assert not view.train_button.isEnabled() and view.stop_button.isEnabled()
    qtbot.waitUntil(lambda: view.job is None, timeout=240_000)

    assert view.loss_plot.point_count() == 10
    steps, losses = view.loss_plot.loss.view()
    assert list(steps) == list(range(2, 21, 2)) and np.all(losses > 0)
    assert view.loss_plot.lr.size == 10
    view.loss_plot.redraw()
    assert view.loss_plot.raw_curve.getData()[0] is not None
    assert [frame.step for frame in view.previews] == [10, 20]
    assert view.previews[-1].samples.shape == (4, 1, 8, 8)
    assert view.preview_image.image() is not None
    assert "step 20" in view.preview_caption.text()
    assert view.progress.value() == 20
    runs = list((tmp_path / "workspace").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("digits-unet-cosine-")
    assert Run(runs[0]).latest_checkpoint().name == "step-00000020"
    assert any("Training completed" in n.message for n in window.notifications.items)
    # The Runs page lists the new run with its last step and loss.
    qtbot.waitUntil(lambda: len(window.runs_view.runs) == 1, timeout=60_000)
    summary = window.runs_view.runs[0]
    assert summary.step == 20 and summary.last_loss is not None
    assert summary.dataset == "digits" and summary.schedule == "cosine"


def test_invalid_setting_refuses_to_start_and_shows_inline(make_window):
    window = make_window()
    view = window.train_view
    view.form.editors["batch_size"].lineEdit().setText("0")  # typed, not yet committed
    assert view.start() is False
    assert view.job is None
    assert "batch_size" in view.form.error_text() or "Batch size" in view.form.error_text()
    view.form.set_values({})
    # A bad value on another page: that page is shown with the error inline.
    window.model_view.diffusion_form.set_values({"num_timesteps": 1})
    assert view.start() is False
    assert window.current_page() == "Model & schedule"
    assert "num_timesteps" in window.model_view.diffusion_form.error_text()


def test_pause_then_stop_keeps_a_checkpoint_and_continues(qtbot, make_window, tmp_path):
    window = make_window()
    _tiny_model(window)
    view = window.train_view
    view.form.set_values(LONG)
    assert view.start()
    qtbot.waitUntil(lambda: view.loss_plot.point_count() >= 2, timeout=240_000)
    view.pause_button.click()
    assert view.job.is_paused() and view.pause_button.text() == "Resume"
    view.stop_button.click()  # a stop while paused ends the job
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    run_dir = next((tmp_path / "workspace").iterdir())
    checkpoint = Run(run_dir).latest_checkpoint()
    stopped_at = int(checkpoint.name.split("-")[1])
    assert stopped_at >= 4
    assert any("stopped" in n.message for n in window.notifications.items)
    # One number: the bar and the message give the step the checkpoint was written at, and
    # the message points at the Continue button beside it, not elsewhere.
    assert view.progress.value() == stopped_at
    assert f"stopped at step {stopped_at:,}" in view.status.text()
    assert "Continue training" in view.status.text() and "Runs page" not in view.status.text()
    # Train again continues the stopped run: what a resume may change is editable (length,
    # learning rate, batch size...), what shapes the model (seed, label dropout) is not.
    assert view.resume_dir == str(run_dir)
    assert view.train_button.text() == "Continue training"
    for name in ("steps", "learning_rate", "batch_size", "grad_clip", "checkpoint_every"):
        assert view.form.editors[name].isEnabled(), name
    for name in ("seed", "label_dropout", "weight_decay"):
        assert not view.form.editors[name].isEnabled(), name
        assert "fixed by the run" in view.form.editors[name].toolTip()
    view.form.set_values({**view.form.values(), "steps": stopped_at + 2,
                          "learning_rate": 2e-4})
    assert view.start()
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    assert Run(run_dir).latest_checkpoint().name == f"step-{stopped_at + 2:08d}"
    config = Run(run_dir).read_config()
    assert config["train"]["learning_rate"] == 2e-4  # the change is the run's now ...
    assert any("learning_rate" in entry.get("changes", {}) for entry in config["history"])


def test_closing_while_training_asks_then_stops_cleanly(qtbot, make_window, tmp_path):
    questions = []
    answers = [False, True]

    def ask(title: str, text: str) -> bool:
        questions.append(text)
        return answers.pop(0)

    window = make_window(ask=ask)
    _tiny_model(window)
    view = window.train_view
    view.form.set_values(LONG)
    assert view.start()
    job = view.job
    qtbot.waitUntil(lambda: view.loss_plot.point_count() >= 1, timeout=240_000)
    window.close()  # answered No: nothing happens
    assert window.isVisible() and job.isRunning()
    window.close()  # answered Yes: stop the job, then close
    assert len(questions) == 2 and "Training is running" in questions[0]
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=120_000)
    assert job.isFinished() and job.outcome == "succeeded"
    run_dir = next((tmp_path / "workspace").iterdir())
    assert Run(run_dir).latest_checkpoint() is not None


def test_loss_plot_keeps_every_point_and_smooths():
    plot = LossPlot()
    steps = np.arange(1, 300_001, dtype=np.float64)
    losses = 1.0 / np.sqrt(steps) + 0.01
    plot.append(steps[:10], losses[:10], np.full(10, 1e-3))
    plot.append(steps[10:], losses[10:], np.full(len(steps) - 10, 1e-3))
    plot.redraw()
    assert plot.point_count() == 300_000
    smoothed = plot.smoothed.view()[1]
    assert np.allclose(smoothed, ema_smooth(losses, plot.smoothing.value()))
    # What is drawn is clipped to the view and downsampled, not all 300k points.
    assert plot.raw_curve.opts["autoDownsample"] and plot.raw_curve.opts["clipToView"]
    plot.log_scale.setChecked(True)
    assert plot.plot_item.ctrl.logYCheck.isChecked()
    assert not plot.plot_item.getAxis("right").logMode  # the learning rate stays linear
    plot.smoothing.setValue(0.0)
    assert np.allclose(plot.smoothed.view()[1], losses)
    plot.deleteLater()


def test_the_first_steps_show_before_the_first_logged_loss(qtbot, make_window):
    window = make_window()
    _tiny_model(window)
    view = window.train_view
    view.form.set_values({**LONG, "log_every": 100_000})  # no loss for a long while
    assert view.start()
    qtbot.waitUntil(lambda: "the first loss is logged at step 100,000" in view.status.text(),
                    timeout=120_000)
    assert view.progress.value() >= 1 and view.loss_plot.point_count() == 0
    view.stop_button.click()
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)


def test_log_axes_say_plain_numbers(qtbot):
    from diffstudio.gui.plots import PlainLogAxis, plain_number

    axis = PlainLogAxis("left")
    axis.setLogMode(True)
    assert axis.tickStrings([-1.69897, 0.5, 1, 1.69897, 3], 1, 0.3) == \
        ["0.02", "3.16", "10", "50", "1,000"]
    assert plain_number(51.9477892385496) == "51.9"
    # 0.15 .. 1.2 on 100 pixels: nine minor ticks a decade would print over each other.
    low, high = np.log10(0.15), np.log10(1.2)
    levels = axis.logTickValues(low, high, 100, [(1.0, [0.0])])
    labelled = [round(10 ** v, 3) for spacing, values in levels if spacing is None for v in values]
    assert labelled == [0.2, 0.5, 1.0]
    tall = axis.logTickValues(low, high, 1000, [(1.0, [0.0])])
    assert len([v for spacing, values in tall if spacing is None for v in values]) == 9  # 0.2 .. 1
    plot = LossPlot()
    qtbot.addWidget(plot)
    assert isinstance(plot.plot_item.getAxis("left"), PlainLogAxis)


def test_changing_the_setup_leaves_a_continued_run_and_clears_its_results(qtbot, make_window,
                                                                          trained_run):
    window = make_window(workspace=trained_run.parent)
    view = window.train_view
    window.open_run_for_training(str(trained_run))
    qtbot.waitUntil(lambda: view.resume_dir == str(trained_run), timeout=60_000)
    assert view.loss_plot.point_count() == 3
    assert "digits" in view.setup_label.text() and "href='Data'" in view.setup_label.text()
    window.data_view.picker.select("toy2d")  # the Data page now shows something else
    assert view.resume_dir is None and view.train_button.text() == "Train"
    assert view.loss_plot.point_count() == 0 and view.progress.value() == 0
    assert "toy2d" in view.setup_label.text()
    assert "no longer match" in window.notifications.items[-1].message
    view.setup_label.linkActivated.emit("Data")  # the summary's links lead to the pages
    assert window.current_page() == "Data"
