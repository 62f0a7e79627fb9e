"""The jobs of an experiment run elsewhere: one submitit job per training and per evaluation
cell, on a Slurm cluster (``slurm``) or in processes of this machine (``submitit-local``, the
same interface, used by the tests).

:class:`JobPool` is the coordinator's side: it submits a job function with its (plain, short)
arguments, re-attaches to a job it submitted before (by the id stored in ``state.json``), and
says which jobs have ended and how. The queue itself -- ``state.json``, what is done, what runs
next -- stays in :mod:`diffstudio.app.experiment`; only the process running the queue writes
``state.json``. A job writes its own output (the run, the result JSON) into the shared
experiment folder.

submitit pickles the job function and its arguments into the log folder and the job pickles
its return value there; both are written by diffstudio itself (this process, then the job) and
read by the other, inside the experiment folder. Nothing a user hands diffstudio is unpickled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffstudio.app.experiment_file import ExecutorSpec
from diffstudio.errors import ConfigError, DiffstudioError

__all__ = ["FinishedJob", "JobPool", "SubmitError", "check_executor"]

_INSTALL = "pip install 'diffstudio[slurm]'"
_TAIL_LINES = 20


def check_executor(kind: str) -> None:
    """Refuse, with what to do, an executor this environment cannot use."""
    if kind == "local":
        return
    try:
        import submitit  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"the {kind} executor needs submitit, which is not installed: "
                          f"{_INSTALL}") from exc
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if kind == "slurm" and missing:
        raise ConfigError(f"the slurm executor needs Slurm's {' and '.join(missing)} on PATH "
                          "(run diffstudio on a login node of the cluster), or use "
                          "--executor local or submitit-local")


class SubmitError(DiffstudioError):
    """The scheduler refused a job (the message is its reason, one line)."""


@dataclass
class FinishedJob:
    """A job that ended: ``value`` what the job function returned, or ``error`` (one line)
    with ``tail``, the end of its error log."""

    job_id: str
    value: Any = None
    error: str = ""
    tail: str = ""


def _tail(text: str | None, lines: int = _TAIL_LINES) -> str:
    return "\n".join((text or "").rstrip().splitlines()[-lines:])


def _summary(exc: BaseException) -> str:
    """The one line of a submitit error: the job's own exception (the last line of the trace
    submitit recorded), else why the job has no result."""
    text = str(exc)
    marker = "-" * 22
    if marker in text:  # FailedJobError: "...trace:\n-----\nTRACE\n-----\n..."
        trace = text.split(marker)[1]
        lines = [line for line in trace.splitlines() if line.strip()]
        if lines:
            last = lines[-1].strip()
            name, _, message = last.partition(": ")
            if name.startswith("diffstudio.errors.") and message:
                return message  # our own errors are one line a user can act on
            return last
    for line in text.splitlines():
        if "has not produced any output" in line:
            return f"the job ended without a result ({line.strip()})"
    return text.splitlines()[0] if text else type(exc).__name__


class JobPool:
    """The submitit executor of one experiment, its logs in ``folder/spec.log_folder``."""

    def __init__(self, spec: ExecutorSpec, folder: str | Path) -> None:
        check_executor(spec.kind)
        self.spec = spec
        self.logs = Path(folder) / spec.log_folder
        self.logs.mkdir(parents=True, exist_ok=True)
        self.executor = self._make()
        self.jobs: dict[str, Any] = {}  # job id -> submitit job

    def _make(self) -> Any:
        spec = self.spec
        if spec.kind == "slurm":
            from submitit import SlurmExecutor

            executor = SlurmExecutor(folder=self.logs)
            params: dict[str, Any] = {"time": int(spec.timeout_min), "job_name": "diffstudio"}
            if spec.partition:
                params["partition"] = spec.partition
            if spec.gpus_per_node:
                params["gpus_per_node"] = spec.gpus_per_node
            if spec.cpus_per_task:
                params["cpus_per_task"] = spec.cpus_per_task
            if spec.mem_gb:
                params["mem"] = f"{int(spec.mem_gb * 1024)}MB"
            if spec.setup:
                params["setup"] = list(spec.setup)
            if spec.additional:
                params["additional_parameters"] = dict(spec.additional)
            executor.update_parameters(**params)
            return executor
        from submitit import LocalExecutor

        executor = LocalExecutor(folder=self.logs)
        local: dict[str, Any] = {"timeout_min": spec.timeout_min}
        if spec.gpus_per_node:
            local["gpus_per_node"] = spec.gpus_per_node
        if spec.setup:
            local["setup"] = list(spec.setup)
        executor.update_parameters(**local)
        return executor

    def full(self) -> bool:
        """No more jobs may start until one ends (``max_parallel``)."""
        return bool(self.spec.max_parallel) and len(self.jobs) >= self.spec.max_parallel

    def submit(self, function: Callable[..., Any], *args: Any) -> str:
        """Submit ``function(*args)`` as one job; returns its id. :class:`SubmitError` with
        the scheduler's own words when it refuses the job (sbatch's "invalid partition")."""
        try:
            job = self.executor.submit(function, *args)
        except Exception as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            reason = lines[-1] if lines else type(exc).__name__
            raise SubmitError(f"could not submit the job: {reason}") from exc
        self.jobs[str(job.job_id)] = job
        return str(job.job_id)

    def log_of(self, job_id: str) -> Path:
        """The job's error log (submitit's ``ID_0_log.err``)."""
        return self.logs / f"{job_id}_0_log.err"

    def attach(self, job_id: str) -> bool:
        """Watch again a job submitted by an earlier coordinator: True when it is still
        running (or queued) or has left its outcome; False when it is gone without one (then
        the caller runs it again)."""
        result = self.logs / f"{job_id}_0_result.pkl"
        if self.spec.kind == "slurm":
            from submitit import SlurmJob

            job = SlurmJob(folder=self.logs, job_id=job_id)
            if not result.exists() and job.done(force_check=True):
                return False
        else:
            if not result.exists() and not _controller_alive(job_id):
                return False
            job = _AttachedLocalJob(self.logs, job_id)
        self.jobs[job_id] = job
        return True

    def cancel(self, job_id: str) -> None:
        """Cancel a job of the pool (best effort: it may be ending already); it stays in the
        pool until it has ended, so that :meth:`finished` says when."""
        with contextlib.suppress(Exception):
            self.jobs[job_id].cancel(check=False)

    def finished(self) -> list[FinishedJob]:
        """The jobs that ended since the last call (they leave the pool)."""
        ended = []
        for job_id, job in list(self.jobs.items()):
            if not job.done():
                continue
            del self.jobs[job_id]
            try:
                ended.append(FinishedJob(job_id, value=job.result()))
            except Exception as exc:  # the job's exception, or no result at all
                tail = _tail(job.stderr()) if hasattr(job, "stderr") else ""
                ended.append(FinishedJob(job_id, error=_summary(exc), tail=tail or _tail(
                    str(exc))))
        return ended

    def cancel_all(self) -> list[str]:
        """Cancel every job still in the pool (Stop); returns their ids."""
        ids = list(self.jobs)
        for job in self.jobs.values():
            with contextlib.suppress(Exception):  # already gone
                job.cancel(check=False)
        self.jobs.clear()
        return ids


def _controller_alive(job_id: str) -> bool:
    """Whether submitit's local controller ``job_id`` (its pid) still runs."""
    from diffstudio.engine.run_lock import pid_alive

    if not job_id.isdigit():
        return False
    try:
        cmdline = Path(f"/proc/{job_id}/cmdline").read_bytes()
    except OSError:
        return pid_alive(int(job_id))  # no /proc (macOS): the pid alone
    return b"submitit" in cmdline


class _AttachedLocalJob:
    """A submitit-local job of an earlier coordinator: not this process's child, so it is
    watched through its pid and its result file."""

    def __init__(self, folder: Path, job_id: str) -> None:
        from submitit.local.local import LocalJob

        self.job = LocalJob(folder=folder, job_id=job_id)
        self.job._results_timeout_s = 2  # the result is there or never will be
        self.job_id = job_id

    def done(self) -> bool:
        return self.job.paths.result_pickle.exists() or not _controller_alive(self.job_id)

    def result(self) -> Any:
        return self.job.result()

    def stderr(self) -> str | None:
        return self.job.stderr()

    def cancel(self, check: bool = False) -> None:
        import signal

        with contextlib.suppress(OSError, ValueError):
            os.kill(int(self.job_id), signal.SIGINT)
