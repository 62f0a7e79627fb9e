"""What an evaluation computes and how: :class:`EvalSettings`, checked against the metric table.

Nothing here imports torch; the CLI builds its ``--metrics`` choices and the Evaluate page its
check boxes from :data:`~.metrics.METRICS` and these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffstudio.engine.evaluation.metrics import DEFAULT_METRICS, METRICS, brought_along
from diffstudio.errors import EvaluationError

__all__ = ["DEFAULT_NUM_SAMPLES", "EvalSettings"]

DEFAULT_NUM_SAMPLES = 2048  # samples generated from a run when no number is given


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
        """Check every value and add the metrics the chosen ones bring along (FID brings KID,
        which is unbiased at small N)."""
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise EvaluationError(
                f"unknown metric(s) {unknown or '(none given)'}; choose from {', '.join(METRICS)}"
            )
        self.metrics = brought_along(self.metrics)
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
