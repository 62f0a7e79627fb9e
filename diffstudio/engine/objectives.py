"""Training objectives, one function each, for every kind of process.

* :func:`simple_loss`: x_t = m x_0 + s eps at a training time, and the network regresses its
  target in that frame (``parameterization.frame_target``):
  - DDPM with eps prediction: L_simple = || eps - eps_theta(x_t, t) ||^2 (Ho et al., arXiv
    2006.11239, eq. 14);
  - NCSN (``score`` prediction over geometric sigmas): (1/L) sum_i sigma_i^2 l(theta; sigma_i)
    with lambda(sigma) = sigma^2 (Song & Ermon, arXiv 1907.05600, eqs. 5-6), which is
    || s_theta sigma + z ||^2;
  - score SDEs: eq. 7 of Song et al. (arXiv 2011.13456) at t ~ U[t_min, 1] with
    lambda(t) = s(t)^2 (the "usual weighting").
  Constant factors (the 1/2 of NCSN's loss) are dropped; they change no minimiser.
* :func:`vlb_terms`: the variational bound L_vlb of a learned-variance network (Nichol &
  Dhariwal, arXiv 2102.09672, eqs. 4-6 and 15): KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} |
  x_t)) for t > 0 and the discretised Gaussian decoder -log p_theta(x_0 | x_1) at t = 0, in bits
  per dimension, with the mean's gradient stopped so that L_vlb trains only the variance.
* :func:`hybrid_loss`: L_hybrid = L_simple + lambda L_vlb (their eq. 16, lambda = 0.001).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from diffstudio.engine.parameterization import frame_target, frame_to_eps_and_x0
from diffstudio.engine.schedules import NoiseSchedule

__all__ = [
    "discretized_gaussian_log_likelihood",
    "hybrid_loss",
    "learned_log_variance",
    "normal_kl",
    "simple_loss",
    "vlb_terms",
]


def simple_loss(
    prediction_type: str,
    output: torch.Tensor,
    x0: torch.Tensor,
    eps: torch.Tensor,
    m: torch.Tensor | float,
    s: torch.Tensor | float,
) -> torch.Tensor:
    """L_simple in any parameterisation: the mean squared error between the network ``output``
    at x_t = m x_0 + s eps and its target there (eps, x_0, v or -eps). A scalar.

    output, x0, eps: (B, C, ...); m, s: numbers or (B, 1, ...) tensors broadcasting to x0.
    """
    return F.mse_loss(output, frame_target(prediction_type, x0, eps, m, s))


def hybrid_loss(
    schedule: NoiseSchedule,
    prediction_type: str,
    output: torch.Tensor,
    x0: torch.Tensor,
    eps: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    m: torch.Tensor | float,
    s: torch.Tensor | float,
    hybrid_lambda: float = 0.001,
) -> torch.Tensor:
    """L_hybrid = L_simple + lambda T mean_t L_t of a learned-variance network (2C channels:
    the mean part, then v). The VLB sees the mean with its gradient stopped, so it trains
    only the variance; T scales the per-timestep mean to the sum over t that L_vlb is."""
    channels = x0.shape[1]
    mean_part, v = output[:, :channels], output[:, channels:]
    loss = simple_loss(prediction_type, mean_part, x0, eps, m, s)
    eps_pred, _ = frame_to_eps_and_x0(prediction_type, mean_part.detach(), x_t, m, s)
    vlb = vlb_terms(schedule, x0, x_t, t, eps_pred, v)
    return loss + hybrid_lambda * schedule.num_timesteps * vlb.mean()


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
