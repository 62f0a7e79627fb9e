"""EDM's stochastic sampler (Karras et al. 2022, arXiv:2206.00364, Algorithm 2).

In the variance-exploding frame y = x / m(t), sigma = s(t) / m(t), every process of diffstudio
is dy = -sigma * score dsigma, and the denoiser D(y; sigma) is the network's x_0 prediction.
Each step of Algorithm 2:

1. churn: raise the noise level from sigma_i to sigma_hat = sigma_i (1 + gamma_i), with
   gamma_i = min(S_churn / N, sqrt(2) - 1) for sigma_i in [S_tmin, S_tmax] (0 elsewhere),
   by adding fresh noise: y_hat = y + sqrt(sigma_hat^2 - sigma_i^2) * S_noise * z;
2. a Heun step of the probability-flow ODE from sigma_hat to sigma_{i+1}, with
   d = (y - D(y; sigma)) / sigma, corrected by the slope at the end point except on the last
   step (to sigma = 0), which is Euler's.

The noise levels follow eq. 5: sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) -
sigma_max^(1/rho)))^rho with rho = 7, between the model's own smallest and largest sigma, then
sigma_N = 0. A model trained on discrete timesteps (DDPM, NCSN) is only exact at its own noise
levels, so there every sigma, sigma_hat included, is moved to the nearest trained level (in
log sigma; sigma_hat to the nearest level above sigma_i) and the network is called at that
timestep, as k-diffusion does for discrete models; a continuous-time model (score SDEs) is
called at any sigma (``model.predict_at``). S_churn = 0 is the deterministic Algorithm 1.
Network evaluations: 2 N - 1.
"""

from __future__ import annotations

import math

import torch

from diffstudio.engine.samplers import (
    Generators,
    SamplerCallback,
    SamplerStep,
    StopCheck,
    check_stop,
    randn_like_per_sample,
)


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float) -> list[float]:
    """EDM's eq. 5: ``steps`` noise levels from sigma_max down to sigma_min, then 0."""
    if steps == 1:
        return [sigma_max, 0.0]
    high, low = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(high + i / (steps - 1) * (low - high)) ** rho for i in range(steps)] + [0.0]


@torch.no_grad()
def edm_sample(
    model,
    x: torch.Tensor,
    *,
    generator: Generators,
    callback: SamplerCallback | None,
    should_stop: StopCheck | None,
    steps: int = 18,
    s_churn: float = 10.0,
    s_tmin: float = 0.05,
    s_tmax: float = 50.0,
    s_noise: float = 1.0,
    rho: float = 7.0,
    clip_x0: bool = False,
) -> torch.Tensor:
    """Noise to data in ``steps`` EDM steps (Algorithm 2).

    x: (B, *sample_shape) initial noise x_T in the VP frame, as every diffstudio sampler gets
    it (left unmodified); returns x_0 of the same shape. Row i's churn noise comes from
    ``generator[i]`` only. The keyword defaults are the Params declared in plugin.py.
    """
    process = model.process
    grid = process.grid
    levels = process.sigma(grid)  # ascending, one per trained timestep
    sigma_min, sigma_max = float(levels[0]), float(levels[-1])
    discrete = bool(process.discrete_training)

    def level(sigma: float, at_least: float = 0.0) -> tuple[float, int]:
        """The trained level nearest to sigma (in log sigma), not below ``at_least``."""
        distance = (levels.log() - math.log(sigma)).abs()
        distance[levels < at_least * (1 - 1e-9)] = math.inf
        index = int(distance.argmin())
        return float(levels[index]), index

    sigmas = karras_sigmas(sigma_min, sigma_max, steps, rho)
    if discrete:
        sigmas = [level(sigma)[0] for sigma in sigmas[:-1]] + [0.0]

    def denoise(y: torch.Tensor, sigma: float) -> torch.Tensor:
        if discrete:  # VP frame at that timestep: x = y / sqrt(1 + sigma^2)
            prediction = model.predict(y / math.sqrt(1.0 + sigma**2), level(sigma)[1])
        else:
            t = process.t_of_sigma(sigma)
            prediction = model.predict_at(y * float(process.marginal(t)[0]), t)
        return model.clip(prediction.x0, clip_x0)

    # x_T ~ N(0, I) in the VP frame is y = x * sqrt(1 + sigma_max^2) ~ N(0, sigma_max^2 I).
    y = x * math.sqrt(1.0 + sigma_max**2)
    for index in range(steps):
        check_stop(should_stop, index)
        sigma, sigma_next = sigmas[index], sigmas[index + 1]
        gamma = min(s_churn / steps, math.sqrt(2.0) - 1.0) if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = min(sigma * (1.0 + gamma), sigma_max)
        if discrete and sigma_hat > sigma:
            sigma_hat = level(sigma_hat, at_least=sigma)[0]
        if sigma_hat > sigma:
            y = y + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * randn_like_per_sample(
                y, generator)
        x0_pred = denoise(y, sigma_hat)
        if callback is not None:
            callback(SamplerStep(index, steps, sigma_hat, y / math.sqrt(1.0 + sigma_hat**2),
                                 x0_pred))
        slope = (y - x0_pred) / sigma_hat
        y_next = y + (sigma_next - sigma_hat) * slope
        if sigma_next > 0:  # Heun's correction (2nd order), except on the step to sigma = 0
            slope_next = (y_next - denoise(y_next, sigma_next)) / sigma_next
            y_next = y + (sigma_next - sigma_hat) * 0.5 * (slope + slope_next)
        y = y_next
    return model.clip(y, clip_x0)
