"""The training objectives against closed forms computed here independently, beyond
test_objectives.py's: L_simple in each
parameterisation (Ho et al., arXiv 2006.11239, eq. 14), the score-matching weighting of NCSN
(Song & Ermon, arXiv 1907.05600, eqs. 5-6), the terms of L_vlb and L_hybrid (Nichol &
Dhariwal, arXiv 2102.09672, eqs. 4-7, 15, 16)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from diffstudio.engine.objectives import hybrid_loss, simple_loss, vlb_terms
from diffstudio.engine.parameterization import PREDICTION_TYPES, frame_to_eps_and_x0
from diffstudio.engine.schedules import NoiseSchedule

F64 = torch.float64


def _batch(shape=(6, 2, 3, 3), seed=0):
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=generator, dtype=F64) * 2 - 1
    eps = torch.randn(shape, generator=generator, dtype=F64)
    return x0, eps, generator


def _vp(alpha_bar: torch.Tensor, like: torch.Tensor):
    view = (-1,) + (1,) * (like.dim() - 1)
    return alpha_bar.sqrt().view(view), (1 - alpha_bar).sqrt().view(view)


def _perfect_output(prediction_type, x0, eps, m, s):
    """What a perfect network returns, written out from the definitions (not frame_target)."""
    if prediction_type == "epsilon":
        return eps.clone()
    if prediction_type == "sample":
        return x0.clone()
    if prediction_type == "score":  # s * grad log q(x_t | x_0) = s * (-(x_t - m x_0) / s^2)
        x_t = m * x0 + s * eps
        return -(x_t - m * x0) / s
    c = (m**2 + s**2).sqrt()  # v = a eps - b x_0 with a = m / c, b = s / c
    return (m / c) * eps - (s / c) * x0


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("frame", ["vp", "ve"])
def test_a_perfect_prediction_has_zero_l_simple_and_an_offset_costs_its_square(
    prediction_type, frame
):
    x0, eps, generator = _batch()
    if frame == "vp":
        m, s = _vp(torch.rand(6, generator=generator, dtype=F64) * 0.98 + 0.01, x0)
    else:  # variance exploding: m = 1, s = sigma
        m, s = torch.ones(6, 1, 1, 1, dtype=F64), torch.tensor([0.01, 0.1, 1, 5, 20, 50],
                                                                dtype=F64).view(-1, 1, 1, 1)
    perfect = _perfect_output(prediction_type, x0, eps, m, s)
    assert simple_loss(prediction_type, perfect, x0, eps, m, s).item() == pytest.approx(
        0.0, abs=1e-20)
    offset = perfect + 0.5
    assert simple_loss(prediction_type, offset, x0, eps, m, s).item() == pytest.approx(0.25)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_the_target_converts_back_to_the_true_eps_and_x0(prediction_type):
    """The regression target is what parameterization's conversion reads as (eps, x_0)."""
    x0, eps, generator = _batch(seed=1)
    for m, s in (_vp(torch.rand(6, generator=generator, dtype=F64) * 0.98 + 0.01, x0),
                 (1.0, 3.0), (0.5, 2.0)):
        x_t = m * x0 + s * eps
        perfect = _perfect_output(prediction_type, x0, eps, torch.as_tensor(m, dtype=F64),
                                  torch.as_tensor(s, dtype=F64))
        eps_back, x0_back = frame_to_eps_and_x0(prediction_type, perfect, x_t, m, s)
        torch.testing.assert_close(eps_back, eps, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(x0_back, x0, rtol=1e-9, atol=1e-9)


def test_score_l_simple_is_the_sigma_squared_weighted_score_matching_loss():
    """NCSN: lambda(sigma) l(theta; sigma) with l = ||s_theta(x~) + (x~ - x) / sigma^2||^2
    (eq. 5, without its 1/2) and lambda = sigma^2 (eq. 6), for a network whose output is
    sigma * s_theta."""
    x0, eps, generator = _batch(seed=2)
    sigma = torch.tensor([0.05, 0.2, 1.0, 3.0, 10.0, 30.0], dtype=F64).view(-1, 1, 1, 1)
    x_noisy = x0 + sigma * eps
    s_theta = torch.randn(x0.shape, generator=generator, dtype=F64)  # some score estimate
    per_sample = ((s_theta + (x_noisy - x0) / sigma**2) ** 2).flatten(1).sum(1)
    expected = (sigma.flatten() ** 2 * per_sample).mean() / x0[0].numel()
    got = simple_loss("score", sigma * s_theta, x0, eps, torch.ones_like(sigma), sigma)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def _schedule() -> NoiseSchedule:
    return NoiseSchedule(torch.tensor([0.01, 0.05, 0.1, 0.2, 0.3], dtype=F64), name="tiny")


def _posterior_by_hand(betas, t, x0, x_t):
    """q(x_{t-1} | x_t, x_0) of Ho et al. eqs. 6-7, from the betas alone: (mean, variance)."""
    alphas = 1 - betas
    alpha_bars = torch.cumprod(alphas, 0)
    ab, ab_prev = alpha_bars[t], alpha_bars[t - 1]
    mean = (ab_prev.sqrt() * betas[t] / (1 - ab)) * x0 + (alphas[t].sqrt() * (1 - ab_prev)
                                                           / (1 - ab)) * x_t
    return mean, (1 - ab_prev) / (1 - ab) * betas[t]


def test_vlb_terms_are_the_gaussian_kl_of_the_posterior_and_the_model():
    schedule = _schedule()
    betas = schedule.betas
    x0, eps, generator = _batch(shape=(4, 1, 2, 2), seed=3)
    t = torch.tensor([1, 2, 3, 4])
    alpha_bar = schedule.alpha_bars[t]
    m, s = _vp(alpha_bar, x0)
    x_t = m * x0 + s * eps
    eps_pred = eps + 0.3 * torch.randn(x0.shape, generator=generator, dtype=F64)
    v = torch.rand(x0.shape, generator=generator, dtype=F64) * 2 - 1
    got = vlb_terms(schedule, x0, x_t, t, eps_pred, v)
    for i, step in enumerate(t.tolist()):
        true_mean, true_var = _posterior_by_hand(betas, step, x0[i], x_t[i])
        x0_pred = (x_t[i] - (1 - alpha_bar[i]).sqrt() * eps_pred[i]) / alpha_bar[i].sqrt()
        model_mean, _ = _posterior_by_hand(betas, step, x0_pred, x_t[i])
        beta_tilde = _posterior_by_hand(betas, step, x0[i], x_t[i])[1]
        fraction = (v[i] + 1) / 2  # eq. 15: log Sigma = f log beta + (1 - f) log beta_tilde
        model_var = torch.exp(fraction * betas[step].log() + (1 - fraction) * beta_tilde.log())
        kl = kl_divergence(Normal(true_mean, true_var.sqrt()), Normal(model_mean,
                                                                      model_var.sqrt()))
        assert got[i].item() == pytest.approx((kl.mean() / math.log(2)).item(), rel=1e-9)


def test_the_true_posterior_costs_nothing():
    """eps exact and Sigma = beta_tilde (v = -1): p_theta(x_{t-1} | x_t) is q's posterior."""
    schedule = _schedule()
    x0, eps, _ = _batch(shape=(4, 1, 2, 2), seed=4)
    t = torch.tensor([1, 2, 3, 4])
    m, s = _vp(schedule.alpha_bars[t], x0)
    got = vlb_terms(schedule, x0, m * x0 + s * eps, t, eps, -torch.ones_like(x0))
    torch.testing.assert_close(got, torch.zeros(4, dtype=F64), rtol=0, atol=1e-12)


def test_the_t0_term_is_the_discretised_gaussian_decoder():
    """-log p_theta(x_0 | x_1) on 256 bins of [-1, 1], the end bins open (Ho et al., eq. 13)."""
    schedule = _schedule()
    x0 = torch.tensor([[-1.0, -0.5, 0.0, 1.0]], dtype=F64).view(1, 1, 2, 2)
    eps = torch.tensor([[0.3, -1.2, 0.7, 2.0]], dtype=F64).view(1, 1, 2, 2)
    t = torch.tensor([0])
    m, s = _vp(schedule.alpha_bars[t], x0)
    x_t = m * x0 + s * eps
    eps_pred = 0.8 * eps
    v = torch.full_like(x0, 0.4)
    got = vlb_terms(schedule, x0, x_t, t, eps_pred, v)
    # At t = 0 the model's mean is x0_pred's and its variance beta_0 mixed with the clipped
    # beta_tilde_1 (beta_tilde_0 is 0).
    alpha_bar0 = schedule.alpha_bars[0]
    x0_pred = (x_t - (1 - alpha_bar0).sqrt() * eps_pred) / alpha_bar0.sqrt()
    c_x0 = schedule.posterior_mean_coefficients()[0][0]
    c_xt = schedule.posterior_mean_coefficients()[1][0]
    mean = c_x0 * x0_pred + c_xt * x_t
    beta_tilde_1 = _posterior_by_hand(schedule.betas, 1, x0, x_t)[1]
    fraction = (v + 1) / 2
    std = torch.exp(0.5 * (fraction * schedule.betas[0].log() + (1 - fraction)
                           * beta_tilde_1.log()))
    normal = Normal(mean, std)
    upper = torch.where(x0 > 0.999, torch.ones_like(x0), normal.cdf(x0 + 1 / 255))
    lower = torch.where(x0 < -0.999, torch.zeros_like(x0), normal.cdf(x0 - 1 / 255))
    nll = -torch.log((upper - lower).clamp(min=1e-12))
    assert got.item() == pytest.approx((nll.mean() / math.log(2)).item(), rel=1e-7)


def test_hybrid_loss_adds_lambda_t_vlb_and_trains_the_variance_only_through_it():
    schedule = _schedule()
    x0, eps, generator = _batch(shape=(4, 1, 2, 2), seed=5)
    t = torch.tensor([0, 1, 3, 4])
    m, s = _vp(schedule.alpha_bars[t], x0)
    x_t = m * x0 + s * eps
    mean_part = (eps + 0.2 * torch.randn(x0.shape, generator=generator, dtype=F64))
    variance_part = torch.rand(x0.shape, generator=generator, dtype=F64) * 2 - 1
    output = torch.cat([mean_part, variance_part], dim=1).requires_grad_(True)
    loss = hybrid_loss(schedule, "epsilon", output, x0, eps, x_t, t, m, s, hybrid_lambda=0.001)
    simple = ((mean_part - eps) ** 2).mean()
    vlb = vlb_terms(schedule, x0, x_t, t, mean_part, variance_part)
    assert loss.item() == pytest.approx((simple + 0.001 * 5 * vlb.mean()).item(), rel=1e-12)
    loss.backward()
    # The mean's gradient is L_simple's alone (L_vlb's mean is detached, Nichol & Dhariwal §3.1)
    torch.testing.assert_close(output.grad[:, :1], 2 * (mean_part - eps) / mean_part.numel())
    assert output.grad[:, 1:].abs().sum() > 0
