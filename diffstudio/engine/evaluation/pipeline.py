"""An evaluation from start to end: the Inception, the reference statistics (cached), the
features of the samples, and the metrics of :mod:`.metrics`, in one pass.

Samples come from memory (a tensor, :func:`evaluate_samples`), from a samples folder or from a
run and a sampler (generated in memory, never written and re-read; :func:`evaluate_source`).
Reference features are cached (:mod:`.cache`), so a repeated evaluation pays only for the
generated side. Progress is reported stage by stage (``weights``, ``reference``, ``generate``,
``samples``, ``metrics``) as :class:`~.progress.EvalProgress`; ``should_stop()`` is polled
between batches and steps. Nothing here imports Qt: the application layer
(:mod:`diffstudio.app.evaluate`) runs these functions as a job, for the CLI and the window, and
owns the one loop over a sweep of sampler settings.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffstudio.engine.datasets import Dataset
from diffstudio.engine.evaluation.cache import ReferenceCache, ReferenceStatistics, reference_key
from diffstudio.engine.evaluation.features import INCEPTION_SIZE, InceptionFeatures
from diffstudio.engine.evaluation.fid_weights import FidWeights, locate_fid_weights
from diffstudio.engine.evaluation.metrics import MetricInputs, compute_metrics
from diffstudio.engine.evaluation.progress import (
    NOT_CACHED_NOTE,
    ProgressCallback,
    StopCheck,
    check_stop,
    emit,
)
from diffstudio.engine.evaluation.result import EvaluationResult, now_iso
from diffstudio.engine.evaluation.settings import DEFAULT_NUM_SAMPLES, EvalSettings
from diffstudio.engine.evaluation.sources import (
    folder_source,
    is_run_folder,
    load_samples_folder,
    reference_from_registry,
    run_model_info,
    training_reference,
)
from diffstudio.errors import EvaluationError

__all__ = [
    "evaluate_run",
    "evaluate_samples",
    "evaluate_source",
    "prepare_extractor",
    "reference_statistics",
]


def prepare_extractor(
    weights: str | Path | FidWeights | None = None,
    *,
    device: str = "auto",
    batch_size: int = 50,
    download: bool | None = None,
    allow_unverified: bool = False,
    resize_to: int = INCEPTION_SIZE,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> InceptionFeatures:
    """Locate (or download, reporting stage ``weights`` in bytes) and load the Inception.

    ``weights`` is a path, a :class:`FidWeights` (``FidWeights.random()`` for tests), or None to
    search as :func:`~.features.locate_fid_weights` does.
    """
    if not isinstance(weights, FidWeights):
        weights = locate_fid_weights(
            weights, download=download, allow_unverified=allow_unverified,
            progress=lambda done, total: emit(progress, "weights", done, total or 0,
                                               "downloading the Inception FID weights"),
            should_stop=should_stop,
        )
    emit(progress, "weights", 1, 1, f"Inception weights: {weights.source}")
    return InceptionFeatures(weights, device=device, batch_size=batch_size, resize_to=resize_to)


def reference_statistics(
    dataset: Dataset,
    extractor: InceptionFeatures,
    cache: ReferenceCache,
    *,
    limit: int = 0,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> ReferenceStatistics:
    """Features, mean and covariance of ``dataset`` (all of it, or a ``limit``-image subset),
    from the cache when present, else computed and stored."""
    if dataset.kind != "image" or dataset.data.dim() != 4:
        raise EvaluationError(
            f"the reference dataset {dataset.name!r} does not hold images (N, C, H, W); Inception "
            "metrics need an image dataset"
        )
    size = len(dataset)
    if 0 < limit < size:
        indices = np.sort(np.random.default_rng(seed).choice(size, limit, replace=False))
        subset = {"limit": int(limit), "seed": int(seed)}
    else:
        indices = np.arange(size)
        subset = {}
    dataset_sha = dataset.content_hash()
    key = reference_key(dataset_sha, dataset.sample_shape, extractor.identity, subset)

    def compute() -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        images = dataset.data[torch.from_numpy(indices)]
        # Said before the first batch: the first evaluation against a reference set pays for
        # its Inception features once (minutes on a CPU for a few thousand images).
        message = (f"{NOT_CACHED_NOTE}: encoding {len(indices):,} images of {dataset.name} "
                   "with Inception once; later evaluations read them from the cache")
        emit(progress, "reference", 0, len(indices), message)
        features = extractor(
            images,
            progress=lambda done, total: emit(progress, "reference", done, total, message),
            should_stop=should_stop,
        )
        info = {
            "dataset": dataset.name,
            "source": dataset.source,
            "dataset_sha256": dataset_sha,
            "dataset_size": size,
            "subset": subset,
            "image_shape": list(dataset.sample_shape),
            "extractor": extractor.identity,
            "created": now_iso(),
        }
        return features, indices, info

    stats = cache.get_or_compute(key, dataset.name, compute)
    if stats.from_cache:
        emit(progress, "reference", len(stats.indices), len(stats.indices),
              f"reference statistics from the cache ({stats.path})")
    return stats


def evaluate_samples(
    samples: torch.Tensor | np.ndarray,
    reference: Dataset,
    extractor: InceptionFeatures,
    *,
    settings: EvalSettings | None = None,
    cache: ReferenceCache | None = None,
    reference_spec: Mapping[str, Any] | None = None,
    source: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> EvaluationResult:
    """All requested metrics of ``samples`` (N, C, H, W) in [-1, 1] against ``reference``.

    ``reference_spec`` (dataset id and parameters), ``source`` and ``model`` are copied into
    the result for the record and the comparison tables.
    """
    settings = (settings or EvalSettings()).validate()
    cache = cache or ReferenceCache()
    images = torch.as_tensor(samples).detach().float().cpu()
    if images.dim() != 4:
        raise EvaluationError(
            f"samples must be images shaped (N, C, H, W); got {tuple(images.shape)}"
        )
    if images.shape[0] < 2:
        raise EvaluationError(f"evaluation needs at least 2 samples; got {images.shape[0]}")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    stats = reference_statistics(
        reference, extractor, cache, limit=settings.reference_limit, seed=settings.seed,
        progress=progress, should_stop=should_stop,
    )
    timings["reference_features"] = time.perf_counter() - started
    check_stop(should_stop, "after the reference features")

    started = time.perf_counter()
    features = extractor(
        images,
        progress=lambda done, total: emit(progress, "samples", done, total,
                                           "features of the generated samples"),
        should_stop=should_stop,
    )
    timings["sample_features"] = time.perf_counter() - started

    n, m = images.shape[0], stats.features.shape[0]
    result = EvaluationResult(
        n_generated=n,
        n_reference=m,
        comparable_fid=extractor.is_fid,
        source=dict(source or {}),
        model=dict(model or {}),
        inception={**extractor.weights.to_dict(), "preprocessing": extractor.preprocessing},
        settings=asdict(settings),
        samples=images,
        reference_dataset=reference,
    )
    result.reference = {
        **dict(reference_spec or {}),
        "name": reference.name,
        "size": len(reference),
        "used": m,
        "content_sha256": stats.info.get("dataset_sha256"),
        "subset": stats.info.get("subset", {}),
        "cache_key": stats.key,
        "cache_file": str(stats.path) if stats.path else None,
        "from_cache": stats.from_cache,
        "image_shape": list(reference.sample_shape),
    }
    if not extractor.weights.verified:
        result.warnings.append(
            f"warning: Inception weights are {extractor.weights.source}; these numbers are not "
            "comparable with published FIDs"
        )
    elif extractor.resize_to != 299:
        result.warnings.append(
            f"warning: images resized to {extractor.resize_to}, not 299; not a comparable FID"
        )

    started = time.perf_counter()
    inputs = MetricInputs(features, images, reference, stats, settings)
    with _blas_threads(settings.blas_threads):
        steps = compute_metrics(result, settings.metrics, inputs, progress, should_stop)
    timings["metrics"] = time.perf_counter() - started
    result.timings.update(timings)
    emit(progress, "metrics", len(steps), len(steps), "done")
    return result


def _blas_threads(count: int) -> Any:
    """Limit BLAS threads to ``count`` (0: no limit). On a shared, loaded machine OpenBLAS
    threads spin while they wait for each other: KID's 300 small products took 9-13 s with 2
    threads and 0.3 s with one, measured on this project's 2-core machines."""
    if count <= 0:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=count, user_api="blas")


def evaluate_run(
    run_dir: str | Path,
    sampler_id: str = "ddim",
    sampler_params: Mapping[str, Any] | None = None,
    *,
    extractor: InceptionFeatures,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    reference: Dataset | None = None,
    reference_spec: Mapping[str, Any] | None = None,
    seed: int = 0,
    batch_size: int = 64,
    checkpoint: str | None = None,
    ema: bool = True,
    device: str = "auto",
    class_label: int | None = None,
    settings: EvalSettings | None = None,
    cache: ReferenceCache | None = None,
    registry: Any = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> EvaluationResult:
    """Generate ``num_samples`` from a run with a sampler, in memory, and evaluate them.

    The reference defaults to the run's own training dataset (same id and parameters).
    """
    from diffstudio.engine.sampling import generate, load_model
    from diffstudio.plugin_manager import load_plugins

    registry = registry or load_plugins()
    loaded = load_model(run_dir, checkpoint=checkpoint, ema=ema, device=device, registry=registry)
    config = loaded.run.config()
    if reference is None:
        reference, reference_spec = reference_from_registry(
            registry, config.dataset, config.dataset_params
        )
    batches = -(-num_samples // batch_size)
    counter = {"done": 0}

    def on_step(step: Any, batch: int) -> None:
        counter["done"] += 1
        emit(progress, "generate", counter["done"], step.num_steps * batches,
              f"sampling with {sampler_id}")

    result = generate(
        loaded.model, sampler_id, sampler_params, sample_shape=loaded.sample_shape,
        num_samples=num_samples, seed=seed, batch_size=batch_size, class_label=class_label,
        registry=registry, callback=on_step, should_stop=should_stop,
    )
    source = {
        "kind": "run",
        "run": str(loaded.run.path),
        "checkpoint": loaded.checkpoint.name,
        "ema": loaded.ema,
        "network_sha256": loaded.network_sha256,
        "sampler": sampler_id,
        "sampler_params": result.params,
        "steps": result.params.get("steps"),
        "network_evaluations": result.network_evaluations,
        "seed": seed,
        "class_label": class_label,
        "sampling_seconds": result.seconds,
        "sampling_seconds_per_100": result.seconds / num_samples * 100.0,
        "device": str(next(iter(loaded.model.network.parameters()), torch.empty(0)).device),
    }
    evaluation = evaluate_samples(
        result.samples, reference, extractor, settings=settings, cache=cache,
        reference_spec=reference_spec, source=source,
        model=run_model_info(loaded.run, config, loaded.checkpoint),
        progress=progress, should_stop=should_stop,
    )
    evaluation.timings["generation"] = result.seconds
    return evaluation


def evaluate_source(
    source: str | Path,
    *,
    extractor: InceptionFeatures,
    registry: Any,
    reference_id: str | None = None,
    reference_params: Mapping[str, Any] | None = None,
    sampler_id: str = "ddim",
    sampler_params: Mapping[str, Any] | None = None,
    num_samples: int | None = None,
    settings: EvalSettings | None = None,
    cache: ReferenceCache | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    **run_options: Any,
) -> EvaluationResult:
    """Evaluate a run (sampled in memory with ``sampler_id``, ``num_samples`` of them, default
    2048) or a samples folder (its first ``num_samples``, default all), as ``diffstudio eval``
    and the Evaluate page do.

    The reference is ``reference_id`` with ``reference_params``, by default the training set
    of the run (for a folder: of the run its PNGs name), whose own dataset parameters are kept
    under any given ones. ``run_options`` go to :func:`evaluate_run` (seed, batch_size,
    checkpoint, ema, device, class_label).
    """
    location = Path(source).expanduser()
    if not location.is_dir():
        raise EvaluationError(f"no run or samples folder at {source}")
    training_id, training_params, origin = training_reference(location)
    chosen = reference_id or training_id
    if chosen is None:
        raise EvaluationError(
            f"no reference dataset: {source} names no run to take it from; choose one "
            f"({', '.join(registry.ids('dataset'))})"
        )
    if chosen not in registry.ids("dataset"):
        raise EvaluationError(
            f"unknown reference dataset {chosen!r}; choose from "
            f"{', '.join(registry.ids('dataset'))}"
        )
    same = chosen == training_id
    params = {**(training_params if same else {}), **dict(reference_params or {})}
    reference, spec = reference_from_registry(registry, chosen, params)
    if origin and same:
        spec["from"] = origin
    common: dict[str, Any] = dict(
        reference=reference, reference_spec=spec, settings=settings, cache=cache,
        progress=progress, should_stop=should_stop,
    )
    if is_run_folder(location):
        return evaluate_run(location, sampler_id, sampler_params, extractor=extractor,
                            num_samples=num_samples or DEFAULT_NUM_SAMPLES, registry=registry,
                            **common, **run_options)
    loaded = load_samples_folder(location)
    samples = loaded.samples[:num_samples] if num_samples else loaded.samples
    record, model = folder_source(loaded)
    record["used"] = int(samples.shape[0])
    result = evaluate_samples(samples, extractor=extractor, source=record, model=model, **common)
    if loaded.skipped:
        result.notes.insert(0, loaded.skipped_note())
    return result
