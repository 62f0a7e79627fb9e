"""The training objectives against closed forms: L_simple in each parameterisation, the
Gaussian KL of L_vlb against torch.distributions, and L_hybrid's parts."""

from __future__ import annotations

import pytest
import torch

from diffstudio.engine.objectives import (
    hybrid_loss,
    learned_log_variance,
    normal_kl,
    simple_loss,
    vlb_terms,
)
from diffstudio.engine.parameterization import PREDICTION_TYPES, frame_target
from diffstudio.engine.schedules.linear import linear_schedule


def _batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.rand(6, 1, 4, 4, generator=generator, dtype=torch.float64) * 2 - 1
    eps = torch.randn(6, 1, 4, 4, generator=generator, dtype=torch.float64)
    return x0, eps


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_simple_loss_is_zero_at_the_target_and_the_mse_elsewhere(prediction_type):
    x0, eps = _batch()
    m = torch.full((6, 1, 1, 1), 0.6, dtype=torch.float64)
    s = torch.full((6, 1, 1, 1), 0.8, dtype=torch.float64)
    target = frame_target(prediction_type, x0, eps, m, s)
    assert simple_loss(prediction_type, target, x0, eps, m, s).item() == 0.0
    off = target + 0.5
    assert simple_loss(prediction_type, off, x0, eps, m, s).item() == pytest.approx(0.25)


def test_eps_loss_is_ho_et_al_l_simple():
    x0, eps = _batch(1)
    guess = torch.zeros_like(eps)
    expected = ((eps - guess) ** 2).mean()
    assert simple_loss("epsilon", guess, x0, eps, 0.9, 0.43).item() == pytest.approx(
        expected.item())


def test_normal_kl_matches_torch_distributions():
    generator = torch.Generator().manual_seed(2)
    mean1, mean2 = torch.randn(2, 50, generator=generator, dtype=torch.float64)
    logvar1, logvar2 = torch.randn(2, 50, generator=generator, dtype=torch.float64)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean1, (0.5 * logvar1).exp()),
        torch.distributions.Normal(mean2, (0.5 * logvar2).exp()))
    torch.testing.assert_close(normal_kl(mean1, logvar1, mean2, logvar2), reference)


def test_vlb_vanishes_for_the_true_mean_and_the_posterior_variance():
    """With eps_pred = eps and v = -1 (log Sigma = log beta_tilde), p_theta(x_{t-1} | x_t) is
    q(x_{t-1} | x_t, x_0) itself: every KL term is 0; t = 0 is the decoder's NLL (> 0)."""
    schedule = linear_schedule(100)
    x0, eps = _batch(3)
    t = torch.tensor([0, 1, 10, 50, 98, 99])
    alpha_bar = schedule.alpha_bars[t].view(-1, 1, 1, 1).to(torch.float64)
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    v = -torch.ones_like(x0)
    terms = vlb_terms(schedule, x0, x_t, t, eps, v)
    torch.testing.assert_close(terms[1:], torch.zeros(5, dtype=terms.dtype), atol=1e-9,
                               rtol=0)
    assert terms[0] > 0
    # v = -1 and v = 1 are the two ends of Improved DDPM's interpolation (their eq. 15).
    log_beta = torch.log(schedule.betas[t]).view(-1, 1, 1, 1)
    torch.testing.assert_close(learned_log_variance(schedule, t, torch.ones_like(x0)),
                               log_beta.expand_as(x0).to(x0.dtype))


def test_hybrid_loss_is_simple_plus_lambda_t_times_the_mean_vlb():
    schedule = linear_schedule(100)
    x0, eps = _batch(4)
    t = torch.tensor([3, 20, 40, 60, 80, 97])
    alpha_bar = schedule.alpha_bars[t].view(-1, 1, 1, 1).to(torch.float64)
    m, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    x_t = m * x0 + s * eps
    eps_guess = eps + 0.1
    v = torch.zeros_like(x0)
    output = torch.cat([eps_guess, v], dim=1)
    total = hybrid_loss(schedule, "epsilon", output, x0, eps, x_t, t, m, s, 0.001)
    simple = simple_loss("epsilon", eps_guess, x0, eps, m, s)
    vlb = vlb_terms(schedule, x0, x_t, t, eps_guess, v)
    assert total.item() == pytest.approx((simple + 0.001 * 100 * vlb.mean()).item())
    # The VLB trains only the variance: no gradient reaches the mean through it.
    mean_part = eps_guess.clone().requires_grad_(True)
    v_part = v.clone().requires_grad_(True)
    loss = hybrid_loss(schedule, "epsilon", torch.cat([mean_part, v_part], 1), x0, eps, x_t,
                       t, m, s, 0.001) - simple_loss("epsilon", mean_part, x0, eps, m, s)
    loss.backward()
    assert mean_part.grad.abs().max() < 1e-12 and v_part.grad.abs().max() > 0
