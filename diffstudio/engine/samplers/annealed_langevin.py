"""Annealed Langevin dynamics (Song & Ermon 2019, arXiv:1907.05600, Algorithm 1).

For noise levels sigma_1 > ... > sigma_L, each run T times:

    alpha_i = eps sigma_i^2 / sigma_L^2
    x <- x + alpha_i / 2 * s_theta(x, sigma_i) + sqrt(alpha_i) z,   z ~ N(0, I)

in the variance-exploding frame x = x_0 + sigma z. The levels are the model's own NCSN levels
unless given; any other model is queried through its continuous view at the time where
s/m = sigma (its score is rescaled to that frame), so a DDPM or SDE model can be sampled this
way too. Defaults follow the paper's experiments (§5): L = 10, sigma 1 -> 0.01, T = 100,
eps = 2e-5.
"""

from __future__ import annotations

import math

import torch

from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.samplers import (
    Generators,
    SamplerCallback,
    SamplerStep,
    StopCheck,
    check_stop,
    randn_like_per_sample,
)
from diffstudio.engine.samplers._common import initial_state, noise_levels, ve_score


@torch.no_grad()
def annealed_langevin_sample(
    model: DiffusionModel,
    x: torch.Tensor,
    *,
    generator: Generators,
    callback: SamplerCallback | None,
    should_stop: StopCheck | None,
    steps_per_level: int = 100,
    step_lr: float = 2e-5,
    levels: int = 0,
    sigma_max: float = 0.0,
    sigma_min: float = 0.0,
    init: str = "prior",
    init_range: float = 1.0,
    denoise: bool = False,
) -> torch.Tensor:
    """Algorithm 1. x: (B, *shape) standard normal noise (scaled by sigma_1 for init="prior").

    generator: one torch.Generator per row of x; row i's noise (its uniform start too) comes
    from generator[i] only. ``denoise`` ends with one Tweedie step x + sigma_L^2 s(x, sigma_L)
    (Jolicoeur-Martineau et al. 2021, arXiv:2009.05475), which removes the last level's noise.
    """
    schedule = noise_levels(model, levels, sigma_max, sigma_min)
    sigma_last = schedule[-1][0]
    x = initial_state(x, generator, init, schedule[0][0], init_range)
    total = len(schedule) * steps_per_level
    index = 0
    for sigma, t in schedule:
        alpha = step_lr * sigma**2 / sigma_last**2
        for _ in range(steps_per_level):
            check_stop(should_stop, index)
            score, x0_pred = ve_score(model, x, t)
            if callback is not None:
                callback(SamplerStep(index, total, sigma, x, x0_pred))
            x = x + 0.5 * alpha * score + math.sqrt(alpha) * randn_like_per_sample(x, generator)
            index += 1
    if denoise:
        score, _ = ve_score(model, x, schedule[-1][1])
        x = x + sigma_last**2 * score
    return x
