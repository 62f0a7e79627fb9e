"""Reliability of a run folder: a diverged run keeps a checkpoint that samples, resume takes
the settings that are safe to change, one writer per run, nothing left half-done."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffstudio.engine import io
from diffstudio.engine.io import recover_staged, staged_directory
from diffstudio.engine.runs import Run
from diffstudio.engine.sampling import generate, load_model
from diffstudio.engine.training import TrainConfig, Trainer
from diffstudio.errors import RunError, TrainingError
from diffstudio.plugin_manager import load_plugins

REGISTRY = load_plugins(safe_mode=True)


def points_config(**overrides) -> TrainConfig:
    values = dict(
        dataset="toy2d", dataset_params={"num_points": 256}, network="mlp",
        network_params={"hidden": 16, "depth": 1}, num_timesteps=50, steps=6, batch_size=8,
        warmup_steps=0, log_every=1, checkpoint_every=1, keep_checkpoints=0, preview_every=0,
        device="cpu", seed=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def blow_up_weights_at(monkeypatch, update: int) -> None:
    """From the ``update``-th optimizer step on, the weights become infinite: what a far too
    large learning rate does (the loss of that step was still computed with finite weights)."""
    original = torch.optim.AdamW.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= update:
            with torch.no_grad():
                for group in self.param_groups:
                    for param in group["params"]:
                        param.fill_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", step)


# -- divergence ---------------------------------------------------------------------------------
def test_diverged_weights_are_never_kept_and_the_kept_checkpoint_samples(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    blow_up_weights_at(monkeypatch, 2)
    with pytest.raises(TrainingError, match=r"became NaN or infinite at step 2.*last good"):
        Trainer(points_config(), run_dir, registry=REGISTRY).train()
    monkeypatch.undo()
    run = Run(run_dir)
    assert run.latest_checkpoint().name == "step-00000001"
    assert [step for step, _ in run.checkpoints()] == [1]
    loaded = load_model(run_dir, device="cpu", registry=REGISTRY)
    result = generate(loaded.model, "ddim", {"steps": 5}, sample_shape=(2,), num_samples=8,
                      seed=0, registry=REGISTRY)
    assert torch.isfinite(result.samples).all()


def test_weights_diverged_before_any_checkpoint_says_none_was_written(tmp_path, monkeypatch):
    blow_up_weights_at(monkeypatch, 1)
    with pytest.raises(TrainingError, match="no checkpoint was written"):
        Trainer(points_config(), tmp_path / "run", registry=REGISTRY).train()
    assert Run(tmp_path / "run").latest_checkpoint() is None


# -- what a resume may change -------------------------------------------------------------------
def test_resume_takes_the_safe_settings_and_records_each_change(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(points_config(steps=4, checkpoint_every=2), run_dir, registry=REGISTRY).train()
    resumed = points_config(steps=8, checkpoint_every=2, learning_rate=1e-4, grad_clip=0.5,
                            ema_decay=0.9, batch_size=4, lr_schedule="constant", log_every=2)
    result = Trainer(resumed, run_dir, resume=True, registry=REGISTRY).train()
    assert result.status == "completed" and result.step == 8
    run = Run(run_dir)
    assert run.config().train["learning_rate"] == 1e-4
    [entry] = run.config_history()
    assert entry["step"] == 4 and entry["time"]
    assert entry["changes"]["learning_rate"] == [TrainConfig.learning_rate, 1e-4]
    assert entry["changes"]["steps"] == [4, 8]
    assert set(entry["changes"]) == {"learning_rate", "grad_clip", "ema_decay", "batch_size",
                                     "lr_schedule", "log_every", "steps"}
    lrs = [m["lr"] for m in run.metrics() if m["step"] > 4]
    assert lrs and all(lr == pytest.approx(1e-4) for lr in lrs)
    # A second resume appends; the first entry stays.
    Trainer(points_config(steps=10, checkpoint_every=2, learning_rate=1e-4, grad_clip=0.5,
                          ema_decay=0.9, batch_size=4, lr_schedule="constant", log_every=2,
                          preview_every=0, device="cpu", mixed_precision="no"),
            run_dir, resume=True, registry=REGISTRY).train()
    history = Run(run_dir).config_history()
    assert len(history) == 2 and history[0] == entry
    assert history[1]["changes"] == {"mixed_precision": ["auto", "no"], "steps": [8, 10]}
    assert json.loads(Run(run_dir).config_path.read_text())["history"] == history


@pytest.mark.parametrize("change", [
    {"network_params": {"hidden": 32, "depth": 1}},
    {"num_timesteps": 60},
    {"prediction_type": "sample"},
    {"dataset_params": {"num_points": 128}},
    {"seed": 2},
])
def test_resume_refuses_what_changes_the_model_and_lists_what_may_change(tmp_path, change):
    run_dir = tmp_path / "run"
    Trainer(points_config(steps=2), run_dir, registry=REGISTRY).train()
    before = Run(run_dir).config_path.read_text()
    with pytest.raises(RunError) as caught:
        Trainer(points_config(steps=4, **change), run_dir, resume=True, registry=REGISTRY).train()
    message = str(caught.value)
    assert f"would change {next(iter(change))}" in message
    assert "only these settings may change: steps, epochs, batch_size, learning_rate" in message
    assert Run(run_dir).config_path.read_text() == before


def test_resume_with_fewer_steps_than_done_refuses_and_keeps_the_total(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(points_config(steps=6, checkpoint_every=3), run_dir, registry=REGISTRY).train()
    with pytest.raises(RunError, match=r"already at step 6.*Give --steps 6 or more"):
        Trainer(points_config(steps=5, checkpoint_every=3), run_dir, resume=True,
                registry=REGISTRY).train()
    assert Run(run_dir).config().total_steps == 6


# -- one writer per run -------------------------------------------------------------------------
HOLD_LOCK = ("import sys, time\n"
             "from diffstudio.engine.runs import Run\n"
             "Run(sys.argv[1]).writer_lock().acquire()\n"
             "print('held', flush=True)\n"
             "time.sleep(120)\n")


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(
    tmp_path
):
    run_dir = tmp_path / "run"
    Trainer(points_config(steps=2), run_dir, registry=REGISTRY).train()
    assert Run(run_dir).lock_holder() is None and not Run(run_dir).lock_path.exists()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        found = Run(run_dir).lock_holder()
        assert found is not None and found.pid == holder.pid
        assert found.host == socket.gethostname()
        metrics = Run(run_dir).metrics_path.read_text()
        with pytest.raises(RunError) as caught:
            Trainer(points_config(steps=4), run_dir, resume=True, registry=REGISTRY).train()
        assert f"pid {holder.pid} on {socket.gethostname()}" in str(caught.value)
        assert Run(run_dir).metrics_path.read_text() == metrics  # nothing written
        assert Run(run_dir).latest_checkpoint().name == "step-00000002"
    finally:
        holder.kill()  # SIGKILL: the lock file stays behind, stale
        holder.wait()
    assert Run(run_dir).lock_path.exists() and Run(run_dir).lock_holder() is None
    result = Trainer(points_config(steps=4), run_dir, resume=True, registry=REGISTRY).train()
    assert result.step == 4 and not Run(run_dir).lock_path.exists()


def test_a_stale_lock_of_a_dead_pid_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(points_config(steps=2), run_dir, registry=REGISTRY).train()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid is no longer alive
    Run(run_dir).lock_path.write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "since": 1.0, "token": "old"}))
    assert Run(run_dir).lock_holder() is None
    result = Trainer(points_config(steps=4), run_dir, resume=True, registry=REGISTRY).train()
    assert result.step == 4 and not Run(run_dir).lock_path.exists()


def test_a_lock_from_another_host_counts_as_held(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(points_config(steps=2), run_dir, registry=REGISTRY).train()
    Run(run_dir).lock_path.write_text(json.dumps(
        {"pid": 12345, "host": "elsewhere.example", "since": 1.0, "token": "x"}))
    with pytest.raises(RunError, match=r"pid 12345 on elsewhere\.example"):
        Trainer(points_config(steps=4), run_dir, resume=True, registry=REGISTRY).train()


def test_two_trainers_of_one_run_in_one_process_do_not_interleave(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(points_config(steps=2), run_dir, registry=REGISTRY).train()
    first = Trainer(points_config(steps=6), run_dir, resume=True, registry=REGISTRY).run()
    assert next(first).kind == "start"
    holder = Run(run_dir).lock_holder()
    assert holder is not None and holder.pid == os.getpid()
    with pytest.raises(RunError, match="being written by another process"):
        Trainer(points_config(steps=6), run_dir, resume=True, registry=REGISTRY).train()
    for _ in first:
        pass
    steps = [m["step"] for m in Run(run_dir).metrics()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert Run(run_dir).lock_holder() is None


def test_sampling_a_run_being_trained_needs_no_lock(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(points_config(steps=2), run_dir, registry=REGISTRY).train()
    with Run(run_dir).writer_lock():
        loaded = load_model(run_dir, device="cpu", registry=REGISTRY)
        result = generate(loaded.model, "ddim", {"steps": 3}, sample_shape=(2,), num_samples=2,
                          seed=0, registry=REGISTRY)
    assert result.samples.shape == (2, 2)



# -- nothing left half-done ---------------------------------------------------------------------
def test_a_prune_killed_half_way_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    import diffstudio.engine.runs as runs

    run_dir = tmp_path / "run"
    Trainer(points_config(steps=4, checkpoint_every=2, keep_checkpoints=1), run_dir,
            registry=REGISTRY).train()
    real_rmtree = runs.shutil.rmtree

    def killed_rmtree(path, *args, **kwargs):  # deletes state.json, then the process dies
        (Path(path) / "state.json").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(runs.shutil, "rmtree", killed_rmtree)
    with pytest.raises(KeyboardInterrupt):
        Trainer(points_config(steps=6, checkpoint_every=2, keep_checkpoints=1), run_dir,
                resume=True, registry=REGISTRY).train()
    monkeypatch.setattr(runs.shutil, "rmtree", real_rmtree)
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    # The pruned step-4 was renamed before it was deleted: no step-* folder is half gone.
    assert [n for n in names if n.startswith("step-")] == ["step-00000006"]
    assert all(Run(run_dir).state_file(run_dir / "checkpoints" / n).is_file()
               for n in names if n.startswith("step-"))


def test_leftovers_of_a_killed_prune_are_cleaned_when_training_starts(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(points_config(steps=4, checkpoint_every=2, keep_checkpoints=3), run_dir,
            registry=REGISTRY).train()
    checkpoints = run_dir / "checkpoints"
    # What old code left: a half-deleted checkpoint (its state.json already gone) ...
    half = checkpoints / "step-00000002"
    Run.state_file(half).unlink()
    (half / "training_state.safetensors").unlink()
    # ... and a trash folder of a prune killed between its rename and its deletion.
    trash = checkpoints / ".trash-step-00000001-deadbeef"
    (trash / "network").mkdir(parents=True)
    assert Run(run_dir).latest_checkpoint().name == "step-00000004"
    result = Trainer(points_config(steps=6, checkpoint_every=2, keep_checkpoints=3), run_dir,
                     resume=True, registry=REGISTRY).train()
    assert result.step == 6
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000004", "step-00000006"]
    assert [m["step"] for m in Run(run_dir).metrics()] == [1, 2, 3, 4, 5, 6]


RACE = ("import sys, time\n"
        "from diffstudio.engine.run_lock import RunLock\n"
        "from diffstudio.errors import RunError\n"
        "start = float(sys.argv[2])\n"
        "time.sleep(max(0.0, start - time.time()))\n"
        "try:\n"
        "    with RunLock(sys.argv[1]):\n"
        "        print('won', flush=True)\n"
        "        time.sleep(1.5)\n"
        "except RunError:\n"
        "    print('refused', flush=True)\n")


def test_processes_racing_for_one_stale_lock_leave_exactly_one_holder(tmp_path):
    lock = tmp_path / "train.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": 1.0,
                                "token": "stale"}))
    start = time.time() + 1.0  # all four try at once
    racers = [subprocess.Popen([sys.executable, "-c", RACE, str(lock), str(start)],
                               stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outcomes = [racer.communicate(timeout=60)[0].strip() for racer in racers]
    assert sorted(outcomes) == ["refused", "refused", "refused", "won"]
    assert not lock.exists()  # the winner released it
    assert not list(tmp_path.glob("*.break")) and not list(tmp_path.glob(".*.tmp"))


def test_a_late_breaker_of_a_stale_lock_never_removes_the_fresh_one(tmp_path):
    """B found the lock stale; before B removes it, A takes it over. B must leave A's lock."""
    from diffstudio.engine.run_lock import LockHolder, RunLock

    path = tmp_path / "train.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = LockHolder(dead.pid, socket.gethostname(), 1.0, "stale")
    path.write_text(json.dumps({"pid": stale.pid, "host": stale.host, "since": stale.since,
                                "token": stale.token}))
    first = RunLock(path).acquire()  # A: takes the stale lock over
    RunLock(path)._break(stale)  # B, late, with what it read before
    holder = RunLock(path).holder()
    assert holder is not None and holder.token == first.token
    with pytest.raises(RunError, match="being written by another process"):
        RunLock(path).acquire()
    first.release()
    assert not path.exists()


def test_an_unreadable_lock_file_counts_as_held_and_says_so(tmp_path):
    from diffstudio.engine.run_lock import RunLock

    path = tmp_path / "train.lock"
    path.write_text("{torn", encoding="utf-8")
    with pytest.raises(RunError, match=r"an unknown process \(its lock file is unreadable"):
        RunLock(path).acquire()
    assert path.read_text(encoding="utf-8") == "{torn"


def test_a_sample_folder_swap_killed_between_its_renames_is_undone_next_time(tmp_path):
    """``--overwrite`` renames the old folder aside, then the new one in. Killed in between,
    the folder is missing and its old samples wait in a trash folder: the next write to it
    puts them back before anything else, and unfinished staging folders are cleared."""
    out = tmp_path / "samples"
    trash = tmp_path / ".trash-samples-killed"
    (trash / "samples").mkdir(parents=True)
    (trash / "samples" / "000.png").write_bytes(b"old")
    half = tmp_path / ".tmp-samples-killed"  # the new files, never known to be complete
    half.mkdir()
    (half / "000.png").write_bytes(b"ne")
    old_enough = time.time() - io.STALE_STAGING_SECONDS - 1
    os.utime(half, (old_enough, old_enough))
    recover_staged(out)
    assert (out / "000.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples"]


def test_a_failed_second_rename_of_a_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    out = tmp_path / "samples"
    out.mkdir()
    (out / "000.png").write_bytes(b"old")
    real = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(io.os, "replace", second_fails)
    with pytest.raises(OSError), staged_directory(out, replace=True) as temp:
        (temp / "001.png").write_bytes(b"new")
    monkeypatch.setattr(io.os, "replace", real)
    assert sorted(p.name for p in out.iterdir()) == ["000.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples"]
