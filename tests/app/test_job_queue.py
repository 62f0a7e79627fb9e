"""The persistent job queue: its bookkeeping, a run of real jobs in worker processes, and a
queue killed mid-training (runner and job, as a reboot would) that continues where it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from diffstudio.app.events import Done, Progress
from diffstudio.app.job_queue import JobQueue, QueueUpdate, effective_argv, run_queue
from diffstudio.cli import main
from diffstudio.engine.runs import Run
from diffstudio.errors import ConfigError

TINY = ["--dataset", "toy2d", "--dataset.num-points", "64", "--batch-size", "8",
        "--num-timesteps", "20", "--warmup-steps", "0", "--preview-every", "0",
        "--device", "cpu", "--quiet"]


def _drive(events):
    seen = []
    for event in events:
        seen.append(event)
        if isinstance(event, Done):
            return event.result, seen
    raise AssertionError("the runner ended without Done")


def test_the_queue_keeps_order_refuses_duplicates_and_reorders(tmp_path):
    queue = JobQueue(tmp_path)
    first = queue.add("train", ["--out", "a", *TINY], cwd=tmp_path)
    second = queue.add("sample", ["a", "--num", "4"], cwd=tmp_path)
    third = queue.add("eval", ["a", "--num", "8"], cwd=tmp_path)
    assert [job.id for job in queue.jobs()] == [first.id, second.id, third.id]
    with pytest.raises(ConfigError, match=f"already queued as #{first.id}"):
        queue.add("train", ["--out", "a", *TINY], cwd=tmp_path)
    with pytest.raises(ConfigError, match="not 'bake'"):
        queue.add("bake", [], cwd=tmp_path)

    queue.move(third.id, 0)
    assert [job.id for job in queue.jobs(("pending",))] == [third.id, first.id, second.id]
    queue.move(third.id, 5)  # past the end: last
    assert [job.id for job in queue.jobs(("pending",))] == [first.id, second.id, third.id]
    queue.move(second.id, 0)
    queue.move(third.id, 1)
    assert [job.id for job in queue.jobs(("pending",))] == [second.id, third.id, first.id]

    assert queue.cancel(second.id).status == "cancelled"
    assert queue.next_pending().id == third.id
    with pytest.raises(ConfigError, match="only a pending or running"):
        queue.cancel(second.id)
    assert queue.retry(second.id).status == "pending"
    assert queue.jobs(("pending",))[-1].id == second.id  # back at the end
    queue.remove(first.id)
    assert first.id not in [job.id for job in queue.jobs()]
    # Another process opening the same workspace sees the same queue.
    assert [job.id for job in JobQueue(tmp_path).jobs()] == [third.id, second.id]


def test_a_corrupt_queue_file_is_one_clear_error(tmp_path):
    assert JobQueue(tmp_path).jobs() == []  # looking creates nothing
    assert not (tmp_path / ".diffstudio").exists()
    JobQueue(tmp_path).add("sample", ["run"], cwd=tmp_path)
    (tmp_path / ".diffstudio" / "queue.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(Exception, match=r"queue\.sqlite is unreadable.*move it aside"):
        JobQueue(tmp_path).jobs()


def test_queued_jobs_run_in_worker_processes_with_their_progress_and_errors(tmp_path):
    queue = JobQueue(tmp_path)
    train = queue.add("train", ["--out", "runs/a", "--steps", "4", "--checkpoint-every", "4",
                                *TINY], cwd=tmp_path)
    broken = queue.add("train", ["--out", "runs/b", "--steps", "2", *TINY[4:],
                                 "--dataset", "no-such-data"], cwd=tmp_path)
    sample = queue.add("sample", ["runs/a", "--num", "4", "--steps", "3", "--device", "cpu",
                                  "--out", "samples"], cwd=tmp_path)

    outcome, events = _drive(run_queue(tmp_path))

    assert (outcome.status, outcome.done, outcome.failed) == ("empty", 2, 1)
    jobs = {job.id: job for job in queue.jobs()}
    assert jobs[train.id].status == "done" and jobs[sample.id].status == "done"
    assert jobs[broken.id].status == "failed"
    assert "no dataset 'no-such-data'" in jobs[broken.id].error  # the job's own message
    assert jobs[broken.id].exit_code == 2
    # The figures the queue keeps are the job's own final Progress: all 4 steps.
    progress = jobs[train.id].progress
    assert progress is not None and (progress.stage, progress.done, progress.total) == \
        ("train", 4, 4)
    assert any(isinstance(e, Progress) and e.detail == f"#{train.id} train" for e in events)
    statuses = [(e.id, e.status) for e in events if isinstance(e, QueueUpdate)]
    assert statuses == [(train.id, "running"), (train.id, "done"), (broken.id, "running"),
                        (broken.id, "failed"), (sample.id, "running"), (sample.id, "done")]
    assert Run(tmp_path / "runs" / "a").latest_checkpoint() is not None
    assert (tmp_path / "samples" / "samples.npz").is_file()  # 2-D points
    assert "diffstudio train" in jobs[train.id].log.read_text()
    # Done once: the same request again is refused, unless asked for.
    with pytest.raises(ConfigError, match="already ran"):
        queue.add("sample", list(sample.argv), cwd=tmp_path)
    assert queue.add("sample", list(sample.argv), cwd=tmp_path, again=True).status == "pending"


def test_cancelling_a_running_training_checkpoints_it(tmp_path):
    queue = JobQueue(tmp_path)
    job = queue.add("train", ["--out", "run", "--steps", "100000", "--checkpoint-every",
                              "1000", "--log-every", "5", *TINY], cwd=tmp_path)
    events = run_queue(tmp_path)
    for event in events:
        if isinstance(event, Progress) and event.done >= 10:
            queue.cancel(job.id)
        if isinstance(event, Done):
            break
    assert event.result.cancelled == 1
    job = queue.get(job.id)
    assert job.status == "cancelled"
    step = Run.checkpoint_step(Run(tmp_path / "run").latest_checkpoint())
    assert 10 <= step < 100000  # interrupted as Ctrl+C would: the trainer's own checkpoint


def _wait_for(predicate, what, timeout=240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL of a process group")
def test_a_queue_killed_mid_training_continues_it_after_a_restart(tmp_path, monkeypatch):
    """Runner and job killed at once (a reboot): resume puts the training back first and it
    continues from its last checkpoint, finished jobs are not run again."""
    monkeypatch.chdir(tmp_path)  # 'queue add' queues the job in the current folder
    env = {**os.environ, "DIFFSTUDIO_SETTINGS_FILE": str(tmp_path / "settings.ini")}
    steps = 1500
    assert main(["queue", "--workspace", str(tmp_path), "add", "train", "--out", "quick",
                 "--steps", "2", "--checkpoint-every", "2", *TINY]) == 0
    assert main(["queue", "--workspace", str(tmp_path), "add", "train", "--out", "long",
                 "--steps", str(steps), "--checkpoint-every", "5", "--log-every", "5",
                 *TINY]) == 0
    runner = subprocess.Popen(
        [sys.executable, "-m", "diffstudio", "queue", "--workspace", str(tmp_path), "run",
         "--quiet"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    queue = JobQueue(tmp_path)
    try:
        def far_enough() -> bool:
            assert runner.poll() is None, runner.stderr.read().decode()
            checkpoints = Run(tmp_path / "long").checkpoints() \
                if Run.is_run(tmp_path / "long") else []
            return bool(checkpoints) and checkpoints[-1][0] >= 10

        _wait_for(far_enough, "the long training's checkpoints")
        child = queue.jobs(("running",))[0].pid
        os.killpg(runner.pid, signal.SIGKILL)  # the runner's group, then the job's own
        os.killpg(child, signal.SIGKILL)
        runner.wait(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
        runner.stderr.close()
    running = queue.jobs(("running",))
    assert len(running) == 1 and running[0].argv[1] == "long"
    assert effective_argv(running[0])[:2] == ["--resume", "long"]
    killed_at = Run.checkpoint_step(Run(tmp_path / "long").latest_checkpoint())

    assert main(["queue", "--workspace", str(tmp_path), "resume", "--quiet"]) == 0

    jobs = queue.jobs()
    assert [job.status for job in jobs] == ["done", "done"]
    quick, long = jobs
    assert quick.attempts == 1  # finished before the kill: not run again
    assert long.attempts == 2
    log = long.log.read_text()
    assert "train --resume long" in log
    metrics = [json.loads(line) for line in
               (tmp_path / "long" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    logged = [row["step"] for row in metrics if "step" in row]
    assert logged[-1] == steps
    assert killed_at in logged
    assert logged == sorted(set(logged))  # continued after the kill, never from step 0 again
    assert Run.checkpoint_step(Run(tmp_path / "long").latest_checkpoint()) == steps
