"""Issue 17: sampler defaults that fit the data. The seed's 2-D experiment (annealed Langevin
recovers the 0.8 / 0.2 weights, plain Langevin does not) must come out of the defaults, with the
suggestions computed the way the app computes them (noise_scale -> suggest_sampler_defaults ->
effective_params)."""

from __future__ import annotations

import pytest
import torch

from diffstudio.engine.datasets.toy2d import load_toy2d
from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.networks.analytic import build_analytic_mixture
from diffstudio.engine.sampling import generate
from diffstudio.engine.schedules import VESDE, VPSDE, NCSNLevels
from diffstudio.engine.suggestions import (
    PRESETS,
    effective_params,
    noise_scale,
    suggest_sampler_defaults,
)
from diffstudio.plugin_manager import load_plugins

REGISTRY = load_plugins(safe_mode=True)
DATA = load_toy2d("mixture", 2000)
SCALE = noise_scale(DATA)


def exact_model(process) -> DiffusionModel:
    return DiffusionModel(build_analytic_mixture((2,)), process, prediction_type="score",
                          x0_clip=None)


def defaults(sampler_id: str, model: DiffusionModel) -> dict:
    contribution = REGISTRY.get("sampler", sampler_id)
    return effective_params(contribution, {}, suggest_sampler_defaults(sampler_id, model, SCALE))


def mode_weight(samples: torch.Tensor) -> float:
    """Fraction of points in the (5, 5) basin."""
    return float((samples.sum(1) > 0).double().mean())


def test_the_noise_scale_is_the_largest_pairwise_distance():
    assert SCALE is not None and 14 < SCALE.sigma_max < 30  # modes 14.1 apart, unit spread
    assert SCALE.sigma_min == pytest.approx(SCALE.sigma_max / 100)
    assert noise_scale(load_toy2d("mixture", 10)).sigma_max > 0
    suggested = suggest_sampler_defaults("annealed-langevin", exact_model(VPSDE()), SCALE)
    assert "from data" in suggested.values["step_lr"].reason
    assert "sigma_min²" in suggested.values["step_lr"].describe("step_lr")


@pytest.mark.parametrize("process", [VPSDE(), NCSNLevels(sigma_max=25.0, sigma_min=0.2)],
                         ids=["vp", "ncsn"])
def test_exact_score_mixture_with_the_sampler_defaults(process):
    model = exact_model(process)
    annealed = generate(model, "annealed-langevin", defaults("annealed-langevin", model),
                        sample_shape=(2,), num_samples=2000, batch_size=2000, registry=REGISTRY)
    assert abs(mode_weight(annealed.samples) - 0.8) <= 0.05
    plain = generate(model, "langevin", defaults("langevin", model), sample_shape=(2,),
                     num_samples=2000, batch_size=2000, registry=REGISTRY)
    assert abs(mode_weight(plain.samples) - 0.8) > 0.15  # the seed's point: wrong weights
    assert (plain.samples.abs() > 3).all(dim=1).float().mean() > 0.9  # but it reached modes


def test_a_model_too_small_for_the_data_is_said():
    suggested = suggest_sampler_defaults("annealed-langevin", exact_model(NCSNLevels()), SCALE)
    assert suggested.notes and "--schedule.sigma-max" in suggested.notes[0]


@pytest.mark.parametrize("sampler_id", ["annealed-langevin", "langevin", "ddim", "ddpm",
                                        "reverse-sde", "predictor-corrector", "probability-flow",
                                        "dpm-solver-pp", "unipc"])
def test_each_samplers_effective_defaults_move_2d_points(sampler_id):
    model = exact_model(VPSDE())
    params = defaults(sampler_id, model)
    for name, cap in (("steps", 50), ("steps_per_level", 10)):  # fewer steps: time, not scale
        if name in params and params[name] > cap:
            params[name] = cap
    noise = torch.randn((64, 2), generator=torch.Generator().manual_seed(0))
    result = generate(model, sampler_id, params, sample_shape=(2,), init_noise=noise,
                      batch_size=64, registry=REGISTRY)
    displacement = (result.samples - noise).norm(dim=1).mean()
    assert displacement > 1.0, (sampler_id, params, float(displacement))


def test_the_seed_image_settings_are_a_preset():
    contribution = REGISTRY.get("sampler", "annealed-langevin")
    values = effective_params(contribution, {"steps_per_level": 5},
                              suggest_sampler_defaults("annealed-langevin",
                                                       exact_model(VPSDE()), SCALE),
                              preset="seed-images")
    assert values["step_lr"] == 2e-5 and values["sigma_max"] == 1.0
    assert values["steps_per_level"] == 5  # the user's value wins
    assert set(PRESETS["seed-images"]) == {"annealed-langevin", "langevin"}


def test_ddim_on_a_ve_model_starts_at_the_top_of_the_grid():
    suggested = suggest_sampler_defaults("ddim", exact_model(VESDE(0.01, 20.0)), None)
    assert suggested.values["spacing"].value == "trailing"
    assert suggest_sampler_defaults("ddim", exact_model(VPSDE()), None).values == {}
