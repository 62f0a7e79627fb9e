"""Sampling jobs: one run's network drawing samples with live frames (:class:`SampleJob`),
several samplers on identical initial noise (:class:`CompareJob`), a DDIM interpolation between
two seeds (:class:`InterpolationJob`), and loading a dataset to look at.

Each is a :class:`diffstudio.gui.workers.Job` (one QThread per job). Live frames are throttled
by time in the worker and only the newest is kept (:class:`diffstudio.gui.workers.Mailbox`):
frames the screen could not show are dropped, never queued.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import Signal

from diffstudio.gui.workers import Job, Mailbox, to_numpy

__all__ = [
    "CompareEntry",
    "CompareJob",
    "DatasetPreview",
    "Interpolation",
    "InterpolationJob",
    "ModelSummary",
    "SampleFrame",
    "SampleJob",
    "SampleOutcome",
    "SampleRequest",
    "TrajectoryFrame",
    "load_dataset_preview",
    "points_background",
]


# -- sampling -------------------------------------------------------------------------------------
@dataclass
class SampleRequest:
    """What to sample. ``params`` are the sampler's (validated by the engine again).

    ``pretrained`` (a diffusers folder or a cached hub id) samples that model instead of
    ``run_dir`` (checkpoint and ema then do not apply). ``class_label`` conditions a
    class-conditional model on that class; ``guidance`` (gamma,
    with a class) mixes the conditional and unconditional outputs (classifier-free guidance:
    1 is the conditional model, 0 the unconditional one).
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
    live_count: int = 36
    strip_length: int = 8
    max_fps: float = 10.0
    class_label: int | None = None
    guidance: float | None = None
    pretrained: str | None = None


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
    data = to_numpy(dataset.data[:limit])
    density = extent = None
    if dataset_id == "toy2d" and dataset.name == "mixture":
        import torch

        from diffstudio.engine.datasets.toy2d import mixture_log_density

        low, high = float(data.min()) - 2.0, float(data.max()) + 2.0
        axis = torch.linspace(low, high, 200, dtype=torch.float64)
        grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
        log_density = mixture_log_density(torch.stack([grid_x, grid_y], dim=-1))
        density = to_numpy(log_density.exp())
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
        return DatasetPreview(dataset, to_numpy(dataset.data[:4000]))
    return DatasetPreview(dataset, to_numpy(dataset.data[:images]))


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
                step.index, float(step.t), to_numpy(step.x[0]), to_numpy(step.x0_pred[0])
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
            num_steps=step.num_steps, t=float(step.t), x=to_numpy(step.x[:count]),
            x0_pred=to_numpy(step.x0_pred[:count]), elapsed=now - self._started,
            network_evaluations=self._model.network_evaluations,
            trajectory=list(self._trajectory),
        )
        self.frames_sent += 1
        if self._frames.put(frame):
            self.frame_ready.emit()

    def work(self) -> SampleOutcome:
        from diffstudio.engine.sampling import generate
        from diffstudio.plugin_manager import load_plugins

        request = self.request
        registry = self.registry or load_plugins()
        load = self._load_pretrained if request.pretrained else self._load_run
        model, sample_shape, num_classes, summary, metadata = load(request, registry)
        self._model = model
        self.model_loaded.emit(summary)
        self._num_batches = -(-request.num_samples // request.batch_size)
        self._started = time.perf_counter()
        class_label = request.class_label if num_classes else None
        result = generate(
            model, request.sampler, dict(request.params),
            sample_shape=sample_shape, num_samples=request.num_samples, seed=request.seed,
            batch_size=request.batch_size, registry=registry, callback=self._on_step,
            should_stop=self.stop_requested, class_label=class_label,
            guidance=request.guidance if class_label is not None else None,
            num_classes=num_classes,
        )
        self.frames_skipped += self._frames.replaced
        parameters = next(model.network.parameters())
        metadata.update({
            "steps": result.params.get("steps"),
            "backend": f"torch-{parameters.device.type}",
            "init_noise_file": None,
        })
        return SampleOutcome(result, result.samples.numpy(), summary, metadata,
                             list(self._trajectory), self.frames_sent, self.frames_skipped)

    @staticmethod
    def _load_run(request: SampleRequest, registry: Any) -> tuple[Any, ...]:
        """(model, sample shape, classes, summary, metadata) of a trained run's checkpoint."""
        from diffstudio.engine.sampling import load_model

        loaded = load_model(request.run_dir, checkpoint=request.checkpoint, ema=request.ema,
                            device=request.device, registry=registry)
        kind = loaded.config["dataset_info"].get("kind", "image")
        summary = ModelSummary(str(loaded.run.path), loaded.checkpoint.name, loaded.step, kind,
                               tuple(loaded.sample_shape))
        if kind == "points":
            train = loaded.config["train"]
            _, summary.data, summary.density, summary.extent = points_background(
                registry, train["dataset"], train["dataset_params"]
            )
        metadata = {"run": str(loaded.run.path), "checkpoint": loaded.checkpoint.name,
                    "ema": loaded.ema, "network_sha256": loaded.network_sha256}
        return loaded.model, loaded.sample_shape, loaded.num_classes, summary, metadata

    @staticmethod
    def _load_pretrained(request: SampleRequest, registry: Any) -> tuple[Any, ...]:
        """The same for a diffusers model (a folder, or a hub id already in the local cache:
        nothing is downloaded here); its notes go into the metadata."""
        from diffstudio.engine.networks.pretrained import load_pretrained

        pretrained = load_pretrained(request.pretrained, device=request.device)
        summary = ModelSummary(request.pretrained, pretrained.scheduler_class, 0, "image",
                               tuple(pretrained.sample_shape))
        classes = (pretrained.num_class_embeds - 1) if pretrained.num_class_embeds else None
        metadata = {"pretrained": request.pretrained,
                    "network_sha256": pretrained.weights_sha256,
                    "scheduler": pretrained.scheduler_class, "notes": list(pretrained.notes)}
        return pretrained.require_model(), pretrained.sample_shape, classes, summary, metadata


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
