"""The seed's 2-D experiment in one call: the mixture 0.8 N((5, 5), I) + 0.2 N((-5, -5), I),
its exact score, annealed Langevin against plain Langevin with the defaults the data suggests,
and the fraction of points that reaches each mode next to the 0.8 / 0.2 truth.

Song & Ermon 2019 (arXiv:1907.05600), Fig. 3: plain Langevin dynamics recovers the modes but
not their weights (the score carries no information between the modes); annealed Langevin,
which starts from large noise levels that connect them, does. The exact score needs no
training, so the result is the samplers' alone; the same as

    diffstudio train --dataset toy2d --network analytic-mixture --out exact
    diffstudio sample exact --sampler annealed-langevin --num 2000 --batch-size 2000

Used by the Sample page's "2-D lab" tab and by the tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from diffstudio.app.events import Progress
from diffstudio.app.threaded import Emit, StopCheck, events_of
from diffstudio.errors import ConfigError

__all__ = ["LAB_SAMPLERS", "MODES", "TRUTH", "LabEntry", "LabOutcome", "LabRequest",
           "langevin_lab", "mode_fractions"]

#: The mixture's modes and weights (diffstudio.engine.datasets.toy2d, "mixture").
MODES = ((5.0, 5.0), (-5.0, -5.0))
TRUTH = (0.8, 0.2)
LAB_SAMPLERS = ("annealed-langevin", "langevin")


def mode_fractions(points: np.ndarray, modes: Sequence[Sequence[float]] = MODES,
                   radius: float | None = None) -> tuple[float, ...]:
    """The fraction of ``points`` (N, 2) within ``radius`` (default 3, the engine's
    ``MODE_RADIUS``) of each mode; :func:`diffstudio.engine.networks.analytic.mode_fractions`
    (imported when called: this module does not import torch)."""
    from diffstudio.engine.networks.analytic import MODE_RADIUS
    from diffstudio.engine.networks.analytic import mode_fractions as fractions

    return fractions(points, modes, MODE_RADIUS if radius is None else radius)


@dataclass
class LabRequest:
    num_points: int = 2000
    seed: int = 0
    samplers: tuple[str, ...] = LAB_SAMPLERS


@dataclass
class LabEntry:
    """One sampler's points, the parameters it ran with (and why), and its mode fractions."""

    latest_only: ClassVar[bool] = False

    sampler: str
    params: dict[str, Any]
    reasons: dict[str, str]
    points: np.ndarray
    fractions: tuple[float, ...]
    network_evaluations: int
    seconds: float

    def summary(self) -> str:
        found = " / ".join(f"{f:.3f}" for f in self.fractions)
        truth = " / ".join(f"{t:g}" for t in TRUTH)
        return f"{self.sampler}: {found} of the points near (5, 5) / (-5, -5); truth {truth}"


@dataclass
class LabOutcome:
    entries: list[LabEntry]
    data: np.ndarray  # points of the mixture itself, for the background
    truth: tuple[float, ...] = TRUTH
    notes: list[str] = field(default_factory=list)


def langevin_lab(request: LabRequest | None = None, *, registry: Any = None,
                 should_stop: StopCheck | None = None) -> Iterator[Any]:
    """Yields Progress, a LabEntry per sampler as it finishes, then Done(LabOutcome)."""
    request = request or LabRequest()
    if request.num_points < 10:
        raise ConfigError(f"the lab needs at least 10 points, got {request.num_points}")
    if registry is None:
        from diffstudio.plugin_manager import load_plugins

        registry = load_plugins()
    for sampler_id in request.samplers:
        registry.get("sampler", sampler_id)  # an unknown id fails now, with the known ones

    def work(emit: Emit, stop: StopCheck) -> LabOutcome:
        from diffstudio.engine.datasets.toy2d import load_toy2d
        from diffstudio.engine.model import DiffusionModel
        from diffstudio.engine.networks.analytic import build_analytic_mixture
        from diffstudio.engine.sampling import generate
        from diffstudio.engine.schedules import VPSDE
        from diffstudio.engine.suggestions import (
            effective_params,
            noise_scale,
            suggest_sampler_defaults,
        )

        data = load_toy2d("mixture", request.num_points, seed=request.seed)
        scale = noise_scale(data)
        # The exact score of the mixture under a VP SDE (the score is exact at every level,
        # so the samplers alone decide the outcome).
        model = DiffusionModel(build_analytic_mixture((2,)), VPSDE(), prediction_type="score",
                               x0_clip=None)
        entries: list[LabEntry] = []
        notes: list[str] = []
        started = time.perf_counter()
        for number, sampler_id in enumerate(request.samplers):
            emit(Progress("lab", number, len(request.samplers), time.perf_counter() - started,
                          unit="sampler", detail=sampler_id))
            contribution = registry.get("sampler", sampler_id)
            suggested = suggest_sampler_defaults(sampler_id, model, scale,
                                                 contribution=contribution)
            notes.extend(suggested.notes)
            params = effective_params(contribution, {}, suggested)
            result = generate(model, sampler_id, params, sample_shape=(2,),
                              num_samples=request.num_points, seed=request.seed,
                              batch_size=request.num_points, registry=registry,
                              should_stop=stop)
            points = result.samples.numpy()
            entry = LabEntry(sampler_id, dict(result.params),
                             {name: s.reason for name, s in suggested.values.items()},
                             points, mode_fractions(points), result.network_evaluations,
                             result.seconds)
            entries.append(entry)
            emit(entry)
        emit(Progress("lab", len(entries), len(request.samplers), time.perf_counter() - started,
                      unit="sampler"))
        return LabOutcome(entries, data.data.numpy(), notes=notes)

    yield from events_of(work, should_stop=should_stop, name="diffstudio-lab")
