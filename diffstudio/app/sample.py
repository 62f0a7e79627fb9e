"""The sampling jobs: draw samples from any model source with any sampler (:func:`sample`),
several samplers on identical noise (:func:`compare`), and a DDIM path between two seeds
(:func:`interpolate`).

Each is a generator over a typed request; ``diffstudio sample`` drives :func:`sample` with a
progress bar, the Sample page with a worker thread, and both get the same events, the same
metadata and the same files. Live frames are throttled by time (at most ``max_fps`` a second,
the last step always) and only the newest waiting one is kept, so previews never cost the
sampler more than a copy of a few images.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from diffstudio.app.events import Note, Progress
from diffstudio.app.sources import LoadedSource, ModelSource, load_source
from diffstudio.app.threaded import Emit, StopCheck, events_of
from diffstudio.errors import ConfigError, StorageError

__all__ = [
    "CompareEntry",
    "CompareRequest",
    "InterpolateRequest",
    "Interpolation",
    "ModelSummary",
    "SampleFrame",
    "SampleOutcome",
    "SampleRequest",
    "TrajectoryFrame",
    "compare",
    "interpolate",
    "model_summary",
    "outcome_sample_metadata",
    "sample",
    "sampler_suggestions",
    "save_comparison",
    "save_interpolation",
    "save_outcome",
    "save_outcome_sample",
    "to_numpy",
    "unset_parameter_values",
]


def to_numpy(tensor: Any) -> np.ndarray:
    """A float32 numpy copy of a tensor (any device), for views and files."""
    return tensor.detach().float().cpu().numpy()


@dataclass
class SampleRequest:
    """What to sample. ``params`` are the sampler's (validated against its schema).

    ``init_noise`` a ``.npy`` file of initial noise (N, *sample_shape) so that samplers are
    compared on identical noise; ``class_label`` conditions a class-conditional model;
    ``guidance`` gamma of classifier-free guidance (with a class: 1 is the conditional model,
    0 the unconditional one). ``live``: report frames while sampling, at most ``max_fps`` a
    second, each with the first ``live_count`` samples (all of them for points);
    ``strip_length`` steps of the first sample are kept for the trajectory strip. ``save``
    writes PNGs (with metadata), ``samples.npz`` and a grid to ``out`` (default: a new folder
    under the run's samples/, or ./samples/ for a pretrained model). Sampler parameters left
    unset take the values the data suggests (:func:`sampler_suggestions`, each said in a Note)
    unless ``preset`` names a set in ``engine.suggestions.PRESETS`` (``"seed-images"``).
    """

    source: ModelSource
    sampler: str = "ddim"
    params: Mapping[str, Any] = field(default_factory=dict)
    num_samples: int | None = None
    seed: int = 0
    batch_size: int = 64
    device: str = "auto"
    init_noise: str | None = None
    class_label: int | None = None
    guidance: float | None = None
    live: bool = False
    live_count: int = 36
    strip_length: int = 8
    max_fps: float = 10.0
    save: bool = False
    out: str | None = None
    overwrite: bool = False
    preset: str | None = None

    def validate(self, registry: Any) -> SampleRequest:
        self.source.validate()
        if self.sampler not in registry.ids("sampler"):
            raise ConfigError(
                f"unknown sampler {self.sampler!r}; installed: "
                f"{', '.join(registry.ids('sampler'))}"
            )
        registry.get("sampler", self.sampler).validate(dict(self.params))
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if self.num_samples is not None and self.num_samples < 1:
            raise ConfigError(f"the number of samples must be at least 1, got {self.num_samples}")
        return self


@dataclass
class TrajectoryFrame:
    """The first sample at one step: x_t and the predicted x_0, each (*sample_shape)."""

    index: int
    t: float
    x: np.ndarray
    x0_pred: np.ndarray


@dataclass
class SampleFrame:
    """The newest state of the batch being sampled (a live view; coalesced when late)."""

    latest_only: ClassVar[bool] = True

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
    """The loaded model, for views: data kind, shape and, for 2-D points, the training data to
    draw particles over (``data`` (M, 2)) and the exact density when the dataset knows it
    (``density`` (H, W) over ``extent`` = (x_min, x_max, y_min, y_max))."""

    latest_only: ClassVar[bool] = False

    run: str
    checkpoint: str
    step: int
    kind: str
    sample_shape: tuple[int, ...]
    num_classes: int | None = None
    data: np.ndarray | None = None
    density: np.ndarray | None = None
    extent: tuple[float, float, float, float] | None = None
    backend: str = ""  # "torch-cpu", or "onnx (CPUExecutionProvider)": the provider granted


@dataclass
class SampleOutcome:
    """A finished sampling job: the engine's SampleResult, the samples as numpy, the metadata
    every PNG of them records, the trajectory, what the live view cost, and where the files
    went (``out`` None when not saved)."""

    result: Any
    samples: np.ndarray
    summary: ModelSummary
    metadata: dict[str, Any]
    trajectory: list[TrajectoryFrame]
    frames_sent: int = 0
    frames_skipped: int = 0
    out: Path | None = None
    paths: list[Path] = field(default_factory=list)


def model_summary(loaded: LoadedSource, registry: Any, limit: int = 4000) -> ModelSummary:
    """What views show of a loaded model; for points, its training data and exact density."""
    summary = ModelSummary(loaded.name, loaded.checkpoint, loaded.step, loaded.kind,
                           tuple(loaded.sample_shape), loaded.num_classes)
    provider = loaded.metadata.get("onnx_provider")
    summary.backend = loaded.backend + (f" ({provider})" if provider else "")
    if loaded.kind == "points" and loaded.dataset is not None:
        from diffstudio.engine.components import build_dataset
        from diffstudio.engine.datasets import density_grid

        dataset = build_dataset(registry, *loaded.dataset)
        summary.data = to_numpy(dataset.data[:limit])
        grid = density_grid(dataset)
        if grid is not None:
            summary.density, summary.extent = to_numpy(grid[0]), grid[1]
    return summary


def sampler_suggestions(loaded: LoadedSource, sampler_id: str, registry: Any) -> Any:
    """The sampler defaults the run's data suggests (an engine ``SamplerDefaults``): what
    :func:`sample` uses for every parameter the request leaves unset, and what ``diffstudio
    sample RUN --help`` shows."""
    from diffstudio.engine.components import build_dataset
    from diffstudio.engine.suggestions import noise_scale, suggest_sampler_defaults

    scale = None
    if loaded.kind == "points" and loaded.dataset is not None:
        scale = noise_scale(build_dataset(registry, *loaded.dataset))
    return suggest_sampler_defaults(sampler_id, loaded.model, scale,
                                    contribution=registry.get("sampler", sampler_id))


def unset_parameter_values(source: ModelSource, sampler_id: str, registry: Any = None
                           ) -> dict[str, str]:
    """What :func:`sample` gives each parameter of ``sampler_id`` that a request leaves unset,
    when it differs from the schema default: ``{name: "uses 4.4e-3: <why>"}`` (the Sample
    form shows these below its fields). Loads ``source`` on the CPU with the PyTorch backend
    (suggestions depend on the process and the data, not on the runtime)."""
    registry = _registry(registry)
    on_torch = source if source.pretrained else replace(source, backend="torch")
    loaded = load_source(on_torch, device="cpu", registry=registry)
    hints: dict[str, str] = {}
    for name, value in loaded.sampler_defaults.get(sampler_id, {}).items():
        hints[name] = f"uses {_short(value)} while left at its default: the model's own value"
    for name, suggestion in sampler_suggestions(loaded, sampler_id, registry).values.items():
        hints.setdefault(name, f"uses {_short(suggestion.value)} while left at its default: "
                               f"{suggestion.reason}")
    return hints


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _registry(registry: Any) -> Any:
    if registry is not None:
        return registry
    from diffstudio.plugin_manager import load_plugins

    return load_plugins()


class _LiveView:
    """Turns sampler steps into throttled frames, a trajectory strip and progress events."""

    def __init__(self, request: SampleRequest, emit: Emit, model: Any, num_batches: int) -> None:
        self.request, self.emit, self.model = request, emit, model
        self.num_batches = num_batches
        self.trajectory: list[TrajectoryFrame] = []
        self.strip: set[int] = set()
        self.started = time.perf_counter()
        self.last_frame = 0.0
        self.frames_sent = 0
        self.frames_skipped = 0

    def __call__(self, step: Any, batch_index: int) -> None:
        request = self.request
        now = time.perf_counter()
        done = batch_index * step.num_steps + step.index + 1
        self.emit(Progress("sample", done, step.num_steps * self.num_batches,
                           now - self.started, unit="step",
                           detail=f"batch {batch_index + 1}/{self.num_batches}"
                           if self.num_batches > 1 else ""))
        if step.index == 0 and batch_index == 0:
            count = max(1, min(request.strip_length, step.num_steps))
            self.strip = {int(i) for i in np.linspace(0, step.num_steps - 1, count).round()}
        if batch_index == 0 and step.index in self.strip:
            self.trajectory.append(TrajectoryFrame(
                step.index, float(step.t), to_numpy(step.x[0]), to_numpy(step.x0_pred[0])))
        if not request.live:
            return
        last = step.index == step.num_steps - 1
        if not last and now - self.last_frame < 1.0 / request.max_fps:
            self.frames_skipped += 1
            return
        self.last_frame = now
        count = step.x.shape[0] if step.x.dim() == 2 else request.live_count
        self.frames_sent += 1
        self.emit(SampleFrame(
            batch_index=batch_index, num_batches=self.num_batches, index=step.index,
            num_steps=step.num_steps, t=float(step.t), x=to_numpy(step.x[:count]),
            x0_pred=to_numpy(step.x0_pred[:count]), elapsed=now - self.started,
            network_evaluations=self.model.network_evaluations,
            trajectory=list(self.trajectory)))


def sample(
    request: SampleRequest, *, registry: Any = None, should_stop: StopCheck | None = None
) -> Iterator[Any]:
    """Load the model, sample, optionally save; yields Note, ModelSummary, Progress,
    SampleFrame (when live) and finally Done(SampleOutcome)."""
    registry = _registry(registry)
    request.validate(registry)

    def work(emit: Emit, should_stop: StopCheck) -> SampleOutcome:
        from diffstudio.engine.sampling import generate, load_init_noise

        loaded = load_source(request.source, device=request.device, registry=registry)
        out = None
        if request.save:  # a folder that cannot take the samples fails now, not after the work
            from diffstudio.engine.sampling import check_samples_out

            out = check_samples_out(request.out or default_out(loaded, request.sampler),
                                    overwrite=request.overwrite)
        for note in loaded.notes:
            emit(Note(note))
        for warning in loaded.warnings:
            emit(Note(warning, level="warning"))
        summary = model_summary(loaded, registry)
        emit(summary)
        init_noise = (load_init_noise(request.init_noise, loaded.sample_shape)
                      if request.init_noise else None)
        num = request.num_samples
        if num is None:
            num = None if init_noise is not None else 16
        total = num if num is not None else int(init_noise.shape[0])  # type: ignore[union-attr]
        params = {**loaded.sampler_defaults.get(request.sampler, {}), **dict(request.params)}
        suggested = sampler_suggestions(loaded, request.sampler, registry)
        for name, suggestion in suggested.values.items():
            if name not in params and not request.preset:
                emit(Note(f"{request.sampler}: {suggestion.describe(name)}"))
        for note in suggested.notes:
            emit(Note(note, level="warning"))
        if request.preset:
            from diffstudio.engine.suggestions import PRESETS

            if request.preset not in PRESETS:
                raise ConfigError(f"unknown preset {request.preset!r}; choose one of "
                                  f"{sorted(PRESETS)}")
            params = {**PRESETS[request.preset].get(request.sampler, {}), **params}
        else:
            params = {**{k: s.value for k, s in suggested.values.items()}, **params}
        live = _LiveView(request, emit, loaded.model, -(-total // request.batch_size))
        class_label = request.class_label
        if class_label is not None:
            if not loaded.num_classes:
                raise ConfigError(
                    f"class label {class_label} given, but {loaded.source.describe()} is not "
                    "class-conditional; leave the class out")
            if not 0 <= class_label < loaded.num_classes:
                raise ConfigError(
                    f"class label {class_label} is out of range: {loaded.source.describe()} "
                    f"has classes 0..{loaded.num_classes - 1}")
        result = generate(
            loaded.model, request.sampler, params, sample_shape=loaded.sample_shape,
            num_samples=num, seed=request.seed, batch_size=request.batch_size,
            init_noise=init_noise, class_label=class_label, guidance=request.guidance,
            num_classes=loaded.num_classes, registry=registry, callback=live,
            should_stop=should_stop,
        )
        metadata = {
            **loaded.metadata,
            "steps": result.params.get("steps"),
            "backend": loaded.backend,
            "init_noise_file": (str(Path(request.init_noise).resolve())
                                if request.init_noise else None),
            # CPU kernels round differently per batch size: recall re-forms the batch.
            "batch_size": request.batch_size, "num_samples": total,
        }
        outcome = SampleOutcome(result, result.samples.numpy(), summary, metadata,
                                live.trajectory, live.frames_sent, live.frames_skipped)
        if out is not None:
            save_outcome(outcome, out, overwrite=request.overwrite)
        return outcome

    yield from events_of(work, should_stop=should_stop, name="diffstudio-sample")


def default_out(loaded: LoadedSource, sampler: str) -> Path:
    """Where samples go by default: a new folder under the run's samples/ (or ./samples/)."""
    if loaded.source.run:
        from diffstudio.engine.runs import Run

        return Run(loaded.source.run).new_samples_dir(sampler)
    return Path("samples") / f"{sampler}-{time.strftime('%Y%m%d-%H%M%S')}"


def save_outcome(outcome: SampleOutcome, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the samples (PNGs with metadata + samples.npz) and, for images, grid.png.

    Everything is written into a temporary folder beside ``out`` first: a failure leaves
    ``out`` as it was. With ``overwrite`` ``out`` then holds exactly these samples (an
    earlier, larger call's PNGs do not stay beside them); without it the files join ``out``
    when none of them would replace a file there."""
    from diffstudio.engine.gallery import save_grid
    from diffstudio.engine.io import staged_directory, storage_problem
    from diffstudio.engine.sampling import check_samples_out, refuse_existing, save_samples

    folder = check_samples_out(out, overwrite=overwrite)
    if not overwrite and folder.is_dir():
        refuse_existing(outcome.result, folder)
    try:
        with staged_directory(folder, replace=overwrite) as temp:
            written = save_samples(outcome.result, temp, metadata=outcome.metadata,
                                   overwrite=True)
            if outcome.result.samples.dim() == 4:
                save_grid(outcome.result.samples, temp / "grid.png",
                          metadata={**outcome.metadata, "kind": "grid"})
    except OSError as exc:
        problem = storage_problem(exc)
        if problem is None:
            raise
        raise StorageError(
            f"could not write the samples to {folder}: {problem}; nothing was written there "
            "(any earlier samples in it are intact). Free space or choose another folder (--out)"
        ) from exc
    outcome.paths = [folder / path.name for path in written]
    outcome.out = folder
    return folder


def outcome_sample_metadata(outcome: SampleOutcome, index: int) -> dict[str, Any]:
    """What sample ``index`` of ``outcome`` records in its PNG (the same as :func:`save_outcome`
    writes): seed, sampler and parameters, class, guidance, the model."""
    from diffstudio.engine.sampling import sample_metadata

    return sample_metadata(outcome.result, index, outcome.metadata)


def save_outcome_sample(outcome: SampleOutcome, index: int, path: str | Path) -> Path:
    """Write sample ``index`` alone as a PNG with its metadata (atomically), pixel for pixel
    as :func:`save_outcome` writes it; ``.png`` is added when the name lacks it."""
    from diffstudio.engine.pngmeta import write_png

    target = Path(path).expanduser()
    if target.suffix.lower() != ".png":
        target = target.with_suffix(target.suffix + ".png") if target.suffix else \
            target.with_suffix(".png")
    if outcome.samples.ndim != 4:
        raise ConfigError("2-D points have no image to save; Save writes them to samples.npz")
    try:
        write_png(target, outcome.samples[index], outcome_sample_metadata(outcome, index))
    except OSError as exc:
        raise _storage_failure(exc, target.parent, "sample") from exc
    return target


# -- comparing samplers ---------------------------------------------------------------------------
@dataclass
class CompareRequest:
    """Several samplers (id, params) on identical initial noise: sample i of every sampler
    starts from the noise of seed ``seed + i``, so the columns differ only by the sampler."""

    source: ModelSource
    samplers: list[tuple[str, dict[str, Any]]]
    num_samples: int = 8
    seed: int = 0
    device: str = "auto"


@dataclass
class CompareEntry:
    """One sampler's samples in a comparison, with its network evaluations and wall time."""

    latest_only: ClassVar[bool] = False

    sampler: str
    params: dict[str, Any]
    samples: np.ndarray
    network_evaluations: int
    seconds: float
    result: Any = None  # the engine's SampleResult (what saving writes)
    metadata: dict[str, Any] = field(default_factory=dict)  # the model's, as sample() records


def compare(
    request: CompareRequest, *, registry: Any = None, should_stop: StopCheck | None = None
) -> Iterator[Any]:
    """Yields a CompareEntry per sampler as it finishes, Progress, then Done(list of entries)."""
    registry = _registry(registry)
    if not request.samplers:
        raise ConfigError("choose at least one sampler to compare")
    for sampler_id, params in request.samplers:
        SampleRequest(request.source, sampler_id, params).validate(registry)

    def work(emit: Emit, should_stop: StopCheck) -> list[CompareEntry]:
        from diffstudio.engine.sampling import generate

        loaded = load_source(request.source, device=request.device, registry=registry)
        entries: list[CompareEntry] = []
        started = time.perf_counter()
        count = len(request.samplers)

        def progress(number: int, detail: str, fraction: float) -> Progress:
            """``number`` samplers done and ``fraction`` of the next: the ETA assumes the
            samplers left cost what the finished part did per sampler."""
            elapsed = time.perf_counter() - started
            done = number + fraction
            remaining = elapsed * (count - done) / done if done > 0 else None
            return Progress("compare", number, count, elapsed, unit="sampler", detail=detail,
                            remaining=remaining)

        for number, (sampler_id, params) in enumerate(request.samplers):
            emit(progress(number, sampler_id, 0.0))

            def on_step(step: Any, _batch: int, number: int = number,
                        sampler_id: str = sampler_id) -> None:
                emit(progress(number, f"{sampler_id} step {step.index + 1}/{step.num_steps}",
                              (step.index + 1) / step.num_steps))

            result = generate(
                loaded.model, sampler_id, params, sample_shape=loaded.sample_shape,
                num_samples=request.num_samples, seed=request.seed,
                batch_size=request.num_samples, registry=registry, callback=on_step,
                should_stop=should_stop,
            )
            metadata = {**loaded.metadata, "steps": result.params.get("steps"),
                        "backend": loaded.backend, "batch_size": request.num_samples,
                        "num_samples": request.num_samples}
            entry = CompareEntry(sampler_id, dict(result.params), result.samples.numpy(),
                                 result.network_evaluations, result.seconds, result, metadata)
            entries.append(entry)
            emit(entry)
        emit(progress(len(entries), "", 0.0))
        return entries

    yield from events_of(work, should_stop=should_stop, name="diffstudio-compare")


# -- interpolating --------------------------------------------------------------------------------
@dataclass
class InterpolateRequest:
    """``count`` deterministic DDIM decodings (eta = 0, ``steps`` steps) of the spherical path
    between the initial noises of ``seed_a`` and ``seed_b``."""

    source: ModelSource
    seed_a: int = 0
    seed_b: int = 1
    count: int = 10
    steps: int = 50
    device: str = "auto"


@dataclass
class Interpolation:
    """``samples`` (count, *sample_shape); ``alphas`` the position of each on the path."""

    seed_a: int
    seed_b: int
    alphas: list[float]
    samples: np.ndarray
    steps: int
    seconds: float
    metadata: dict[str, Any] = field(default_factory=dict)  # the model's, as sample() records


def interpolate(
    request: InterpolateRequest, *, registry: Any = None, should_stop: StopCheck | None = None
) -> Iterator[Any]:
    """Yields Progress per DDIM step, then Done(Interpolation)."""
    registry = _registry(registry)
    if request.count < 2:
        raise ConfigError(f"an interpolation needs at least 2 images, got {request.count}")

    def work(emit: Emit, should_stop: StopCheck) -> Interpolation:
        from diffstudio.engine.interpolation import seed_noise, slerp_path
        from diffstudio.engine.sampling import generate

        loaded = load_source(request.source, device=request.device, registry=registry)
        shape = tuple(loaded.sample_shape)
        noise = slerp_path(seed_noise(request.seed_a, shape), seed_noise(request.seed_b, shape),
                           request.count)
        started = time.perf_counter()

        def on_step(step: Any, _batch: int) -> None:
            emit(Progress("interpolate", step.index + 1, step.num_steps,
                          time.perf_counter() - started))

        result = generate(
            loaded.model, "ddim", {"steps": request.steps, "eta": 0.0}, sample_shape=shape,
            init_noise=noise, batch_size=request.count, registry=registry, callback=on_step,
            should_stop=should_stop,
        )
        alphas = [index / (request.count - 1) for index in range(request.count)]
        return Interpolation(request.seed_a, request.seed_b, alphas, result.samples.numpy(),
                             request.steps, result.seconds,
                             {**loaded.metadata, "backend": loaded.backend})

    yield from events_of(work, should_stop=should_stop, name="diffstudio-interpolate")



# -- saving comparisons and interpolations ---------------------------------------------------------
def _staged_new_folder(out: str | Path, overwrite: bool, what: str) -> Any:
    """The staged write of a fresh result folder: refused when ``out`` exists (unless
    ``overwrite``, which replaces it whole); a full disk leaves nothing half-written."""
    from diffstudio.engine.io import staged_directory

    folder = Path(out).expanduser()
    if folder.exists() and not overwrite:
        raise ConfigError(f"{folder} already exists; choose another folder for the {what} "
                          "or allow overwriting")
    return folder, staged_directory(folder, replace=True)


def _storage_failure(exc: OSError, folder: Path, what: str) -> Exception:
    from diffstudio.engine.io import storage_problem

    problem = storage_problem(exc)
    if problem is None:
        return exc
    return StorageError(f"could not write the {what} to {folder}: {problem}; nothing was "
                        "written there. Free space or choose another folder")


def save_comparison(entries: list[CompareEntry], out: str | Path, *,
                    overwrite: bool = False) -> Path:
    """Write a comparison as samples: one folder per sampler (``01-ddim/``: its PNGs with the
    same metadata :func:`save_outcome` writes, so the Gallery indexes and recalls them, and
    samples.npz), ``comparison.png`` (one row per sampler, images only) and
    ``comparison.json`` (sampler, parameters, network evaluations and seconds per row)."""
    import json

    from diffstudio.engine.gallery import save_grid
    from diffstudio.engine.io import atomic_write_text
    from diffstudio.engine.sampling import save_samples

    if not entries or any(entry.result is None for entry in entries):
        raise ConfigError("nothing to save: run a comparison first")
    folder, staged = _staged_new_folder(out, overwrite, "comparison")
    rows = [{"folder": f"{number:02d}-{entry.sampler}", "sampler": entry.sampler,
             "params": entry.params, "network_evaluations": entry.network_evaluations,
             "seconds": entry.seconds, "seeds": list(entry.result.seeds)}
            for number, entry in enumerate(entries, 1)]
    try:
        with staged as temp:
            for row, entry in zip(rows, entries, strict=True):
                save_samples(entry.result, temp / row["folder"],
                             metadata={**entry.metadata, "comparison": folder.name},
                             overwrite=True)
            first = entries[0].result.samples
            if first.dim() == 4:
                import torch

                save_grid(torch.cat([entry.result.samples for entry in entries]),
                          temp / "comparison.png", columns=first.shape[0],
                          metadata={**entries[0].metadata, "kind": "grid",
                                    "rows": [row["sampler"] for row in rows]})
            atomic_write_text(temp / "comparison.json",
                              json.dumps({"rows": rows}, indent=2, default=str))
    except OSError as exc:
        raise _storage_failure(exc, folder, "comparison") from exc
    return folder


def save_interpolation(path: Interpolation, out: str | Path, *,
                       overwrite: bool = False) -> Path:
    """Write an interpolation: ``frame-NN.png`` per point (metadata: both seeds, the position
    alpha on the path, DDIM with eta 0 and its steps; marked as made from a given initial
    noise, so a recall points back to the Interpolation tab instead of redrawing a seed),
    ``row.png`` (the whole row) and ``interpolation.npz`` (samples and alphas)."""
    import diffstudio
    from diffstudio.engine.gallery import save_grid
    from diffstudio.engine.io import atomic_write_with
    from diffstudio.engine.pngmeta import write_png

    folder, staged = _staged_new_folder(out, overwrite, "interpolation")
    common = {**path.metadata, "sampler": "ddim", "sampler_params": {"steps": path.steps,
                                                                      "eta": 0.0},
              "steps": path.steps, "init_noise": True,
              "interpolation": {"seed_a": path.seed_a, "seed_b": path.seed_b,
                                "points": len(path.alphas)},
              "version": diffstudio.__version__}
    try:
        with staged as temp:
            if path.samples.ndim == 4:
                for index, (alpha, image) in enumerate(zip(path.alphas, path.samples,
                                                           strict=True)):
                    write_png(temp / f"frame-{index:02d}.png", image,
                              {**common, "index": index, "alpha": alpha})
                save_grid(path.samples, temp / "row.png", columns=len(path.alphas),
                          metadata={**common, "kind": "grid"})

            def write_npz(target: Path) -> None:
                with open(target, "wb") as handle:
                    np.savez(handle, samples=path.samples,
                             alphas=np.asarray(path.alphas, dtype=np.float64),
                             seeds=np.asarray([path.seed_a, path.seed_b], dtype=np.int64))

            atomic_write_with(temp / "interpolation.npz", write_npz)
    except OSError as exc:
        raise _storage_failure(exc, folder, "interpolation") from exc
    return folder
