"""Jobs out of process (issue 15): an experiment or a training runs in a worker process whose
events come back over a pipe as the same objects (previews as arrays, never pickled); a
training pauses and stops there; a plugin that aborts the process fails its job with the reason
and the log, and the caller lives on."""

from __future__ import annotations

import json
import sys
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


# -- the Train page's job in a worker process ------------------------------------------------------
TRAIN = {"steps": 100_000, "batch_size": 8, "num_timesteps": 20, "warmup_steps": 0,
         "log_every": 2, "checkpoint_every": 100_000, "preview_every": 4, "preview_samples": 3,
         "preview_steps": 2, "device": "cpu"}


def test_arrays_runs_and_train_results_cross_as_data_never_pickled(tmp_path):
    import numpy as np

    from diffstudio.app.worker import display_array
    from diffstudio.engine.runs import Run
    from diffstudio.engine.training import TrainEvent, TrainResult

    images = np.linspace(-1, 1, 2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    event = TrainEvent("preview", 4, 10, images=display_array(images), path="p.png")
    back = decode(json.loads(json.dumps(encode(event))))
    assert isinstance(back, TrainEvent) and back.images.dtype == np.float16
    assert back.images.shape == (2, 3, 4, 4)
    assert np.abs(back.images.astype(np.float32) - images).max() < 1e-3  # below 1/255
    points = np.array([[1234.5678, -0.001]], dtype=np.float64)
    assert display_array(points).dtype == np.float32  # 2-D points keep float32
    result = decode(json.loads(json.dumps(encode(
        Done(TrainResult("stopped", 3, 10, 0.5, Run(tmp_path / "run")))))))
    assert isinstance(result.result.run, Run) and result.result.run.path == tmp_path / "run"
    with pytest.raises(ValueError):  # an object array would need pickle: refused
        encode(np.array([object()], dtype=object))
    import base64
    import io

    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        decode({"__ndarray__": base64.b64encode(pickled.getvalue()).decode()})


def _pull(events, into):
    """Consume ``events`` in a thread (a paused job blocks the consumer)."""
    import queue
    import threading

    box: queue.Queue = into

    def drive():
        try:
            for event in events:
                box.put(event)
        except BaseException as exc:  # handed to the test
            box.put(exc)
        box.put(StopIteration())

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    return thread


def _drain(box, wait=0.0):
    import queue
    import time

    time.sleep(wait)
    items = []
    while True:
        try:
            items.append(box.get_nowait())
        except queue.Empty:
            return items


def test_a_training_runs_in_a_worker_pauses_and_stops_with_a_checkpoint(tmp_path):
    import queue
    import time

    import numpy as np

    from diffstudio.app.train import TrainRequest
    from diffstudio.app.worker import train_in_process
    from diffstudio.engine.runs import Run
    from diffstudio.engine.training import TrainEvent, TrainResult

    flags = {"pause": False, "stop": False}
    box: queue.Queue = queue.Queue()
    request = TrainRequest(out=str(tmp_path / "run"), settings=TRAIN)
    thread = _pull(train_in_process(request, log=tmp_path / "train.log",
                                    should_stop=lambda: flags["stop"],
                                    should_pause=lambda: flags["pause"]), box)
    seen: list = []
    deadline = time.monotonic() + 120
    while not any(getattr(e, "kind", "") == "preview" for e in seen):
        assert time.monotonic() < deadline, seen[-3:]
        seen.append(box.get(timeout=120))
    assert seen[0].kind == "start" and "samples of shape (1, 8, 8)" in seen[0].message
    preview = next(e for e in seen if getattr(e, "kind", "") == "preview")
    assert isinstance(preview, TrainEvent) and preview.images.shape == (3, 1, 8, 8)
    assert np.isfinite(preview.images.astype(np.float32)).all()
    steps = [e for e in seen if getattr(e, "kind", "") == "step"]
    assert [e.step for e in steps][:2] == [2, 4] and all(e.loss > 0 for e in steps)
    assert any(isinstance(e, Progress) and e.rate for e in seen)  # images/s crosses

    flags["pause"] = True  # the child holds between two steps
    seen += _drain(box, wait=1.0)  # what was on its way when the pause arrived
    progress = [e for e in seen if isinstance(e, Progress)]
    held_at, trained = progress[-1].done, progress[-1].elapsed
    assert _drain(box, wait=2.0) == []  # nothing trains while paused
    flags["pause"] = False
    resumed = [box.get(timeout=30)]
    resumed += _drain(box, wait=0.5)
    after = [e for e in resumed if isinstance(e, Progress)]
    assert after and after[-1].done > held_at
    # The 2 s held count nowhere: the trained time grew by about the steps since, not by 2 s.
    assert after[0].elapsed - trained < 1.5

    flags["stop"] = True
    rest = []
    while not rest or not isinstance(rest[-1], StopIteration):
        rest.append(box.get(timeout=120))
    thread.join(timeout=10)
    done = rest[-2]
    assert isinstance(done, Done) and isinstance(done.result, TrainResult)
    assert done.result.status == "stopped" and isinstance(done.result.run, Run)
    kinds = [getattr(e, "kind", "") for e in rest]
    assert kinds.index("checkpoint") < kinds.index("done")
    assert done.result.run.latest_checkpoint().name == f"step-{done.result.step:08d}"


def test_a_training_whose_plugin_aborts_ends_in_worker_crashed_with_the_log(
        tmp_path, install_fake_plugin):
    from diffstudio.app.train import TrainRequest
    from diffstudio.app.worker import train_in_process

    install_fake_plugin("aborting-plugin", "aborting_plugin", ABORTING_PLUGIN)
    log = tmp_path / "train.log"
    request = TrainRequest(out=str(tmp_path / "run"), settings={**TRAIN, "dataset": "aborting"})
    with pytest.raises(WorkerCrashed, match="train worker process was killed by SIGABRT") as caught:
        list(train_in_process(request, log=log))
    assert caught.value.log == log and str(log) in str(caught.value)
    assert "Fatal Python error: Aborted" in caught.value.tail
    assert "aborting_plugin.py" in caught.value.tail


ACCELERATE = Path(sys.executable).with_name("accelerate")


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate's CLI is missing")
def test_a_data_parallel_training_in_two_worker_processes_pauses_and_stops(tmp_path,
                                                                          monkeypatch):
    """``accelerate launch --multi_gpu --num_processes 2`` on CPU (gloo): one voice on the
    wire (rank 0), the control file pauses and stops both ranks at the same step."""
    import queue

    from diffstudio.app.train import TrainRequest
    from diffstudio.app.worker import train_in_process

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no user accelerate config
    flags = {"pause": False, "stop": False}
    box: queue.Queue = queue.Queue()
    settings = {**TRAIN, "dataset": "toy2d", "dataset_params": {"num_points": 200},
                "network": "mlp", "network_params": {"hidden": 16, "depth": 1},
                "preview_samples": 32}
    log = tmp_path / "run" / "logs" / "worker.log"
    thread = _pull(train_in_process(TrainRequest(out=str(tmp_path / "run"), settings=settings),
                                    log=log, should_stop=lambda: flags["stop"],
                                    should_pause=lambda: flags["pause"], processes=2), box)
    seen: list = []
    while sum(getattr(e, "kind", "") == "preview" for e in seen) < 2:
        event = box.get(timeout=240)
        assert not isinstance(event, BaseException), (event, log.read_text()[-3000:])
        seen.append(event)
    starts = [e for e in seen if getattr(e, "kind", "") == "start"]
    assert len(starts) == 1  # only rank 0 writes events
    assert "x 2 processes (data-parallel, effective batch 16)" in starts[0].message
    assert next(e for e in seen if getattr(e, "kind", "") == "preview").images.shape == (32, 2)

    flags["pause"] = True  # the control file: both ranks hold at the same step
    seen += _drain(box, wait=1.5)
    assert _drain(box, wait=2.0) == []
    flags["pause"] = False
    assert box.get(timeout=60) is not None  # trains again

    flags["stop"] = True
    rest = []
    while not rest or not isinstance(rest[-1], StopIteration):
        rest.append(box.get(timeout=120))
    thread.join(timeout=10)
    done = rest[-2]
    assert isinstance(done, Done) and done.result.status == "stopped", rest[-3:]
    run = done.result.run
    assert run.latest_checkpoint().name == f"step-{done.result.step:08d}"
    logged = [json.loads(line)["step"] for line in run.metrics_path.read_text().splitlines()]
    assert logged == sorted(set(logged))  # each logged step once: rank 0 writes
