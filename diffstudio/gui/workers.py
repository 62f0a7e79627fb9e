"""Background work: every job of :mod:`diffstudio.app` (train, sample, compare, interpolate,
evaluate) runs in a :class:`JobWorker`, one QThread per job, with one lifecycle: start,
progress, pause, cancel, and exactly one of succeeded / failed / cancelled.

A job is a generator of events (see :mod:`diffstudio.app`); the worker pulls it in its thread,
checks between any two events whether the user asked to pause or stop, and hands the events to
the main thread, which only paints. A stop also reaches the engine directly (the job's
``should_stop``, polled every step), so it takes effect within one step; a stopped training
writes a checkpoint first. The thread ends with its job (:func:`running_jobs` lists the live
ones). :class:`CallJob` runs one plain blocking call (loading a dataset, scanning runs).

Two small mailboxes keep the main thread from being flooded:

* :class:`EventQueue` keeps every event (the loss curve needs them all) but signals only when
  it goes from empty to non-empty; the main thread drains it in one go.
* :class:`Mailbox` keeps only the newest value (a live sampling frame): frames the screen could
  not show are replaced, never queued.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from PySide6.QtCore import QThread, QTimer, Signal

from diffstudio.app.events import Done, Note, Progress
from diffstudio.errors import Cancelled, DiffstudioError

__all__ = [
    "CallJob",
    "DeviceInfo",
    "EngineInfo",
    "EngineLoader",
    "EventQueue",
    "Job",
    "JobWorker",
    "Mailbox",
    "PreviewFrame",
    "TrainJob",
    "default_cpu_threads",
    "probe_devices",
    "running_jobs",
    "to_numpy",
]

T = TypeVar("T")
_RUNNING: set[Job] = set()  # strong references until each thread has finished


def running_jobs() -> list[Job]:
    """Jobs whose thread has been started and has not finished yet."""
    return [job for job in list(_RUNNING) if job.isRunning()]


def default_cpu_threads() -> int:
    """Intra-op CPU threads for jobs: one core fewer than the machine has (at least one), so
    that the window keeps a core to paint with. On a busy 2-core machine, PyTorch with as many
    threads as cores can run tens of times slower (OpenMP threads spin waiting for a core)."""
    return max(1, (os.cpu_count() or 2) - 1)


def _use_cpu_threads(count: int | None) -> None:
    if count:
        import torch

        torch.set_num_threads(int(count))


def to_numpy(tensor: Any) -> np.ndarray:
    """A detached float32 CPU copy of a tensor (or array)."""
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().float().cpu().numpy()
    return np.array(tensor, dtype=np.float32, copy=True)


class Mailbox(Generic[T]):
    """Holds only the newest value. :meth:`put` says whether the box was empty (so the producer
    signals once); :meth:`take` empties it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: T | None = None
        self._full = False
        self.replaced = 0  # values that were overwritten before anyone took them

    def put(self, value: T) -> bool:
        with self._lock:
            was_empty = not self._full
            if self._full:
                self.replaced += 1
            self._value, self._full = value, True
            return was_empty

    def take(self) -> T | None:
        with self._lock:
            value, self._value, self._full = self._value, None, False
            return value


class EventQueue(Generic[T]):
    """Keeps every item; :meth:`append` says whether the queue was empty (signal once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[T] = []

    def append(self, item: T) -> bool:
        with self._lock:
            self._items.append(item)
            return len(self._items) == 1

    def drain(self) -> list[T]:
        with self._lock:
            items, self._items = self._items, []
            return items


class Job(QThread):
    """One blocking call in its own thread. Subclasses implement :meth:`work`.

    Exactly one of ``succeeded(result)``, ``failed(message, traceback)`` or
    ``cancelled(message)`` is emitted, then the thread finishes.
    """

    succeeded = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal(str)

    def __init__(self, name: str) -> None:
        super().__init__()
        self.setObjectName(name)
        self._stop = threading.Event()
        self.outcome: str | None = None  # "succeeded", "failed" or "cancelled"
        self.cpu_threads: int | None = None  # PyTorch intra-op threads while the job runs
        self.finished.connect(self._forget)

    def start(self, *args: Any) -> None:
        _RUNNING.add(self)
        super().start(*args)

    def _forget(self) -> None:
        self.wait()  # `finished` arrives just before the thread has really ended
        # Drop the reference only after this signal has reached every slot: the views drop
        # theirs in their own `finished` slots, and deleting a QObject while one of its signals
        # is being delivered crashes.
        QTimer.singleShot(0, lambda: _RUNNING.discard(self))

    def request_stop(self) -> None:
        """Ask the job to stop at its next step (thread-safe)."""
        self._stop.set()

    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def work(self) -> Any:
        raise NotImplementedError

    def run(self) -> None:
        try:
            _use_cpu_threads(self.cpu_threads)
            result = self.work()
        except Cancelled as exc:
            self.outcome = "cancelled"
            self.cancelled.emit(str(exc))
        except Exception as exc:
            self.outcome = "failed"
            message = str(exc) if isinstance(exc, DiffstudioError) else (
                f"{type(exc).__name__}: {exc}"
            )
            # A worker process that died: what it printed last says more than our traceback.
            tail = getattr(exc, "tail", None)
            self.failed.emit(message, tail if isinstance(tail, str) and tail
                             else traceback.format_exc())
        else:
            self.outcome = "succeeded"
            self.succeeded.emit(result)


class CallJob(Job):
    """Runs ``function(*args, **kwargs)`` in the background (loading a dataset, scanning runs,
    saving samples)."""

    def __init__(self, name: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(name)
        self._call = (function, args, kwargs)

    def work(self) -> Any:
        function, args, kwargs = self._call
        return function(*args, **kwargs)


class JobWorker(Job):
    """Runs one job generator of :mod:`diffstudio.app`; succeeds with its ``Done`` result.

    ``make_events(should_stop)`` creates the generator (it is called in the worker thread, so
    even building the job's request objects never blocks the window). Events the job marks
    ``latest_only`` (progress, live frames) wait in one :class:`Mailbox` per type --
    :meth:`take_latest` -- and ``latest_ready`` says one arrived; every other event is kept in
    order for :meth:`drain_events` (``events_ready``). ``progress_ready`` additionally says a
    new :class:`~diffstudio.app.events.Progress` is in :meth:`take_progress`. Subclasses
    override :meth:`route` to give their events signals of their own.
    """

    events_ready = Signal()
    latest_ready = Signal(type)
    progress_ready = Signal()
    note = Signal(str, str)  # a Note's text and level ("info", "warning")
    # True: a stop closes the generator at the next event (the job is "cancelled"). False: the
    # job sees the stop through should_stop and ends by itself with a result (a training that
    # writes its checkpoint and reports "stopped at step N").
    stop_by_closing = True

    def __init__(self, name: str, make_events: Callable[[Callable[[], bool]], Any]) -> None:
        super().__init__(name)
        self._make_events = make_events
        self._paused = threading.Event()
        self._events: EventQueue[Any] = EventQueue()
        self._latest: dict[type, Mailbox[Any]] = {}
        self._latest_lock = threading.Lock()
        self.last_progress: Progress | None = None

    # -- control (thread-safe) --------------------------------------------------------------
    def set_paused(self, paused: bool) -> None:
        """Hold the job between two events (a training pauses between steps)."""
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    def is_paused(self) -> bool:
        return self._paused.is_set()

    # -- events for the main thread -----------------------------------------------------------
    def drain_events(self) -> list[Any]:
        """Every ordered event since the last drain, in order."""
        return self._events.drain()

    def take_latest(self, kind: type) -> Any:
        """The newest waiting event of class ``kind``, or None."""
        with self._latest_lock:
            box = self._latest.get(kind)
        return box.take() if box is not None else None

    def take_progress(self) -> Progress | None:
        return self.take_latest(Progress)

    def skipped(self, kind: type) -> int:
        """How many ``kind`` events were replaced before the main thread took them."""
        with self._latest_lock:
            box = self._latest.get(kind)
        return box.replaced if box is not None else 0

    def post_latest(self, event: Any) -> None:
        with self._latest_lock:
            box = self._latest.setdefault(type(event), Mailbox())
        if box.put(event):
            if isinstance(event, Progress):
                self.progress_ready.emit()
            self.latest_ready.emit(type(event))

    def post(self, event: Any) -> None:
        if self._events.append(event):
            self.events_ready.emit()

    def route(self, event: Any) -> None:
        """Deliver one event; the default keeps latest-only events newest-first, others all."""
        if isinstance(event, Progress):
            self.last_progress = event
        if isinstance(event, Note):
            self.note.emit(event.text, event.level)
        elif getattr(event, "latest_only", False):
            self.post_latest(event)
        else:
            self.post(event)

    def work(self) -> Any:
        events = self._make_events(self.stop_requested)
        try:
            for event in events:
                while self._paused.is_set() and not self.stop_requested():
                    time.sleep(0.05)
                if self.stop_by_closing and self.stop_requested():
                    raise Cancelled("stopped by request")
                if isinstance(event, Done):
                    return event.result
                self.route(event)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # a training writes its checkpoint here
        raise Cancelled("the job ended without a result")


# -- start-up -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceInfo:
    """A device the engine can use. ``precisions`` are TrainConfig.mixed_precision values."""

    id: str  # "cpu", "cuda:0", "mps"
    label: str
    precisions: tuple[str, ...] = ("no",)

    @property
    def kind(self) -> str:
        return self.id.split(":")[0]


@dataclass
class EngineInfo:
    """What the background start-up found: plugins, devices, versions and how long it took."""

    registry: Any  # diffstudio.plugin_manager.PluginRegistry
    devices: list[DeviceInfo]
    versions: dict[str, str]
    seconds: float
    cuda: str = ""  # torch's CUDA build ("" for a CPU build)


def probe_devices() -> list[DeviceInfo]:
    """CPU always; each CUDA device (bf16 where supported); Apple MPS when available."""
    import torch

    devices = [DeviceInfo("cpu", "CPU", ("no",))]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            name = torch.cuda.get_device_name(index)
            major, _ = torch.cuda.get_device_capability(index)
            precisions = ("bf16", "fp16", "no") if major >= 8 else ("fp16", "no")
            devices.append(DeviceInfo(f"cuda:{index}", f"CUDA {index}: {name}", precisions))
    if torch.backends.mps.is_available():
        devices.append(DeviceInfo("mps", "Apple MPS", ("no",)))
    return devices


class EngineLoader(Job):
    """Loads the plugins (``plugins_loaded`` is emitted as soon as they are), then imports
    torch, diffusers and the engine, and probes the devices; succeeds with an
    :class:`EngineInfo`."""

    plugins_loaded = Signal(object)

    def __init__(self, safe_mode: bool = False, registry: Any = None,
                 cpu_threads: int | None = None) -> None:
        super().__init__("engine-loader")
        self.safe_mode = safe_mode
        self.registry = registry
        self.cpu_threads = cpu_threads

    def work(self) -> EngineInfo:
        started = time.perf_counter()
        from diffstudio.plugin_manager import load_plugins

        registry = self.registry or load_plugins(safe_mode=self.safe_mode)
        self.plugins_loaded.emit(registry)
        import diffusers
        import torch
        from diffusers import UNet2DModel  # noqa: F401 (diffusers imports lazily; load it now)

        import diffstudio.engine.sampling
        import diffstudio.engine.training  # noqa: F401

        return EngineInfo(
            registry=registry,
            devices=probe_devices(),
            versions={"torch": torch.__version__, "diffusers": diffusers.__version__},
            seconds=time.perf_counter() - started,
            cuda=torch.version.cuda or "",
        )


# -- training -------------------------------------------------------------------------------------
@dataclass
class PreviewFrame:
    """Preview samples from the EMA weights at ``step``: images (N, C, H, W) in [-1, 1] or
    points (N, D); ``path`` is the grid PNG the engine wrote (images only)."""

    step: int
    total_steps: int
    samples: np.ndarray
    path: str | None = None


class TrainJob(JobWorker):
    """Runs the application layer's training job (:func:`diffstudio.app.train.train`) for
    ``config`` into ``run_dir``; succeeds with its TrainResult.

    With ``worker_process`` (the window's default, Preferences > "Run training in a separate
    process") the training runs in a worker process
    (:func:`diffstudio.app.worker.train_in_process`): a crash, an out-of-memory kill or a
    plugin's ``os.abort()`` ends that process, and the job fails with where its output is
    (``log``, by default ``RUN/logs/worker-DATE.log``) and the output's last lines, while the
    window lives on. The child loads the same plugins (the registry's safe mode) and uses
    ``cpu_threads`` threads. Without it the training runs in this job's thread. ``processes``
    > 1 trains data-parallel on that many GPUs (``accelerate launch``; always a worker).

    Either way: step, start, checkpoint and done events go to :meth:`drain_events`
    (``events_ready``); previews arrive as ``preview_ready``; :meth:`take_progress` has the
    newest Progress (the images/s and ETA the terminal shows). A stop reaches the trainer, which
    writes a checkpoint and ends with status "stopped"; a pause holds the trainer between two
    steps (the paused time counts nowhere).
    """

    preview_ready = Signal(object)  # PreviewFrame
    stop_by_closing = False

    def __init__(
        self,
        config: Any,
        run_dir: str,
        *,
        resume: bool = False,
        registry: Any = None,
        cuda_index: int | None = None,
        worker_process: bool = True,
        log: str | os.PathLike[str] | None = None,
        processes: int = 1,
    ) -> None:
        from diffstudio.app.train import TrainRequest

        request = TrainRequest(out=None if resume else run_dir, resume=run_dir if resume else None,
                               settings=config.to_dict(), base={}, cuda_index=cuda_index)
        super().__init__("train", self._events)
        self.config = config
        self.run_dir = run_dir
        self.resume = resume
        self.request = request
        self.registry = registry
        self.worker_process = worker_process or processes > 1
        self.processes = processes
        self.log = Path(log) if log is not None else \
            Path(run_dir) / "logs" / time.strftime("worker-%Y%m%d-%H%M%S.log")

    def _events(self, should_stop: Callable[[], bool]) -> Any:
        if not self.worker_process:
            from diffstudio.app.train import train

            return train(self.request, registry=self.registry, should_stop=should_stop)
        from diffstudio.app.worker import train_in_process
        from diffstudio.plugin_manager import SAFE_MODE_VARIABLE

        env = {SAFE_MODE_VARIABLE: "1" if getattr(self.registry, "safe_mode", False) else ""}
        if self.cpu_threads:
            env["OMP_NUM_THREADS"] = str(int(self.cpu_threads))
        return train_in_process(self.request, log=self.log, should_stop=should_stop,
                                should_pause=self.is_paused, env=env,
                                processes=self.processes)

    def route(self, event: Any) -> None:
        if getattr(event, "kind", None) == "preview" and event.images is not None:
            self.preview_ready.emit(PreviewFrame(event.step, event.total_steps,
                                                 to_numpy(event.images), event.path))
            event = dataclasses.replace(event, images=None)
        super().route(event)
