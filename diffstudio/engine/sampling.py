"""Loading a trained network from a run and drawing samples with any sampler plugin.

Reproducibility: sample i of a request with seed S is drawn entirely from its own generator
seeded S + i (initial noise, then every step's noise), so any single sample can be regenerated
from the seed in its PNG, whatever the batch it was made in. Initial noise can also be given
(``init_noise``, for example from a ``.npy`` file) so that samplers are compared on identical
noise.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffstudio.engine.components import build_network, build_schedule, get_sampler
from diffstudio.engine.io import file_sha256, storage_problem
from diffstudio.engine.model import DiffusionModel, network_device_dtype
from diffstudio.engine.pngmeta import write_png
from diffstudio.engine.runs import WEIGHTS_NAME, Run, load_network_weights
from diffstudio.engine.samplers import Generators, SamplerStep, per_sample_generators
from diffstudio.errors import ConfigError, DiffstudioError, PluginError, SamplingError
from diffstudio.plugin_manager import PluginRegistry, load_plugins

__all__ = [
    "LoadedModel",
    "SampleResult",
    "call_sampler",
    "check_samples_out",
    "generate",
    "load_init_noise",
    "load_model",
    "refuse_existing",
    "resolve_device",
    "sample_batch",
    "sample_file_names",
    "sample_metadata",
    "save_samples",
]


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" picks CUDA, then MPS, then CPU; an unavailable explicit choice is an error."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but no CUDA GPU is available")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was asked for but Apple MPS is not available")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or mps") from exc


@dataclass
class LoadedModel:
    """A network from a run, ready to sample, and where it came from."""

    model: DiffusionModel
    run: Run
    checkpoint: Path
    network_sha256: str
    config: dict[str, Any]
    sample_shape: tuple[int, ...]
    num_classes: int | None
    ema: bool

    @property
    def step(self) -> int:
        return int(self.checkpoint.name.split("-")[-1])


def load_model(
    run_dir: str | Path,
    *,
    checkpoint: str | None = None,
    ema: bool = True,
    device: str = "auto",
    registry: PluginRegistry | None = None,
) -> LoadedModel:
    """Rebuild the run's network from its config and load the checkpoint's weights."""
    registry = registry or load_plugins()
    run = Run(run_dir)
    config = run.read_config()
    folder = run.resolve_checkpoint(checkpoint)
    train = config["train"]
    info = config["dataset_info"]
    sample_shape = tuple(info["sample_shape"])
    network = build_network(
        registry, train["network"], train["network_params"], sample_shape, info["num_classes"]
    )
    weights_folder = folder / ("network_ema" if ema else "network")
    load_network_weights(network, weights_folder)
    target = resolve_device(device)
    network.to(target).eval()
    schedule = build_schedule(
        registry, train["schedule"], train["schedule_params"], train["num_timesteps"]
    )
    model = DiffusionModel(
        network, schedule, prediction_type=train["prediction_type"], x0_clip=info["x0_clip"]
    )
    return LoadedModel(
        model=model,
        run=run,
        checkpoint=folder,
        network_sha256=file_sha256(weights_folder / WEIGHTS_NAME),
        config=config,
        sample_shape=sample_shape,
        num_classes=info["num_classes"],
        ema=ema,
    )


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def check_memory_for(num_samples: int, sample_shape: tuple[int, ...]) -> None:
    """Refuse, before any work, a number of samples whose float32 results (held in memory, then
    joined: twice their size) cannot fit in this machine's memory."""
    needed = 2 * 4 * int(num_samples) * int(np.prod(sample_shape))
    available = memory_bytes()
    if available is not None and needed > available:
        raise ConfigError(
            f"{num_samples:,} samples of shape {tuple(sample_shape)} need about "
            f"{needed / 2**30:,.1f} GiB in memory, more than this machine's "
            f"{available / 2**30:,.1f} GiB; ask for fewer (several calls with different --seed "
            "values give more)"
        )


def load_init_noise(path: str | Path, sample_shape: tuple[int, ...]) -> torch.Tensor:
    """Initial noise x_T from a ``.npy`` file: (N, *sample_shape) or one (*sample_shape)."""
    path = Path(path).expanduser()
    how = "save it with numpy.save(path, array) as a .npy file"
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # EOFError (empty file), ValueError (pickle, text), OSError, ...
        reason = "the file is empty" if path.is_file() and path.stat().st_size == 0 else (
            " ".join(str(exc).split()) or type(exc).__name__)
        raise SamplingError(f"cannot read initial noise {path}: {reason}; {how}") from exc
    if not isinstance(loaded, np.ndarray):  # an .npz archive
        keys = list(loaded.keys())
        loaded.close()
        raise SamplingError(
            f"initial noise {path} is an .npz archive (arrays {', '.join(keys) or 'none'}), "
            f"not one array; {how}"
        )
    array = loaded
    if tuple(array.shape) == sample_shape:
        array = array[None]
    if tuple(array.shape[1:]) != sample_shape:
        raise SamplingError(
            f"initial noise in {path} has shape {tuple(array.shape)}; this model needs "
            f"(N, {', '.join(map(str, sample_shape))})"
        )
    if not np.issubdtype(array.dtype, np.floating) or not np.all(np.isfinite(array)):
        raise SamplingError(f"initial noise in {path} must be finite floating-point numbers")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


#: Appended to a sampler's TypeError that mentions ``generator``: the usual cause is treating
#: the per-sample generators as one generator.
_GENERATOR_HINT = (
    "; `generator` is a sequence of one torch.Generator per sample (generator[i] draws the "
    "noise of x[i]), not a single generator: draw noise with "
    "diffstudio.engine.samplers.randn_like_per_sample(x, generator)"
)


def call_sampler(
    sampler: Callable[..., Any],
    model: DiffusionModel,
    x: torch.Tensor,
    generators: Generators,
    *,
    params: Mapping[str, Any],
    callback: Callable[[SamplerStep], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    sampler_id: str = "sampler",
    plugin: str = "",
) -> torch.Tensor:
    """Call a sampler the one way diffstudio does, and check what it returns.

    ``sampler(model, x, generator=generators, callback=callback, should_stop=should_stop,
    **params)`` with x: (B, *sample_shape) and ``generators`` one ``torch.Generator`` per row.
    A failure that is not a :class:`DiffstudioError` becomes a :class:`PluginError` naming the
    sampler and its plugin; a result of the wrong shape a :class:`SamplingError`. (Finiteness
    is left to the caller.) Used by :func:`generate` and by the conformance kit.
    """
    where = f"sampler {sampler_id!r} (plugin {plugin or '?'})"
    try:
        result = sampler(
            model, x, generator=generators, callback=callback, should_stop=should_stop, **params
        )
    except DiffstudioError:
        raise
    except Exception as exc:
        hint = _GENERATOR_HINT if isinstance(exc, TypeError) and "generator" in str(exc) else ""
        raise PluginError(f"{where} failed: {type(exc).__name__}: {exc}{hint}") from exc
    if not isinstance(result, torch.Tensor) or tuple(result.shape) != tuple(x.shape):
        raise SamplingError(
            f"{where} returned {getattr(result, 'shape', type(result).__name__)}; expected "
            f"{tuple(x.shape)}, the shape of its initial noise"
        )
    return result


def sample_batch(
    model: DiffusionModel,
    sampler: Callable[..., Any],
    seeds: list[int],
    sample_shape: tuple[int, ...],
    *,
    params: Mapping[str, Any],
    init_noise: torch.Tensor | None = None,
    callback: Callable[[SamplerStep], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    sampler_id: str = "sampler",
    plugin: str = "",
) -> torch.Tensor:
    """One batch of :func:`generate`: sample i from the generator seeded ``seeds[i]`` alone.

    That generator first draws the sample's initial noise x_T (``torch.randn(sample_shape)``,
    float32, CPU), unless ``init_noise`` (len(seeds), *sample_shape) is given, and is then
    passed on to the sampler for the noise it adds. x goes to the network's device and dtype.
    Returns the sampler's output, (len(seeds), *sample_shape), where it was computed.
    """
    generators = per_sample_generators(seeds)
    if init_noise is not None:
        x = init_noise.clone()
    else:
        x = torch.stack([torch.randn(sample_shape, generator=g) for g in generators])
    device, dtype = network_device_dtype(model.network)
    x = x.to(device=device, dtype=dtype)
    return call_sampler(
        sampler, model, x, generators, params=params, callback=callback,
        should_stop=should_stop, sampler_id=sampler_id, plugin=plugin,
    )


@dataclass
class SampleResult:
    """samples: (N, *sample_shape) float32 on the CPU; seeds: the seed of each sample."""

    samples: torch.Tensor
    seeds: list[int]
    sampler: str
    params: dict[str, Any]
    network_evaluations: int  # per sample (network calls along one trajectory)
    seconds: float
    init_noise: bool
    class_labels: list[int] | None = None
    guidance: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def generate(
    model: DiffusionModel,
    sampler_id: str,
    params: Mapping[str, Any] | None = None,
    *,
    sample_shape: tuple[int, ...],
    num_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    init_noise: torch.Tensor | None = None,
    class_label: int | None = None,
    guidance: float | None = None,
    num_classes: int | None = None,
    registry: PluginRegistry | None = None,
    callback: Callable[[SamplerStep, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SampleResult:
    """Draw ``num_samples`` samples in batches. ``callback(step, batch_index)`` sees every step.

    Raises :class:`diffstudio.errors.Cancelled` when ``should_stop`` asks, between steps.
    ``guidance`` (gamma, with ``class_label`` and the model's ``num_classes``) samples with
    classifier-free guidance, whatever the sampler (one wrapper around the network).
    """
    registry = registry or load_plugins()
    contribution, sampler = get_sampler(registry, sampler_id)
    values = contribution.validate(params)
    if init_noise is not None:
        if num_samples is not None and num_samples != init_noise.shape[0]:
            raise SamplingError(
                f"asked for {num_samples} samples but the initial noise holds "
                f"{init_noise.shape[0]}; leave the number out or match it"
            )
        num_samples = init_noise.shape[0]
    if not num_samples or num_samples < 1:
        raise ConfigError("the number of samples must be at least 1")
    if batch_size < 1:
        raise ConfigError("batch size must be at least 1")
    check_memory_for(num_samples, sample_shape)
    if guidance is not None:
        if class_label is None or not num_classes:
            raise ConfigError(
                "guidance needs a class label and a class-conditional model; pass --class-label"
            )
        from diffstudio.engine.guidance import guided_model

        model = guided_model(model, class_label, guidance, num_classes)
    seeds = range(seed, seed + num_samples)
    outputs = []
    model.network_evaluations = 0
    evaluations_per_batch = 0
    started = time.perf_counter()
    for batch_index, first in enumerate(range(0, num_samples, batch_size)):
        batch_seeds = list(seeds[first : first + batch_size])
        if class_label is not None:
            model.class_labels = torch.full((len(batch_seeds),), class_label, dtype=torch.long)
        before = model.network_evaluations
        step_callback = None
        if callback is not None:
            def step_callback(step: SamplerStep, _batch: int = batch_index) -> None:
                callback(step, _batch)
        result = sample_batch(
            model, sampler, batch_seeds, sample_shape, params=values,
            init_noise=None if init_noise is None else init_noise[first : first + len(batch_seeds)],
            callback=step_callback, should_stop=should_stop, sampler_id=sampler_id,
            plugin=contribution.plugin,
        )
        evaluations_per_batch = model.network_evaluations - before
        if not torch.isfinite(result).all():
            raise SamplingError(
                f"sampler {sampler_id!r} (plugin {contribution.plugin or '?'}) produced NaN or "
                "infinite values; try more steps, another sampler, or check the checkpoint"
            )
        outputs.append(result.detach().float().cpu())
    seconds = time.perf_counter() - started
    return SampleResult(
        samples=torch.cat(outputs),
        seeds=list(seeds),
        sampler=sampler_id,
        params=values,
        network_evaluations=evaluations_per_batch,
        seconds=seconds,
        init_noise=init_noise is not None,
        class_labels=[class_label] * num_samples if class_label is not None else None,
        guidance=guidance,
    )


_SAMPLE_FILE = re.compile(r"^(sample-\d+\.png|samples\.npz|grid\.png)$")


def sample_file_names(result: SampleResult) -> list[str]:
    """The PNG names :func:`save_samples` writes for ``result`` (none for 2-D points)."""
    return [f"sample-{seed:06d}.png" for seed in result.seeds] if result.samples.dim() == 4 \
        else []


def refuse_existing(result: SampleResult, out: Path) -> None:
    """Raise :class:`SamplingError` when writing ``result`` into ``out`` would replace files."""
    targets = [out / name for name in sample_file_names(result)] + [out / "samples.npz"]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise SamplingError(
            f"{len(existing)} file(s) already exist in {out} (e.g. {existing[0]}); choose "
            "another folder or pass --overwrite"
        )


def check_samples_out(out: str | Path, *, overwrite: bool) -> Path:
    """Check, before any sampling work, that samples can be written to ``out``; returns it.

    ``out`` must be a folder (or not exist yet) whose parent can be created and written to;
    with ``overwrite`` an existing ``out`` is replaced whole, so it may hold only what
    :func:`save_samples` writes (sample PNGs, samples.npz, grid.png) -- never a folder of
    other files. Raises :class:`SamplingError` saying what is wrong."""
    import tempfile

    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise SamplingError(f"cannot write samples to {folder}: it is a file, not a folder")
    if overwrite and folder.is_dir():
        foreign = sorted(p.name for p in folder.iterdir() if not _SAMPLE_FILE.match(p.name))
        if foreign:
            raise SamplingError(
                f"--overwrite replaces the whole folder {folder}, which holds other files than "
                f"samples (e.g. {foreign[0]}); choose an empty folder or one written by "
                "'diffstudio sample'"
            )
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        for where in (folder.parent, folder) if folder.is_dir() else (folder.parent,):
            probe = tempfile.mkdtemp(prefix=".tmp-write-check-", dir=where)
            os.rmdir(probe)
    except OSError as exc:
        problem = storage_problem(exc) or f"{exc.strerror or exc} ({type(exc).__name__})"
        raise SamplingError(
            f"cannot write samples to {folder}: {problem}; choose a folder you can write to "
            "(--out)"
        ) from exc
    return folder


def sample_metadata(result: SampleResult, index: int,
                    metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What sample ``index``'s PNG records: the model's ``metadata``, the sampler and its
    parameters, network evaluations, seed, position in the batch, class and guidance."""
    import diffstudio

    entry = {
        **dict(metadata),
        "sampler": result.sampler,
        "sampler_params": result.params,
        "network_evaluations": result.network_evaluations,
        "init_noise": result.init_noise,
        "guidance": result.guidance,
        "version": diffstudio.__version__,
        "seed": result.seeds[index],
        "index": index,
    }
    if result.class_labels is not None:
        entry["class_label"] = result.class_labels[index]
    return entry


def save_samples(
    result: SampleResult,
    out_dir: str | Path,
    *,
    metadata: Mapping[str, Any],
    overwrite: bool = False,
    scale: int = 1,
) -> list[Path]:
    """Write one PNG per image sample (with its metadata) and ``samples.npz`` with the arrays.

    Refuses to replace existing files unless ``overwrite``. Returns the PNG paths (none for
    2-D points, which go to the .npz only).
    """
    from diffstudio.engine.io import atomic_write_with

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    names = sample_file_names(result)
    if not overwrite:
        refuse_existing(result, out)
    paths = []
    for index, name in enumerate(names):
        write_png(out / name, result.samples[index].numpy(),
                  sample_metadata(result, index, metadata), scale=scale)
        paths.append(out / name)

    def write_npz(temp: Path) -> None:
        with open(temp, "wb") as handle:
            np.savez(
                handle,
                samples=result.samples.numpy(),
                seeds=np.asarray(result.seeds, dtype=np.int64),
            )

    atomic_write_with(out / "samples.npz", write_npz)
    return paths
