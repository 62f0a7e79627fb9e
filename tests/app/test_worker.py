"""Jobs out of process (issue 15): an experiment runs in a worker process whose events come
back over a pipe as the same objects; a plugin that aborts the process fails its cell with the
reason and the log, and the caller lives on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffstudio.app.events import Done, Note, Progress
from diffstudio.app.experiment import ExperimentOutcome, ExperimentRequest, JobUpdate
from diffstudio.app.worker import WorkerCrashed, decode, encode, run_experiment_in_process
from diffstudio.errors import DiffstudioError

ONE_TRAINING = """\
[experiment]
name = "one"

[defaults]
dataset = "{dataset}"
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

[evaluation]
num_samples = 8
weights = "random"
resize_to = 96
reference_limit = 16
device = "cpu"
"""

ABORTING_PLUGIN = """
import os
from diffstudio import Contribution, hookimpl

def load(**params):
    os.abort()  # a plugin's native crash: takes its process down, nothing to catch

@hookimpl
def diffstudio_datasets():
    return [Contribution(kind="dataset", id="aborting", display_name="Aborting",
                         description="calls os.abort() when loaded",
                         factory="aborting_plugin:load", params=())]
"""


def test_events_cross_as_json_and_only_known_types_are_built():
    events = [Progress("train", 3, 10, 1.5, unit="step", rate=12.0, detail="loss 0.1"),
              Note("careful", level="warning"),
              JobUpdate("train/a", "train", "a", None, "done", "runs/a"),
              Done(ExperimentOutcome(Path("/tmp/x"), "completed", 2, 1, ["eval/a"]))]
    for event in events:
        wire = json.loads(json.dumps(encode(event)))
        assert decode(wire) == event
    with pytest.raises(ValueError, match="unknown event type 'Popen'"):
        decode({"__type__": "Popen", "args": ["rm", "-rf", "/"]})
    with pytest.raises(TypeError, match="cannot be sent"):
        encode(object())


def _request(tmp_path: Path, dataset: str, **extra) -> ExperimentRequest:
    file = tmp_path / "one.toml"
    file.write_text(ONE_TRAINING.format(dataset=dataset), encoding="utf-8")
    return ExperimentRequest(file=str(file), out=str(tmp_path / "exp"), **extra)


def test_an_experiment_runs_in_a_worker_process(tmp_path):
    log = tmp_path / "worker.log"
    events = list(run_experiment_in_process(_request(tmp_path, "digits", max_jobs=1), log=log))
    updates = [(e.key, e.status) for e in events if isinstance(e, JobUpdate)]
    assert updates == [("train/linear", "running"), ("train/linear", "done")]
    assert any(isinstance(e, Progress) and e.unit == "step" for e in events)  # the bars
    outcome = events[-1].result
    assert isinstance(outcome, ExperimentOutcome) and outcome.status == "stopped"
    assert outcome.ran == 1 and outcome.folder == tmp_path / "exp"
    assert (tmp_path / "exp" / "runs" / "linear" / "checkpoints" / "step-00000004").is_dir()


def test_the_job_s_own_error_comes_back_as_its_message(tmp_path):
    request = ExperimentRequest(file=str(tmp_path / "missing.toml"), out=str(tmp_path / "e"))
    with pytest.raises(DiffstudioError, match=r"missing\.toml") as caught:
        list(run_experiment_in_process(request, log=tmp_path / "worker.log"))
    assert not isinstance(caught.value, WorkerCrashed)


def test_a_plugin_that_aborts_fails_its_cell_not_the_caller(tmp_path, install_fake_plugin):
    install_fake_plugin("aborting-plugin", "aborting_plugin", ABORTING_PLUGIN)
    log = tmp_path / "worker.log"
    seen = []
    with pytest.raises(WorkerCrashed, match="killed by SIGABRT") as caught:
        for event in run_experiment_in_process(_request(tmp_path, "aborting"), log=log):
            seen.append(event)
    assert caught.value.log == log and str(log) in str(caught.value)
    assert "Fatal Python error: Aborted" in caught.value.tail  # where it died, from the log
    assert "aborting_plugin.py" in caught.value.tail
    failed = [e for e in seen if isinstance(e, JobUpdate) and e.status == "failed"]
    assert [e.key for e in failed] == ["train/linear"] and "SIGABRT" in failed[0].error
    state = json.loads((tmp_path / "exp" / "state.json").read_text())
    assert state["jobs"]["train/linear"]["status"] == "failed"
    assert "SIGABRT" in state["jobs"]["train/linear"]["error"]
