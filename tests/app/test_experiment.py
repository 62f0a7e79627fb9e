"""Experiments: a TOML grid validated before anything starts (errors name the line), a queue in
the experiment's folder that skips finished cells and resumes trainings after a stop or a kill,
and a report whose tables and plots hold the results' numbers."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from tiny_experiment import TINY, results_by_key, write_tiny

from diffstudio.app import run_job
from diffstudio.app.experiment import (
    ExperimentRequest,
    ExperimentState,
    JobUpdate,
    plan,
    run_experiment,
)
from diffstudio.app.experiment_file import load_experiment, parse_experiment, preset_path, presets
from diffstudio.app.experiment_report import open_experiment, report_rows, write_report
from diffstudio.cli import main
from diffstudio.errors import ConfigError
from diffstudio.plugin_manager import load_plugins

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DIFFSTUDIO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


# -- the file -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("old", "new", "line", "words"), [
    ('steps = [5]', 'steps = [-1]', 22, "'steps' must be >= 1"),
    ('schedule = "cosine"', 'schedule = "cosin"', 18, "no schedule 'cosin'"),
    ('schedule = "cosine"', 'schedule = "cosine"\nlearning_rat = 0.1', 19, "learning_rat"),
    ('batch_size = 8', 'batch_size = "eight"', 7, "batch_size"),
    ('num_samples = 16', 'num_samples = 1', 29, "at least 2"),
    ('id = "ddpm"', 'id = "ddpx"', 25, "no sampler 'ddpx'"),
    ('device = "cpu"\n\n[training.linear]', 'device = "cpu"\ndataset_params = { sizee = 3 }\n\n'
     '[training.linear]', 13, "no parameter sizee"),
    ('"linear/ddpm" = 99.8', '"linear/dpm" = 99.8', 40, "names no cell"),
    ('dataset = "digits"', 'dataset = "toy2d"', 5, "2-D points"),
])
def test_validation_errors_name_the_line(registry, old, new, line, words):
    assert old in TINY
    with pytest.raises(ConfigError) as caught:
        parse_experiment(TINY.replace(old, new, 1), registry, path="tiny.toml")
    message = str(caught.value)
    assert message.startswith(f"tiny.toml, line {line}: "), message
    assert words in message


def test_a_toml_syntax_error_keeps_tomllib_s_position(registry):
    with pytest.raises(ConfigError, match=r"^tiny.toml: not valid TOML: .*line 28"):
        parse_experiment(TINY.replace("[evaluation]", "[evaluation"), registry,
                         path="tiny.toml")


def test_the_grid_is_trainings_x_sampler_settings_x_seeds(registry):
    text = TINY.replace("reference_limit", "seeds = [0, 3]\nreference_limit").replace(
        "steps = [5]", "steps = [5, 10]")
    experiment = parse_experiment(text, registry, path="t.toml")
    cells = experiment.cells()
    assert len(cells) == 2 * 3 * 2
    assert [c.key for c in cells[:3]] == ["eval/linear/ddim-steps5/seed0",
                                          "eval/linear/ddim-steps5/seed3",
                                          "eval/linear/ddim-steps10/seed0"]
    ddpm = next(c for c in cells if c.sampler.sampler == "ddpm")
    assert ddpm.sampler.name == "ddpm" and ddpm.sampler.params == {"steps": 20}
    assert experiment.training("cosine").settings["network"] == "unet"


def test_the_shipped_preset_validates_and_plans_the_seed_s_table_1(registry, tmp_path):
    assert preset_path("seed-table1-digits") in presets()
    experiment = load_experiment(preset_path("seed-table1-digits"), registry)
    jobs = plan(experiment, tmp_path / "none")
    assert [j.key for j in jobs if j.kind == "train"] == ["train/linear", "train/cosine"]
    assert len(jobs) == 2 + 2 * 5 and {j.status for j in jobs} == {"pending"}
    ddim50 = next(c for c in experiment.cells() if c.sampler.name == "ddim-steps50")
    assert experiment.published_for("linear", ddim50.sampler) == pytest.approx(103.322)
    assert not (tmp_path / "none").exists()  # planning writes nothing


# -- the queue ----------------------------------------------------------------------------------
def test_a_tiny_experiment_runs_end_to_end(finished):
    _, folder, outcome, events = finished
    assert outcome.status == "completed" and outcome.ran == 2 + 4 and not outcome.failed
    state = json.loads((folder / "state.json").read_text())
    assert {entry["status"] for entry in state["jobs"].values()} == {"done"}
    assert (folder / "runs" / "linear" / "checkpoints" / "step-00000004").is_dir()
    done = [e.key for e in events if isinstance(e, JobUpdate) and e.status == "done"]
    assert done[0] == "train/linear" and len(done) == 6
    results = results_by_key(folder)
    assert results["eval/cosine/ddpm/seed0"]["source"]["network_evaluations"] == 20
    assert results["eval/linear/ddim-steps5/seed0"]["n"] == 16


def test_running_again_skips_every_finished_cell(finished, registry):
    file, folder, _, _ = finished
    before = {p.name: p.stat().st_mtime_ns for p in (folder / "results").iterdir()}
    outcome = run_job(run_experiment(ExperimentRequest(str(file), out=str(folder)),
                                     registry=registry))
    assert outcome.status == "completed" and outcome.ran == 0 and outcome.skipped == 6
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "results").iterdir()} == before


def test_a_stopped_experiment_continues_where_it_stopped(finished, tmp_path, registry):
    file = write_tiny(tmp_path)
    out = tmp_path / "out"
    first = run_job(run_experiment(ExperimentRequest(str(file), out=str(out), max_jobs=3),
                                   registry=registry))
    assert first.status == "stopped" and first.ran == 3
    statuses = {j.key: j.status for j in plan(load_experiment(file, registry), out)}
    assert [k for k, s in statuses.items() if s == "done"] == [
        "train/linear", "eval/linear/ddim-steps5/seed0", "eval/linear/ddpm/seed0"]
    kept = (out / "results" / "linear--ddim-steps5--seed0.json").stat().st_mtime_ns
    second = run_job(run_experiment(ExperimentRequest(str(file), out=str(out)),
                                    registry=registry))
    assert second.status == "completed" and second.skipped == 3 and second.ran == 3
    assert (out / "results" / "linear--ddim-steps5--seed0.json").stat().st_mtime_ns == kept
    # The same numbers as the uninterrupted run (same seeds, same CPU).
    whole, resumed = results_by_key(finished[1]), results_by_key(out)
    for key, result in whole.items():
        assert resumed[key]["metrics"]["fid"]["value"] == pytest.approx(
            result["metrics"]["fid"]["value"], rel=1e-5), key


def test_an_interrupted_training_resumes_from_its_checkpoint(tmp_path, registry):
    file = write_tiny(tmp_path, TINY.replace("steps = 4", "steps = 6"))
    out = tmp_path / "out"
    events = run_experiment(ExperimentRequest(str(file), out=str(out)), registry=registry)
    for event in events:  # Ctrl+C after the first checkpoint of the first training
        if getattr(event, "kind", None) == "checkpoint":
            break
    events.close()
    state = ExperimentState(out)
    assert state.entry("train/linear")["status"] == "pending"  # interrupted, not failed
    from diffstudio.engine.runs import Run

    stopped_at = Run.checkpoint_step(Run(out / "runs" / "linear").latest_checkpoint())
    assert 2 <= stopped_at < 6
    notes = []
    outcome = run_job(e for e in run_experiment(ExperimentRequest(str(file), out=str(out)),
                                                registry=registry) if not notes.append(e))
    assert outcome.status == "completed"
    assert any("resuming the training linear" in getattr(e, "text", "") for e in notes)
    starts = [e for e in notes if getattr(e, "kind", None) == "start"]
    assert starts  # the trainer's own resume: the step count went on from the checkpoint
    metrics = Run(out / "runs" / "linear").metrics()
    assert metrics[-1]["step"] == 6


def test_a_failing_cell_is_recorded_and_the_rest_runs(tmp_path, registry, monkeypatch):
    import diffstudio.app.experiment as experiment_module

    real = experiment_module.evaluate

    def flaky(request, **kwargs):
        if request.sampler == "ddpm":
            raise RuntimeError("simulated crash in ddpm")
        return real(request, **kwargs)

    monkeypatch.setattr(experiment_module, "evaluate", flaky)
    file = write_tiny(tmp_path, TINY.replace('[training.cosine]\nschedule = "cosine"\n', "")
                      .replace(', "cosine/ddim-steps5" = 113.4', ""))
    outcome = run_job(run_experiment(ExperimentRequest(str(file), out=str(tmp_path / "o")),
                                     registry=registry))
    assert outcome.status == "failed" and outcome.failed == ["eval/linear/ddpm/seed0"]
    entry = ExperimentState(tmp_path / "o").entry("eval/linear/ddpm/seed0")
    assert entry["status"] == "failed" and "simulated crash" in entry["error"]
    monkeypatch.setattr(experiment_module, "evaluate", real)
    again = run_job(run_experiment(ExperimentRequest(str(file), out=str(tmp_path / "o")),
                                   registry=registry))
    assert again.status == "completed" and again.ran == 1  # only the failed cell


def test_a_killed_experiment_process_finishes_when_run_again(tmp_path):
    """SIGKILL the CLI mid-training, run it again: the training resumes, nothing is redone."""
    text = TINY.replace("steps = 4", "steps = 60").replace("checkpoint_every = 2",
                                                            "checkpoint_every = 10")
    file = write_tiny(tmp_path, text)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'plugins'}",
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "diffstudio", "experiment", "run", str(file), "--out",
               str(out), "--quiet"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    checkpoints = out / "runs" / "linear" / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoints.is_dir() and any(checkpoints.glob("step-*/state.json")):
            break
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    state = json.loads((out / "state.json").read_text())
    assert state["jobs"]["train/linear"]["status"] == "running"  # as the kill left it
    again = subprocess.run([*command[:-1], "--max-jobs", "1"], env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming the training linear" in again.stderr
    state = json.loads((out / "state.json").read_text())
    assert state["jobs"]["train/linear"]["status"] == "done"
    assert state["jobs"]["train/linear"]["attempts"] == 2


# -- the report ---------------------------------------------------------------------------------
def test_the_report_holds_the_results_numbers(finished, registry):
    _, folder, _, _ = finished
    experiment, where = open_experiment(folder, registry)
    assert where == folder
    paths = write_report(experiment, folder)
    names = sorted(p.name for p in paths)
    assert names == ["fid-vs-network-evaluations.png", "kid-vs-network-evaluations.png",
                     "report.md", "results.csv"]
    results = results_by_key(folder)
    markdown = (folder / "report" / "report.md").read_text()
    for result in results.values():
        assert f"{result['metrics']['fid']['value']:.3f} @16" in markdown
    assert "| 99.8 |" in markdown and "| 113.4 |" in markdown  # the published FIDs beside ours
    assert "N = 16" in markdown and "biased" in markdown
    with open(folder / "report" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    for row in rows:
        result = results[f"eval/{row['training']}/{row['sampler_setting']}/seed{row['seed']}"]
        assert float(row["fid"]) == pytest.approx(result["metrics"]["fid"]["value"])
        assert float(row["kid"]) == pytest.approx(result["metrics"]["kid"]["mean"])
        assert int(row["network_evaluations"]) == result["source"]["network_evaluations"]
    image = Image.open(folder / "report" / "fid-vs-network-evaluations.png")
    assert image.size == (900, 560)
    colours = {c for _, c in image.convert("RGB").getcolors(1 << 20)}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours  # a line per series
    assert len(report_rows(experiment, folder)) == 4


def test_the_command_line(finished, tmp_path, capsys):
    file, folder, _, _ = finished
    assert main(["experiment", "status", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "6 done of 6 jobs" in out and "done     train linear" in out
    assert main(["experiment", "run", str(file), "--out", str(folder), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "ran 0 job(s), skipped 6" in out and "report.md" in out
    assert main(["experiment", "run", str(file), "--out", str(tmp_path / "x"),
                 "--dry-run"]) == 0
    assert "6 pending of 6 jobs" in capsys.readouterr().out
    assert not (tmp_path / "x").exists()
    bad = write_tiny(tmp_path / "bad", TINY.replace("steps = [5]", "steps = [0]"))
    assert main(["experiment", "run", str(bad), "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tiny.toml, line 22:" in err[0]
    assert main(["experiment", "report", str(tmp_path / "nothing")]) == 2
    assert "no experiment file or folder" in capsys.readouterr().err
    for verb in ([], ["run"], ["status"], ["report"]):
        assert main(["experiment", *verb, "--help"]) == 0
        assert "usage: diffstudio experiment" in capsys.readouterr().out
    assert main(["experiment", "presets"]) == 0
    assert "seed-table1-digits" in capsys.readouterr().out
