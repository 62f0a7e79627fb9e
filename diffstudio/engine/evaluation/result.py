"""What one evaluation produced (:class:`EvaluationResult`), its JSON record, what FID@N
means at small N (:func:`fid_warnings`), and where results are written.

The JSON (format ``diffstudio-evaluation/1``) is what the comparison tables (:mod:`.tables`) and
the Evaluate page read back; ``samples`` and ``reference_dataset`` stay in memory only.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from diffstudio.engine.evaluation.density_coverage import DensityCoverage
from diffstudio.engine.evaluation.kid import KidResult
from diffstudio.engine.evaluation.precision_recall import PrecisionRecall
from diffstudio.engine.evaluation.retrieval import MemorizationReport, Neighbours
from diffstudio.engine.io import atomic_write_json
from diffstudio.engine.runs import Run
from diffstudio.errors import EvaluationError

if TYPE_CHECKING:
    import torch

    from diffstudio.engine.datasets import Dataset

__all__ = [
    "FID_MIN_N",
    "FID_PAPER_N",
    "RESULT_FORMAT",
    "EvaluationResult",
    "default_result_path",
    "fid_warnings",
    "now_iso",
    "write_result",
]

RESULT_FORMAT = "diffstudio-evaluation/1"
FID_MIN_N = 2048  # the feature dimension: below it the covariance is singular
FID_PAPER_N = 10_000


def now_iso() -> str:
    """The local time, ISO 8601 to the second, with its UTC offset."""
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
    created: str = field(default_factory=now_iso)
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


def default_result_path(result: EvaluationResult) -> Path:
    """``<run>/evaluations/<sampler>-<steps>steps-<time>.json`` for a run, else
    ``<samples folder>/evaluation-<time>.json``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    source = result.source
    if source.get("kind") == "run":
        steps = source.get("steps")
        name = f"{source.get('sampler', 'samples')}" + (f"-{steps}steps" if steps else "")
        return Run(source["run"]).evaluations_dir / f"{name}-{stamp}.json"
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
