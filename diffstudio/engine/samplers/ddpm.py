"""DDPM ancestral sampling (Ho, Jain & Abbeel 2020, arXiv:2006.11239, Algorithm 2).

For each t from the noisiest down (``prev`` the next timestep visited, alpha_bar_{-1} = 1):

    x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) / sqrt(alpha_bar_t)   (eq. 4 for x_0)
    mu      = c_x0 x0_pred + c_xt x_t                                  (eq. 7, the posterior mean)
    x_prev  = mu + sigma_t z,  z ~ N(0, I) for t > 0, z = 0 at t = 0

with beta'_t = 1 - alpha_bar_t / alpha_bar_prev (= beta_t when every step is visited),
c_x0 = sqrt(alpha_bar_prev) beta'_t / (1 - alpha_bar_t),
c_xt = sqrt(1 - beta'_t) (1 - alpha_bar_prev) / (1 - alpha_bar_t), and
sigma_t^2 = beta'_t ("large") or beta_tilde_t = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta'_t
("small", eq. 7; the two choices of §3.2), or, for a learned-variance network, the interpolation
between them of Improved DDPM (Nichol & Dhariwal 2021, arXiv:2102.09672, eq. 15) ("learned";
"auto" uses it whenever the network provides it, else "small"). Without clipping, eq. 7 through
x0_pred equals Algorithm 2's mean (eq. 11) exactly;
writing it through x0_pred lets x0_pred be clipped to the data range, as the DDPM
reference code does. Matches diffusers' ``DDPMScheduler`` step for step (``fixed_small`` /
``fixed_large``, ``timestep_spacing="leading"``, the same noise drawn for every t > 0).

One deliberate difference: the coefficients are computed in float64. Diffusers forms
beta'_t = 1 - alpha_bar_t / alpha_bar_prev in float32, which near t = 0 (beta ~ 1e-4) keeps
only 3-4 digits: its float32 steps near t = 0 are off by up to ~1e-4 of the sample's scale,
ours by ~1e-7. In float64 the two trajectories agree to ~1e-15
(tests/test_samplers_parity.py).
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
from diffstudio.engine.samplers._common import timestep_sequence
from diffstudio.errors import ConfigError


@torch.no_grad()
def ddpm_sample(
    model: DiffusionModel,
    x: torch.Tensor,
    *,
    generator: Generators,
    callback: SamplerCallback | None,
    should_stop: StopCheck | None,
    steps: int = 1000,
    variance: str = "auto",
    clip_x0: bool = True,
    spacing: str = "uniform",
) -> torch.Tensor:
    """Ancestral sampling from x_T to x_0. x: (B, *sample_shape) initial noise, left unmodified.

    generator: one torch.Generator per row of x; row i's noise comes from generator[i] only.
    """
    if variance not in ("auto", "small", "large", "learned"):
        raise ConfigError(
            f"DDPM variance must be 'auto', 'small', 'large' or 'learned', got {variance!r}"
        )
    timesteps = timestep_sequence(model.num_timesteps, steps, spacing)
    for index, t in enumerate(timesteps):
        check_stop(should_stop, index)
        prev = timesteps[index + 1] if index + 1 < len(timesteps) else -1
        alpha_bar, alpha_bar_prev = model.alpha_bar(t), model.alpha_bar(prev)
        beta = 1.0 - alpha_bar / alpha_bar_prev
        prediction = model.predict(x, t)
        x0_pred = model.clip(prediction.x0, clip_x0)
        if callback is not None:
            callback(SamplerStep(index, len(timesteps), t, x, x0_pred))
        coef_x0 = alpha_bar_prev**0.5 * beta / (1.0 - alpha_bar)
        coef_xt = (1.0 - beta) ** 0.5 * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
        x_prev = coef_x0 * x0_pred + coef_xt * x
        if t > 0:
            if variance == "learned" and prediction.variance is None:
                raise ConfigError(
                    "variance 'learned' needs a learned-variance network; use 'auto', "
                    "'small' or 'large' for this one"
                )
            noise = randn_like_per_sample(x, generator)
            beta_tilde = max((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * beta, 1e-20)
            if variance in ("auto", "learned") and prediction.variance is not None:
                # Improved DDPM eq. 15: log Sigma = v log beta + (1 - v) log beta_tilde,
                # v = (out + 1) / 2
                fraction = (prediction.variance + 1.0) / 2.0
                log_sigma2 = fraction * math.log(beta) + (1 - fraction) * math.log(beta_tilde)
                x_prev = x_prev + torch.exp(0.5 * log_sigma2) * noise
            else:
                sigma2 = beta if variance == "large" else beta_tilde
                x_prev = x_prev + sigma2**0.5 * noise
        x = x_prev
    return x
