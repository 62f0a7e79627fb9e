"""Evaluate generated samples against a reference dataset, in one pass over Inception features.

Samples come from memory (a tensor), from a samples folder (``samples.npz`` written by
``diffstudio sample``, else its PNGs), or from a run and a sampler (generated in memory, never
written and re-read). Reference features are cached (:mod:`.cache`), so a repeated evaluation
pays only for the generated side. Metrics, from the same features:

======================  ==================================================  ===================
``fid``                 FID@N, the seed's Eq. (39)                          .frechet
``kid``                 KID mean and std over subsets (unbiased)            .kid
``precision_recall``    improved precision and recall, k = 3                .precision_recall
``density_coverage``    density and coverage, k = 5                         .density_coverage
``retrieval``           5 nearest training images (Inception and pixels)    .retrieval
``memorization``        Carlini et al.'s ratio test in pixels + base rate   .retrieval
======================  ==================================================  ===================

Progress is reported as :class:`EvalProgress` through ``progress(event)``, stage by stage
(``weights``, ``reference``, ``generate``, ``samples``, ``metrics``, ``done``); ``should_stop()``
is polled between batches and steps and raises :class:`~diffstudio.errors.Cancelled`. Nothing
here imports Qt: the Evaluate view runs these functions in a worker.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffstudio.engine.datasets import Dataset
from diffstudio.engine.evaluation.cache import ReferenceCache, ReferenceStatistics, reference_key
from diffstudio.engine.evaluation.density_coverage import DensityCoverage, density_coverage
from diffstudio.engine.evaluation.features import (
    INCEPTION_SIZE,
    FidWeights,
    InceptionFeatures,
    locate_fid_weights,
)
from diffstudio.engine.evaluation.frechet import frechet_distance_to_features
from diffstudio.engine.evaluation.kid import KidResult, kernel_inception_distance
from diffstudio.engine.evaluation.precision_recall import PrecisionRecall, precision_recall
from diffstudio.engine.evaluation.retrieval import (
    MemorizationReport,
    Neighbours,
    memorization_check,
    nearest_training_images,
    pixel_vectors,
)
from diffstudio.engine.io import atomic_write_json
from diffstudio.errors import Cancelled, EvaluationError

__all__ = [
    "DEFAULT_METRICS",
    "DEFAULT_NUM_SAMPLES",
    "METRICS",
    "RESULT_FORMAT",
    "EvalProgress",
    "EvalSettings",
    "EvaluationResult",
    "LoadedSamples",
    "default_result_path",
    "evaluate_grid",
    "evaluate_run",
    "evaluate_samples",
    "evaluate_source",
    "fid_warnings",
    "folder_source",
    "is_run_folder",
    "load_samples_folder",
    "prepare_extractor",
    "reference_from_registry",
    "reference_statistics",
    "training_reference",
    "write_result",
]

METRICS = ("fid", "kid", "precision_recall", "density_coverage", "retrieval", "memorization")
DEFAULT_METRICS = ("fid", "kid", "precision_recall", "retrieval", "memorization")
RESULT_FORMAT = "diffstudio-evaluation/1"
FID_MIN_N = 2048  # the feature dimension: below it the covariance is singular
DEFAULT_NUM_SAMPLES = 2048  # samples generated from a run when no number is given
FID_PAPER_N = 10_000


@dataclass(frozen=True)
class EvalProgress:
    """One progress report: ``done`` of ``total`` units in ``stage`` (images, steps, bytes)."""

    stage: str
    done: int
    total: int
    message: str = ""


ProgressCallback = Callable[[EvalProgress], None]
StopCheck = Callable[[], bool]


@dataclass
class EvalSettings:
    """What to compute and how. ``reference_limit`` > 0 uses a random subset of the reference
    (drawn with ``seed``, cached as its own entry); 0 uses all of it."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    precision_recall_k: int = 3
    density_coverage_k: int = 5
    retrieval_k: int = 5
    memorization_threshold: float = 1.0
    memorization_neighbours: int = 50
    baseline_size: int = 2000
    reference_limit: int = 0
    seed: int = 0
    blas_threads: int = 0  # BLAS threads for the metrics; 0 leaves the library's default

    def validate(self) -> EvalSettings:
        """Check every value; FID always brings KID along (it is unbiased at small N)."""
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise EvaluationError(
                f"unknown metric(s) {unknown or '(none given)'}; choose from {', '.join(METRICS)}"
            )
        if "fid" in self.metrics and "kid" not in self.metrics:
            self.metrics = (*self.metrics, "kid")
        for name in ("kid_subsets", "kid_subset_size", "precision_recall_k",
                     "density_coverage_k", "retrieval_k", "memorization_neighbours"):
            if int(getattr(self, name)) < 1:
                raise EvaluationError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.reference_limit < 0 or self.baseline_size < 0 or self.blas_threads < 0:
            raise EvaluationError(
                "reference_limit, baseline_size and blas_threads must be >= 0 (0: all/default)"
            )
        if not self.memorization_threshold > 0:
            raise EvaluationError(
                f"memorization_threshold must be > 0, got {self.memorization_threshold}"
            )
        return self


def _emit(progress: ProgressCallback | None, stage: str, done: int, total: int,
          message: str = "") -> None:
    if progress is not None:
        progress(EvalProgress(stage, int(done), int(total), message))


def _check_stop(should_stop: StopCheck | None, where: str) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled(f"the evaluation was stopped {where}")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def fid_warnings(n_generated: int, n_reference: int) -> list[str]:
    """What to tell the user about FID@N at these sample counts (empty when N is large)."""
    messages = []
    if n_generated < FID_MIN_N:
        messages.append(
            f"warning: FID@{n_generated} uses fewer than {FID_MIN_N} samples; the 2048-d "
            "covariance is then rank-deficient and FID is strongly biased upwards: compare FIDs "
            "only at the same N, and read KID, which is unbiased"
        )
    if n_generated < FID_PAPER_N:
        messages.append(
            f"note: FID@{n_generated} is comparable only with FIDs at the same N; published "
            f"FIDs use {FID_PAPER_N} or 50000 samples"
        )
    if n_reference < FID_MIN_N:
        messages.append(
            f"note: the reference set has {n_reference} images (< {FID_MIN_N}); its covariance "
            "is rank-deficient too"
        )
    return messages


def _run_config(path: Path) -> dict[str, Any] | None:
    config = path / "config.json"
    if not config.is_file():
        return None
    try:
        payload = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def is_run_folder(path: str | Path) -> bool:
    """True when ``path`` holds a readable run config (else it is taken as a samples folder)."""
    return _run_config(Path(path).expanduser()) is not None


def training_reference(source: str | Path | None) -> tuple[str | None, dict[str, Any], str]:
    """The default reference of an evaluation: ``(dataset id, params, where it came from)`` of
    the run's training set, or of the run a samples folder's PNGs name; ``(None, {}, "")`` when
    neither says."""
    if source is None:
        return None, {}, ""
    source = Path(source).expanduser()
    config = _run_config(source)
    origin = f"the training set of {source}"
    if config is None and source.is_dir():
        from diffstudio.engine.pngmeta import read_png_metadata

        pngs = sorted(p for p in source.glob("*.png") if p.name != "grid.png")
        run = read_png_metadata(pngs[0]).get("run") if pngs else None
        if run:
            config = _run_config(Path(run))
            origin = f"the training set of {run} (named in the PNGs)"
    if not config:
        return None, {}, ""
    train = config.get("train", {})
    return train.get("dataset"), dict(train.get("dataset_params") or {}), origin


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
            progress=lambda done, total: _emit(progress, "weights", done, total or 0,
                                               "downloading the Inception FID weights"),
            should_stop=should_stop,
        )
    _emit(progress, "weights", 1, 1, f"Inception weights: {weights.source}")
    return InceptionFeatures(weights, device=device, batch_size=batch_size, resize_to=resize_to)


# -- reference side ------------------------------------------------------------------------
def reference_from_registry(
    registry: Any, dataset_id: str, params: Mapping[str, Any] | None = None
) -> tuple[Dataset, dict[str, Any]]:
    """Build a reference dataset from its plugin id; returns it with a JSON description."""
    from diffstudio.engine.components import build_dataset

    contribution = registry.get("dataset", dataset_id)
    values = contribution.validate(params)
    dataset = build_dataset(registry, dataset_id, values)
    if dataset.kind != "image":
        raise EvaluationError(
            f"the reference dataset {dataset_id!r} holds {dataset.kind}, not images; Inception "
            "metrics need an image dataset"
        )
    return dataset, {"dataset": dataset_id, "params": values}


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
        features = extractor(
            images,
            progress=lambda done, total: _emit(progress, "reference", done, total,
                                               f"reference features ({dataset.name})"),
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
            "created": _now(),
        }
        return features, indices, info

    stats = cache.get_or_compute(key, dataset.name, compute)
    if stats.from_cache:
        _emit(progress, "reference", len(stats.indices), len(stats.indices),
              f"reference statistics from the cache ({stats.path})")
    return stats


# -- the result ----------------------------------------------------------------------------
@dataclass
class EvaluationResult:
    """Everything one evaluation produced. ``to_dict()`` is the JSON written to disk.

    Retrieval indices are indices into the reference *dataset* (not into a subset), so a view
    can show ``dataset.data[index]``. Inception-space retrieval searches the images whose
    features were computed (a subset with ``reference_limit``); pixel space searches them all.
    ``samples`` (N, C, H, W) in [-1, 1] and ``reference_dataset`` stay in memory for the
    retrieval grid and are not written.
    """

    n_generated: int
    n_reference: int
    fid: float | None = None
    kid: KidResult | None = None
    precision_recall: PrecisionRecall | None = None
    density_coverage: DensityCoverage | None = None
    retrieval: dict[str, Neighbours] = field(default_factory=dict)
    memorization: MemorizationReport | None = None
    comparable_fid: bool = False
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    inception: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    created: str = field(default_factory=_now)
    samples: torch.Tensor | None = None
    reference_dataset: Dataset | None = None
    path: Path | None = None

    @property
    def fid_label(self) -> str:
        return f"FID@{self.n_generated}"

    def to_dict(self) -> dict[str, Any]:
        import diffstudio

        metrics: dict[str, Any] = {}
        if self.fid is not None:
            metrics["fid"] = {"value": self.fid, "n": self.n_generated,
                              "n_reference": self.n_reference, "label": self.fid_label}
        if self.kid is not None:
            metrics["kid"] = self.kid.to_dict()
        if self.precision_recall is not None:
            metrics["precision_recall"] = self.precision_recall.to_dict()
        if self.density_coverage is not None:
            metrics["density_coverage"] = self.density_coverage.to_dict()
        return {
            "format": RESULT_FORMAT,
            "created": self.created,
            "diffstudio": diffstudio.__version__,
            "n": self.n_generated,
            "n_reference": self.n_reference,
            "metrics": metrics,
            "comparable_fid": self.comparable_fid,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "source": self.source,
            "model": self.model,
            "reference": self.reference,
            "inception": self.inception,
            "settings": self.settings,
            "retrieval": {space: n.to_dict() for space, n in self.retrieval.items()},
            "memorization": self.memorization.to_dict() if self.memorization else None,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }

    def summary_lines(self) -> list[str]:
        """Human-readable lines: FID@N, KID mean +- std, the rest; warnings last."""
        lines = []
        if self.fid is not None:
            tag = "" if self.comparable_fid else "  (NOT a comparable FID: see the notes)"
            lines.append(f"{self.fid_label}: {self.fid:.4f}  (N = {self.n_generated} generated, "
                         f"{self.n_reference} reference){tag}")
        if self.kid is not None:
            lines.append(f"KID: {self.kid.mean:.6f} ± {self.kid.std:.6f}  ({self.kid.subsets} "
                         f"subsets of {self.kid.subset_size})")
        if self.precision_recall is not None:
            pr = self.precision_recall
            lines.append(f"precision {pr.precision:.4f}, recall {pr.recall:.4f} (k = {pr.k})")
        if self.density_coverage is not None:
            dc = self.density_coverage
            lines.append(f"density {dc.density:.4f}, coverage {dc.coverage:.4f} (k = {dc.k})")
        if "inception" in self.retrieval:
            first = self.retrieval["inception"].distances[:, 0]
            lines.append(f"retrieval: {self.retrieval['inception'].k} nearest training images "
                         f"per sample; median nearest Inception distance {np.median(first):.4f}")
        if self.memorization is not None:
            report = self.memorization
            lines.append(
                f"memorisation: {len(report.flagged)} of {self.n_generated} samples flagged "
                f"(pixel-space ratio <= {report.threshold:g}); training set's own base rate "
                f"{report.baseline_flagged} of {report.baseline_size}"
            )
        return lines + list(self.warnings) + list(self.notes)


# -- the metrics ---------------------------------------------------------------------------
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
    _check_stop(should_stop, "after the reference features")

    started = time.perf_counter()
    features = extractor(
        images,
        progress=lambda done, total: _emit(progress, "samples", done, total,
                                           "features of the generated samples"),
        should_stop=should_stop,
    )
    timings["sample_features"] = time.perf_counter() - started

    wanted = settings.metrics
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

    steps = [name for name in METRICS if name in wanted]
    started = time.perf_counter()
    with _blas_threads(settings.blas_threads):
        _metrics(result, steps, features, images, reference, stats, settings, progress,
                 should_stop)
    timings["metrics"] = time.perf_counter() - started
    result.timings.update(timings)
    _emit(progress, "metrics", len(steps), len(steps), "done")
    return result


def _blas_threads(count: int) -> Any:
    """Limit BLAS threads to ``count`` (0: no limit). On a shared, loaded machine OpenBLAS
    threads spin while they wait for each other: KID's 300 small products took 9-13 s with 2
    threads and 0.3 s with one, measured on this project's 2-core machines."""
    if count <= 0:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=count, user_api="blas")


def _metrics(
    result: EvaluationResult, steps: list[str], features: np.ndarray, images: torch.Tensor,
    reference: Dataset, stats: ReferenceStatistics, settings: EvalSettings,
    progress: ProgressCallback | None, should_stop: StopCheck | None,
) -> None:
    n, m = result.n_generated, result.n_reference
    for index, name in enumerate(steps):
        _check_stop(should_stop, f"before {name}")
        _emit(progress, "metrics", index, len(steps), name)
        if name == "fid":
            result.fid = frechet_distance_to_features(features, stats.mu, stats.sigma)
            result.warnings.extend(fid_warnings(n, m))
        elif name == "kid":
            result.kid = kernel_inception_distance(
                features, stats.features, subsets=settings.kid_subsets,
                subset_size=settings.kid_subset_size, seed=settings.seed,
            )
        elif name == "precision_recall":
            result.precision_recall = _optional(
                result, name, lambda: precision_recall(features, stats.features,
                                                       settings.precision_recall_k))
        elif name == "density_coverage":
            result.density_coverage = _optional(
                result, name, lambda: density_coverage(features, stats.features,
                                                       settings.density_coverage_k))
        elif name == "retrieval":
            _retrieval(result, features, images, reference, stats, settings)
        elif name == "memorization":
            _memorization(result, images, reference, settings)


def _optional(result: EvaluationResult, name: str, compute: Callable[[], Any]) -> Any:
    """A metric that needs more samples than a tiny evaluation has: skip it with a note."""
    try:
        return compute()
    except EvaluationError as exc:
        result.notes.append(f"note: {name} skipped: {exc}")
        return None


def _reference_pixels(
    images: torch.Tensor, reference: Dataset
) -> tuple[np.ndarray | None, str | None]:
    """All reference images as pixel vectors (a subset limits Inception work, not this)."""
    if tuple(images.shape[1:]) != tuple(reference.sample_shape):
        return None, (
            f"samples are {tuple(images.shape[1:])} and reference images "
            f"{tuple(reference.sample_shape)}: pixel-space comparisons need the same size"
        )
    return pixel_vectors(reference.data), None


def _retrieval(
    result: EvaluationResult, features: np.ndarray, images: torch.Tensor, reference: Dataset,
    stats: ReferenceStatistics, settings: EvalSettings,
) -> None:
    found = nearest_training_images(features, stats.features, k=settings.retrieval_k,
                                    space="inception")
    found.indices = stats.indices[found.indices]  # subset rows -> dataset indices
    result.retrieval["inception"] = found
    pixels, problem = _reference_pixels(images, reference)
    if pixels is None:
        result.notes.append(f"note: pixel-space retrieval skipped: {problem}")
        return
    result.retrieval["pixel"] = nearest_training_images(
        pixel_vectors(images), pixels, k=settings.retrieval_k, space="pixel"
    )


def _memorization(
    result: EvaluationResult, images: torch.Tensor, reference: Dataset, settings: EvalSettings
) -> None:
    pixels, problem = _reference_pixels(images, reference)
    if pixels is None:
        result.notes.append(f"note: memorisation check skipped: {problem}")
        return
    report = memorization_check(
        pixel_vectors(images), pixels, threshold=settings.memorization_threshold,
        neighbours=settings.memorization_neighbours, baseline_size=settings.baseline_size,
        seed=settings.seed,
    )
    result.memorization = report
    result.notes.extend(f"note: {text}" for text in report.notes)


# -- sources -------------------------------------------------------------------------------
@dataclass
class LoadedSamples:
    """Samples read from a folder: (N, C, H, W) float32 in [-1, 1], with what is known of them."""

    samples: torch.Tensor
    seeds: list[int] | None
    metadata: dict[str, Any]
    source: str  # "samples.npz" or "png"
    folder: Path


def load_samples_folder(folder: str | Path) -> LoadedSamples:
    """Read ``samples.npz`` (from ``diffstudio sample``) or else every ``*.png`` of ``folder``.

    PNGs are read in sorted name order, as grey when every file is single-channel, else RGB,
    and mapped from 0..255 to [-1, 1]. The ``diffstudio`` metadata of the first PNG (run,
    sampler, steps, network evaluations) is returned when present.
    """
    from PIL import Image

    from diffstudio.engine.pngmeta import read_png_metadata

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise EvaluationError(f"no samples folder at {root}; give the folder 'diffstudio sample' "
                              "wrote (it holds samples.npz and PNGs)")
    pngs = sorted(p for p in root.glob("*.png") if p.name != "grid.png")
    metadata = read_png_metadata(pngs[0]) if pngs else {}
    npz = root / "samples.npz"
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as data:
                array = np.asarray(data["samples"], dtype=np.float32)
                seeds = [int(s) for s in data["seeds"]] if "seeds" in data else None
        except Exception as exc:
            raise EvaluationError(f"cannot read {npz}: {type(exc).__name__}: {exc}") from exc
        if array.ndim != 4:
            raise EvaluationError(
                f"{npz} holds samples shaped {array.shape}; image samples (N, C, H, W) are needed "
                "(2-D point samples have no Inception features)"
            )
        return LoadedSamples(torch.from_numpy(array), seeds, metadata, "samples.npz", root)
    if not pngs:
        raise EvaluationError(f"{root} holds neither samples.npz nor PNG images")
    arrays = []
    for path in pngs:
        try:
            with Image.open(path) as picture:
                arrays.append(np.asarray(picture.convert("RGB" if picture.mode not in ("L", "I;16")
                                                         else "L")))
        except OSError as exc:
            raise EvaluationError(f"cannot read {path}: {exc}") from exc
    grey = all(a.ndim == 2 for a in arrays)
    if not grey:
        arrays = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise EvaluationError(f"the PNGs in {root} have different sizes: {sorted(shapes)[:3]}")
    stack = np.stack(arrays).astype(np.float32)
    stack = stack[:, None] if grey else stack.transpose(0, 3, 1, 2)
    samples = torch.from_numpy(stack / 127.5 - 1.0)
    return LoadedSamples(samples, None, metadata, "png", root)


def _run_model_info(config: Mapping[str, Any], checkpoint: Path | None) -> dict[str, Any]:
    train = config.get("train", {})
    info: dict[str, Any] = {
        "network": train.get("network"),
        "prediction_type": train.get("prediction_type"),
        "schedule": train.get("schedule"),
        "num_timesteps": train.get("num_timesteps"),
        "dataset": train.get("dataset"),
    }
    if checkpoint is not None:
        state_file = checkpoint / "state.json"
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            info["training_steps"] = state.get("step")
            info["training_seconds"] = state.get("trained_seconds")
        except (OSError, json.JSONDecodeError):
            pass
        info["checkpoint"] = checkpoint.name
    return info


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
    if reference is None:
        train = loaded.config["train"]
        reference, reference_spec = reference_from_registry(
            registry, train["dataset"], train.get("dataset_params")
        )
    batches = -(-num_samples // batch_size)
    counter = {"done": 0}

    def on_step(step: Any, batch: int) -> None:
        counter["done"] += 1
        _emit(progress, "generate", counter["done"], step.num_steps * batches,
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
        model={"run_name": loaded.run.path.name,
               **_run_model_info(loaded.config, loaded.checkpoint)},
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
    return evaluate_samples(samples, extractor=extractor, source=record, model=model, **common)


def folder_source(loaded: LoadedSamples) -> tuple[dict[str, Any], dict[str, Any]]:
    """(source, model) records for samples read from a folder, from the PNG metadata if any."""
    meta = loaded.metadata
    source = {
        "kind": "folder",
        "folder": str(loaded.folder.resolve()),
        "read_from": loaded.source,
        "run": meta.get("run"),
        "checkpoint": meta.get("checkpoint"),
        "sampler": meta.get("sampler"),
        "sampler_params": meta.get("sampler_params"),
        "steps": meta.get("steps"),
        "network_evaluations": meta.get("network_evaluations"),
        "seeds": [loaded.seeds[0], loaded.seeds[-1]] if loaded.seeds else None,
    }
    model: dict[str, Any] = {}
    run = meta.get("run")
    if run and (Path(run) / "config.json").is_file():
        try:
            config = json.loads((Path(run) / "config.json").read_text(encoding="utf-8"))
            checkpoint = Path(run) / "checkpoints" / str(meta.get("checkpoint", ""))
            model = {"run_name": Path(run).name,
                     **_run_model_info(config, checkpoint if checkpoint.is_dir() else None)}
        except (OSError, json.JSONDecodeError):
            model = {}
    return source, model


# -- where results go ----------------------------------------------------------------------
def default_result_path(result: EvaluationResult) -> Path:
    """``<run>/evaluations/<sampler>-<steps>steps-<time>.json`` for a run, else
    ``<samples folder>/evaluation-<time>.json``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    source = result.source
    if source.get("kind") == "run":
        steps = source.get("steps")
        name = f"{source.get('sampler', 'samples')}" + (f"-{steps}steps" if steps else "")
        return Path(source["run"]) / "evaluations" / f"{name}-{stamp}.json"
    if source.get("folder"):
        return Path(source["folder"]) / f"evaluation-{stamp}.json"
    raise EvaluationError("this result has no run or folder to be written to; give a path")


def write_result(result: EvaluationResult, path: str | Path | None = None) -> Path:
    """Write ``result.to_dict()`` as JSON, atomically; never replaces an existing file."""
    target = Path(path).expanduser() if path else default_result_path(result)
    if target.exists():
        stem, counter = target.stem, 2
        while target.exists():
            target = target.with_name(f"{stem}-{counter}{target.suffix}")
            counter += 1
    atomic_write_json(target, result.to_dict())
    result.path = target
    return target


def evaluate_grid(
    runs: Sequence[str | Path],
    samplers: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    extractor: InceptionFeatures,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    reference: Dataset | None = None,
    reference_spec: Mapping[str, Any] | None = None,
    settings: EvalSettings | None = None,
    cache: ReferenceCache | None = None,
    registry: Any = None,
    write: bool = True,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    **run_options: Any,
) -> list[EvaluationResult]:
    """Every run with every sampler (``[("ddpm", {}), ("ddim", {"steps": 50})]``), against one
    reference (the first run's training set unless given), each result written into its run.

    The comparison table is ``tables.rows_from_results(results)``. The reference features are
    computed once (then cached); each run pays for its own samples only.
    """
    from diffstudio.plugin_manager import load_plugins

    registry = registry or load_plugins()
    cache = cache or ReferenceCache()
    if reference is None and runs:
        from diffstudio.engine.runs import Run

        train = Run(runs[0]).read_config()["train"]
        reference, reference_spec = reference_from_registry(
            registry, train["dataset"], train.get("dataset_params")
        )
    results = []
    for run in runs:
        for sampler_id, params in samplers:
            _check_stop(should_stop, "between two evaluations")
            result = evaluate_run(
                run, sampler_id, params, extractor=extractor, num_samples=num_samples,
                reference=reference, reference_spec=reference_spec, settings=settings,
                cache=cache, registry=registry, progress=progress, should_stop=should_stop,
                **run_options,
            )
            if write:
                write_result(result)
            # A grid of runs would otherwise hold every sample set (and the reference).
            result.samples = result.reference_dataset = None
            results.append(result)
    return results
