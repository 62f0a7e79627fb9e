"""The Experiments page: a file's grid shows what is done, fills in live while the queue runs
(off the main thread), and a bad file is said with its line while the window carries on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffstudio.engine.evaluation.tables import fid_text, row_from_result

GRID = """\
[experiment]
name = "gui-grid"

[defaults]
dataset = "digits"
steps = 4
batch_size = 8
num_timesteps = 20
warmup_steps = 0
preview_every = 0
checkpoint_every = 2
device = "cpu"

[training.linear]
schedule = "linear"

[[sampler]]
id = "ddim"
steps = [5]

[[sampler]]
id = "ddpm"
steps = 10

[evaluation]
num_samples = 16
weights = "random"
resize_to = 96
inception_batch_size = 16
kid_subsets = 10
kid_subset_size = 8
reference_limit = 32
device = "cpu"
"""


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSTUDIO_CACHE_DIR", str(tmp_path / "cache"))


def test_the_grid_fills_in_live_and_a_second_run_skips_it(qtbot, make_window, tmp_path):
    window = make_window(workspace=tmp_path / "workspace")
    window.show_page("Experiments")
    view = window.experiments_view
    file = tmp_path / "grid.toml"
    file.write_text(GRID, encoding="utf-8")
    assert view.open_file(file)
    qtbot.waitUntil(lambda: view.experiment is not None, timeout=30_000)
    folder = tmp_path / "workspace" / "experiments" / "gui-grid"
    assert view.folder == folder
    assert view.table.rowCount() == 1 and view.table.columnCount() == 3
    assert view.cell_text("eval/linear/ddpm/seed0") == "pending"
    seen: list[tuple[str, str]] = []
    assert view.run()
    view.job.cell_changed.connect(lambda update, row: seen.append((update.key, update.status)))
    assert not view.run_button.isEnabled() and view.stop_button.isEnabled()
    qtbot.waitUntil(lambda: view.job is None, timeout=240_000)
    assert ("train/linear", "running") in seen and ("eval/linear/ddpm/seed0", "done") in seen
    state = json.loads((folder / "state.json").read_text())
    for key in ("eval/linear/ddim-steps5/seed0", "eval/linear/ddpm/seed0"):
        result = json.loads((folder / state["jobs"][key]["result"]).read_text())
        assert view.cell_text(key).startswith(fid_text(row_from_result(result)))
    assert view.cell_text("train/linear") == "done"
    assert "Every job is done" in view.status_label.text()
    # Opened again (a new session): the grid shows the results, and Run skips them all.
    assert view.open_file(file)
    qtbot.waitUntil(lambda: view._check_job is None, timeout=30_000)
    assert view.cell_text("train/linear") == "done"
    assert view.run()
    qtbot.waitUntil(lambda: view.job is None, timeout=60_000)
    assert "Ran 0, skipped 3" in view.status_label.text()
    assert view.write_report()
    qtbot.waitUntil(lambda: (folder / "report" / "report.md").is_file(), timeout=30_000)
    qtbot.waitUntil(lambda: not window.studio.running(), timeout=30_000)


def test_a_bad_file_names_its_line_and_nothing_starts(qtbot, make_window, tmp_path: Path):
    window = make_window(workspace=tmp_path / "workspace")
    view = window.experiments_view
    file = tmp_path / "bad.toml"
    file.write_text(GRID.replace('id = "ddpm"', 'id = "ddpx"'), encoding="utf-8")
    assert view.open_file(file)
    qtbot.waitUntil(lambda: view._check_job is None, timeout=30_000)
    assert view.experiment is None and not view.run_button.isEnabled()
    assert "bad.toml, line 22" in view.status_label.text()
    assert any("line 22" in n.message for n in window.notifications.items)
    assert not (tmp_path / "workspace" / "experiments").exists()


def test_stop_keeps_a_checkpoint_and_run_continues(qtbot, make_window, tmp_path):
    window = make_window(workspace=tmp_path / "workspace")
    view = window.experiments_view
    file = tmp_path / "grid.toml"
    file.write_text(GRID.replace("steps = 4", "steps = 300").replace(
        "checkpoint_every = 2", "checkpoint_every = 50"), encoding="utf-8")
    assert view.open_file(file)
    qtbot.waitUntil(lambda: view.experiment is not None, timeout=30_000)
    assert view.run()
    run = view.folder / "runs" / "linear"
    qtbot.waitUntil(lambda: (run / "metrics.jsonl").is_file(), timeout=120_000)
    view.stop()
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    assert "Stopped; Run continues it." in view.status_label.text()
    state = json.loads((view.folder / "state.json").read_text())
    assert state["jobs"]["train/linear"]["status"] == "pending"
    from diffstudio.engine.runs import Run

    stopped_at = Run.checkpoint_step(Run(run).latest_checkpoint())
    assert 0 < stopped_at < 300  # Stop wrote a checkpoint where it stopped
    assert view.cell_text("train/linear") == "pending"
    assert view.run()
    qtbot.waitUntil(lambda: view.job is None, timeout=240_000)
    assert "Every job is done" in view.status_label.text()
    state = json.loads((view.folder / "state.json").read_text())
    assert state["jobs"]["train/linear"]["attempts"] == 2
    assert Run(run).metrics()[-1]["step"] == 300


def test_a_plugin_that_aborts_its_process_leaves_the_window_running(qtbot, make_window,
                                                                    tmp_path,
                                                                    install_fake_plugin):
    """Issue 15: the experiment runs in a worker process; a dataset plugin that calls
    os.abort() kills that process only: its cell is marked failed, the window says why with
    the worker's log, and it goes on working."""
    from diffstudio.plugin_manager import load_plugins
    from tests.app.test_worker import ABORTING_PLUGIN

    install_fake_plugin("aborting-plugin", "aborting_plugin", ABORTING_PLUGIN)
    window = make_window(workspace=tmp_path / "workspace", registry_override=load_plugins())
    window.show_page("Experiments")
    view = window.experiments_view
    file = tmp_path / "abort.toml"
    file.write_text(GRID.replace('dataset = "digits"', 'dataset = "aborting"'), encoding="utf-8")
    assert view.open_file(file)
    qtbot.waitUntil(lambda: view.experiment is not None, timeout=30_000)
    failures: list[tuple[str, str]] = []
    assert view.run()
    view.job.failed.connect(lambda message, details: failures.append((message, details)))
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    assert failures and "killed by SIGABRT" in failures[0][0]
    assert "aborting_plugin.py" in failures[0][1]  # the log's last lines, as details
    assert view.cell_text("train/linear") == "failed"
    assert "SIGABRT" in view.status_label.text()
    assert window.isVisible() and view.run_button.isEnabled()  # alive, and Run works again
