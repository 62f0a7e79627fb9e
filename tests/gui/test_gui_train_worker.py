"""Training in a worker process from the window (issue 15): a training whose process is killed
fails with a notification that names its log, and the window goes on (a new training runs);
the preference turns it off (the training then runs in the job's thread)."""

from __future__ import annotations

import os
import signal

from diffstudio.app.worker import WORKER_PIDS
from diffstudio.engine.runs import Run

TINY = {"steps": 6, "batch_size": 8, "warmup_steps": 1, "log_every": 2, "checkpoint_every": 6,
        "preview_every": 3, "preview_samples": 2, "preview_steps": 2}
LONG = {**TINY, "steps": 100_000, "preview_every": 0, "checkpoint_every": 100_000}


def _tiny_model(window) -> None:
    window.model_view.diffusion_form.set_values({"num_timesteps": 20})


def test_a_killed_training_process_fails_with_its_log_and_the_window_lives(qtbot, make_window,
                                                                           tmp_path):
    window = make_window()
    _tiny_model(window)
    view = window.train_view
    assert window.preferences.train_worker_process  # on by default
    view.form.set_values(LONG)
    assert view.start()
    job = view.job
    qtbot.waitUntil(lambda: view.loss_plot.point_count() >= 1, timeout=240_000)
    assert len(WORKER_PIDS) == 1 and os.getpid() not in WORKER_PIDS
    os.kill(next(iter(WORKER_PIDS)), signal.SIGKILL)  # an out-of-memory kill, say
    qtbot.waitUntil(lambda: view.job is None, timeout=60_000)
    assert job.outcome == "failed"
    failure = next(n for n in window.notifications.items if "Training failed" in n.message)
    assert "killed by SIGKILL" in failure.message and str(job.log) in failure.message
    assert job.log.is_file() and str(job.log).startswith(job.run_dir)
    assert "Training failed" in view.status.text()

    view.form.set_values(TINY)  # the window lives: a new training runs to its end
    assert view.start() and view.job is not job
    qtbot.waitUntil(lambda: view.job is None, timeout=240_000)
    assert any("Training completed" in n.message for n in window.notifications.items)
    assert [frame.step for frame in view.previews] == [3, 6]
    assert view.previews[-1].samples.shape == (2, 1, 8, 8)
    assert view.loss_plot.point_count() == 3
    assert not WORKER_PIDS


def test_the_preference_off_trains_in_the_job_s_thread(qtbot, make_window):
    from diffstudio.gui.preferences_dialog import PreferencesDialog

    window = make_window()
    _tiny_model(window)
    dialog = PreferencesDialog(window)
    assert dialog.worker_check.isChecked()
    dialog.worker_check.setChecked(False)
    dialog.apply()
    dialog.deleteLater()
    assert window.preferences.train_worker_process is False
    view = window.train_view
    view.form.set_values(TINY)
    assert view.start()
    assert view.job.worker_process is False
    qtbot.waitUntil(lambda: view.job is None, timeout=240_000)
    assert not WORKER_PIDS  # no process was started
    runs = [Run(p) for p in (window.studio.workspace).iterdir()]
    assert len(runs) == 1 and runs[0].latest_checkpoint().name == "step-00000006"
    assert not (runs[0].path / "logs").exists()


def test_the_gpus_choice_shows_only_with_several_gpus_and_a_cuda_device(make_window):
    import dataclasses

    from diffstudio.gui.workers import DeviceInfo

    window = make_window()
    view, studio = window.train_view, window.studio
    assert view.gpus_spin.isHidden() and view.processes() == 1  # this machine: none or one
    engine = studio.engine
    gpus = [DeviceInfo(f"cuda:{i}", f"CUDA {i}: test", ("bf16", "no")) for i in range(3)]
    studio.engine = dataclasses.replace(engine, devices=[engine.devices[0], *gpus])
    try:
        view._update_gpus()
        assert view.gpus_spin.isHidden()  # several GPUs, but the CPU is chosen
        studio.set_device(gpus[0], "no")
        assert not view.gpus_spin.isHidden() and view.gpus_spin.maximum() == 3
        assert view.processes() == 1  # one unless chosen
        view.gpus_spin.setValue(2)
        assert view.processes() == 2
        studio.set_device(engine.devices[0], "no")
        assert view.gpus_spin.isHidden() and view.processes() == 1
    finally:
        studio.engine = engine
        studio.set_device(engine.devices[0], "no")
