"""The Runs page lists the workspace's runs; a run opens to continue training or to sample;
bare ``diffstudio`` opens the window."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from diffstudio.engine.runs import Run
from diffstudio.gui.run_list import scan_workspace


def test_runs_page_lists_and_opens_runs(qtbot, make_window, trained_run, tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    run_dir = workspace / "digits-copy"
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns("samples"))
    (workspace / "not-a-run").mkdir()
    window = make_window(workspace=workspace)
    runs_view = window.runs_view
    qtbot.waitUntil(lambda: len(runs_view.runs) == 1, timeout=60_000)
    summary = runs_view.runs[0]
    assert summary.name == "digits-copy" and summary.step == 6 and summary.checkpoint_step == 6
    assert summary.dataset == "digits" and summary.network == "unet (digits-8)"  # default, recorded
    assert runs_view.table.item(0, 4).text() == "6 / 6"
    assert window.sample_view.run_combo.findData(str(run_dir)) >= 0

    # Sample from it: the Sample page opens with the run chosen.
    assert runs_view.select_path(str(run_dir))
    details = runs_view.details.toPlainText()
    assert '"dataset": "digits"' in details  # the full config, below a readable summary
    assert "Data       digits" in details and "Network    unet" in details
    assert "Training   6 steps, batch 8" in details and "T = 1000" in details
    runs_view.sample_button.click()
    assert window.current_page() == "Sample"
    assert window.sample_view.current_run() == str(run_dir)
    # Evaluate it: the Evaluate page opens with the run chosen.
    runs_view.evaluate_button.click()
    assert window.current_page() == "Evaluate"
    assert window.evaluate_view.current_run() == str(run_dir)
    assert window.evaluate_view.from_run.isChecked()

    # Continue training: the Train page takes the run's settings and loss history.
    runs_view.continue_button.click()
    qtbot.waitUntil(lambda: window.train_view.resume_dir == str(run_dir), timeout=60_000)
    train = window.train_view
    assert window.current_page() == "Train"
    assert train.loss_plot.point_count() == 3  # the steps 2, 4, 6 logged by the fixture
    assert train.train_button.text() == "Continue training"
    assert train.form.values()["batch_size"] == 8
    assert train.form.editors["batch_size"].isEnabled()  # a resume may change it
    assert not train.form.editors["seed"].isEnabled()  # it shapes the model: the run's own
    assert window.model_view.diffusion_form.values()["num_timesteps"] == 1000
    train.form.set_values({**train.form.values(), "steps": 8})
    assert train.start()
    qtbot.waitUntil(lambda: train.job is None, timeout=120_000)
    assert Run(run_dir).latest_checkpoint().name == "step-00000008"
    assert train.loss_plot.point_count() == 4  # continued: 2, 4, 6, then 8
    qtbot.waitUntil(lambda: runs_view.runs and runs_view.runs[0].step == 8, timeout=60_000)


def test_scan_marks_unreadable_runs(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    [summary] = scan_workspace(tmp_path)
    assert summary.error and not summary.can_sample
    assert scan_workspace(tmp_path / "missing") == []


def test_bare_diffstudio_opens_the_window(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", DIFFSTUDIO_LAUNCH_PROBE="quit",
               DIFFSTUDIO_SETTINGS_FILE=str(tmp_path / "settings.ini"))
    result = subprocess.run([sys.executable, "-m", "diffstudio"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "diffstudio-launch window_shown_s=" in result.stderr
    assert "diffstudio-launch engine_ready_s=" in result.stderr
    assert (tmp_path / "settings.ini").is_file()  # the window saved its settings on closing


def test_a_run_being_trained_is_shown_busy(tmp_path):
    from diffstudio.cli import main
    from diffstudio.gui.run_list import summarise_run

    run_dir = tmp_path / "run"
    assert main(["train", "--out", str(run_dir), "--dataset", "toy2d", "--dataset.num-points",
                 "64", "--steps", "2", "--batch-size", "8", "--checkpoint-every", "2",
                 "--preview-every", "0", "--device", "cpu", "--quiet"]) == 0
    assert summarise_run(run_dir).training == ""
    with Run(run_dir).writer_lock():
        busy = summarise_run(run_dir)
    assert f"pid {os.getpid()} on " in busy.training and busy.can_sample
    assert summarise_run(run_dir).training == ""
