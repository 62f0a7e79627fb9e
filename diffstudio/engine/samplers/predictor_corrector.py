"""Predictor-corrector sampling (Song et al. 2021, arXiv:2011.13456, §4.2; Algorithms 2-3 for the
VE and VP SDEs, their Langevin correctors Algorithms 4-5 in App. G).

For t from 1 down to t_min, M corrector steps then one predictor step:

* Langevin corrector: eps_i = 2 alpha (snr ||z|| / ||s_theta||)^2,
  x <- x + eps_i s_theta(x, t) + sqrt(2 eps_i) z, with alpha = 1 for VE and (1 - beta_i) for VP
  (in general the squared mean ratio of one discrete forward step);
* predictor, ``reverse-diffusion``: the discretised forward step x_t = a x_{t'} + G z reversed,
  x <- (2 - a) x + G^2 s_theta + G z (App. E), or ``euler-maruyama`` on the reverse SDE (eq. 6).

As in the reference code, the corrector's step size uses the batch mean of the per-sample
norms: per-sample norms make the step explode for low-dimensional data (a 2-D point near a
mode has a score near zero). A PC sample therefore depends on the batch it was drawn in; it
regenerates exactly from the same seed, number of samples and batch size.
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
from diffstudio.errors import ConfigError


def _mean_norm(x: torch.Tensor) -> float:
    """Mean over the batch of the per-sample Euclidean norms."""
    return float(x.flatten(1).norm(dim=1).mean())


@torch.no_grad()
def predictor_corrector_sample(
    model: DiffusionModel,
    x: torch.Tensor,
    *,
    generator: Generators,
    callback: SamplerCallback | None,
    should_stop: StopCheck | None,
    steps: int = 1000,
    predictor: str = "reverse-diffusion",
    corrector_steps: int = 1,
    snr: float = 0.16,
    t_min: float = 0.0,
    denoise: bool = True,
) -> torch.Tensor:
    """PC sampling. x: (B, *shape) standard normal noise, left unmodified. Network evaluations
    per step: corrector_steps + 1.

    generator: one torch.Generator per row of x; row i's noise comes from generator[i] only (its
    corrector step size still depends on the batch, see the module docstring).
    """
    if predictor not in ("reverse-diffusion", "euler-maruyama"):
        raise ConfigError(
            f"predictor must be 'reverse-diffusion' or 'euler-maruyama', got {predictor!r}"
        )
    process = model.process
    times = sde_times(model, steps, t_min)
    x = x * process.prior_std
    for index in range(steps):
        check_stop(should_stop, index)
        t, t_next = times[index], times[index + 1]
        (m, s), (m_next, s_next) = process.marginal(t), process.marginal(t_next)
        ratio = float(m / m_next)  # x_t = ratio x_t' + G z for one forward step t' -> t
        g2_step = max(float(s**2 - ratio**2 * s_next**2), 0.0)
        for _ in range(corrector_steps):  # Langevin corrector at time t
            score, _ = model.score(x, t)
            noise = randn_like_per_sample(x, generator)
            step = 2 * ratio**2 * (snr * _mean_norm(noise) / max(_mean_norm(score), 1e-12)) ** 2
            x = x + step * score + math.sqrt(2 * step) * noise
        score, x0_pred = model.score(x, t)
        if callback is not None:
            callback(SamplerStep(index, steps, t, x, x0_pred))
        last = index + 1 == steps
        if predictor == "reverse-diffusion":
            x_mean = (2 - ratio) * x + g2_step * score
            noise_scale = math.sqrt(g2_step)
        else:
            dt = t - t_next
            g = process.diffusion(t)
            x_mean = x - (process.drift(x, t) - g**2 * score) * dt
            noise_scale = g * math.sqrt(dt)
        x = x_mean if last else x_mean + noise_scale * randn_like_per_sample(x, generator)
    if denoise:
        x = model.score(x, times[-1])[1]
    return x
