"""The reverse-time SDE solved with Euler-Maruyama (Song et al. 2021; seed 002 §4.4, eq. 35).

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
from diffstudio.engine.samplers import SamplerCallback, SamplerStep, StopCheck, check_stop, randn


def sde_times(model: DiffusionModel, steps: int, t_min: float) -> list[float]:
    """steps + 1 times from 1 down to t_min (the process's own when t_min is 0)."""
    t_min = t_min or model.process.t_min
    return torch.linspace(1.0, t_min, steps + 1, dtype=torch.float64).tolist()


@torch.no_grad()
def reverse_sde_sample(
    model: DiffusionModel,
    x: torch.Tensor,
    *,
    generator: torch.Generator | None,
    callback: SamplerCallback | None,
    should_stop: StopCheck | None,
    steps: int = 1000,
    t_min: float = 0.0,
    denoise: bool = True,
) -> torch.Tensor:
    """Euler-Maruyama on eq. 35. x: (B, *shape) standard normal noise."""
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
        x = x_mean + g * math.sqrt(dt) * randn(x, generator) if index + 1 < steps else x_mean
    if denoise:
        x = model.score(x, times[-1])[1]
    return x
