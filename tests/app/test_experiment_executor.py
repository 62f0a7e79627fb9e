"""The submitit executor of experiments, through submitit's local executor (one process per
job, the interface the Slurm executor shares): the tiny experiment gives the table the local
executor gives, a failing cell is marked failed with its log while the others finish, a run
again skips what is done, a coordinator that went away leaves jobs that the next one watches
again (or runs again when they are gone); and the Slurm executor's sbatch file carries the
[executor] table."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from tiny_experiment import TINY, results_by_key, write_tiny

from diffstudio.app import run_job
from diffstudio.app.experiment import (
    ExperimentRequest,
    ExperimentState,
    JobUpdate,
    current_status,
    plan,
    run_experiment,
    run_job_in_folder,
)
from diffstudio.app.experiment_executor import JobPool, check_executor
from diffstudio.app.experiment_file import ExecutorSpec, load_experiment, parse_experiment
from diffstudio.app.experiment_report import open_experiment, write_report
from diffstudio.cli import main
from diffstudio.engine.run_lock import RunLock
from diffstudio.errors import ConfigError
from diffstudio.plugin_manager import load_plugins

#: The tests that run submitit (an optional extra: pip install 'diffstudio[slurm]').
needs_submitit = pytest.mark.skipif(importlib.util.find_spec("submitit") is None,
                                    reason="submitit is not installed (the slurm extra)")

ROOT = Path(__file__).resolve().parents[2]
# One training, a sampler that works and one that fails at run time: DDPM cannot visit 50
# timesteps of a 20-timestep model (the file's schema allows 50; the model refuses).
ONE_FAILING = (TINY.replace('[training.cosine]\nschedule = "cosine"\n', "")
               .replace(', "cosine/ddim-steps5" = 113.4', "")
               .replace('id = "ddpm"\nsteps = 20', 'id = "ddpm"\nsteps = 50'))
# One training, one cell.
ONE_CELL = ONE_FAILING.replace('\n[[sampler]]\nid = "ddpm"\nsteps = 50\n', "").replace(
    '"linear/ddpm" = 99.8', '"linear/ddim" = 99.8')
FAST = '\n[executor]\nkind = "submitit-local"\npoll_seconds = 0.2\ntimeout_min = 10\n'


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


@pytest.fixture(autouse=True)
def job_environment(tmp_path_factory, monkeypatch):
    """The jobs' processes import this checkout and its built-in plugins, on one thread."""
    monkeypatch.setenv("DIFFSTUDIO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "plugins")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def table(folder: Path, registry) -> list[dict[str, str]]:
    """The report's CSV rows without the columns that time the jobs."""
    experiment, _ = open_experiment(folder, registry)
    write_report(experiment, folder)
    with open(folder / "report" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: v for k, v in row.items() if "time" not in k and "second" not in k}
            for row in rows]


@needs_submitit
@pytest.mark.slow
def test_submitit_local_gives_the_local_executor_s_table(finished, tmp_path, registry, capsys):
    _, local_folder, _, _ = finished
    file = write_tiny(tmp_path, TINY + FAST.replace("submitit-local", "local"))
    out = tmp_path / "out"
    assert main(["experiment", "run", str(file), "--out", str(out), "--executor",
                 "submitit-local", "--quiet"]) == 0
    assert "ran 6 job(s)" in capsys.readouterr().out
    state = json.loads((out / "state.json").read_text())["jobs"]
    assert {e["status"] for e in state.values()} == {"done"}
    assert {e["executor"] for e in state.values()} == {"submitit-local"}
    for entry in state.values():  # each job ran in its own process, its log in the folder
        assert (out / entry["log"]).is_file() and entry["log"].startswith("logs/submitit/")
    assert len({e["job_id"] for e in state.values()}) == 6
    before = {p.name: p.stat().st_mtime_ns for p in (out / "results").iterdir()}
    assert main(["experiment", "run", str(file), "--out", str(out), "--executor",
                 "submitit-local", "--quiet"]) == 0  # again: every job is done, none runs
    assert "ran 0 job(s), skipped 6" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (out / "results").iterdir()} == before
    local, remote = table(local_folder, registry), table(out, registry)
    assert len(remote) == 4 and [r["sampler_setting"] for r in remote] == [
        r["sampler_setting"] for r in local]
    for mine, theirs in zip(remote, local, strict=True):
        for key in mine:
            if key in ("fid", "kid", "kid_std"):
                # The same samples up to float32 rounding: the job's process and the test's
                # may run with different thread counts (kid_std is ~2e-5 here: a few 1e-9).
                assert float(mine[key]) == pytest.approx(float(theirs[key]), rel=1e-3,
                                                         abs=1e-8), key
            elif key not in ("run", "result_file"):  # where each folder is
                assert mine[key] == theirs[key], key


@needs_submitit
@pytest.mark.slow  # each job is a Python process that imports torch
def test_a_failing_cell_job_is_failed_with_its_log_and_a_rerun_skips_the_rest(tmp_path,
                                                                               registry):
    file = write_tiny(tmp_path, ONE_FAILING + FAST)
    out = tmp_path / "out"
    events: list = []
    outcome = run_job(e for e in run_experiment(ExperimentRequest(str(file), out=str(out)),
                                                registry=registry) if not events.append(e))
    assert outcome.status == "failed" and outcome.failed == ["eval/linear/ddpm/seed0"]
    entry = ExperimentState(out).entry("eval/linear/ddpm/seed0")
    assert entry["status"] == "failed"
    assert "steps" in entry["error"] and f"log {entry['log']}" in entry["error"]
    log = (out / entry["log"]).read_text()
    assert "Traceback" in log and entry["log_tail"].splitlines()[-1] in log
    failed = [e for e in events if isinstance(e, JobUpdate) and e.status == "failed"]
    assert [e.key for e in failed] == ["eval/linear/ddpm/seed0"]
    done = ExperimentState(out).entry("eval/linear/ddim-steps5/seed0")
    assert done["status"] == "done" and (out / done["result"]).is_file()
    again = run_job(run_experiment(ExperimentRequest(str(file), out=str(out),
                                                     retry_failed=False), registry=registry))
    assert again.skipped == 2 and again.ran == 0 and again.status == "completed"
    assert ExperimentState(out).entry("eval/linear/ddpm/seed0")["status"] == "failed"


@needs_submitit
@pytest.mark.slow  # each job is a Python process that imports torch
def test_a_new_coordinator_watches_the_jobs_the_old_one_left_or_runs_them_again(tmp_path,
                                                                                registry):
    file = write_tiny(tmp_path, ONE_CELL + FAST)
    out = tmp_path / "out"
    events = run_experiment(ExperimentRequest(str(file), out=str(out)), registry=registry)
    for event in events:  # the coordinator goes away once the training is submitted
        if isinstance(event, JobUpdate) and event.status == "running":
            break
    events.close()
    entry = ExperimentState(out).entry("train/linear")
    assert entry["status"] == "running" and entry["job_id"]  # the job goes on without it
    notes: list = []
    outcome = run_job(e for e in run_experiment(ExperimentRequest(str(file), out=str(out)),
                                                registry=registry) if not notes.append(e))
    assert outcome.status == "completed"
    assert any("watching its job" in getattr(e, "text", "") for e in notes)
    state = ExperimentState(out)
    assert state.entry("train/linear")["attempts"] == 1  # watched, not submitted again
    assert state.entry("train/linear")["job_id"] == entry["job_id"]
    assert {state.entry(k)["status"] for k in state.jobs} == {"done"}
    # Jobs whose ids name no live job (the machine rebooted) are submitted again: the cell's,
    # which left no result, is not recorded done without its result file; the training's,
    # killed on a node, left the run's lock there, which would refuse every later job.
    key = "eval/linear/ddim-steps5/seed0"
    (out / state.entry(key)["result"]).unlink()
    state.update(key, status="running", job_id="999999999")
    state.update("train/linear", status="running", job_id="999999998")
    lock = out / "runs" / "linear" / "train.lock"
    lock.write_text(json.dumps({"pid": 4242, "host": "node-gone", "since": 0.0}))
    notes = []
    again = run_job(e for e in run_experiment(ExperimentRequest(str(file), out=str(out)),
                                              registry=registry) if not notes.append(e))
    assert again.status == "completed" and again.ran == 2 and not again.failed
    assert any("left locked by pid 4242 on node-gone" in getattr(e, "text", "") for e in notes)
    assert not lock.exists()
    state = ExperimentState(out)
    assert state.entry(key)["job_id"] != "999999999"
    assert state.entry("train/linear")["attempts"] == 2
    assert set(results_by_key(out)) == {key}


@needs_submitit
@pytest.mark.slow  # each job is a Python process that imports torch
def test_a_job_whose_request_changed_is_cancelled_before_the_new_one_runs(tmp_path,
                                                                          registry):
    text = ONE_CELL.replace("steps = 4", "steps = 40").replace("checkpoint_every = 2",
                                                                "checkpoint_every = 10")
    file = write_tiny(tmp_path, text + FAST)
    out = tmp_path / "out"
    events = run_experiment(ExperimentRequest(str(file), out=str(out)), registry=registry)
    for event in events:
        if isinstance(event, JobUpdate) and event.status == "running":
            break
    events.close()
    old = ExperimentState(out).entry("train/linear")["job_id"]
    file.write_text(text.replace("steps = 40", "steps = 41") + FAST)  # a new request
    notes: list = []
    outcome = run_job(e for e in run_experiment(ExperimentRequest(str(file), out=str(out)),
                                                registry=registry) if not notes.append(e))
    assert outcome.status == "completed"
    assert any(f"cancelling its earlier job {old}" in getattr(e, "text", "") for e in notes)
    entry = ExperimentState(out).entry("train/linear")
    assert entry["job_id"] != old and entry["attempts"] == 2 and entry["step"] == 41
    assert not running_controller(old)  # the earlier job has ended


def running_controller(pid: str) -> bool:
    """Whether submitit's local controller ``pid`` runs (a zombie, not yet reaped, does not)."""
    try:
        return b"submitit" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_the_job_function_refuses_a_changed_request(finished):
    _, folder, _, _ = finished
    with pytest.raises(ConfigError, match=r"changed .* after it was submitted"):
        run_job_in_folder(str(folder), "train/linear", "0" * 16)
    with pytest.raises(ConfigError, match="has no job train/nothing"):
        run_job_in_folder(str(folder), "train/nothing", "0" * 16)


# -- choosing and refusing ----------------------------------------------------------------------
@needs_submitit
def test_slurm_is_refused_without_sbatch(tmp_path, monkeypatch, capsys):
    file = write_tiny(tmp_path, TINY)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert main(["experiment", "run", str(file), "--out", str(tmp_path / "o"), "--executor",
                 "slurm"]) == 2
    assert "needs Slurm's sbatch and srun on PATH" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_submitit_executors_are_refused_without_submitit(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed
    for kind in ("slurm", "submitit-local"):
        with pytest.raises(ConfigError, match=r"pip install 'diffstudio\[slurm\]'"):
            check_executor(kind)
    check_executor("local")  # needs nothing
    file = write_tiny(tmp_path, TINY)
    assert main(["experiment", "run", str(file), "--out", str(tmp_path / "o"), "--executor",
                 "submitit-local"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs submitit, which is not installed" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("table", "line", "words"), [
    ('kind = "slurmm"', 43, "is not one of local, slurm, submitit-local"),
    ('kind = "slurm"\ngpus_per_node = -1', 44, "'gpus_per_node' must be >= 0"),
    ('timeout_min = 0', 43, "'timeout_min' must be > 0"),
    ('log_folder = "../logs"', 43, "inside the experiment folder"),
    ('partition = 3', 43, "'partition' must be a str"),
    ('additional = { "acc ount" = "x" }', 43, "sbatch option name"),
    ('gpus = 1', 43, "unknown key 'gpus'"),
])
def test_executor_table_errors_name_the_line(registry, table, line, words):
    with pytest.raises(ConfigError) as caught:
        parse_experiment(TINY + f"\n[executor]\n{table}\n", registry, path="tiny.toml")
    assert str(caught.value).startswith(f"tiny.toml, line {line}: "), str(caught.value)
    assert words in str(caught.value)


def fake_slurm(tmp_path: Path, monkeypatch, sbatch: str) -> None:
    """``sbatch`` (this shell script) and ``srun`` (submitit looks for it) on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, body in (("sbatch", sbatch), ("srun", "exit 1\n")):
        path = bin_dir / tool
        path.write_text(f"#!/bin/sh\n{body}")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@needs_submitit
def test_the_slurm_executor_submits_an_sbatch_file_of_the_executor_table(tmp_path,
                                                                         monkeypatch):
    """A fake sbatch records what submitit hands Slurm."""
    fake_slurm(tmp_path, monkeypatch, f'cp "$1" {tmp_path}/submitted.sh\n'
                                      'echo "Submitted batch job 4242"\n')
    spec = ExecutorSpec(kind="slurm", partition="gpu", gpus_per_node=2, cpus_per_task=8,
                        mem_gb=32, timeout_min=90, setup=("module load cuda",),
                        additional=(("account", "proj"),))
    pool = JobPool(spec, tmp_path / "exp")
    assert pool.submit(run_job_in_folder, str(tmp_path / "exp"), "train/x", "f") == "4242"
    script = (tmp_path / "submitted.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32768MB", "#SBATCH --time=90",
                 "#SBATCH --account=proj", "module load cuda"):
        assert line in script, line
    assert str(tmp_path / "exp" / "logs" / "submitit") in script  # logs in the experiment
    pool.jobs.clear()  # nothing to watch: there is no Slurm here


@needs_submitit
def test_a_job_the_scheduler_refuses_is_failed_with_its_reason(tmp_path, monkeypatch,
                                                              registry):
    fake_slurm(tmp_path, monkeypatch, 'echo "sbatch: error: invalid partition specified: '
                                      'gpux" >&2\nexit 1\n')
    file = write_tiny(tmp_path, TINY + '\n[executor]\nkind = "slurm"\npartition = "gpux"\n'
                      'poll_seconds = 0.1\n')
    out = tmp_path / "out"
    outcome = run_job(run_experiment(ExperimentRequest(str(file), out=str(out)),
                                     registry=registry))
    assert outcome.status == "failed" and outcome.failed == ["train/linear", "train/cosine"]
    entry = ExperimentState(out).entry("train/cosine")  # tried too: the failures are per job
    assert entry["status"] == "failed"
    assert entry["error"] == ("could not submit the job: sbatch: error: invalid partition "
                              "specified: gpux")
    assert not any(key.startswith("eval/") for key in ExperimentState(out).jobs)


def test_status_shows_jobs_in_flight_while_the_coordinator_runs(tmp_path, registry, capsys):
    file = write_tiny(tmp_path, ONE_CELL + FAST)
    out = tmp_path / "out"
    experiment = load_experiment(file, registry)
    train = plan(experiment, out)[0]
    ExperimentState(out).update(train.key, status="running", fingerprint=train.fingerprint,
                                job_id="77")
    assert current_status(experiment, out)[0].status == "pending"  # nobody runs the queue
    with RunLock(out / "experiment.lock"):  # a coordinator (here: this process) runs it
        assert [j.status for j in current_status(experiment, out)] == ["running", "pending"]
        assert main(["experiment", "status", str(file), "--out", str(out)]) == 0
        assert "running  train linear" in capsys.readouterr().out
