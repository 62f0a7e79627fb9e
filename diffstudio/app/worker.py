"""Jobs out of process: an application job run in a worker process, its events streamed back.

A crash, an out-of-memory kill or a plugin's ``os.abort()`` in a job then ends that process,
not the window. :func:`run_in_process` is a job generator like the others (a front end drives
it the same way): it starts ``python -m diffstudio.app.worker JOB``, sends the request as one
JSON line on the child's stdin, and yields the events the child writes, one JSON line each, on
a private copy of its stdout (the child's own stdout and stderr -- prints, warnings, tracebacks
-- go to ``log``). ``stop`` on stdin, or stdin closing (the window went away), is the job's
``should_stop``: a training checkpoints and the job ends with its result.

Two jobs run there: ``"experiment"`` (:func:`run_experiment_in_process`) and ``"train"``
(:func:`~diffstudio.app.train.train` on a :class:`~diffstudio.app.train.TrainRequest`, the
Train page's job). Only the events a front end shows cross (:data:`FORWARDED`):
:class:`~diffstudio.app.events.Progress`, :class:`~diffstudio.app.events.Note`, the
experiment's ``JobUpdate``, the trainer's ``TrainEvent`` (for a training) and ``Done`` with the
result. A ``latest_only`` event (a Progress before every step) is coalesced in the child: at
most one each :data:`LATEST_INTERVAL` seconds crosses, and the newest one always does before
any other event, so the pipe stays small at thousands of steps a second.

The wire format is JSON with the types named from a fixed list (:data:`WIRE_TYPES`); nothing
is unpickled. Arrays (a training's preview) cross as ``{"__ndarray__": base64 of np.save}``
read back with ``allow_pickle=False``; preview images go as float16 (for display: far finer
than the screen's 8 bits), points as float32. A :class:`~diffstudio.engine.runs.Run` crosses as
its folder. ``pause`` and ``resume`` on stdin hold the job between two events in the child (a
training between two steps; the trainer counts the time held nowhere). When the child ends
without a result, :class:`WorkerCrashed` says how it ended (the signal's name), where its log
is, and the log's last lines.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import importlib
import io
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

from diffstudio.app.events import Done, Note
from diffstudio.app.threaded import StopCheck
from diffstudio.errors import DiffstudioError

__all__ = [
    "FORWARDED",
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
#: At most one ``latest_only`` event (a Progress) crosses per this many seconds.
LATEST_INTERVAL = 0.05


class WorkerCrashed(DiffstudioError):
    """The worker process ended without a result; ``log`` is its output, ``tail`` the end."""

    def __init__(self, message: str, log: Path, tail: str) -> None:
        super().__init__(message)
        self.log = log
        self.tail = tail


#: The dataclasses that may cross, by name, with the module that defines each (imported only
#: when one arrives: a window that never trains out of process never imports the trainer here).
WIRE_TYPES: dict[str, str] = {
    "Progress": "diffstudio.app.events",
    "Note": "diffstudio.app.events",
    "Done": "diffstudio.app.events",
    "ExperimentOutcome": "diffstudio.app.experiment",
    "ExperimentRequest": "diffstudio.app.experiment",
    "JobUpdate": "diffstudio.app.experiment",
    "TrainRequest": "diffstudio.app.train",
    "TrainEvent": "diffstudio.engine.training",
    "TrainResult": "diffstudio.engine.training",
}

#: The events each job sends (by type name); anything else it yields stays in the child.
FORWARDED: dict[str, frozenset[str]] = {
    "experiment": frozenset({"Progress", "Note", "Done", "JobUpdate"}),
    "train": frozenset({"Progress", "Note", "Done", "TrainEvent"}),
}


def _wire_type(name: str) -> type | None:
    """The class a type name on the wire stands for, or None for a name not in the list."""
    module = WIRE_TYPES.get(name)
    if module is None:
        return None
    cls = getattr(importlib.import_module(module), name, None)
    return cls if isinstance(cls, type) else None


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


def _display_array(values: Any) -> Any:
    """A preview as it crosses: a CPU array; images (N, C, H, W) as float16 (only drawn),
    points as float32."""
    import numpy as np

    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    array = np.asarray(values)
    return array.astype(np.float16 if array.ndim == 4 else np.float32, copy=False)


def _run_train(request: Any, should_stop: StopCheck) -> Iterator[Any]:
    from diffstudio.app.train import train

    for event in train(request, should_stop=should_stop):
        if getattr(event, "kind", None) == "preview" and event.images is not None:
            event = dataclasses.replace(event, images=_display_array(event.images))
        yield event


def train_in_process(request: Any, *, log: str | os.PathLike[str],
                     should_stop: StopCheck | None = None,
                     should_pause: StopCheck | None = None,
                     env: dict[str, str] | None = None) -> Iterator[Any]:
    """:func:`~diffstudio.app.train.train` in a worker process: the same events (previews as
    arrays, see the module docstring) and ``Done(TrainResult)``; ``should_pause`` holds the
    trainer between two steps while it is true."""
    return run_in_process("train", request, log=log, should_stop=should_stop,
                          should_pause=should_pause, env=env)


#: The pids of the worker processes this process has running.
WORKER_PIDS: set[int] = set()

#: The jobs a worker runs: name -> function(request, should_stop) yielding events.
JOBS: dict[str, Callable[[Any, StopCheck], Iterator[Any]]] = {
    "experiment": _run_experiment,
    "train": _run_train,
}


# -- the wire format ------------------------------------------------------------------------------
def encode(value: Any) -> Any:
    """``value`` as JSON data: dataclasses of :data:`WIRE_TYPES` by name, paths, lists, dicts
    and plain values; TypeError for anything else."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if name not in WIRE_TYPES or _wire_type(name) is not type(value):
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
    if type(value).__module__ == "numpy" and hasattr(value, "dtype"):
        return _encode_array(value)
    run_class = _run_class() if type(value).__name__ == "Run" else None
    if run_class is not None and isinstance(value, run_class):
        return {"__run__": str(value.path)}
    raise TypeError(f"a {type(value).__name__} cannot be sent between processes")


def decode(data: Any) -> Any:
    """The inverse of :func:`encode`; ValueError for a type name not in :data:`WIRE_TYPES`."""
    if isinstance(data, list):
        return [decode(item) for item in data]
    if not isinstance(data, dict):
        return data
    if "__path__" in data:
        return Path(data["__path__"])
    if "__ndarray__" in data:
        import numpy as np

        return np.load(io.BytesIO(base64.b64decode(data["__ndarray__"])), allow_pickle=False)
    if "__run__" in data:
        return _run_class()(data["__run__"])
    if "__type__" in data:
        cls = _wire_type(str(data["__type__"]))
        if cls is None:
            raise ValueError(f"unknown event type {data['__type__']!r} from the worker")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: decode(item) for key, item in data.items() if key in names})
    return {key: decode(item) for key, item in data.items()}


def _encode_array(array: Any) -> dict[str, str]:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return {"__ndarray__": base64.b64encode(buffer.getvalue()).decode("ascii")}


def _run_class() -> type:
    from diffstudio.engine.runs import Run

    return Run


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
                   should_pause: StopCheck | None = None,
                   on_crash: Callable[[str], Iterator[Any]] | None = None,
                   env: dict[str, str] | None = None) -> Iterator[Any]:
    """Run the job ``job`` (a key of :data:`JOBS`) on ``request`` in a worker process and
    yield its events; see the module docstring. The child sees the same modules and plugins
    (this process's ``sys.path`` as its ``PYTHONPATH``) and this environment with ``env``
    laid over it (``DIFFSTUDIO_SAFE_MODE``, ``OMP_NUM_THREADS``). ``should_stop`` and
    ``should_pause`` are polled ten times a second and sent to the child as ``stop``,
    ``pause`` and ``resume``. ``on_crash(message)`` may yield last events (the experiment
    marks its running cell failed) before :class:`WorkerCrashed`; the child's ``pid`` is in
    :data:`WORKER_PIDS` while it runs."""
    if job not in JOBS:
        raise ValueError(f"no worker job {job!r}; one of {sorted(JOBS)}")
    log_path = Path(log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1",
                 "PYTHONPATH": os.pathsep.join(entry for entry in sys.path if entry),
                 **(env or {})}
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "diffstudio.app.worker", job], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=log_file, env=child_env, bufsize=0)
    assert child.stdin is not None and child.stdout is not None
    WORKER_PIDS.add(child.pid)
    stopped = threading.Event()
    writing = threading.Lock()  # the watcher and the closing thread both write commands

    def send(command: str) -> None:
        with writing, contextlib.suppress(OSError, ValueError):  # the child has gone already
            child.stdin.write(command.encode() + b"\n")  # type: ignore[union-attr]

    def send_stop() -> None:
        if not stopped.is_set():
            stopped.set()
            send("stop")

    def watch() -> None:
        paused = False
        while child.poll() is None and not stopped.is_set():
            if should_stop is not None and should_stop():
                send_stop()
                return
            if should_pause is not None and bool(should_pause()) != paused:
                paused = not paused
                send("pause" if paused else "resume")
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, name=f"worker-{job}-stop", daemon=True)
    result: Done | None = None
    try:
        send(json.dumps(encode(request)))
        watcher.start()
        # Line by line as they come (iterating a text stream reads ahead and holds them back).
        for line in iter(child.stdout.readline, b""):
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
        WORKER_PIDS.discard(child.pid)
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
    stop, paused = threading.Event(), threading.Event()

    def listen() -> None:
        for line in sys.stdin:
            command = line.strip()
            if command == "stop":
                break
            if command == "pause":
                paused.set()
            elif command == "resume":
                paused.clear()
        stop.set()  # "stop", or the parent closed the pipe (it is gone)

    threading.Thread(target=listen, name="worker-stdin", daemon=True).start()
    forwarded = FORWARDED[args[0]]
    pending: Any = None  # the newest latest-only event not sent yet
    sent_at = 0.0

    def send(event: Any) -> None:
        wire.write(json.dumps(encode(event)) + "\n")

    try:
        for event in JOBS[args[0]](request, stop.is_set):
            if type(event).__name__ in forwarded:
                if not getattr(event, "latest_only", False):
                    if pending is not None:  # the newest progress before what follows it
                        send(pending)
                        pending = None
                    send(event)
                elif time.monotonic() - sent_at < LATEST_INTERVAL:
                    pending = event
                else:
                    send(event)
                    pending, sent_at = None, time.monotonic()
            if paused.is_set():  # hold the job here, between two of its events
                if pending is not None:
                    send(pending)
                    pending = None
                while paused.is_set() and not stop.is_set():
                    time.sleep(0.05)
        if pending is not None:
            send(pending)
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
