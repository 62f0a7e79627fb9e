"""Sampler defaults that fit the data: noise levels and step sizes suggested from the data's
scale, used wherever the user has not set a value.

A sampler's schema defaults are the seed's image settings (Song & Ermon 2019, arXiv:1907.05600,
§5: sigma 1 -> 0.01, T = 100, eps = 2e-5). On data of another scale they do nothing useful: on
the 2-D mixture 0.8 N((5, 5), I) + 0.2 N((-5, -5), I) a largest level of 1 cannot carry points
between modes 14 apart, and plain Langevin with eps = 2e-5 does not move at all. So:

* a dataset states its scale, :class:`NoiseScale`: declared by the dataset (``Dataset.noise_scale``)
  or, for points, computed by :func:`noise_scale`: sigma_max = the largest pairwise distance
  between data points (Song & Ermon 2020, "Improved techniques", arXiv:2006.09011, Technique 1)
  and sigma_min = sigma_max / 100 (the seed's 2-D experiment: 10 -> 0.1);
* :func:`suggest_sampler_defaults` turns it, with the model's own noise range, into one
  :class:`Suggestion` (value and the reason, for the form and ``--help``) per parameter;
* :func:`effective_params` lays schema defaults < suggestions < the user's values, the one
  function the app, the CLI's help and the tests call.

Images get no computed scale (their defaults stay the seed's settings); :data:`PRESETS` keeps
the seed's image settings one name away for any data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from diffstudio.errors import ConfigError

__all__ = [
    "DISCRETE_TIME_SAMPLERS",
    "PRESETS",
    "NoiseScale",
    "SamplerDefaults",
    "Suggestion",
    "effective_params",
    "noise_scale",
    "suggest_sampler_defaults",
    "suggest_schedule_levels",
]

#: The relative Langevin step eps / sigma_L^2, so that the step at level i is a tenth of that
#: level's noise variance (alpha_i = eps sigma_i^2 / sigma_L^2). Technique 4 of arXiv:2006.09011
#: gives 0.032 for T = 100 and gamma = 1.67, but it assumes the data is a point; on the 2-D
#: mixture (unit-variance modes) 0.032 leaves the last levels under-mixed (0.707 / 0.233 within
#: radius 3 of the modes), 0.1 gives 0.789 / 0.194.
RELATIVE_STEP = 0.1
#: Plain Langevin at noise sigma: eps = sigma^2 / 2, the largest step that stays within 15% of
#: the variance of N(0, sigma^2) (stationary variance sigma^2 / (1 - eps / (4 sigma^2))).
PLAIN_RELATIVE_STEP = 0.5
#: sigma_min = sigma_max / LEVEL_RATIO (the seed's 2-D experiment: 10 -> 0.1).
LEVEL_RATIO = 100.0
#: Points used to estimate the largest pairwise distance (an O(n^2) computation).
MAX_POINTS = 2000

#: Named parameter sets, by sampler id: one click (``--preset``) away from any defaults.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "seed-images": {  # Song & Ermon 2019, §5, the seed's App. A settings
        "annealed-langevin": {"steps_per_level": 100, "step_lr": 2e-5, "levels": 10,
                              "sigma_max": 1.0, "sigma_min": 0.01},
        "langevin": {"steps": 1000, "step_size": 2e-5, "sigma": 0.01},
    },
}


@dataclass(frozen=True)
class NoiseScale:
    """The data's noise range: ``sigma_max`` (largest level), ``sigma_min`` (smallest),
    ``extent`` (largest |coordinate|, for uniform starts; 0 if unknown) and ``origin`` (where
    the numbers came from, in words)."""

    sigma_max: float
    sigma_min: float
    extent: float = 0.0
    origin: str = "declared by the dataset"


@dataclass(frozen=True)
class Suggestion:
    """One suggested parameter value and why, e.g. ``Suggestion(4.4e-3, "from data: ...")``."""

    value: Any
    reason: str

    def describe(self, name: str) -> str:
        value = f"{self.value:.3g}" if isinstance(self.value, float) else repr(self.value)
        return f"{name} = {value} ({self.reason})"


@dataclass
class SamplerDefaults:
    """What :func:`suggest_sampler_defaults` found: ``values`` by parameter name, and
    ``notes`` for the user (a model whose noise range cannot fit the data)."""

    values: dict[str, Suggestion] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def noise_scale(dataset: Any, max_points: int = MAX_POINTS) -> NoiseScale | None:
    """The dataset's declared ``noise_scale`` or, for points (N, D), the computed one; None for
    images without a declaration. The distance is over the first ``max_points`` points (the
    datasets are shuffled), in float64."""
    declared = getattr(dataset, "noise_scale", None)
    if declared is not None:
        return declared
    if getattr(dataset, "kind", None) != "points":
        return None
    points = dataset.data[:max_points].detach().to("cpu", torch.float64).flatten(1)
    if points.shape[0] < 2:
        return None
    largest = float(torch.cdist(points, points).max())
    if not math.isfinite(largest) or largest <= 0:
        return None
    return NoiseScale(largest, largest / LEVEL_RATIO, float(points.abs().max()),
                      f"largest pairwise distance of {points.shape[0]} points")


def suggest_schedule_levels(declared: Sequence[str], scale: NoiseScale | None
                            ) -> dict[str, Suggestion]:
    """Noise levels for training: a schedule that declares ``sigma_max`` and ``sigma_min``
    (NCSN levels, the VE SDE, a plugin's) is suggested the data's range -- sigma_max the
    largest pairwise distance (Song & Ermon 2020, arXiv:2006.09011, Technique 1), sigma_min
    a hundredth of it -- where the data has a scale; empty otherwise (images)."""
    if scale is None or not {"sigma_max", "sigma_min"} <= set(declared):
        return {}
    origin = f"from data: {scale.origin}"
    return {"sigma_max": Suggestion(scale.sigma_max, f"{origin}; Song & Ermon 2020, Technique 1"),
            "sigma_min": Suggestion(scale.sigma_min, f"{origin} / {LEVEL_RATIO:g}")}


def _model_range(model: Any) -> tuple[float, float]:
    sigmas = model.process.sigma(model.process.grid)
    return float(sigmas.min()), float(sigmas.max())


def _levels_for(model: Any, scale: NoiseScale, out: SamplerDefaults) -> tuple[float, float, bool]:
    """(sigma_max, sigma_min, own): the data's range clipped to what the model covers, or the
    model's own levels for a model trained only there (NCSN); notes when it cannot fit."""
    low, high = _model_range(model)
    if high < 0.5 * scale.sigma_max:
        out.notes.append(
            f"the model's largest noise level {high:.3g} is below the data's {scale.sigma_max:.3g} "
            f"({scale.origin}; Song & Ermon 2020, arXiv:2006.09011, Technique 1): Langevin "
            f"cannot move points between modes, so the modes' weights will be wrong; train "
            f"with --schedule.sigma-max {scale.sigma_max:.3g}")
    if getattr(model.process, "discrete_training", False) and model.process.kind == "ncsn":
        return high, low, True
    return min(scale.sigma_max, high), max(scale.sigma_min, low), False


#: Built-in samplers whose ``steps`` count timesteps of the model's discrete grid (1..T).
DISCRETE_TIME_SAMPLERS = ("ddpm", "ddim", "dpm-solver-pp", "unipc")


def suggest_sampler_defaults(
    sampler_id: str, model: Any, scale: NoiseScale | None, contribution: Any = None
) -> SamplerDefaults:
    """Suggested values for the parameters of the built-in sampler ``sampler_id`` on ``model``
    (a DiffusionModel) for data of ``scale``; empty for a sampler or data without any.

    With the sampler's ``contribution`` only the parameters it declares are kept, and a
    discrete-time sampler whose default ``steps`` exceeds the model's T (DDPM's 1000 on a
    20-step run) is given T: its own default would be refused."""
    out = _suggest(sampler_id, model, scale)
    if contribution is None:
        return out
    params = {param.name: param for param in contribution.params}
    out.values = {k: v for k, v in out.values.items() if k in params}
    num_timesteps = getattr(model, "num_timesteps", None)
    steps = params.get("steps")
    if sampler_id in DISCRETE_TIME_SAMPLERS and steps is not None and isinstance(
            num_timesteps, int) and steps.default > num_timesteps:
        out.values["steps"] = Suggestion(
            num_timesteps, f"the model has only {num_timesteps} timesteps; the default is "
            f"{steps.default}")
    return out


def _suggest(sampler_id: str, model: Any, scale: NoiseScale | None) -> SamplerDefaults:
    out = SamplerDefaults()
    kind = getattr(model.process, "kind", "")
    if sampler_id == "ddim" and kind in ("ve", "ncsn"):
        # The VE prior N(0, sigma_max^2 I) holds only at the top of the grid; "uniform"
        # (diffusers' leading) spacing starts lower: at step 900 of 1000 on a VE SDE
        # 0.01 -> 20, sigma is 9.3, not 20 (docs/plugins.md, "Sampler defaults").
        out.values["spacing"] = Suggestion(
            "trailing", f"{kind} process: its prior holds only at the last timestep")
    if scale is None or sampler_id not in ("annealed-langevin", "langevin"):
        return out
    origin = f"from data: {scale.origin}"
    sigma_max, sigma_min, own = _levels_for(model, scale, out)
    if sampler_id == "annealed-langevin":
        if not own:
            out.values["sigma_max"] = Suggestion(sigma_max, origin)
            out.values["sigma_min"] = Suggestion(sigma_min, f"{origin} / {LEVEL_RATIO:g}")
            out.values["levels"] = Suggestion(10, "Song & Ermon 2019, §5: L = 10")
        out.values["step_lr"] = Suggestion(
            RELATIVE_STEP * sigma_min**2,
            f"{RELATIVE_STEP:g}·sigma_min², sigma_min = {sigma_min:.3g}"
            + (" (the model's own levels)" if own else f", {origin}"))
    else:
        out.values["sigma"] = Suggestion(
            sigma_min, f"{origin} / {LEVEL_RATIO:g}" if not own else "the model's smallest level")
        out.values["step_size"] = Suggestion(
            PLAIN_RELATIVE_STEP * sigma_min**2,
            f"{PLAIN_RELATIVE_STEP:g}·sigma², sigma = {sigma_min:.3g}")
    if scale.extent > 0:
        out.values["init_range"] = Suggestion(
            float(math.ceil(scale.extent)), "from data: largest |coordinate|, rounded up")
    return out


def effective_params(
    contribution: Any, given: Mapping[str, Any], suggestions: SamplerDefaults | None = None,
    preset: str | None = None,
) -> dict[str, Any]:
    """The parameters a sampler runs with: schema defaults < suggestions < ``preset`` < the
    user's ``given`` values, validated by the contribution's schema."""
    values: dict[str, Any] = {}
    declared = {param.name for param in contribution.params}
    if suggestions is not None:
        values.update({name: s.value for name, s in suggestions.values.items()
                       if name in declared})
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        values.update({k: v for k, v in PRESETS[preset].get(contribution.id, {}).items()
                       if k in declared})
    values.update(given)
    return contribution.validate(values)
