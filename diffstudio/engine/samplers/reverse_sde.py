"""The reverse-time SDE solved with Euler-Maruyama (Song et al. 2021, arXiv:2011.13456, eq. 6).

    dx = [f(x, t) - g(t)^2 grad log p_t(x)] dt + g(t) dw_bar,   t from 1 down to t_min

Each step (dt = -(1 - t_min)/N): x <- x - [f - g^2 s_theta] |dt| + g sqrt(|dt|) z. The last step
adds no noise (its mean is returned), and ``denoise`` replaces the result by the model's x_0
estimate at t_min (Tweedie's formula). x starts as N(0, prior_std^2 I) of the model's process;
a DDPM model runs on its VP-SDE view.
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
from diffstudio.engine.samplers._common import sde_times


@torch.no_grad()
def reverse_sde_sample(
    model: DiffusionModel,
    x: torch.Tensor,
    *,
    generator: Generators,
    callback: SamplerCallback | None,
    should_stop: StopCheck | None,
    steps: int = 1000,
    t_min: float = 0.0,
    denoise: bool = True,
) -> torch.Tensor:
    """Euler-Maruyama on eq. 6. x: (B, *shape) standard normal noise, left unmodified.

    generator: one torch.Generator per row of x; row i's noise comes from generator[i] only.
    """
    process = model.process
    times = sde_times(model, steps, t_min)
    x = x * process.prior_std
    x0_pred = x
    for index in range(steps):
        check_stop(should_stop, index)
        t, dt = times[index], times[index] - times[index + 1]
        score, x0_pred = model.score(x, t)
        if callback is not None:
            callback(SamplerStep(index, steps, t, x, x0_pred))
        g = process.diffusion(t)
        x_mean = x - (process.drift(x, t) - g**2 * score) * dt
        if index + 1 < steps:
            x = x_mean + g * math.sqrt(dt) * randn_like_per_sample(x, generator)
        else:
            x = x_mean
    if denoise:
        x = model.score(x, times[-1])[1]
    return x
