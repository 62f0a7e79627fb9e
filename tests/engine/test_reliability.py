"""Reliability: a run killed at any moment resumes; bad images are skipped and listed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from diffstudio.cli import main
from diffstudio.engine.runs import Run


def test_killed_training_resumes_from_its_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "diffstudio", "train", "--out", str(run), "--steps", "100000",
               "--batch-size", "8", "--num-timesteps", "50", "--checkpoint-every", "5",
               "--preview-every", "0", "--log-every", "5", "--device", "cpu", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            checkpoints = Run(run).checkpoints()
            if checkpoints and checkpoints[-1][0] >= 15:
                break
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.05)
        else:
            raise AssertionError("training made no checkpoint in time")
        process.send_signal(signal.SIGKILL)  # no chance to clean up: the hardest case
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    latest = Run(run).latest_checkpoint()
    assert latest is not None
    killed_at = int(latest.name.split("-")[1])
    metrics_before = Run(run).metrics()
    assert metrics_before and all(json.dumps(m) for m in metrics_before)

    target = killed_at + 10
    assert main(["train", "--resume", str(run), "--steps", str(target), "--quiet"]) == 0
    steps = [m["step"] for m in Run(run).metrics()]
    assert steps == sorted(set(steps)) and steps[-1] == target  # no duplicated or lost steps
    assert not any(p.name.startswith(".tmp-") for p in (run / "checkpoints").iterdir())
    assert Run(run).latest_checkpoint().name == f"step-{target:08d}"


def test_training_on_a_folder_with_bad_images_uses_the_good_ones_and_lists_the_bad(tmp_path,
                                                                                  capsys):
    images = tmp_path / "images"
    (images / "nested").mkdir(parents=True)
    for index in range(5):
        colour = (index * 40, 255 - index * 40, 128)
        Image.new("RGB", (20 + index, 16), colour).save(images / "nested" / f"good{index}.png")
    good = images / "nested" / "good0.png"
    data = good.read_bytes()
    (images / "truncated.png").write_bytes(data[: len(data) // 2])
    (images / "notes.jpg").write_text("this is not an image", encoding="utf-8")
    (images / "empty.png").write_bytes(b"")

    run = tmp_path / "run"
    code = main(["train", "--out", str(run), "--dataset", "image-folder", "--dataset.root",
                 str(images), "--dataset.size", "8", "--steps", "3", "--batch-size", "4",
                 "--num-timesteps", "20", "--preview-every", "0", "--device", "cpu", "--quiet"])
    assert code == 0
    # Said at the start, even with --quiet: the terminal is where the user looks.
    assert f"skipped 3 unreadable file(s) of the dataset (listed with their reasons in " \
        f"{run}/config.json)" in capsys.readouterr().err
    info = Run(run).read_config()["dataset_info"]
    assert info["size"] == 5 and info["sample_shape"] == [3, 8, 8]
    skipped = {Path(path).name: reason for path, reason in info["skipped"]}
    assert set(skipped) == {"truncated.png", "notes.jpg", "empty.png"}
    assert all(reason for reason in skipped.values())


def test_checkpoint_appears_whole_and_leftovers_are_cleaned(tmp_path):
    """A checkpoint folder appears whole or not at all (temp folder + rename)."""
    run = Run(tmp_path / "run")
    import torch

    network = torch.nn.Linear(2, 2)
    path = run.save_checkpoint(3, network, network, {"x": torch.zeros(1)}, {}, {"loss": 1.0})
    assert sorted(p.name for p in path.iterdir()) == [
        "network", "network_ema", "state.json", "training_state.safetensors"
    ]
    assert json.loads((run.path / "latest.json").read_text())["step"] == 3
    # A leftover temporary folder (a kill mid-write) is ignored and cleaned.
    leftover = run.checkpoints_dir / ".tmp-step-00000004-abc"
    leftover.mkdir()
    assert run.latest_checkpoint() == path
    run.clean_partial()
    assert not leftover.exists()
    assert os.listdir(run.checkpoints_dir) == ["step-00000003"]


@pytest.mark.slow
def test_twenty_random_kills_during_checkpointing_and_pruning_leave_a_continuous_run(tmp_path):
    """A checkpoint every step, two kept: every step writes one folder and prunes another, so
    random SIGKILLs land mid-write, mid-rename and mid-prune. After 20 of them the run
    resumes to its target with every step logged exactly once and no stray folder."""
    run = tmp_path / "run"
    base = [sys.executable, "-m", "diffstudio", "train", "--steps", "100000", "--device", "cpu",
            "--quiet"]
    first = ["--out", str(run), "--dataset", "toy2d", "--batch-size", "8", "--num-timesteps",
             "20", "--warmup-steps", "0", "--checkpoint-every", "1", "--keep-checkpoints", "2",
             "--log-every", "1", "--preview-every", "0"]
    rng = random.Random(0)
    for kill in range(20):
        args = first if kill == 0 else ["--resume", str(run)]
        before = Run(run).checkpoints()[-1][0] if Run(run).exists() else -1
        process = subprocess.Popen([*base, *args], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # wait until it is writing checkpoints
                done = Run(run).checkpoints()
                if done and done[-1][0] > before:
                    break
                assert process.poll() is None, process.stderr.read().decode()
                time.sleep(0.01)
            else:
                raise AssertionError(f"kill {kill}: no new checkpoint in time")
            time.sleep(rng.uniform(0.0, 0.05))  # somewhere inside the next steps' writes
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    killed_at = Run(run).checkpoints()[-1][0]
    target = killed_at + 3
    assert main(["train", "--resume", str(run), "--steps", str(target), "--quiet"]) == 0
    steps = [m["step"] for m in Run(run).metrics()]
    assert steps == list(range(1, target + 1))  # continuous: none lost, none twice
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [f"step-{target - 1:08d}", f"step-{target:08d}"], names
    assert not [p for p in run.iterdir() if p.name.startswith((".tmp-", ".trash-"))]
