"""Annealed Langevin dynamics (Song & Ermon 2019; seed 002 §4.3, Algorithm 1).

For noise levels sigma_1 > ... > sigma_L, each run T times:

    alpha_i = eps sigma_i^2 / sigma_L^2
    x <- x + alpha_i / 2 * s_theta(x, sigma_i) + sqrt(alpha_i) z,   z ~ N(0, I)

in the variance-exploding frame x = x_0 + sigma z. The levels are the model's own NCSN levels
unless given; any other model is queried through its continuous view at the time where
s/m = sigma (its score is rescaled to that frame), so a DDPM or SDE model can be sampled this
way too. Defaults follow the seed's §5.2.3: L = 10, sigma 1 -> 0.01, T = 100, eps = 2e-5.
"""

from __future__ import annotations

import math

import torch

from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.samplers import SamplerCallback, SamplerStep, StopCheck, check_stop, randn
from diffstudio.engine.schedules.ncsn import NCSNLevels
from diffstudio.errors import ConfigError


def noise_levels(
    model: DiffusionModel, levels: int, sigma_max: float, sigma_min: float
) -> list[tuple[float, float]]:
    """[(sigma_i, t_i)] from the largest level down. 0 for sigma_max/min means the model's."""
    process = model.process
    own = isinstance(process, NCSNLevels)
    if own and not sigma_max and not sigma_min and levels in (0, process.num_scales):
        times = process.grid.flip(0)
        return [(float(process.sigma(t)), float(t)) for t in times]
    grid_sigmas = process.sigma(process.grid)
    sigma_max = sigma_max or float(grid_sigmas.max())
    sigma_min = sigma_min or float(grid_sigmas.min())
    if not 0 < sigma_min < sigma_max:
        raise ConfigError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    count = levels or 10
    sigmas = torch.logspace(
        math.log10(sigma_max), math.log10(sigma_min), count, dtype=torch.float64
    )
    return [(float(sigma), process.t_of_sigma(float(sigma))) for sigma in sigmas]


def ve_score(
    model: DiffusionModel, x: torch.Tensor, t: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad log p_sigma(x), x0_pred) in the VE frame x = x_0 + sigma z, at the model's time t.

    With x_native = m x: grad_x log p(x) = m * score_native(m x).
    """
    m = float(model.process.marginal(t)[0])
    score, x0 = model.score(x * m if m != 1.0 else x, t)
    return (score * m if m != 1.0 else score), x0


def initial_state(
    x: torch.Tensor, generator, init: str, scale: float, init_range: float
) -> torch.Tensor:
    """The starting point: ``prior`` = x * scale (x is N(0, I) noise), ``uniform`` = U(-r, r)."""
    if init == "prior":
        return x * scale
    if init == "uniform":
        return (torch.rand_like(x) if generator is None else _uniform(x, generator)) * (
            2 * init_range
        ) - init_range
    if init == "given":
        return x.clone()
    raise ConfigError(f"init must be 'prior', 'uniform' or 'given', got {init!r}")


def _uniform(like: torch.Tensor, generator) -> torch.Tensor:
    if isinstance(generator, (list, tuple)):
        return torch.stack([_uniform(like[i], g) for i, g in enumerate(generator)])
    return torch.rand(like.shape, generator=generator, dtype=like.dtype,
                      device=generator.device).to(like.device)


@torch.no_grad()
def annealed_langevin_sample(
    model: DiffusionModel,
    x: torch.Tensor,
    *,
    generator: torch.Generator | None,
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

    ``denoise`` ends with one Tweedie step x + sigma_L^2 s(x, sigma_L) (Jolicoeur-Martineau et
    al. 2021), which removes the last level's noise.
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
            x = x + 0.5 * alpha * score + math.sqrt(alpha) * randn(x, generator)
            index += 1
    if denoise:
        score, _ = ve_score(model, x, schedule[-1][1])
        x = x + sigma_last**2 * score
    return x
