"""Evaluation of generated samples: FID@N, KID, precision/recall, density/coverage, similarity
retrieval, a memorisation check, and comparison tables over runs and samplers.

One metric per module, each citing what it implements:

* :mod:`.features` — Inception-V3 pool3 features through pytorch-fid
* :mod:`.fid_weights` — where the FID weights are looked for, checked, downloaded (no torch)
* :mod:`.frechet` — the Fréchet distance (FID), symmetric eigen-decomposition in float64
* :mod:`.kid` — Kernel Inception Distance (unbiased MMD^2, cubic polynomial kernel)
* :mod:`.precision_recall` — improved precision and recall (k = 3)
* :mod:`.density_coverage` — density and coverage (k = 5)
* :mod:`.retrieval` — nearest training images, and the memorisation ratio test
* :mod:`.cache` — reference statistics and features on disk (pytorch-fid-compatible ``.npz``)
* :mod:`.tables` — DDPM/DDIM comparison tables for the user's runs; CSV, Markdown, plot series
* :mod:`.metrics` — the metric table (ids, defaults, the function filling each result field)
* :mod:`.settings`, :mod:`.sources`, :mod:`.result` — what to compute, where samples come from,
  what came out (and where it is written)
* :mod:`.pipeline` — everything tied together, with progress (:mod:`.progress`) and cancellation

Example::

    from diffstudio.engine.evaluation import prepare_extractor, evaluate_run, write_result

    extractor = prepare_extractor()            # finds, checks (or downloads) the FID weights
    result = evaluate_run("runs/digits", "ddim", {"steps": 50}, extractor=extractor,
                          num_samples=2048)
    print("\\n".join(result.summary_lines()))
    write_result(result)                       # runs/digits/evaluations/ddim-50steps-....json

Names load on first use (PEP 562): ``describe_fid_weights`` and the metric table can be read
on the window's main thread without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# Functions named like their modules are imported now (NumPy only): once the submodule is
# imported it becomes an attribute of this package and would hide a lazily loaded function.
from diffstudio.engine.evaluation.density_coverage import DensityCoverage as DensityCoverage
from diffstudio.engine.evaluation.density_coverage import density_coverage as density_coverage
from diffstudio.engine.evaluation.precision_recall import PrecisionRecall as PrecisionRecall
from diffstudio.engine.evaluation.precision_recall import precision_recall as precision_recall

_LAZY = {
    "ReferenceCache": "diffstudio.engine.evaluation.cache",
    "ReferenceStatistics": "diffstudio.engine.evaluation.cache",
    "default_cache_dir": "diffstudio.engine.evaluation.cache",
    "reference_key": "diffstudio.engine.evaluation.cache",
    "InceptionFeatures": "diffstudio.engine.evaluation.features",
    "build_fid_inception": "diffstudio.engine.evaluation.features",
    "FID_WEIGHTS_FILENAME": "diffstudio.engine.evaluation.fid_weights",
    "FID_WEIGHTS_SHA256": "diffstudio.engine.evaluation.fid_weights",
    "FID_WEIGHTS_URL": "diffstudio.engine.evaluation.fid_weights",
    "FidWeights": "diffstudio.engine.evaluation.fid_weights",
    "FidWeightsStatus": "diffstudio.engine.evaluation.fid_weights",
    "describe_fid_weights": "diffstudio.engine.evaluation.fid_weights",
    "hub_weights_path": "diffstudio.engine.evaluation.fid_weights",
    "locate_fid_weights": "diffstudio.engine.evaluation.fid_weights",
    "verify_fid_weights": "diffstudio.engine.evaluation.fid_weights",
    "frechet_distance": "diffstudio.engine.evaluation.frechet",
    "frechet_distance_to_features": "diffstudio.engine.evaluation.frechet",
    "gaussian_statistics": "diffstudio.engine.evaluation.frechet",
    "KidResult": "diffstudio.engine.evaluation.kid",
    "kernel_inception_distance": "diffstudio.engine.evaluation.kid",
    "DEFAULT_METRICS": "diffstudio.engine.evaluation.metrics",
    "METRICS": "diffstudio.engine.evaluation.metrics",
    "METRIC_TABLE": "diffstudio.engine.evaluation.metrics",
    "Metric": "diffstudio.engine.evaluation.metrics",
    "evaluate_run": "diffstudio.engine.evaluation.pipeline",
    "evaluate_samples": "diffstudio.engine.evaluation.pipeline",
    "evaluate_source": "diffstudio.engine.evaluation.pipeline",
    "prepare_extractor": "diffstudio.engine.evaluation.pipeline",
    "reference_statistics": "diffstudio.engine.evaluation.pipeline",
    "EvalProgress": "diffstudio.engine.evaluation.progress",
    "EvaluationResult": "diffstudio.engine.evaluation.result",
    "default_result_path": "diffstudio.engine.evaluation.result",
    "fid_warnings": "diffstudio.engine.evaluation.result",
    "write_result": "diffstudio.engine.evaluation.result",
    "MemorizationReport": "diffstudio.engine.evaluation.retrieval",
    "Neighbours": "diffstudio.engine.evaluation.retrieval",
    "memorization_check": "diffstudio.engine.evaluation.retrieval",
    "nearest_training_images": "diffstudio.engine.evaluation.retrieval",
    "DEFAULT_NUM_SAMPLES": "diffstudio.engine.evaluation.settings",
    "EvalSettings": "diffstudio.engine.evaluation.settings",
    "LoadedSamples": "diffstudio.engine.evaluation.sources",
    "folder_source": "diffstudio.engine.evaluation.sources",
    "is_run_folder": "diffstudio.engine.evaluation.sources",
    "load_samples_folder": "diffstudio.engine.evaluation.sources",
    "reference_from_registry": "diffstudio.engine.evaluation.sources",
    "training_reference": "diffstudio.engine.evaluation.sources",
    "ComparisonRow": "diffstudio.engine.evaluation.tables",
    "Series": "diffstudio.engine.evaluation.tables",
    "fid_vs_evaluations": "diffstudio.engine.evaluation.tables",
    "load_results": "diffstudio.engine.evaluation.tables",
    "rows_from_results": "diffstudio.engine.evaluation.tables",
    "to_csv": "diffstudio.engine.evaluation.tables",
    "to_markdown": "diffstudio.engine.evaluation.tables",
    "write_table": "diffstudio.engine.evaluation.tables",
    "EvaluationError": "diffstudio.errors",
    "FidWeightsError": "diffstudio.errors",
}

__all__ = sorted([*_LAZY, "DensityCoverage", "PrecisionRecall", "density_coverage",
                  "precision_recall"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
