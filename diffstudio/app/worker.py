"""Jobs out of process: an application job run in a worker process, its events streamed back.

A crash, an out-of-memory kill or a plugin's ``os.abort()`` in a job then ends that process,
not the window. :func:`run_in_process` is a job generator like the others (a front end drives
it the same way): it starts ``python -m diffstudio.app.worker JOB``, sends the request as one
JSON line on the child's stdin, and yields the events the child writes, one JSON line each, on
a private copy of its stdout (the child's own stdout and stderr -- prints, warnings, tracebacks
-- go to ``log``). ``stop`` on stdin, or stdin closing (the window went away), is the job's
``should_stop``: a training checkpoints and the job ends with its result.

Only the events a front end shows cross: :class:`~diffstudio.app.events.Progress`,
:class:`~diffstudio.app.events.Note`, the experiment's ``JobUpdate`` and ``Done`` with the
result. The wire format is JSON with the types named from a fixed list (:data:`WIRE_TYPES`);
nothing is unpickled. When the child ends without a result, :class:`WorkerCrashed` says how it
ended (the signal's name), where its log is, and the log's last lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from diffstudio.app.events import Done, Note, Progress
from diffstudio.app.threaded import StopCheck
from diffstudio.errors import DiffstudioError

__all__ = [
    "JOBS",
    "WIRE_TYPES",
    "WorkerCrashed",
    "decode",
    "encode",
    "main",
    "run_experiment_in_process",
    "run_in_process",
]

#: How long a stopped or abandoned child gets to checkpoint before it is killed.
STOP_GRACE_SECONDS = 60.0
_LOG_TAIL_LINES = 30


class WorkerCrashed(DiffstudioError):
    """The worker process ended without a result; ``log`` is its output, ``tail`` the end."""

    def __init__(self, message: str, log: Path, tail: str) -> None:
        super().__init__(message)
        self.log = log
        self.tail = tail


def _experiment_types() -> list[type]:
    from diffstudio.app.experiment import ExperimentOutcome, ExperimentRequest, JobUpdate

    return [ExperimentOutcome, ExperimentRequest, JobUpdate]


def _wire_types() -> dict[str, type]:
    return {cls.__name__: cls for cls in (Progress, Note, Done, *_experiment_types())}


#: The dataclasses that may cross, by name (filled on first use: importing the experiment
#: module is not free).
WIRE_TYPES: dict[str, type] = {}


def _types() -> dict[str, type]:
    if not WIRE_TYPES:
        WIRE_TYPES.update(_wire_types())
    return WIRE_TYPES


def _run_experiment(request: Any, should_stop: StopCheck) -> Iterator[Any]:
    from diffstudio.app.experiment import run_experiment

    for event in run_experiment(request, should_stop=should_stop):
        if isinstance(event, Done):
            # The planned jobs hold the parsed experiment; the window reads only the counts.
            yield Done(dataclasses.replace(event.result, jobs=[]))
        else:
            yield event


def run_experiment_in_process(request: Any, *, log: str | os.PathLike[str],
                              should_stop: StopCheck | None = None) -> Iterator[Any]:
    """:func:`~diffstudio.app.experiment.run_experiment` in a worker process. When the worker
    dies, the job it was running is marked failed -- in the grid (a ``JobUpdate``) and in the
    queue's ``state.json`` (with the reason) -- and the others stay as they were."""
    from diffstudio.app.experiment import ExperimentState, JobUpdate

    running: dict[str, Any] = {}

    def on_crash(message: str) -> Iterator[Any]:
        for update in list(running.values()):
            if request.out:
                ExperimentState(request.out).update(update.key, status="failed",
                                                    finished=time.time(), error=message)
            yield dataclasses.replace(update, status="failed", error=message)
            yield Note(f"{update.key} failed: {message}", level="warning")

    for event in run_in_process("experiment", request, log=log, should_stop=should_stop,
                                on_crash=on_crash):
        if isinstance(event, JobUpdate):
            if event.status == "running":
                running[event.key] = event
            else:
                running.pop(event.key, None)
        yield event


#: The jobs a worker runs: name -> function(request, should_stop) yielding events.
JOBS: dict[str, Callable[[Any, StopCheck], Iterator[Any]]] = {"experiment": _run_experiment}


# -- the wire format ------------------------------------------------------------------------------
def encode(value: Any) -> Any:
    """``value`` as JSON data: dataclasses of :data:`WIRE_TYPES` by name, paths, lists, dicts
    and plain values; TypeError for anything else."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _types().get(name) is not type(value):
            raise TypeError(f"a {name} cannot be sent between processes")
        return {"__type__": name, **{f.name: encode(getattr(value, f.name))
                                      for f in dataclasses.fields(value)}}
    if isinstance(value, Path):
        return {"__path__": str(value)}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {str(key): encode(item) for key, item in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"a {type(value).__name__} cannot be sent between processes")


def decode(data: Any) -> Any:
    """The inverse of :func:`encode`; ValueError for a type name not in :data:`WIRE_TYPES`."""
    if isinstance(data, list):
        return [decode(item) for item in data]
    if not isinstance(data, dict):
        return data
    if "__path__" in data:
        return Path(data["__path__"])
    if "__type__" in data:
        cls = _types().get(str(data["__type__"]))
        if cls is None:
            raise ValueError(f"unknown event type {data['__type__']!r} from the worker")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: decode(item) for key, item in data.items() if key in names})
    return {key: decode(item) for key, item in data.items()}


def _forwarded(event: Any) -> bool:
    """What a front end shows crosses; trainer events (previews hold tensors) stay behind."""
    return isinstance(event, Progress | Note | Done) or type(event).__name__ in _types()


# -- the parent side ------------------------------------------------------------------------------
def _ended(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def run_in_process(job: str, request: Any, *, log: str | os.PathLike[str],
                   should_stop: StopCheck | None = None,
                   on_crash: Callable[[str], Iterator[Any]] | None = None) -> Iterator[Any]:
    """Run the job ``job`` (a key of :data:`JOBS`) on ``request`` in a worker process and
    yield its events; see the module docstring. The child sees the same modules and plugins
    (this process's ``sys.path`` as its ``PYTHONPATH``). ``on_crash(message)`` may yield last
    events (the experiment marks its running cell failed) before :class:`WorkerCrashed`."""
    if job not in JOBS:
        raise ValueError(f"no worker job {job!r}; one of {sorted(JOBS)}")
    log_path = Path(log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(entry for entry in sys.path if entry)}
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "diffstudio.app.worker", job], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=log_file, env=env, text=True, encoding="utf-8",
            bufsize=1)
    assert child.stdin is not None and child.stdout is not None
    stopped = threading.Event()

    def send_stop() -> None:
        if not stopped.is_set():
            stopped.set()
            with contextlib.suppress(OSError, ValueError):  # the child has gone already
                child.stdin.write("stop\n")  # type: ignore[union-attr]
                child.stdin.flush()  # type: ignore[union-attr]

    def watch() -> None:
        while child.poll() is None and not stopped.is_set():
            if should_stop is not None and should_stop():
                send_stop()
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, name=f"worker-{job}-stop", daemon=True)
    result: Done | None = None
    try:
        child.stdin.write(json.dumps(encode(request)) + "\n")
        child.stdin.flush()
        watcher.start()
        for line in child.stdout:
            if not line.strip():
                continue
            data = json.loads(line)
            if isinstance(data, dict) and "__error__" in data:  # the job raised: say it as is
                raise DiffstudioError(str(data["__error__"]))
            event = decode(data)
            if isinstance(event, Done):
                result = event
                continue
            yield event
        code = child.wait()
        if result is not None:
            yield result
            return
        message = (f"the {job} worker process {_ended(code)} before it finished; its output "
                   f"is in {log_path}")
        if on_crash is not None:
            yield from on_crash(message)
        raise WorkerCrashed(message, log_path, _tail(log_path))
    finally:
        send_stop()  # closed early (the window quits): let the job checkpoint, then go
        try:
            child.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        if watcher.is_alive():
            watcher.join(timeout=1)


# -- the child side -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """The worker: ``python -m diffstudio.app.worker JOB`` (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in JOBS:
        print(f"usage: python -m diffstudio.app.worker {{{','.join(sorted(JOBS))}}}",
              file=sys.stderr)
        return 2
    import faulthandler

    faulthandler.enable()  # a native crash leaves its Python traceback in the log
    # Events go to a private copy of stdout; whatever the job prints goes to the log.
    wire = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    request = decode(json.loads(sys.stdin.readline()))
    stop = threading.Event()

    def listen() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()  # "stop", or the parent closed the pipe (it is gone)

    threading.Thread(target=listen, name="worker-stdin", daemon=True).start()
    try:
        for event in JOBS[args[0]](request, stop.is_set):
            if _forwarded(event):
                wire.write(json.dumps(encode(event)) + "\n")
    except Exception as exc:  # the job's own error, one line, as the window would say it
        import traceback

        traceback.print_exc()  # into the log
        message = str(exc) if isinstance(exc, DiffstudioError) else \
            f"{type(exc).__name__}: {exc}"
        wire.write(json.dumps({"__error__": message}) + "\n")
        wire.close()
        return 1
    wire.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
