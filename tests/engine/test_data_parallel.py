"""Data-parallel training through Accelerate, on the real path (issue 15): ``accelerate launch
--multi_gpu --num_processes 2`` starts two processes with torchrun; with ``--device cpu`` they
talk over gloo. (Accelerate's own ``--cpu`` flag picks its single-process launcher.)"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ACCELERATE = Path(sys.executable).with_name("accelerate")
pytestmark = pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate's CLI is missing")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(tmp_path: Path, *train_args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONUNBUFFERED": "1"}  # no user accelerate config: these flags say it all
    command = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "diffstudio", "train",
               "--device", "cpu", "--dataset", "toy2d", "--batch-size", "32",
               "--learning-rate", "3e-3", "--warmup-steps", "2", "--log-every", "5",
               "--checkpoint-every", "20", "--preview-every", "0", *train_args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300,
                          check=False)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_train_one_run_and_resume_it(tmp_path):
    run = tmp_path / "ddp"
    first = _launch(tmp_path, "--steps", "40", "--out", str(run))
    assert first.returncode == 0, first.stderr[-3000:]
    output = first.stdout + first.stderr
    # One voice: rank 0 reports, with the effective batch of both processes.
    assert output.count("training toy2d/") == 1, output[-3000:]
    assert "x 2 processes (data-parallel, effective batch 64)" in output
    assert output.count("completed at step 40/40") == 1
    # Only the main process writes: each logged step once, each checkpoint once, whole.
    logged = _metrics(run)
    assert [row["step"] for row in logged] == list(range(5, 41, 5))
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == \
        ["step-00000020", "step-00000040"]
    assert not [p for p in run.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]
    # The loss falls (the logged loss is the mean over both processes' batches).
    assert logged[-1]["loss"] < 0.8 * logged[0]["loss"]

    again = _launch(tmp_path, "--steps", "60", "--resume", str(run))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("completed at step 60/60") == 1
    assert [row["step"] for row in _metrics(run)] == list(range(5, 61, 5))
    assert json.loads((run / "latest.json").read_text())["step"] == 60
    shutil.rmtree(tmp_path / "hf", ignore_errors=True)
