"""Background jobs: each engine call that blocks (loading torch, ``Trainer.train``,
``generate``) runs in its own :class:`QThread`, one thread per job.

A :class:`Job` is a QThread whose ``run`` calls :meth:`Job.work`; its signals are emitted from
the worker thread and delivered to the main thread as queued events, so the main thread only
paints. The engine polls :meth:`Job.stop_requested` once per step, so a stop takes effect within
one step; a stopped training writes a checkpoint first. The thread ends with its job: nothing
keeps it alive afterwards (:func:`running_jobs` lists the live ones).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
from PySide6.QtCore import QThread, QTimer, Signal

from diffstudio.errors import Cancelled, DiffstudioError

__all__ = [
    "CallJob",
    "CompareEntry",
    "CompareJob",
    "DatasetPreview",
    "DeviceInfo",
    "EngineInfo",
    "EngineLoader",
    "EventQueue",
    "Interpolation",
    "InterpolationJob",
    "Job",
    "Mailbox",
    "ModelSummary",
    "PreviewFrame",
    "SampleFrame",
    "SampleJob",
    "SampleOutcome",
    "SampleRequest",
    "TrainJob",
    "TrajectoryFrame",
    "default_cpu_threads",
    "load_dataset_preview",
    "points_background",
    "probe_devices",
    "running_jobs",
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


def _to_numpy(tensor: Any) -> np.ndarray:
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
            self.failed.emit(message, traceback.format_exc())
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


class TrainJob(Job):
    """Runs ``Trainer(config, run_dir, resume=...).train()``; succeeds with its TrainResult.

    Step, start, checkpoint and done events go to an :class:`EventQueue` (``events_ready`` says
    there is something to :meth:`drain_events`); previews arrive as ``preview_ready``.
    """

    events_ready = Signal()
    preview_ready = Signal(object)  # PreviewFrame

    def __init__(
        self,
        config: Any,
        run_dir: str,
        *,
        resume: bool = False,
        registry: Any = None,
        cuda_index: int | None = None,
    ) -> None:
        super().__init__("train")
        self.config = config
        self.run_dir = run_dir
        self.resume = resume
        self.registry = registry
        self.cuda_index = cuda_index
        self._paused = threading.Event()
        self._events: EventQueue[Any] = EventQueue()

    def set_paused(self, paused: bool) -> None:
        """Hold the training loop between steps (the engine polls this)."""
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    def is_paused(self) -> bool:
        return self._paused.is_set()

    def drain_events(self) -> list[Any]:
        """Every TrainEvent (without images) since the last drain, in order."""
        return self._events.drain()

    def _on_event(self, event: Any) -> None:
        if event.kind == "preview" and event.images is not None:
            self.preview_ready.emit(PreviewFrame(event.step, event.total_steps,
                                                 _to_numpy(event.images), event.path))
            event = dataclasses.replace(event, images=None)
        if self._events.append(event):
            self.events_ready.emit()

    def work(self) -> Any:
        if self.cuda_index is not None:
            import torch

            # The CUDA current device is per thread; the trainer runs wholly in this one.
            torch.cuda.set_device(self.cuda_index)
        from diffstudio.engine.training import Trainer

        trainer = Trainer(
            self.config, self.run_dir, resume=self.resume, registry=self.registry,
            callback=self._on_event, should_stop=self.stop_requested,
            should_pause=self._paused.is_set,
        )
        return trainer.train()


# -- sampling -------------------------------------------------------------------------------------
@dataclass
class SampleRequest:
    """What to sample. ``params`` are the sampler's (validated by the engine again).

    ``live``: report frames while sampling, at most ``max_fps`` per second, each with the first
    ``live_count`` samples of the batch (all of them for points); ``strip_length``: how many
    steps of the first sample to keep for the trajectory strip.
    """

    run_dir: str
    sampler: str = "ddim"
    params: Mapping[str, Any] = field(default_factory=dict)
    num_samples: int = 16
    seed: int = 0
    batch_size: int = 64
    checkpoint: str | None = None
    ema: bool = True
    device: str = "cpu"
    live: bool = True
    live_count: int = 64
    strip_length: int = 8
    max_fps: float = 12.0


@dataclass
class TrajectoryFrame:
    """The first sample at one step: x_t and the predicted x_0, each (*sample_shape)."""

    index: int
    t: float
    x: np.ndarray
    x0_pred: np.ndarray


@dataclass
class SampleFrame:
    """The newest state of the batch being sampled (see :class:`SampleRequest`)."""

    batch_index: int
    num_batches: int
    index: int
    num_steps: int
    t: float
    x: np.ndarray
    x0_pred: np.ndarray
    elapsed: float
    network_evaluations: int
    trajectory: list[TrajectoryFrame]


@dataclass
class ModelSummary:
    """The loaded model, for the view: data kind, shape, and for 2-D points the data to draw
    the particles over (``data``: (M, 2)) and, for the analytic mixture, its exact log-density
    on a grid (``density``: (H, W), covering ``extent`` = (x_min, x_max, y_min, y_max))."""

    run: str
    checkpoint: str
    step: int
    kind: str  # "image" or "points"
    sample_shape: tuple[int, ...]
    data: np.ndarray | None = None
    density: np.ndarray | None = None
    extent: tuple[float, float, float, float] | None = None


@dataclass
class SampleOutcome:
    """A finished sampling job: the engine's SampleResult, the samples as numpy, the metadata
    to save them with, the trajectory, and what the live view cost (frames shown/skipped)."""

    result: Any  # diffstudio.engine.sampling.SampleResult
    samples: np.ndarray
    summary: ModelSummary
    metadata: dict[str, Any]
    trajectory: list[TrajectoryFrame]
    frames_sent: int
    frames_skipped: int


def points_background(
    registry: Any, dataset_id: str, params: Mapping[str, Any], limit: int = 4000
) -> tuple[Any, np.ndarray, np.ndarray | None, tuple[float, float, float, float] | None]:
    """A 2-D dataset and what to draw under particles: up to ``limit`` of its points and, for
    the analytic mixture, its exact density (engine: ``mixture_log_density``) on a 200x200 grid.

    Returns (dataset, points (M, 2), density (200, 200) or None, extent or None).
    """
    from diffstudio.engine.components import build_dataset

    dataset = build_dataset(registry, dataset_id, params)
    data = _to_numpy(dataset.data[:limit])
    density = extent = None
    if dataset_id == "toy2d" and dataset.name == "mixture":
        import torch

        from diffstudio.engine.datasets.toy2d import mixture_log_density

        low, high = float(data.min()) - 2.0, float(data.max()) + 2.0
        axis = torch.linspace(low, high, 200, dtype=torch.float64)
        grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
        log_density = mixture_log_density(torch.stack([grid_x, grid_y], dim=-1))
        density = _to_numpy(log_density.exp())
        extent = (low, high, low, high)
    return dataset, data, density, extent


@dataclass
class DatasetPreview:
    """A loaded dataset for the Data page: ``samples`` are the first images (N, C, H, W) or up
    to 4000 points (N, 2); ``density``/``extent`` as in :func:`points_background`."""

    dataset: Any  # diffstudio.engine.datasets.Dataset
    samples: np.ndarray
    density: np.ndarray | None = None
    extent: tuple[float, float, float, float] | None = None


def load_dataset_preview(
    registry: Any, dataset_id: str, params: Mapping[str, Any], images: int = 64
) -> DatasetPreview:
    """Build a dataset with the engine and pick what the Data page shows of it."""
    contribution = registry.get("dataset", dataset_id)
    if "points" in contribution.tags:
        dataset, data, density, extent = points_background(registry, dataset_id, params)
        if dataset.kind == "points":
            return DatasetPreview(dataset, data, density, extent)
    from diffstudio.engine.components import build_dataset

    dataset = build_dataset(registry, dataset_id, params)
    if dataset.kind == "points":
        return DatasetPreview(dataset, _to_numpy(dataset.data[:4000]))
    return DatasetPreview(dataset, _to_numpy(dataset.data[:images]))


class SampleJob(Job):
    """Loads a run's network and draws samples with any sampler; live frames are throttled by
    time and only the newest is kept (``frame_ready`` then :meth:`take_frame`)."""

    model_loaded = Signal(object)  # ModelSummary
    frame_ready = Signal()

    def __init__(self, request: SampleRequest, registry: Any = None) -> None:
        super().__init__("sample")
        self.request = request
        self.registry = registry
        self._frames: Mailbox[SampleFrame] = Mailbox()
        self._trajectory: list[TrajectoryFrame] = []
        self._strip_indices: set[int] = set()
        self._last_frame = 0.0
        self._started = 0.0
        self._model: Any = None
        self._num_batches = 1
        self.frames_sent = 0
        self.frames_skipped = 0

    def take_frame(self) -> SampleFrame | None:
        return self._frames.take()

    def _on_step(self, step: Any, batch_index: int) -> None:
        request = self.request
        if step.index == 0 and batch_index == 0:
            count = max(1, min(request.strip_length, step.num_steps))
            self._strip_indices = {int(i) for i in np.linspace(0, step.num_steps - 1, count)
                                   .round()}
        if batch_index == 0 and step.index in self._strip_indices:
            self._trajectory.append(TrajectoryFrame(
                step.index, float(step.t), _to_numpy(step.x[0]), _to_numpy(step.x0_pred[0])
            ))
        if not request.live:
            return
        now = time.perf_counter()
        last = step.index == step.num_steps - 1
        if not last and now - self._last_frame < 1.0 / request.max_fps:
            self.frames_skipped += 1
            return
        self._last_frame = now
        count = step.x.shape[0] if step.x.dim() == 2 else request.live_count
        frame = SampleFrame(
            batch_index=batch_index, num_batches=self._num_batches, index=step.index,
            num_steps=step.num_steps, t=float(step.t), x=_to_numpy(step.x[:count]),
            x0_pred=_to_numpy(step.x0_pred[:count]), elapsed=now - self._started,
            network_evaluations=self._model.network_evaluations,
            trajectory=list(self._trajectory),
        )
        self.frames_sent += 1
        if self._frames.put(frame):
            self.frame_ready.emit()

    def work(self) -> SampleOutcome:
        from diffstudio.engine.sampling import generate, load_model
        from diffstudio.plugin_manager import load_plugins

        request = self.request
        registry = self.registry or load_plugins()
        loaded = load_model(request.run_dir, checkpoint=request.checkpoint, ema=request.ema,
                            device=request.device, registry=registry)
        self._model = loaded.model
        kind = loaded.config["dataset_info"].get("kind", "image")
        summary = ModelSummary(str(loaded.run.path), loaded.checkpoint.name, loaded.step, kind,
                               tuple(loaded.sample_shape))
        if kind == "points":
            train = loaded.config["train"]
            _, summary.data, summary.density, summary.extent = points_background(
                registry, train["dataset"], train["dataset_params"]
            )
        self.model_loaded.emit(summary)
        self._num_batches = -(-request.num_samples // request.batch_size)
        self._started = time.perf_counter()
        result = generate(
            loaded.model, request.sampler, dict(request.params),
            sample_shape=loaded.sample_shape, num_samples=request.num_samples, seed=request.seed,
            batch_size=request.batch_size, registry=registry, callback=self._on_step,
            should_stop=self.stop_requested,
        )
        self.frames_skipped += self._frames.replaced
        parameters = next(loaded.model.network.parameters())
        metadata = {
            "run": str(loaded.run.path),
            "checkpoint": loaded.checkpoint.name,
            "ema": loaded.ema,
            "network_sha256": loaded.network_sha256,
            "steps": result.params.get("steps"),
            "guidance": None,
            "backend": f"torch-{parameters.device.type}",
            "init_noise_file": None,
        }
        return SampleOutcome(result, result.samples.numpy(), summary, metadata,
                             list(self._trajectory), self.frames_sent, self.frames_skipped)


# -- interpolating ------------------------------------------------------------------------------
@dataclass
class Interpolation:
    """DDIM decodings of a spherical path between the noises of two seeds: ``samples``
    (count, *sample_shape); ``alphas`` the position of each along the path (0 .. 1)."""

    seed_a: int
    seed_b: int
    alphas: list[float]
    samples: np.ndarray
    steps: int
    seconds: float


class InterpolationJob(Job):
    """Decodes ``slerp(noise(seed_a), noise(seed_b), alpha)`` for ``count`` alphas with
    deterministic DDIM (eta = 0), so the row moves smoothly from one sample to the other."""

    def __init__(
        self,
        run_dir: str,
        *,
        seed_a: int,
        seed_b: int,
        count: int = 10,
        steps: int = 50,
        device: str = "cpu",
        ema: bool = True,
        registry: Any = None,
    ) -> None:
        super().__init__("interpolate")
        self.run_dir = run_dir
        self.seed_a, self.seed_b, self.count, self.steps = seed_a, seed_b, count, steps
        self.device = device
        self.ema = ema
        self.registry = registry

    def work(self) -> Interpolation:
        from diffstudio.engine.interpolation import seed_noise, slerp_path
        from diffstudio.engine.sampling import generate, load_model
        from diffstudio.plugin_manager import load_plugins

        registry = self.registry or load_plugins()
        loaded = load_model(self.run_dir, ema=self.ema, device=self.device, registry=registry)
        shape = tuple(loaded.sample_shape)
        noise = slerp_path(seed_noise(self.seed_a, shape), seed_noise(self.seed_b, shape),
                           self.count)
        result = generate(
            loaded.model, "ddim", {"steps": self.steps, "eta": 0.0}, sample_shape=shape,
            init_noise=noise, batch_size=self.count, registry=registry,
            should_stop=self.stop_requested,
        )
        alphas = [index / (self.count - 1) for index in range(self.count)]
        return Interpolation(self.seed_a, self.seed_b, alphas, result.samples.numpy(),
                             self.steps, result.seconds)


# -- comparing samplers ---------------------------------------------------------------------------
@dataclass
class CompareEntry:
    """One sampler's samples in a comparison, with its network evaluations and wall time."""

    sampler: str
    params: dict[str, Any]
    samples: np.ndarray
    network_evaluations: int
    seconds: float


class CompareJob(Job):
    """Runs several samplers on identical initial noise (the same seeds) from one run.

    Sample i of every sampler starts from the noise of seed ``seed + i`` (the engine draws each
    sample's noise from its own generator), so the columns differ only by the sampler.
    ``entry_ready`` reports each sampler as it finishes; succeeds with the list of entries.
    """

    entry_ready = Signal(object)  # CompareEntry

    def __init__(
        self,
        run_dir: str,
        samplers: list[tuple[str, dict[str, Any]]],
        *,
        num_samples: int = 8,
        seed: int = 0,
        device: str = "cpu",
        ema: bool = True,
        registry: Any = None,
    ) -> None:
        super().__init__("compare")
        self.run_dir = run_dir
        self.samplers = samplers
        self.num_samples = num_samples
        self.seed = seed
        self.device = device
        self.ema = ema
        self.registry = registry

    def work(self) -> list[CompareEntry]:
        from diffstudio.engine.sampling import generate, load_model
        from diffstudio.plugin_manager import load_plugins

        registry = self.registry or load_plugins()
        loaded = load_model(self.run_dir, ema=self.ema, device=self.device, registry=registry)
        entries = []
        for sampler_id, params in self.samplers:
            result = generate(
                loaded.model, sampler_id, params, sample_shape=loaded.sample_shape,
                num_samples=self.num_samples, seed=self.seed, batch_size=self.num_samples,
                registry=registry, should_stop=self.stop_requested,
            )
            entry = CompareEntry(sampler_id, dict(result.params), result.samples.numpy(),
                                 result.network_evaluations, result.seconds)
            entries.append(entry)
            self.entry_ready.emit(entry)
        return entries
