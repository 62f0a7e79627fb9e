"""The experiment job: every training and every evaluation cell of an experiment file, run in
order from a queue persisted in the experiment's folder, so that running it again after a kill
or a reboot skips what is finished and resumes what is not.

::

    experiments/NAME/
      experiment.toml    the file as last run (status and report read it)
      state.json         the queue: one entry per job, written atomically on every change
      experiment.lock    held while a process runs the queue (a second one is refused)
      runs/TRAINING/     one run per training (resumed from its last checkpoint)
      results/*.json     one evaluation result per cell (the comparison table reads them)
      report/            written by 'diffstudio experiment report'

A job is keyed by what it computes (``train/NAME``, ``eval/TRAINING/SAMPLER-steps50/seed0``)
and carries a fingerprint of its request: a finished job whose request changed in the file is
run again, one that did not is skipped. A job left "running" by a killed process is simply not
finished: a training resumes from its run's last checkpoint through the Trainer's own resume, an
evaluation is computed again. :func:`run_experiment` yields the inner jobs' events (their
``Progress`` bars), a :class:`JobUpdate` whenever a job changes state (the Experiments page
fills its grid from them), a ``Progress`` of the whole queue, and ``Done(ExperimentOutcome)``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from diffstudio.app.evaluate import EvalRequest, evaluate
from diffstudio.app.events import Done, Note, Progress
from diffstudio.app.experiment_file import Cell, Experiment, fingerprint, load_experiment
from diffstudio.app.threaded import StopCheck
from diffstudio.app.train import TrainRequest, train
from diffstudio.errors import Cancelled, ConfigError, DiffstudioError

__all__ = [
    "ExperimentOutcome",
    "ExperimentRequest",
    "ExperimentState",
    "JobUpdate",
    "PlannedJob",
    "current_status",
    "experiment_folder",
    "plan",
    "run_experiment",
    "run_job_in_folder",
]

STATE_FORMAT = "diffstudio-experiment-state/1"
STATUSES = ("pending", "running", "done", "failed")


def experiment_folder(experiment: Experiment, out: str | Path | None = None) -> Path:
    """Where an experiment keeps its queue, runs and results: ``out``, else
    ``./experiments/NAME``."""
    return Path(out).expanduser() if out else Path.cwd() / "experiments" / experiment.name


class ExperimentState:
    """The persistent queue, ``state.json``: ``{key: {kind, status, fingerprint, result, error,
    attempts, started, finished}}``; every change is written at once, atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "state.json"
        self.jobs: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"the experiment queue {self.path} is unreadable ({exc}); "
                                  "delete it to start the experiment's bookkeeping again (runs "
                                  "and results stay)") from exc
            if isinstance(data, dict) and isinstance(data.get("jobs"), dict):
                self.jobs = data["jobs"]

    def entry(self, key: str) -> dict[str, Any]:
        return self.jobs.get(key, {})

    def update(self, key: str, **values: Any) -> None:
        from diffstudio.engine.io import atomic_write_json

        self.jobs.setdefault(key, {}).update(values)
        atomic_write_json(self.path, {"format": STATE_FORMAT, "jobs": self.jobs})


@dataclass
class PlannedJob:
    """One job of the queue and where it stands: ``status`` is "done" only when its recorded
    fingerprint is the request's and its output is on disk."""

    key: str
    kind: str  # "train" or "evaluate"
    training: str
    cell: Cell | None
    fingerprint: str
    status: str
    result: str | None = None
    error: str = ""

    def describe(self) -> str:
        if self.cell is None:
            return f"train {self.training}"
        return (f"evaluate {self.training} with {self.cell.sampler.describe()}, "
                f"seed {self.cell.seed}")


@dataclass(frozen=True)
class JobUpdate:
    """A job changed state (a front end's grid cell): ``status`` one of pending, running,
    done, failed, skipped (done before); ``result`` the result file of a done evaluation."""

    latest_only: ClassVar[bool] = False

    key: str
    kind: str
    training: str
    sampler: str | None
    status: str
    result: str | None = None
    error: str = ""


@dataclass
class ExperimentOutcome:
    """Where the queue ended: ``status`` "completed", "stopped" (a job limit or Stop) or
    "failed" (some job failed; the others ran)."""

    folder: Path
    status: str
    ran: int
    skipped: int
    failed: list[str] = field(default_factory=list)
    jobs: list[PlannedJob] = field(default_factory=list)


@dataclass
class ExperimentRequest:
    """Run ``file`` (an experiment TOML) in ``out`` (default ``./experiments/NAME``);
    ``dry_run`` only plans; ``max_jobs`` stops after running that many jobs (the rest stay
    pending for the next run); ``retry_failed`` runs failed jobs again; ``executor`` (one of
    ``experiment_file.EXECUTORS``) overrides the file's ``[executor] kind``."""

    file: str
    out: str | None = None
    dry_run: bool = False
    max_jobs: int | None = None
    retry_failed: bool = True
    executor: str | None = None


def _eval_payload(experiment: Experiment, cell: Cell) -> dict[str, Any]:
    spec = experiment.evaluation
    return {"sampler": cell.sampler.sampler, "params": cell.sampler.params, "seed": cell.seed,
            "metrics": spec.metrics, "n": spec.num_samples, "reference": spec.reference,
            "reference_params": spec.reference_params, "reference_limit": spec.reference_limit,
            "weights": spec.weights, "resize_to": spec.resize_to,
            "kid": [spec.kid_subsets, spec.kid_subset_size]}


def _run_dir(folder: Path, training: str) -> Path:
    return folder / "runs" / training


def _train_finished(run_dir: Path, settings: dict[str, Any]) -> bool:
    from diffstudio.engine.runs import Run

    run = Run(run_dir)
    if not run.exists():
        return False
    checkpoint = run.latest_checkpoint()
    if checkpoint is None:
        return False
    try:
        total = run.config().total_steps
    except DiffstudioError:
        return False
    return total is not None and Run.checkpoint_step(checkpoint) >= total


def plan(experiment: Experiment, folder: str | Path) -> list[PlannedJob]:
    """Every job in the order it runs (each training, then its cells), with its status from
    the queue and the disk."""
    folder = Path(folder)
    state = ExperimentState(folder)
    jobs: list[PlannedJob] = []
    for training in experiment.trainings:
        train_print = fingerprint(training.request_payload())
        key = f"train/{training.name}"
        entry = state.entry(key)
        status = entry.get("status", "pending")
        if entry.get("fingerprint") != train_print or (
                status == "done" and not _train_finished(_run_dir(folder, training.name),
                                                         training.settings)):
            status = "pending"
        if status == "running":
            status = "pending"  # a killed process: not finished
        jobs.append(PlannedJob(key, "train", training.name, None, train_print, status,
                               error=entry.get("error", "")))
        for cell in experiment.cells():
            if cell.training != training.name:
                continue
            cell_print = fingerprint({"train": train_print, **_eval_payload(experiment, cell)})
            entry = state.entry(cell.key)
            status = entry.get("status", "pending")
            result = entry.get("result")
            if entry.get("fingerprint") != cell_print or status == "running" or (
                    status == "done" and not (result and (folder / result).is_file())):
                status = "pending"
            jobs.append(PlannedJob(cell.key, "evaluate", training.name, cell, cell_print,
                                   status, result if status == "done" else None,
                                   entry.get("error", "")))
    return jobs


def current_status(experiment: Experiment, folder: str | Path) -> list[PlannedJob]:
    """:func:`plan`, but while a process runs the queue (it holds ``experiment.lock``) the
    jobs its ``state.json`` says are running show as "running" (for ``status``: a cluster's
    jobs run for hours), not as the "pending" a new run would take them for."""
    from diffstudio.engine.run_lock import RunLock

    jobs = plan(experiment, folder)
    if RunLock(Path(folder) / "experiment.lock").holder() is not None:
        state = ExperimentState(folder)
        for job in jobs:
            if job.status == "pending" and state.entry(job.key).get("status") == "running":
                job.status = "running"
    return jobs


def _update(job: PlannedJob, status: str, **extra: Any) -> JobUpdate:
    return JobUpdate(job.key, job.kind, job.training,
                     job.cell.sampler.name if job.cell else None, status,
                     extra.get("result"), extra.get("error", ""))


def _inner(events: Iterator[Any]) -> Iterator[Any]:
    """An inner job's events without its Done (the experiment's own Done ends the drive);
    returns the inner result."""
    result = None
    try:
        for event in events:
            if isinstance(event, Done):
                result = event.result
                continue
            yield event
    finally:
        events.close()  # type: ignore[attr-defined]
    return result


def run_experiment(
    request: ExperimentRequest, *, registry: Any = None, should_stop: StopCheck | None = None
) -> Iterator[Any]:
    """Validate the whole file first, then run the queue; see the module docstring."""
    if registry is None:
        from diffstudio.plugin_manager import load_plugins

        registry = load_plugins()
    experiment = load_experiment(request.file, registry)
    folder = experiment_folder(experiment, request.out)
    if request.max_jobs is not None and request.max_jobs < 0:
        raise ConfigError(f"--max-jobs must be 0 or more, got {request.max_jobs}")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} is a file; choose a folder for the experiment")
    spec = experiment.executor
    if request.executor is not None:
        from dataclasses import replace

        from diffstudio.app.experiment_file import EXECUTORS

        if request.executor not in EXECUTORS:
            raise ConfigError(f"--executor {request.executor!r} is not one of "
                              f"{', '.join(EXECUTORS)}")
        spec = replace(spec, kind=request.executor)
    jobs = plan(experiment, folder)
    if request.dry_run:
        yield Done(ExperimentOutcome(folder, "planned", 0, 0, jobs=jobs))
        return
    from diffstudio.app.experiment_executor import check_executor
    from diffstudio.engine.io import atomic_write_text, check_writable
    from diffstudio.engine.run_lock import RunLock

    check_executor(spec.kind)  # before anything is written

    problem = check_writable(folder)
    if problem is not None:
        from diffstudio.errors import StorageError

        raise StorageError(f"cannot write the experiment folder {folder}: {problem}; give "
                           "--out DIR in a folder you can write to")
    folder.mkdir(parents=True, exist_ok=True)
    lock = RunLock(folder / "experiment.lock", what=f"the experiment {folder}").acquire()
    try:
        atomic_write_text(folder / "experiment.toml", experiment.text)
        if spec.kind == "local":
            yield from _run_queue(experiment, folder, jobs, request, registry, should_stop)
        else:
            yield from _run_pool(folder, jobs, request, spec, should_stop,
                                 safe_mode=bool(getattr(registry, "safe_mode", False)))
    finally:
        lock.release()


def _run_queue(experiment: Experiment, folder: Path, jobs: list[PlannedJob],
               request: ExperimentRequest, registry: Any, should_stop: StopCheck | None
               ) -> Iterator[Any]:
    state = ExperimentState(folder)
    total = len(jobs)
    started = time.perf_counter()
    ran = skipped = 0
    failed: list[str] = []
    blocked: set[str] = set()  # trainings that failed: their cells cannot run
    status = "completed"
    for job in jobs:
        if job.status == "done":
            skipped += 1
            yield _update(job, "skipped", result=job.result)
    for job in jobs:
        yield Progress("experiment", sum(j.status == "done" for j in jobs), total,
                       time.perf_counter() - started, unit="job", detail=job.describe())
        if job.status == "done" or (job.status == "failed" and not request.retry_failed):
            continue
        if job.training in blocked:
            continue
        if (request.max_jobs is not None and ran >= request.max_jobs) or (
                should_stop is not None and should_stop()):
            status = "stopped"
            break
        attempts = int(state.entry(job.key).get("attempts", 0)) + 1
        state.update(job.key, kind=job.kind, status="running", fingerprint=job.fingerprint,
                     attempts=attempts, started=time.time(), error="")
        yield _update(job, "running")
        try:
            if job.kind == "train":
                outcome = yield from _train(experiment, folder, job, registry, should_stop)
                if outcome.status != "completed":  # Stop pressed: resumes next time
                    state.update(job.key, status="pending")
                    yield _update(job, "pending")
                    status = "stopped"
                    break
                state.update(job.key, status="done", finished=time.time(),
                             result=str(Path("runs") / job.training), step=outcome.step)
                job.status = "done"
                yield _update(job, "done", result=str(Path("runs") / job.training))
            else:
                result_file = yield from _evaluate(experiment, folder, job, registry,
                                                   should_stop)
                state.update(job.key, status="done", finished=time.time(), result=result_file)
                job.status, job.result = "done", result_file
                yield _update(job, "done", result=result_file)
        except (Cancelled, KeyboardInterrupt, GeneratorExit):
            state.update(job.key, status="pending")  # interrupted, not failed
            raise
        except Exception as exc:
            message = str(exc) if isinstance(exc, DiffstudioError) else \
                f"{type(exc).__name__}: {exc}"
            state.update(job.key, status="failed", finished=time.time(), error=message)
            job.status, job.error = "failed", message
            failed.append(job.key)
            if job.kind == "train":
                blocked.add(job.training)
            yield _update(job, "failed", error=message)
            yield Note(f"{job.describe()} failed: {message}", level="warning")
        ran += 1
    if status == "completed" and failed:
        status = "failed"
    done = sum(j.status == "done" for j in jobs)
    yield Progress("experiment", done, total, time.perf_counter() - started, unit="job")
    yield Done(ExperimentOutcome(folder, status, ran, skipped, failed, jobs))


def _train(experiment: Experiment, folder: Path, job: PlannedJob, registry: Any,
           should_stop: StopCheck | None) -> Iterator[Any]:
    from diffstudio.engine.runs import Run

    spec = experiment.training(job.training)
    run_dir = _run_dir(folder, job.training)
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    if Run.is_run(run_dir):  # killed before: the Trainer resumes from the last checkpoint
        request = TrainRequest(resume=str(run_dir), settings=spec.settings)
        yield Note(f"resuming the training {job.training} from {run_dir}")
    else:
        request = TrainRequest(out=str(run_dir), settings=spec.settings)
    return (yield from _inner(train(request, registry=registry, should_stop=should_stop)))


def _evaluate(experiment: Experiment, folder: Path, job: PlannedJob, registry: Any,
              should_stop: StopCheck | None) -> Iterator[Any]:
    spec = experiment.evaluation
    cell = job.cell
    assert cell is not None
    relative = str(Path("results") / cell.file_name)
    request = EvalRequest(
        location=str(_run_dir(folder, job.training)), sampler=cell.sampler.sampler,
        sampler_params=cell.sampler.params, num_samples=spec.num_samples, seed=cell.seed,
        sample_batch_size=spec.sample_batch_size, device=spec.device,
        reference=spec.reference or None, reference_params=spec.reference_params,
        reference_limit=spec.reference_limit, metrics=spec.metrics, weights=spec.weights,
        resize_to=spec.resize_to, inception_batch_size=spec.inception_batch_size,
        kid_subsets=spec.kid_subsets, kid_subset_size=spec.kid_subset_size,
        out=str(folder / relative), write=True,
    )
    (folder / "results").mkdir(parents=True, exist_ok=True)
    (folder / relative).unlink(missing_ok=True)  # of a killed run, before its state said done
    outcome = yield from _inner(evaluate(request, registry=registry, should_stop=should_stop))
    if outcome is None:
        raise Cancelled("the evaluation ended without a result")
    if outcome.write_error:
        from diffstudio.errors import StorageError

        raise StorageError(outcome.write_error)
    return str(Path(outcome.path).relative_to(folder)) if outcome.path else relative


# -- the submitit executor: a job per training and per cell --------------------------------------
def _drain(events: Iterator[Any], show: Any) -> Any:
    """Drive an inner job generator to its end, showing its events; its return value."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        show(event)


class _LogPrinter:
    """A job's events as lines of its log: notes, and progress every tenth or half minute."""

    def __init__(self) -> None:
        self.shown: dict[str, tuple[int, float]] = {}

    def __call__(self, event: Any) -> None:
        if isinstance(event, Note):
            print(f"[{event.level}] {event.text}", flush=True)
        elif isinstance(event, Progress) and event.total:
            last_tenth, last_time = self.shown.get(event.stage, (-1, 0.0))
            tenth = event.done * 10 // event.total
            if tenth != last_tenth or time.monotonic() - last_time > 30:
                self.shown[event.stage] = (tenth, time.monotonic())
                print(f"{event.stage}: {event.done}/{event.total} {event.unit}", flush=True)


def run_job_in_folder(folder: str, key: str, job_fingerprint: str, safe_mode: bool = False
                      ) -> dict[str, Any]:
    """Run the job ``key`` of the experiment in ``folder`` to its end in this process: what
    a submitit job runs on its node. It reads the experiment the coordinator wrote
    (``folder/experiment.toml``), loads the plugins as diffstudio does, writes the run or the
    result file into the folder, prints its progress (the job's log) and returns where its
    output is. It never writes ``state.json``: the coordinator records the outcome.
    ``safe_mode``: the coordinator's registry was in safe mode (built-in plugins only); else
    the plugins load as diffstudio loads them (settings, ``DIFFSTUDIO_LOAD_PLUGINS``)."""
    from diffstudio.plugin_manager import load_plugins

    where = Path(folder)
    registry = load_plugins(safe_mode=True if safe_mode else None)
    experiment = load_experiment(where / "experiment.toml", registry)
    job = next((j for j in plan(experiment, where) if j.key == key), None)
    if job is None:
        raise ConfigError(f"the experiment in {where} has no job {key}")
    if job.fingerprint != job_fingerprint:
        raise ConfigError(f"the job {key} changed in {where / 'experiment.toml'} after it was "
                          "submitted; run the experiment again")
    print(f"diffstudio: {job.describe()} in {where}", flush=True)
    show = _LogPrinter()
    if job.kind == "train":
        outcome = _drain(_train(experiment, where, job, registry, None), show)
        if outcome is None or outcome.status != "completed":
            raise Cancelled(f"the training {job.training} ended before its last step")
        return {"result": str(Path("runs") / job.training), "step": outcome.step}
    return {"result": _drain(_evaluate(experiment, where, job, registry, None), show)}


def _output_missing(folder: Path, job: PlannedJob, result: Any) -> str:
    """Why a job that ended well has no output in the folder ("" when it has)."""
    if isinstance(result, str) and result:
        path = folder / result
        if job.kind == "train":
            if _train_finished(path, {}):
                return ""
        elif path.is_file():
            return ""
    return (f"the job ended but its output {result or '(none)'} is not in {folder}; the "
            "experiment folder must be on a filesystem the nodes share")


def _free_run_of_gone_job(folder: Path, job: PlannedJob, entry: dict[str, Any]) -> str:
    """Before a training is submitted again: a job of this experiment that trained it on
    another node and was killed there (a timeout's SIGKILL, scancel, a lost node) leaves the
    run's lock, which cannot be checked from here and would refuse every later job. The
    process running the queue owns its runs (it holds the experiment's lock and none of its
    jobs trains this run now), so that lock is removed; returns the note ("" when none)."""
    import socket

    from diffstudio.engine.runs import Run

    if not entry.get("job_id"):
        return ""  # never submitted: a lock there is not a job's of this experiment
    run = Run(_run_dir(folder, job.training))
    holder = run.lock_holder()
    if holder is None or holder.host == socket.gethostname():
        return ""  # free, or on this machine, where a dead holder is seen as stale anyway
    run.lock_path.unlink(missing_ok=True)
    return (f"the run {run.path} was left locked by {holder.describe()}, the earlier job "
            f"{entry['job_id']} that is gone; the lock was removed")


def _run_pool(folder: Path, jobs: list[PlannedJob], request: ExperimentRequest, spec: Any,
              should_stop: StopCheck | None, *, safe_mode: bool = False) -> Iterator[Any]:
    """The queue through submitit: every training whose turn it is is submitted at once (up
    to ``max_parallel`` in flight), a training's cells when it is done; only this process
    writes ``state.json``. A job an earlier, killed coordinator left running is watched again
    when it still runs (or has left its outcome), else run again."""
    from diffstudio.app.experiment_executor import JobPool, SubmitError

    pool = JobPool(spec, folder)
    state = ExperimentState(folder)
    trainings = {j.training: j for j in jobs if j.kind == "train"}
    total = len(jobs)
    started = time.perf_counter()
    ran = skipped = 0
    failed: list[str] = []
    ended: set[str] = set()  # ended in this run: not submitted again
    running: dict[str, PlannedJob] = {}  # job id -> job
    draining: dict[str, PlannedJob] = {}  # job id -> job: cancelled, its outcome unwanted
    status = "completed"
    for job in jobs:
        if job.status == "done":
            skipped += 1
            yield _update(job, "skipped", result=job.result)
    for job in jobs:
        entry = state.entry(job.key)
        job_id = str(entry.get("job_id") or "")
        if (job.status == "done" or entry.get("status") != "running" or not job_id
                or entry.get("executor") != spec.kind):
            continue
        if entry.get("fingerprint") != job.fingerprint:
            if pool.attach(job_id):  # it computes what the file no longer asks for
                pool.cancel(job_id)  # the new request runs once it has ended
                draining[job_id] = job
                state.update(job.key, status="pending")
                yield Note(f"{job.describe()} changed in the file: cancelling its earlier job "
                           f"{job_id}")
        elif pool.attach(job_id):
            running[job_id] = job
            yield Note(f"{job.describe()}: watching its job {job_id} again (submitted by an "
                       "earlier run)")
            yield _update(job, "running")

    def progress(detail: str = "") -> Progress:
        return Progress("experiment", sum(j.status == "done" for j in jobs), total,
                        time.perf_counter() - started, unit="job", detail=detail)

    while True:
        if should_stop is not None and should_stop():
            for job_id in pool.cancel_all():  # a cancelled training resumes next time
                job = running.pop(job_id, None) or draining.pop(job_id)
                state.update(job.key, status="pending")
                yield _update(job, "pending")
            status = "stopped"
            break
        in_flight = {j.key for j in (*running.values(), *draining.values())}
        for job in jobs:
            if (job.key in ended or job.key in in_flight or job.status == "done"
                    or (job.status == "failed" and not request.retry_failed)):
                continue
            if job.kind == "evaluate" and trainings[job.training].status != "done":
                continue  # its training runs, failed, or is not submitted yet
            if request.max_jobs is not None and ran >= request.max_jobs:
                status = "stopped"
                break
            if pool.full():
                break
            if job.kind == "train":
                note = _free_run_of_gone_job(folder, job, state.entry(job.key))
                if note:
                    yield Note(note, level="warning")
            attempts = int(state.entry(job.key).get("attempts", 0)) + 1
            ran += 1
            try:
                job_id = pool.submit(run_job_in_folder, str(folder), job.key, job.fingerprint,
                                     safe_mode)
            except SubmitError as exc:  # this job fails; the others are tried
                state.update(job.key, kind=job.kind, status="failed",
                             fingerprint=job.fingerprint, attempts=attempts,
                             finished=time.time(), error=str(exc), executor=spec.kind)
                job.status, job.error = "failed", str(exc)
                ended.add(job.key)
                failed.append(job.key)
                yield _update(job, "failed", error=str(exc))
                yield Note(f"{job.describe()} failed: {exc}", level="warning")
                continue
            state.update(job.key, kind=job.kind, status="running",
                         fingerprint=job.fingerprint, attempts=attempts, started=time.time(),
                         error="", executor=spec.kind, job_id=job_id,
                         log=str(pool.log_of(job_id).relative_to(folder)))
            running[job_id] = job
            in_flight.add(job.key)
            yield _update(job, "running")
            yield progress(f"submitted {job.describe()} as job {job_id}")
        if not running and not draining:
            break
        time.sleep(spec.poll_seconds)
        for end in pool.finished():
            if draining.pop(end.job_id, None) is not None:
                continue  # a cancelled earlier job has ended: its job may be submitted
            job = running.pop(end.job_id)
            ended.add(job.key)
            result = end.value.get("result") if isinstance(end.value, dict) else None
            error = end.error or _output_missing(folder, job, result)
            if error:
                log = pool.log_of(end.job_id).relative_to(folder)
                message = f"{error} (job {end.job_id}, log {log})"
                state.update(job.key, status="failed", finished=time.time(), error=message,
                             log_tail=end.tail)
                job.status, job.error = "failed", message
                failed.append(job.key)
                yield _update(job, "failed", error=message)
                yield Note(f"{job.describe()} failed: {message}" +
                           (f"\n{end.tail}" if end.tail else ""), level="warning")
            else:
                extra = {"step": end.value["step"]} if "step" in end.value else {}
                state.update(job.key, status="done", finished=time.time(), result=result,
                             **extra)
                job.status, job.result = "done", result
                yield _update(job, "done", result=result)
            yield progress(job.describe())
    if status == "completed" and failed:
        status = "failed"
    yield progress()
    yield Done(ExperimentOutcome(folder, status, ran, skipped, failed, jobs))
