"""The Queue page: the workspace's job queue as the CLI sees it, changed from the window, fed by
the Train page's "Add to queue", run off the main thread with each job in its own process."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QPlainTextEdit

from diffstudio.app.job_queue import JobQueue
from diffstudio.engine.runs import Run

TINY_2D = {"steps": 3, "batch_size": 8, "warmup_steps": 0, "log_every": 1,
           "checkpoint_every": 3, "preview_every": 0}


def _statuses(view):
    return [(job.id, job.status) for job in view.jobs]


def test_the_page_shows_the_cli_queue_and_changes_it(qtbot, make_window, tmp_path):
    workspace = tmp_path / "workspace"
    queue = JobQueue(workspace)
    first = queue.add("sample", ["run-a", "--num", "4"], cwd=tmp_path)
    second = queue.add("eval", ["run-a"], cwd=tmp_path)
    third = queue.add("export", ["run-a", "--format", "zip", "--out", "x"], cwd=tmp_path)
    window = make_window(workspace=workspace)
    window.show_page("Queue")
    view = window.queue_view
    qtbot.waitUntil(lambda: len(view.jobs) == 3, timeout=10_000)
    assert view.table.item(0, 2).text() == "diffstudio sample run-a --num 4"
    assert not view.retry_button.isEnabled()  # nothing selected

    view.select_job(third.id)
    assert view.up_button.isEnabled() and not view.down_button.isEnabled()
    view.up_button.click()
    assert [job.id for job in queue.jobs(("pending",))] == [first.id, third.id, second.id]
    assert view.selected().id == third.id  # the selection follows the job
    view.cancel_button.click()
    assert queue.get(third.id).status == "cancelled"
    assert view.retry_button.isEnabled() and not view.cancel_button.isEnabled()
    view.retry_button.click()
    assert queue.jobs(("pending",))[-1].id == third.id
    view.select_job(first.id)
    view.remove_button.click()
    assert [job.id for job in view.jobs] == [second.id, third.id]
    # A job added by the CLI while the page is open appears within a second or two.
    fourth = queue.add("onnx", ["info"], cwd=tmp_path)
    qtbot.waitUntil(lambda: fourth.id in [job.id for job in view.jobs], timeout=10_000)

    # Another workspace: its queue (empty), nothing of the old one left.
    window.studio.set_workspace(tmp_path / "other")
    assert view.jobs == [] and view.table.rowCount() == 0
    qtbot.wait(1500)
    assert view.jobs == []


def test_a_training_added_to_the_queue_runs_from_the_queue_page(qtbot, make_window, tmp_path):
    workspace = tmp_path / "workspace"
    window = make_window(workspace=workspace)
    window.data_view.picker.select("toy2d")
    window.model_view.diffusion_form.set_values({"num_timesteps": 20})
    window.show_page("Train")
    view = window.train_view
    view.form.set_values(TINY_2D)
    job_id = view.add_to_queue()
    assert job_id is not None
    assert not view.is_running()  # queued, not started
    queued = JobQueue(workspace).get(job_id)
    run_dir = workspace / queued.argv[1]
    assert queued.argv[0] == "--out" and run_dir.is_dir() and not Run.is_run(run_dir)
    second = view.add_to_queue()  # the same settings again: another run folder
    assert JobQueue(workspace).get(second).argv[1] != queued.argv[1]
    JobQueue(workspace).remove(second)

    window.show_page("Queue")
    page = window.queue_view
    assert page.run()
    qtbot.waitUntil(lambda: not page.is_running(), timeout=240_000)
    qtbot.waitUntil(lambda: _statuses(page) == [(job_id, "done")], timeout=10_000)
    assert Run.checkpoint_step(Run(run_dir).latest_checkpoint()) == 3
    assert "The queue is empty. 1 done" in page.status_label.text()
    # The run is the same as one trained on the page: its settings are the form's.
    config = Run(run_dir).config()
    assert (config.dataset, config.total_steps, config.train["batch_size"],
            config.num_timesteps) == ("toy2d", 3, 8, 20)
    page.select_job(job_id)
    dialog = page.show_log()
    assert dialog is not None
    assert "train --out" in dialog.findChild(QPlainTextEdit).toPlainText()
    dialog.close()


def test_a_training_the_queue_refuses_leaves_no_run_folder(qtbot, make_window, tmp_path,
                                                           monkeypatch):
    from diffstudio.errors import DiffstudioError

    workspace = tmp_path / "workspace"
    window = make_window(workspace=workspace)
    window.data_view.picker.select("toy2d")
    window.show_page("Train")
    view = window.train_view
    view.form.set_values(TINY_2D)

    def refuse(self, verb, argv, **kwargs):
        raise DiffstudioError("the queue file is read-only")

    monkeypatch.setattr(JobQueue, "add", refuse)
    before = set(workspace.rglob("*"))
    assert view.add_to_queue() is None
    left = set(workspace.rglob("*")) - before
    # Neither the reserved run folder nor the settings file stays (the queue's own folder may).
    assert not [path for path in left if path.is_file() or ".diffstudio" not in path.parts], left
    assert "the queue file is read-only" in window.notifications.items[-1].message


def test_a_queue_left_by_a_killed_runner_is_announced_not_run(qtbot, make_window, tmp_path):
    workspace = tmp_path / "workspace"
    queue = JobQueue(workspace)
    job = queue.add("train", ["--out", "run", "--steps", "5"], cwd=tmp_path)
    queue.add("sample", ["run"], cwd=tmp_path)
    queue.record(job.id, status="running", pid=None, attempts=1)  # its runner was killed
    window = make_window(workspace=workspace)
    def said() -> str:
        return next((n.message for n in window.notifications.items
                     if "job queue has 2 job(s) waiting" in n.message), "")

    qtbot.waitUntil(lambda: bool(said()), timeout=10_000)
    assert f"job #{job.id} was interrupted" in said()
    assert window.queue_view.runner is None  # said, not started
    assert queue.get(job.id).status == "running"  # nothing changed by itself


def test_a_queued_sampling_is_the_command_that_draws_what_the_page_would(
        qtbot, make_window, trained_points_run, tmp_path):
    workspace = tmp_path / "workspace"
    window = make_window(workspace=workspace)
    window.show_page("Sample")
    view = window.sample_view
    view.select_run(str(trained_points_run))
    qtbot.waitUntil(lambda: view.queue_button.isEnabled(), timeout=10_000)
    view.sampler_picker.select("ddim", {"steps": 4})
    view.options.set_values({**view.options.values(), "num_samples": 6, "seed": 3})
    job_id = view.add_to_queue()
    assert job_id is not None and not view.is_running()
    job = JobQueue(workspace).get(job_id)
    argv = list(job.argv)
    assert argv[0] == str(trained_points_run.resolve())
    assert argv[argv.index("--sampler") + 1] == "ddim"
    assert argv[argv.index("--steps") + 1] == "4"
    assert (argv[argv.index("--num") + 1], argv[argv.index("--seed") + 1]) == ("6", "3")

    # What the queue draws is what the page draws with the same settings.
    from diffstudio.app.job_queue import run_queue

    before = set(trained_points_run.glob("samples/*/samples.npz"))
    events = list(run_queue(workspace))
    assert events[-1].result.done == 1, JobQueue(workspace).get(job_id).error
    saved = set(trained_points_run.glob("samples/*/samples.npz")) - before
    assert len(saved) == 1
    assert view.start()
    qtbot.waitUntil(lambda: view.outcome is not None or (not view.is_running()
                    and "failed" in view.status.text().lower()), timeout=60_000)
    assert view.outcome is not None, view.status.text()
    drawn = np.load(saved.pop())["samples"]
    assert np.allclose(drawn, view.outcome.samples, atol=1e-5)


def test_a_queued_evaluation_is_the_eval_command_of_the_page(qtbot, make_window, trained_run,
                                                             tmp_path):
    from diffstudio.cli.evaluate import parse_eval_args

    workspace = tmp_path / "workspace"
    window = make_window(workspace=workspace)
    window.show_page("Evaluate")
    view = window.evaluate_view
    view.select_run(str(trained_run))
    view.random_box.setChecked(True)
    request = view.build_request()
    job_id = view.add_to_queue()
    assert job_id is not None and view.job is None  # queued, not started
    job = JobQueue(workspace).get(job_id)
    assert job.verb == "eval"
    parsed, _ = parse_eval_args(list(job.argv), window.studio.registry)
    assert (parsed.location, parsed.sampler, parsed.weights, parsed.num_samples,
            parsed.metrics) == (request.location, request.sampler, "random",
                                request.num_samples, request.metrics)
