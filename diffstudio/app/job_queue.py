"""The persistent job queue: train, sample, evaluate, export and experiment jobs in one SQLite
file in the workspace, run one after the other in worker processes, continued after a kill or a
reboot.

::

    WORKSPACE/.diffstudio/queue.sqlite     the queue (one row per job)
    WORKSPACE/.diffstudio/queue.lock       held by the process that runs the queue
    WORKSPACE/.diffstudio/queue-logs/ID.log    each job's output (its terminal, as it printed it)

A job is a ``diffstudio`` command (its verb and arguments, as typed: the command line is the
request, validated by the same parser when it runs) and the folder it was given in. Each runs as
``python -m diffstudio VERB ARGS`` in a child process, so a crash, an out-of-memory kill or a
plugin's ``os.abort()`` fails that job and nothing else. The child's progress -- the same
:class:`~diffstudio.app.events.Progress` its terminal bar shows -- reaches the queue through a
small JSON file (``DIFFSTUDIO_PROGRESS_FILE``, written by the CLI's ``drive``), so ``queue list``
and the window show the numbers the job's own log shows.

Statuses: pending, running, done, failed, cancelled. A job is keyed by its request (verb,
arguments, folder): adding a request that is already done is refused (``again=True`` runs it
again), one already waiting is refused as a duplicate. When the runner is killed (SIGKILL, a
reboot), its running job is left "running"; the next runner puts it back at the head of the
queue, and a training whose run folder exists by then continues with ``train --resume RUN``
(the Trainer resumes from its last checkpoint) instead of starting over. Stopping the runner
(Ctrl+C, :func:`run_queue`'s ``should_stop``) stops the running job with SIGTERM -- a
training writes a checkpoint and ends "stopped", as the window's Stop does -- and leaves it
pending; ``cancel`` of a
running job does the same and marks it cancelled.

Importing this module is cheap (no torch): the window lists the queue without the engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from diffstudio.app.events import Done, Note, Progress
from diffstudio.app.threaded import StopCheck
from diffstudio.errors import ConfigError, StorageError

__all__ = [
    "JOB_VERBS",
    "PROGRESS_FILE_VARIABLE",
    "STATUSES",
    "JobQueue",
    "QueueOutcome",
    "QueueUpdate",
    "QueuedJob",
    "queue_folder",
    "run_queue",
]

#: The ``diffstudio`` verbs a queued job may run.
JOB_VERBS = ("train", "sample", "eval", "export", "onnx", "experiment")
STATUSES = ("pending", "running", "done", "failed", "cancelled")
#: Where a child writes its latest Progress (JSON) for the queue to read.
PROGRESS_FILE_VARIABLE = "DIFFSTUDIO_PROGRESS_FILE"
FORMAT = "diffstudio-queue/1"
#: Seconds between two looks at a running child (its exit, its progress, a cancel).
POLL_SECONDS = 0.2
#: How long an interrupted child gets to write its checkpoint before it is killed.
STOP_GRACE_SECONDS = 60.0
_TAIL_LINES = 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    position REAL NOT NULL,
    verb TEXT NOT NULL,
    argv TEXT NOT NULL,
    cwd TEXT NOT NULL,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    pid INTEGER,
    exit_code INTEGER,
    progress TEXT,
    error TEXT NOT NULL DEFAULT '',
    cancel INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_key ON jobs (key);
"""


def queue_folder(workspace: str | os.PathLike[str]) -> Path:
    """Where the workspace keeps its queue, lock and job logs."""
    return Path(workspace).expanduser() / ".diffstudio"


def request_key(verb: str, argv: Sequence[str], cwd: str) -> str:
    """What identifies a request: its verb, arguments and folder."""
    text = json.dumps([verb, list(argv), cwd])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class QueuedJob:
    """One row of the queue. ``progress`` is the child's latest Progress, when it sent one."""

    id: int
    verb: str
    argv: tuple[str, ...]
    cwd: str
    key: str
    status: str
    attempts: int
    created: float
    started: float | None
    finished: float | None
    pid: int | None
    exit_code: int | None
    progress: Progress | None
    error: str
    cancel_requested: bool
    log: Path

    def command(self, *, short: bool = False) -> str:
        """The job as the user would type it (``short``: paths inside its folder relative to
        it, as they would be typed there)."""
        import shlex

        argv = list(self.argv)
        if short:
            prefix = self.cwd.rstrip(os.sep) + os.sep
            argv = [token[len(prefix):] if token.startswith(prefix) else token
                    for token in argv]
        return shlex.join(["diffstudio", self.verb, *argv])

    def describe(self) -> str:
        """One line: "#3 running  diffstudio train ... · train 120/500 steps · ETA 1:02"."""
        text = f"#{self.id} {self.status:<9} {self.command(short=True)}"
        if self.status == "running" and self.progress is not None:
            text += f" · {self.progress.describe()}"
        if self.error and self.status in ("failed", "cancelled"):
            text += f" · {self.error}"
        return text


@dataclass(frozen=True)
class QueueUpdate:
    """A job of the queue changed (a front end refreshes its row)."""

    latest_only: ClassVar[bool] = False

    id: int
    status: str
    error: str = ""


@dataclass
class QueueOutcome:
    """Where a runner ended: ``status`` "empty" (nothing left), "stopped"; counts of what ran."""

    status: str
    done: int = 0
    failed: int = 0
    cancelled: int = 0


def _progress_from(data: Any) -> Progress | None:
    if not isinstance(data, dict):
        return None
    try:
        return Progress(str(data["stage"]), int(data["done"]), int(data["total"]),
                        float(data.get("elapsed", 0.0)), str(data.get("unit", "step")),
                        None if data.get("rate") is None else float(data["rate"]),
                        str(data.get("detail", "")),
                        None if data.get("remaining") is None else float(data["remaining"]))
    except (KeyError, TypeError, ValueError):
        return None


def progress_payload(progress: Progress) -> dict[str, Any]:
    """A Progress as the JSON the child writes (and the queue stores)."""
    return {"stage": progress.stage, "done": progress.done, "total": progress.total,
            "elapsed": progress.elapsed, "unit": progress.unit, "rate": progress.rate,
            "detail": progress.detail, "remaining": progress.remaining}


class JobQueue:
    """The queue of one workspace (see the module docstring). Every method is one short
    transaction, so several processes (the CLI, the window, the runner) share the file."""

    def __init__(self, workspace: str | os.PathLike[str]) -> None:
        self.folder = queue_folder(workspace)
        self.path = self.folder / "queue.sqlite"
        self.logs = self.folder / "queue-logs"
        self._ready = False

    def _ensure(self) -> None:
        """Create the file and its tables on the first write (looking at a workspace's queue
        creates nothing), or check the format of the one there."""
        if self._ready:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(self._connect()) as db, db:
                db.executescript(_SCHEMA)
                row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
                if row is None:
                    db.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
                elif row[0] != FORMAT:
                    raise ConfigError(f"the job queue {self.path} has the format {row[0]!r}, "
                                      f"this diffstudio reads {FORMAT!r}; move it aside")
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"the job queue {self.path} is unreadable ({exc}); move it "
                               "aside to start an empty queue (runs and results stay)") from exc
        except OSError as exc:
            raise StorageError(f"cannot create the job queue in {self.folder}: {exc}") from exc
        self._ready = True

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self._ensure()
        try:
            db = self._connect()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"the job queue {self.path} is unreadable ({exc})") from exc
        try:
            with db:  # one transaction: committed, or rolled back on an error
                yield db
        except sqlite3.OperationalError as exc:
            raise StorageError(f"the job queue {self.path} could not be written ({exc})") \
                from exc
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level="IMMEDIATE")
        db.row_factory = sqlite3.Row
        return db

    # -- reading ---------------------------------------------------------------------------------
    def _job(self, row: sqlite3.Row) -> QueuedJob:
        try:
            progress = _progress_from(json.loads(row["progress"])) if row["progress"] else None
        except json.JSONDecodeError:
            progress = None
        return QueuedJob(
            row["id"], row["verb"], tuple(json.loads(row["argv"])), row["cwd"], row["key"],
            row["status"], row["attempts"], row["created"], row["started"], row["finished"],
            row["pid"], row["exit_code"], progress, row["error"], bool(row["cancel"]),
            self.logs / f"{row['id']}.log")

    def jobs(self, statuses: Sequence[str] | None = None) -> list[QueuedJob]:
        """The jobs in queue order: the finished ones by when they finished, the running one,
        then the pending ones in the order they will run."""
        if not self.path.is_file():  # nothing queued here yet
            return []
        with self._db() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY position, id").fetchall()
        jobs = [self._job(row) for row in rows if statuses is None or row["status"] in statuses]
        finished = sorted((job for job in jobs if job.status not in ("pending", "running")),
                          key=lambda job: (job.finished or job.created, job.id))
        running = [job for job in jobs if job.status == "running"]
        return finished + running + [job for job in jobs if job.status == "pending"]

    def get(self, job_id: int) -> QueuedJob:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise ConfigError(f"the queue has no job #{job_id}; 'diffstudio queue list' shows "
                              "the jobs")
        return self._job(row)

    # -- changing --------------------------------------------------------------------------------
    def add(self, verb: str, argv: Sequence[str], cwd: str | os.PathLike[str] | None = None,
            *, again: bool = False) -> QueuedJob:
        """Queue ``diffstudio VERB ARGV`` (run in ``cwd``, default the current folder)."""
        if verb not in JOB_VERBS:
            raise ConfigError(f"a queued job runs one of {', '.join(JOB_VERBS)}, not {verb!r}")
        if any(token in ("-h", "--help") for token in argv):
            raise ConfigError("--help is not a job; run 'diffstudio "
                              f"{verb} --help' to read the options")
        folder = str(Path(cwd or Path.cwd()).expanduser().resolve())
        key = request_key(verb, argv, folder)
        with self._db() as db:
            same = db.execute("SELECT id, status FROM jobs WHERE key = ? AND status IN "
                              "('pending', 'running', 'done') ORDER BY id DESC",
                              (key,)).fetchall()
            for row in same:
                if row["status"] in ("pending", "running"):
                    raise ConfigError(f"the same job is already queued as #{row['id']} "
                                      f"({row['status']})")
                if not again:
                    raise ConfigError(f"the same job already ran: #{row['id']} is done; "
                                      f"'diffstudio queue retry {row['id']}' runs it again")
            last = db.execute("SELECT MAX(position) FROM jobs").fetchone()[0]
            cursor = db.execute(
                "INSERT INTO jobs (position, verb, argv, cwd, key, status, created) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                ((last or 0.0) + 1.0, verb, json.dumps(list(argv)), folder, key, time.time()))
            job_id = int(cursor.lastrowid or 0)
        return self.get(job_id)

    def cancel(self, job_id: int) -> QueuedJob:
        """A pending job is cancelled at once; a running one is interrupted (a training writes
        its checkpoint) by its runner, then marked cancelled."""
        job = self.get(job_id)
        with self._db() as db:
            if job.status == "pending":
                db.execute("UPDATE jobs SET status = 'cancelled', finished = ?, error = "
                           "'cancelled before it started' WHERE id = ?", (time.time(), job_id))
            elif job.status == "running":
                db.execute("UPDATE jobs SET cancel = 1 WHERE id = ?", (job_id,))
            else:
                raise ConfigError(f"job #{job_id} is {job.status}; only a pending or running "
                                  "job can be cancelled")
        return self.get(job_id)

    def retry(self, job_id: int) -> QueuedJob:
        """A finished, failed or cancelled job goes back to the end of the queue."""
        job = self.get(job_id)
        if job.status in ("pending", "running"):
            raise ConfigError(f"job #{job_id} is {job.status} already")
        with self._db() as db:
            last = db.execute("SELECT MAX(position) FROM jobs").fetchone()[0]
            db.execute("UPDATE jobs SET status = 'pending', position = ?, error = '', "
                       "cancel = 0, exit_code = NULL, progress = NULL, started = NULL, "
                       "finished = NULL WHERE id = ?", ((last or 0.0) + 1.0, job_id))
        return self.get(job_id)

    def remove(self, job_id: int) -> None:
        """Forget a job that is not running (its log is deleted with it)."""
        job = self.get(job_id)
        if job.status == "running":
            raise ConfigError(f"job #{job_id} is running; cancel it first")
        with self._db() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        job.log.unlink(missing_ok=True)

    def move(self, job_id: int, index: int) -> QueuedJob:
        """Put a pending job at ``index`` (0 = next to run) among the pending jobs."""
        job = self.get(job_id)
        if job.status != "pending":
            raise ConfigError(f"job #{job_id} is {job.status}; only pending jobs can be moved")
        with self._db() as db:
            rows = db.execute("SELECT position FROM jobs WHERE status = 'pending' AND id != ? "
                              "ORDER BY position, id", (job_id,)).fetchall()
            others = [row["position"] for row in rows]
            index = max(0, min(index, len(others)))
            if not others:
                return job
            if index == 0:
                position = others[0] - 1.0
            elif index == len(others):
                position = others[-1] + 1.0
            else:
                position = (others[index - 1] + others[index]) / 2.0
            db.execute("UPDATE jobs SET position = ? WHERE id = ?", (position, job_id))
        return self.get(job_id)

    def clear(self, statuses: Sequence[str] = ("done", "cancelled")) -> int:
        """Forget the finished jobs of these statuses; returns how many."""
        bad = [status for status in statuses if status in ("pending", "running")
               or status not in STATUSES]
        if bad:
            raise ConfigError(f"only finished jobs can be cleared, not {', '.join(bad)}")
        removed = self.jobs(statuses)
        with self._db() as db:
            db.executemany("DELETE FROM jobs WHERE id = ?", [(job.id,) for job in removed])
        for job in removed:
            job.log.unlink(missing_ok=True)
        return len(removed)

    def runner(self) -> Any:
        """Who runs this queue now (a :class:`~diffstudio.engine.run_lock.LockHolder`), or
        None: no runner, or one that was killed."""
        from diffstudio.engine.run_lock import RunLock

        return RunLock(self.folder / "queue.lock").holder()

    def waiting(self) -> tuple[int, list[QueuedJob]]:
        """(how many jobs wait, the ones a killed runner left "running") while no runner runs
        the queue; (0, []) when one does or nothing waits."""
        if not self.path.is_file() or self.runner() is not None:
            return 0, []
        pending = self.jobs(("pending", "running"))
        return len(pending), [job for job in pending if job.status == "running"]

    # -- the runner's side -----------------------------------------------------------------------
    def record(self, job_id: int, **values: Any) -> None:
        """Write columns of a job's row (the runner's bookkeeping: status, pid, progress)."""
        names = ", ".join(f"{name} = ?" for name in values)
        with self._db() as db:
            db.execute(f"UPDATE jobs SET {names} WHERE id = ?", (*values.values(), job_id))

    def recover(self) -> list[QueuedJob]:
        """Jobs left "running" by a runner that is gone go back to the head of the queue
        (call only while holding the queue's lock); returns them."""
        stale = self.jobs(("running",))
        with self._db() as db:
            low = db.execute("SELECT MIN(position) FROM jobs WHERE status = 'pending'"
                             ).fetchone()[0] or 1.0
            for offset, job in enumerate(stale):
                db.execute("UPDATE jobs SET status = 'pending', pid = NULL, position = ?, "
                           "error = 'interrupted: the queue runner stopped while it ran' "
                           "WHERE id = ?", (low - len(stale) + offset, job.id))
        return [self.get(job.id) for job in stale]

    def next_pending(self) -> QueuedJob | None:
        pending = self.jobs(("pending",))
        return pending[0] if pending else None


def effective_argv(job: QueuedJob) -> list[str]:
    """What to run for ``job``: its arguments, except that a training that ran before and whose
    run folder exists now continues it (``train --resume RUN``, keeping ``--device``)."""
    argv = list(job.argv)
    if job.verb != "train" or job.attempts == 0 or "--resume" in argv:
        return argv
    out = _option(argv, "--out")
    if out is None:
        return argv
    run = Path(job.cwd, out)
    from diffstudio.engine.runs import Run

    if not Run.is_run(run):
        return argv
    resumed = ["--resume", out]
    for keep in ("--device", "--cuda"):
        value = _option(argv, keep)
        if value is not None:
            resumed += [keep, value]
    return resumed + [token for token in argv if token in ("--quiet",)]


def _option(argv: Sequence[str], name: str) -> str | None:
    for index, token in enumerate(argv):
        if token == name and index + 1 < len(argv):
            return argv[index + 1]
        if token.startswith(name + "="):
            return token.split("=", 1)[1]
    return None


def _error_line(log: Path, code: int) -> str:
    """The job's own one-line error (its last ``diffstudio VERB: ...`` line), else how it
    ended and where the log is."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines[-_TAIL_LINES:]):
        if line.startswith("diffstudio ") and (": error: " in line or ": unexpected " in line
                                               or ": stopped" in line):
            return line.strip()
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    return f"the job {how}; its output is in {log}"


def _our_process(pid: int) -> bool:
    """Whether ``pid`` is alive and a diffstudio command (a pid reused by another program is
    left alone; where that cannot be told, it is not ours)."""
    from diffstudio.engine.run_lock import pid_alive

    if not pid_alive(pid):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"diffstudio" in command


def _stop_orphan(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < deadline and _our_process(pid):
        time.sleep(POLL_SECONDS)
    if _our_process(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(POLL_SECONDS)


def _interrupt(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM for the child (a training writes a checkpoint and ends "stopped"; other jobs
    end), then wait; kill after the grace time. On Windows: terminated at once."""
    with contextlib.suppress(ProcessLookupError, OSError):
        child.terminate()
    try:
        child.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def run_queue(workspace: str | os.PathLike[str], *, should_stop: StopCheck | None = None,
              once: bool = False, wait: bool = False) -> Iterator[Any]:
    """Run the workspace's pending jobs in order until none is left (``once``: one job;
    ``wait``: keep waiting for new ones until stopped). Yields each running job's Progress
    (``detail`` names the job), a :class:`QueueUpdate` whenever a job changes status, Notes,
    and ``Done(QueueOutcome)``. One runner per workspace: a second is refused."""
    from diffstudio.engine.run_lock import RunLock

    queue = JobQueue(workspace)
    lock = RunLock(queue.folder / "queue.lock", what=f"the job queue of {workspace}").acquire()
    outcome = QueueOutcome("empty")
    try:
        for job in queue.jobs(("running",)):
            if job.pid is not None and _our_process(job.pid):
                yield Note(f"job #{job.id}'s process {job.pid} outlived the runner that "
                           "started it; stopping it (a training writes its checkpoint)")
                _stop_orphan(job.pid)
        for job in queue.recover():
            yield Note(f"job #{job.id} was interrupted when the queue last stopped; it runs "
                       "again first" + (" and continues its training" if job.verb == "train"
                                        else ""))
            yield QueueUpdate(job.id, "pending", job.error)
        while True:
            if should_stop is not None and should_stop():
                outcome.status = "stopped"
                break
            job = queue.next_pending()
            if job is None:
                if not wait:
                    break
                time.sleep(0.5)
                continue
            status = yield from _run_one(queue, job, should_stop)
            if status == "stopped":
                outcome.status = "stopped"
                break
            setattr(outcome, status, getattr(outcome, status) + 1)
            if once:
                break
    finally:
        lock.release()
    yield Done(outcome)


def _run_one(queue: JobQueue, job: QueuedJob, should_stop: StopCheck | None) -> Iterator[Any]:
    """Run one job in a child process; returns done, failed, cancelled or stopped (the runner
    was stopped: the job is pending again)."""
    argv = effective_argv(job)
    queue.logs.mkdir(parents=True, exist_ok=True)
    progress_file = queue.folder / "queue-progress" / f"{job.id}.json"
    progress_file.parent.mkdir(parents=True, exist_ok=True)
    progress_file.unlink(missing_ok=True)
    env = {**os.environ, PROGRESS_FILE_VARIABLE: str(progress_file), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(entry for entry in sys.path if entry)}
    command = [sys.executable, "-m", "diffstudio", job.verb, *argv]
    if not Path(job.cwd).is_dir():
        message = f"its folder {job.cwd} no longer exists"
        queue.record(job.id, status="failed", finished=time.time(), error=message)
        yield QueueUpdate(job.id, "failed", message)
        return "failed"
    with open(job.log, "ab") as log:
        log.write(f"\n$ {' '.join(command[2:])}    (in {job.cwd}, attempt "
                  f"{job.attempts + 1})\n".encode())
        log.flush()
        # Its own process group: Ctrl+C in the runner's terminal reaches the runner only, which
        # stops the job with SIGTERM (a training checkpoints; a Ctrl+C would not).
        flags: dict[str, Any] = (
            {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
            if os.name == "nt" else {"start_new_session": True})
        child = subprocess.Popen(command, cwd=job.cwd, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, env=env, **flags)
    queue.record(job.id, status="running", started=time.time(), finished=None, pid=child.pid,
               attempts=job.attempts + 1, error="", exit_code=None, cancel=0)
    yield QueueUpdate(job.id, "running")
    stopped = cancelled = False
    seen = 0.0
    try:
        while child.poll() is None:
            time.sleep(POLL_SECONDS)
            if should_stop is not None and should_stop() and not stopped:
                stopped = True
                yield Note(f"stopping job #{job.id} (a training writes its checkpoint)")
                _interrupt(child)
                break
            current = queue.get(job.id)
            if current.cancel_requested and not cancelled:
                cancelled = True
                yield Note(f"cancelling job #{job.id}")
                _interrupt(child)
                break
            try:
                stamp = progress_file.stat().st_mtime
            except OSError:
                continue
            if stamp != seen:
                seen = stamp
                try:
                    data = json.loads(progress_file.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError):
                    continue
                progress = _progress_from(data)
                if progress is not None:
                    queue.record(job.id, progress=json.dumps(data))
                    yield Progress(progress.stage, progress.done, progress.total,
                                   progress.elapsed, progress.unit, progress.rate,
                                   f"#{job.id} {job.verb}", progress.remaining)
    except BaseException:  # the runner itself is closed (GeneratorExit, Ctrl+C): stop the job
        if child.poll() is None:
            _interrupt(child)
        queue.record(job.id, status="pending", pid=None, error="interrupted: the queue runner "
                   "stopped while it ran")
        raise
    code = child.wait()
    with contextlib.suppress(OSError):
        data = json.loads(progress_file.read_text(encoding="utf-8"))
        if _progress_from(data) is not None:
            queue.record(job.id, progress=json.dumps(data))
    progress_file.unlink(missing_ok=True)
    now = time.time()
    if stopped:
        queue.record(job.id, status="pending", pid=None, exit_code=code,
                   error="interrupted: the queue was stopped; it continues when the queue runs")
        yield QueueUpdate(job.id, "pending")
        return "stopped"
    if cancelled:
        queue.record(job.id, status="cancelled", pid=None, exit_code=code, finished=now,
                   error="cancelled while it ran", cancel=0)
        yield QueueUpdate(job.id, "cancelled", "cancelled while it ran")
        return "cancelled"
    if code == 0:
        queue.record(job.id, status="done", pid=None, exit_code=0, finished=now)
        yield QueueUpdate(job.id, "done")
        return "done"
    message = _error_line(job.log, code)
    queue.record(job.id, status="failed", pid=None, exit_code=code, finished=now, error=message)
    yield QueueUpdate(job.id, "failed", message)
    yield Note(f"job #{job.id} failed: {message}", level="warning")
    return "failed"


def write_progress(path: str | os.PathLike[str], progress: Progress) -> None:
    """The child's side: the latest Progress, whole (temp + rename)."""
    from diffstudio.engine.io import atomic_write_json

    with contextlib.suppress(OSError):  # the queue only misses a figure; the job goes on
        atomic_write_json(path, progress_payload(progress))

