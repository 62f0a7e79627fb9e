"""Training objectives, one function each, for every kind of process.

* :func:`denoising_loss`: x_t = m x_0 + s eps at a training time, and the network regresses its
  target in that frame (``parameterization.frame_target``):
  - DDPM with eps prediction: L_simple = || eps - eps_theta(x_t, t) ||^2 (seed 002 eq. 24);
  - NCSN (``score`` prediction over geometric sigmas): (1/L) sum_i sigma_i^2 l(theta; sigma_i)
    with l of eq. 32, i.e. lambda(sigma) = sigma^2 (eq. 33), which is || s_theta sigma + z ||^2;
  - score SDEs: eq. 36 at t ~ U[t_min, 1] with lambda(t) = s(t)^2 (the "usual weighting").
  Constant factors (the 1/2 of eq. 32) are dropped; they change no minimiser.
* :func:`vlb_terms`: the variational bound L_vlb (eq. 16) of a learned-variance network
  (Improved DDPM, eqs. 20, 25): KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) for t > 0 and
  the discretised Gaussian decoder -log p_theta(x_0 | x_1) at t = 0, in bits per dimension, with
  the mean's gradient stopped so that L_vlb trains only the variance (Nichol & Dhariwal 2021).
"""

from __future__ import annotations

import math

import torch

from diffstudio.engine.schedules import NoiseSchedule

__all__ = [
    "discretized_gaussian_log_likelihood",
    "learned_log_variance",
    "normal_kl",
    "vlb_terms",
]


def normal_kl(
    mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (
        logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0
    )


def _standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor
) -> torch.Tensor:
    """log p(x) elementwise for x in [-1, 1] on 256 bins (Ho et al. 2020, §3.3), in nats.

    The end bins extend to -inf and +inf.
    """
    centred = x - means
    inverse_std = torch.exp(-log_scales)
    cdf_plus = _standard_normal_cdf(inverse_std * (centred + 1.0 / 255.0))
    cdf_minus = _standard_normal_cdf(inverse_std * (centred - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1.0 - cdf_minus).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    return torch.where(
        x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_delta)
    )


def _posterior(schedule: NoiseSchedule, t: torch.Tensor, device: torch.device):
    """Per-sample (c_x0, c_xt, log beta_tilde clipped, log beta) at integer timesteps t."""
    c_x0, c_xt = schedule.posterior_mean_coefficients()
    beta_tilde = schedule.posterior_variances
    # beta_tilde_0 = 0: use beta_tilde_1 there, as Improved DDPM does ("clipped" log variance).
    log_beta_tilde = torch.log(torch.cat([beta_tilde[1:2], beta_tilde[1:]]))
    log_beta = torch.log(schedule.betas)
    return tuple(v.to(device)[t] for v in (c_x0, c_xt, log_beta_tilde, log_beta))


def learned_log_variance(
    schedule: NoiseSchedule, t: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """log Sigma_theta = f log beta_t + (1 - f) log beta_tilde_t with f = (v + 1) / 2 (eq. 20).

    t: (B,) integer timesteps; v: (B, ...) the network's variance output.
    """
    _, _, log_beta_tilde, log_beta = _posterior(schedule, t, v.device)
    shape = (-1,) + (1,) * (v.dim() - 1)
    fraction = (v + 1.0) / 2.0
    return (fraction * log_beta.view(shape) + (1 - fraction) * log_beta_tilde.view(shape)).to(
        v.dtype
    )


def vlb_terms(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    eps_pred: torch.Tensor,
    v: torch.Tensor,
) -> torch.Tensor:
    """L_t of eq. 16 for each sample, bits per dimension: (B,).

    x0, x_t, eps_pred, v: (B, C, ...); t: (B,) integer timesteps. eps_pred should be detached
    when training (L_vlb then trains only the variance).
    """
    shape = (-1,) + (1,) * (x0.dim() - 1)
    c_x0, c_xt, log_beta_tilde, _ = _posterior(schedule, t, x0.device)
    c_x0, c_xt = c_x0.view(shape).to(x0.dtype), c_xt.view(shape).to(x0.dtype)
    log_beta_tilde = log_beta_tilde.view(shape).to(x0.dtype)
    alpha_bar = schedule.alpha_bars.to(x0.device)[t].view(shape).to(x0.dtype)
    x0_pred = (x_t - (1 - alpha_bar).sqrt() * eps_pred) / alpha_bar.sqrt()
    true_mean = c_x0 * x0 + c_xt * x_t  # eq. 9
    model_mean = c_x0 * x0_pred + c_xt * x_t
    model_log_variance = learned_log_variance(schedule, t, v)
    kl = normal_kl(true_mean, log_beta_tilde, model_mean, model_log_variance)
    kl = kl.flatten(1).mean(1) / math.log(2.0)
    decoder_nll = -discretized_gaussian_log_likelihood(
        x0, model_mean, 0.5 * model_log_variance
    )
    decoder_nll = decoder_nll.flatten(1).mean(1) / math.log(2.0)
    return torch.where(t == 0, decoder_nll, kl)
