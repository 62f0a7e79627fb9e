"""The application layer: jobs are generators over typed requests, driven the same way by the
CLI and the window; closing one stops it cleanly; progress is the same everywhere."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from diffstudio.app import (
    Done,
    ModelSource,
    ModelSummary,
    Progress,
    SampleRequest,
    TrainRequest,
    run_job,
    sample,
    train,
)
from diffstudio.app.events import eta_seconds, format_duration
from diffstudio.app.threaded import events_of
from diffstudio.cli import main
from diffstudio.errors import Cancelled, ConfigError
from diffstudio.plugin_manager import load_plugins

SETTINGS = {"dataset": "digits", "steps": 8, "batch_size": 8, "num_timesteps": 50,
            "warmup_steps": 1, "checkpoint_every": 4, "preview_every": 0, "device": "cpu",
            "log_every": 2}


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, registry):
    run = tmp_path_factory.mktemp("app") / "run"
    result = run_job(train(TrainRequest(out=str(run), settings=SETTINGS), registry=registry))
    assert result.status == "completed" and result.step == 8
    return run


# -- the thread bridge ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    latest_only: ClassVar[bool] = True
    index: int


def test_events_of_keeps_ordered_events_and_coalesces_latest_only_ones():
    release = threading.Event()

    def work(emit, stop):
        for index in range(50):
            emit(Frame(index))
        emit("ordered-1")
        emit("ordered-2")
        release.wait(5)
        return "result"

    events = events_of(work)
    first = next(events)
    release.set()
    rest = list(events)
    seen = [first, *rest]
    assert seen[-1] == Done("result")
    assert [e for e in seen if isinstance(e, str)] == ["ordered-1", "ordered-2"]
    frames = [e.index for e in seen if isinstance(e, Frame)]
    assert frames[-1] == 49 and len(frames) < 50  # stale frames were replaced, never queued


def test_events_of_raises_the_work_s_exception_in_the_consumer():
    def work(emit, stop):
        emit(Progress("x", 1, 2))
        raise ConfigError("bad value")

    with pytest.raises(ConfigError, match="bad value"):
        list(events_of(work))


def test_closing_the_generator_stops_the_work_and_joins_its_thread():
    stopped = threading.Event()

    def work(emit, stop):
        while not stop():
            emit(Progress("spin", 0, 0))
            time.sleep(0.01)
        stopped.set()
        raise Cancelled("stopped")

    events = events_of(work)
    next(events)
    events.close()
    assert stopped.is_set()  # close() returned only after the work saw the stop


def test_progress_eta_and_text_are_computed_once():
    event = Progress("sample", 10, 50, elapsed=5.0, unit="step")
    assert event.eta == pytest.approx(20.0) == eta_seconds(10, 50, 5.0)
    assert event.describe() == "sample 10/50 steps · ETA 0:20"
    assert Progress("train", 5, 10, 1.0, remaining=99.0).eta == 99.0
    assert format_duration(3725) == "1:02:05"
    assert eta_seconds(0, 10, 1.0) is None


# -- training -------------------------------------------------------------------------------------
def test_settings_resolve_over_the_resumed_run_and_the_defaults(tiny_run, registry):
    config = TrainRequest(resume=str(tiny_run), settings={"steps": 12}).resolve(registry)
    assert (config.steps, config.batch_size, config.num_timesteps) == (12, 8, 50)
    assert config.network == "unet" and config.network_params["preset"]
    fresh = TrainRequest(out="x", settings={"dataset": "toy2d"}).resolve(registry)
    assert fresh.network == "mlp"  # points train the MLP by default
    with pytest.raises(ConfigError, match="one of them"):
        TrainRequest(out="a", resume="b").resolve(registry)
    with pytest.raises(ConfigError, match="no network 'nope'"):
        TrainRequest(out="x", settings={"network": "nope"}).resolve(registry)


def test_train_job_yields_progress_with_the_logged_rate(tmp_path, registry):
    run = tmp_path / "run"
    events = list(train(TrainRequest(out=str(run), settings=SETTINGS), registry=registry))
    steps = [e for e in events if getattr(e, "kind", None) == "step"]
    progress = [e for e in events if isinstance(e, Progress) and e.rate is not None]
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [s.step for s in steps] == [r["step"] for r in logged] == [2, 4, 6, 8]
    # The rate a front end shows is the one written to metrics.jsonl, from the same event.
    last = progress[-1]
    assert last.done == 8 and last.total == 8
    assert last.rate == pytest.approx(logged[-1]["images_per_second"])
    assert isinstance(events[-1], Done) and events[-1].result.status == "completed"


@pytest.mark.parametrize("sigma_max,warned", [(1.0, True), (20.0, False)])
def test_a_noise_range_too_small_for_the_data_is_warned_before_training(tmp_path, registry,
                                                                        sigma_max, warned):
    """Issue 17: NCSN levels up to 1 on the 2-D mixture (modes ~14 apart) cannot carry points
    between modes; the job says so, with the flags that fit, before the first step."""
    from diffstudio.app.events import Note

    settings = {**SETTINGS, "dataset": "toy2d", "dataset_params": {"num_points": 400},
                "network": "mlp", "schedule": "ncsn", "prediction_type": "score", "steps": 2,
                "schedule_params": {"sigma_max": sigma_max, "sigma_min": 0.01}}
    events = list(train(TrainRequest(out=str(tmp_path / "run"), settings=settings),
                        registry=registry))
    notes = [e for e in events if isinstance(e, Note) and e.level == "warning"]
    assert bool(notes) == warned
    if warned:
        assert "--schedule.sigma-max" in notes[0].text and "Technique 1" in notes[0].text
        assert events.index(notes[0]) < next(i for i, e in enumerate(events)
                                             if getattr(e, "kind", None) == "step")


def test_closing_a_training_job_keeps_what_was_trained(tmp_path, registry):
    run = tmp_path / "run"
    request = TrainRequest(out=str(run), settings={**SETTINGS, "steps": 400,
                                                   "checkpoint_every": 1000})
    events = train(request, registry=registry)
    for event in events:
        if getattr(event, "kind", None) == "step" and event.step >= 4:
            break
    events.close()  # what Ctrl+C in the terminal and Stop in the window do
    from diffstudio.engine.runs import Run

    checkpoints = Run(run).checkpoints()
    assert checkpoints and 4 <= checkpoints[-1][0] < 400


# -- sampling -------------------------------------------------------------------------------------
def test_the_cli_and_the_job_make_the_same_samples_and_metadata(tiny_run, tmp_path, registry):
    request = SampleRequest(ModelSource(run=str(tiny_run)), "ddim", {"steps": 5},
                            num_samples=3, seed=7, device="cpu")
    events = list(sample(request, registry=registry))
    summary = next(e for e in events if isinstance(e, ModelSummary))
    assert summary.kind == "image" and summary.step == 8
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].done == progress[-1].total == 5
    outcome = events[-1].result
    assert main(["sample", str(tiny_run), "--steps", "5", "--num", "3", "--seed", "7",
                 "--out", str(tmp_path / "cli"), "--device", "cpu", "--quiet"]) == 0
    with np.load(tmp_path / "cli" / "samples.npz") as saved:
        np.testing.assert_array_equal(saved["samples"], outcome.samples)
    from diffstudio.engine.pngmeta import read_png_metadata

    meta = read_png_metadata(tmp_path / "cli" / "sample-000007.png")
    for key in ("run", "checkpoint", "network_sha256", "backend"):
        assert meta[key] == outcome.metadata[key]


def test_sample_request_errors_are_said_before_any_work(tiny_run, registry):
    source = ModelSource(run=str(tiny_run))
    with pytest.raises(ConfigError, match="unknown sampler"):
        run_job(sample(SampleRequest(source, "nope"), registry=registry))
    with pytest.raises(ConfigError, match="not class-conditional"):
        run_job(sample(SampleRequest(source, "ddim", {"steps": 2}, num_samples=1,
                                     class_label=3, device="cpu"), registry=registry))
    with pytest.raises(ConfigError, match="one of them"):
        ModelSource().validate()


def test_an_exact_network_is_offered_for_sampling_not_trained(tmp_path, capsys):
    """'train --network analytic-mixture' ended in 'unexpected ValueError: optimizer got an
    empty parameter list'; the exact score is written as a run ready to sample instead."""
    run = tmp_path / "exact"
    assert main(["train", "--dataset", "toy2d", "--network", "analytic-mixture", "--out",
                 str(run), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "nothing to train" in captured.out and "unexpected" not in captured.err
    assert "diffstudio sample" in captured.err  # how to use it, said at the start
    assert main(["sample", str(run), "--sampler", "ddim", "--steps", "10", "--num", "64",
                 "--device", "cpu", "--quiet", "--out", str(tmp_path / "s")]) == 0
    with np.load(tmp_path / "s" / "samples.npz") as saved:
        points = saved["samples"]
    assert points.shape == (64, 2) and np.isfinite(points).all()
    near_big_mode = np.linalg.norm(points - 5.0, axis=1) < 3.0
    assert 0.5 < near_big_mode.mean() < 1.0  # the 0.8 mode holds most of the points
