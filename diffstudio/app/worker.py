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
is, and the log's last lines. A training on several GPUs starts the worker under ``accelerate
launch`` instead, with the request and the commands in files (see :func:`run_in_process`).
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
    "WORKER_PIDS",
    "WorkerCrashed",
    "accelerate_launch",
    "decode",
    "display_array",
    "encode",
    "main",
    "run_experiment_in_process",
    "run_in_process",
    "train_in_process",
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


def display_array(values: Any) -> Any:
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
            event = dataclasses.replace(event, images=display_array(event.images))
        yield event


def train_in_process(request: Any, *, log: str | os.PathLike[str],
                     should_stop: StopCheck | None = None,
                     should_pause: StopCheck | None = None,
                     env: dict[str, str] | None = None, processes: int = 1) -> Iterator[Any]:
    """:func:`~diffstudio.app.train.train` in a worker process: the same events (previews as
    arrays, see the module docstring) and ``Done(TrainResult)``; ``should_pause`` holds the
    trainer between two steps while it is true. ``processes`` > 1 trains data-parallel:
    ``accelerate launch --multi_gpu --num_processes N`` starts the worker once per GPU (or, for
    ``device="cpu"``, per CPU process over gloo); see :func:`run_in_process`."""
    if processes > 1 and getattr(request, "cuda_index", None) is not None:
        request = dataclasses.replace(request, cuda_index=None)  # each rank has its own GPU
    return run_in_process("train", request, log=log, should_stop=should_stop,
                          should_pause=should_pause, env=env, processes=processes)


_CONTROL_STATES = {"stop": "stop", "pause": "pause", "resume": "run"}


def accelerate_launch(processes: int) -> list[str]:
    """The ``accelerate launch`` command line (before ``-m MODULE``) for ``processes``
    data-parallel processes on this machine (multi-node: Accelerate's own config)."""
    import shutil
    import socket

    accelerate = Path(sys.executable).with_name("accelerate")
    program = str(accelerate) if accelerate.exists() else shutil.which("accelerate")
    if program is None:
        raise DiffstudioError("training on several GPUs needs Accelerate's 'accelerate' "
                              "command, which is not installed beside this Python")
    with socket.socket() as sock:  # a free port for the ranks to meet on
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return [program, "launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port)]


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
                   env: dict[str, str] | None = None, processes: int = 1) -> Iterator[Any]:
    """Run the job ``job`` (a key of :data:`JOBS`) on ``request`` in a worker process and
    yield its events; see the module docstring. The child sees the same modules and plugins
    (this process's ``sys.path`` as its ``PYTHONPATH``) and this environment with ``env``
    laid over it (``DIFFSTUDIO_SAFE_MODE``, ``OMP_NUM_THREADS``). ``should_stop`` and
    ``should_pause`` are polled ten times a second and sent to the child as ``stop``,
    ``pause`` and ``resume``. ``on_crash(message)`` may yield last events (the experiment
    marks its running cell failed) before :class:`WorkerCrashed`; the child's ``pid`` is in
    :data:`WORKER_PIDS` while it runs.

    ``processes`` > 1: ``accelerate launch --multi_gpu --num_processes N -m
    diffstudio.app.worker JOB --request FILE --control FILE``. Its ranks share the launcher's
    stdin, so the request goes in a file and the commands in a control file beside the log
    (``run``, ``pause`` or ``stop``, written whole); rank 0 decides at each step and tells the
    others (a broadcast), so that all of them stop or pause at the same step, and only rank 0
    writes events."""
    if job not in JOBS:
        raise ValueError(f"no worker job {job!r}; one of {sorted(JOBS)}")
    log_path = Path(log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1",
                 "PYTHONPATH": os.pathsep.join(entry for entry in sys.path if entry),
                 **(env or {})}
    command = [sys.executable, "-m", "diffstudio.app.worker", job]
    control: Path | None = None
    if processes > 1:
        from diffstudio.engine.io import atomic_write_text

        control = log_path.with_suffix(".control")
        request_file = log_path.with_suffix(".request.json")
        atomic_write_text(control, "run\n")
        atomic_write_text(request_file, json.dumps(encode(request)) + "\n")
        command = [*accelerate_launch(processes), "-m", "diffstudio.app.worker", job,
                   "--request", str(request_file), "--control", str(control)]
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
            env=child_env, start_new_session=control is not None)
    assert child.stdin is not None and child.stdout is not None
    WORKER_PIDS.add(child.pid)
    stopped = threading.Event()
    writing = threading.Lock()  # the watcher and the closing thread both write commands

    def send(command: str) -> None:
        with writing, contextlib.suppress(OSError, ValueError):  # the child has gone already
            if control is None:
                child.stdin.write(command.encode() + b"\n")  # type: ignore[union-attr]
                child.stdin.flush()  # type: ignore[union-attr]
            elif command in _CONTROL_STATES:
                from diffstudio.engine.io import atomic_write_text

                atomic_write_text(control, _CONTROL_STATES[command] + "\n")

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
        if control is None:
            send(json.dumps(encode(request)))
        watcher.start()
        for line in iter(child.stdout.readline, b""):  # each line as soon as it is whole
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:  # not an event (a launcher's own output): keep it in the log
                with open(log_path, "ab") as log_file:
                    log_file.write(line)
                continue
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
            if control is not None:  # the launcher and its ranks
                with contextlib.suppress(OSError):
                    os.killpg(child.pid, signal.SIGKILL)
            child.kill()
            child.wait()
        WORKER_PIDS.discard(child.pid)
        for stream in (child.stdin, child.stdout):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        if watcher.is_alive():
            watcher.join(timeout=1)


# -- the child side -------------------------------------------------------------------------------
def _control_check(path: Path, gone: threading.Event) -> StopCheck:
    """The ``should_stop`` of a data-parallel rank: rank 0 reads the control file (at most ten
    times a second) and broadcasts its decision at every step, so that every rank stops --
    or holds, each then waiting on its own reading of the file -- at the same step. ``gone``:
    the parent went away (a stop)."""
    from diffstudio.app.train import launch_rank

    rank = launch_rank()
    state: dict[str, Any] = {"at": 0.0, "value": "run", "group": None}

    def local() -> str:
        if gone.is_set():
            return "stop"
        now = time.monotonic()
        if now - state["at"] >= 0.1:
            with contextlib.suppress(OSError):
                state["value"] = path.read_text(encoding="utf-8").strip() or "run"
            state["at"] = now
        return str(state["value"])

    def should_stop() -> bool:
        import torch
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            return local() == "stop"
        if state["group"] is None:  # decisions travel on the CPU, never through the GPUs
            state["group"] = dist.group.WORLD if dist.get_backend() == "gloo" else \
                dist.new_group(backend="gloo")
        while True:
            mine = local() if rank == 0 else "run"
            flags = torch.tensor([mine == "stop", mine == "pause"], dtype=torch.int64)
            dist.broadcast(flags, src=0, group=state["group"])
            if flags[0]:
                return True
            if not flags[1]:
                return False
            while local() == "pause":  # every rank holds here, none inside a collective
                time.sleep(0.05)

    return should_stop


def _parse(args: list[str]) -> tuple[str, Path | None, Path | None] | None:
    if not args or args[0] not in JOBS:
        return None
    options = dict(zip(args[1::2], args[2::2], strict=False))
    if len(args) % 2 == 0 or set(options) - {"--request", "--control"} or \
            ("--request" in options) != ("--control" in options):
        return None
    request, control = options.get("--request"), options.get("--control")
    return args[0], Path(request) if request else None, Path(control) if control else None


def main(argv: list[str] | None = None) -> int:
    """The worker: ``python -m diffstudio.app.worker JOB [--request FILE --control FILE]``
    (see the module docstring; the files under ``accelerate launch``)."""
    parsed = _parse(sys.argv[1:] if argv is None else argv)
    if parsed is None:
        print(f"usage: python -m diffstudio.app.worker {{{','.join(sorted(JOBS))}}} "
              "[--request FILE --control FILE]", file=sys.stderr)
        return 2
    job, request_file, control_file = parsed
    import faulthandler

    from diffstudio.app.train import launch_rank

    faulthandler.enable()  # a native crash leaves its Python traceback in the log
    # Events go to a private copy of stdout; whatever the job prints goes to the log. Only
    # rank 0 of a data-parallel training writes events.
    writes = launch_rank() == 0
    wire = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    if request_file is not None:
        request = decode(json.loads(request_file.read_text(encoding="utf-8")))
    else:
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
    should_stop = stop.is_set if control_file is None else _control_check(control_file, stop)
    forwarded = FORWARDED[job] if writes else frozenset()
    pending: Any = None  # the newest latest-only event not sent yet
    sent_at = 0.0

    def send(event: Any) -> None:
        wire.write(json.dumps(encode(event)) + "\n")

    try:
        for event in JOBS[job](request, should_stop):
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
        if writes:
            wire.write(json.dumps({"__error__": message}) + "\n")
        wire.close()
        return 1
    wire.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
