"""Evaluation of generated samples: FID@N, KID, precision/recall, density/coverage, similarity
retrieval, a memorisation check, and comparison tables over runs and samplers.

One metric per module, each citing what it implements:

* :mod:`.features` — Inception-V3 pool3 features through pytorch-fid, weights located and checked
* :mod:`.frechet` — the Fréchet distance (FID), symmetric eigen-decomposition in float64
* :mod:`.kid` — Kernel Inception Distance (unbiased MMD^2, cubic polynomial kernel)
* :mod:`.precision_recall` — improved precision and recall (k = 3)
* :mod:`.density_coverage` — density and coverage (k = 5)
* :mod:`.retrieval` — nearest training images, and the memorisation ratio test
* :mod:`.cache` — reference statistics and features on disk (pytorch-fid-compatible ``.npz``)
* :mod:`.tables` — the seed's Tables 1 and 2 for the user's runs; CSV, Markdown, plot series
* :mod:`.evaluate` — everything tied together, with progress and cancellation

Example::

    from diffstudio.engine.evaluation import prepare_extractor, evaluate_run, write_result

    extractor = prepare_extractor()            # finds, checks (or downloads) the FID weights
    result = evaluate_run("runs/digits", "ddim", {"steps": 50}, extractor=extractor,
                          num_samples=2048)
    print("\\n".join(result.summary_lines()))
    write_result(result)                       # runs/digits/evaluations/ddim-50steps-....json
"""

from __future__ import annotations

from diffstudio.engine.evaluation.cache import (
    ReferenceCache,
    ReferenceStatistics,
    default_cache_dir,
    reference_key,
)
from diffstudio.engine.evaluation.density_coverage import DensityCoverage, density_coverage
from diffstudio.engine.evaluation.evaluate import (
    DEFAULT_METRICS,
    DEFAULT_NUM_SAMPLES,
    METRICS,
    EvalProgress,
    EvalSettings,
    EvaluationResult,
    LoadedSamples,
    default_result_path,
    evaluate_grid,
    evaluate_run,
    evaluate_samples,
    evaluate_source,
    fid_warnings,
    folder_source,
    is_run_folder,
    load_samples_folder,
    prepare_extractor,
    reference_from_registry,
    reference_statistics,
    training_reference,
    write_result,
)
from diffstudio.engine.evaluation.features import (
    FID_WEIGHTS_FILENAME,
    FID_WEIGHTS_SHA256,
    FID_WEIGHTS_URL,
    FidWeights,
    InceptionFeatures,
    build_fid_inception,
    hub_weights_path,
    locate_fid_weights,
    verify_fid_weights,
)
from diffstudio.engine.evaluation.frechet import (
    frechet_distance,
    frechet_distance_to_features,
    gaussian_statistics,
)
from diffstudio.engine.evaluation.kid import KidResult, kernel_inception_distance
from diffstudio.engine.evaluation.precision_recall import PrecisionRecall, precision_recall
from diffstudio.engine.evaluation.retrieval import (
    MemorizationReport,
    Neighbours,
    memorization_check,
    nearest_training_images,
)
from diffstudio.engine.evaluation.tables import (
    ComparisonRow,
    Series,
    fid_vs_evaluations,
    load_results,
    rows_from_results,
    to_csv,
    to_markdown,
    write_table,
)
from diffstudio.errors import EvaluationError, FidWeightsError

__all__ = [
    "DEFAULT_METRICS",
    "DEFAULT_NUM_SAMPLES",
    "FID_WEIGHTS_FILENAME",
    "FID_WEIGHTS_SHA256",
    "FID_WEIGHTS_URL",
    "METRICS",
    "ComparisonRow",
    "DensityCoverage",
    "EvalProgress",
    "EvalSettings",
    "EvaluationError",
    "EvaluationResult",
    "FidWeights",
    "FidWeightsError",
    "InceptionFeatures",
    "KidResult",
    "LoadedSamples",
    "MemorizationReport",
    "Neighbours",
    "PrecisionRecall",
    "ReferenceCache",
    "ReferenceStatistics",
    "Series",
    "build_fid_inception",
    "default_cache_dir",
    "default_result_path",
    "density_coverage",
    "evaluate_grid",
    "evaluate_run",
    "evaluate_samples",
    "evaluate_source",
    "fid_vs_evaluations",
    "fid_warnings",
    "folder_source",
    "frechet_distance",
    "frechet_distance_to_features",
    "gaussian_statistics",
    "hub_weights_path",
    "is_run_folder",
    "kernel_inception_distance",
    "load_results",
    "load_samples_folder",
    "locate_fid_weights",
    "memorization_check",
    "nearest_training_images",
    "precision_recall",
    "prepare_extractor",
    "reference_from_registry",
    "reference_key",
    "reference_statistics",
    "rows_from_results",
    "to_csv",
    "to_markdown",
    "training_reference",
    "verify_fid_weights",
    "write_result",
    "write_table",
]
