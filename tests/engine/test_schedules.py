"""Noise schedules against the closed forms of seed 002 (eqs. 4-10, 18) and against diffusers.

* eq. 5: q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), checked empirically on
  draws of ``q_sample``;
* eqs. 8-10: the posterior q(x_{t-1} | x_t, x_0), checked against the formulas and against an
  independent Bayes computation on the joint Gaussian of (x_{t-1}, x_t) given x_0, whose moments
  are propagated step by step with eq. 4 (not read off eq. 5);
* eq. 18: the cosine schedule, exactly where beta is not clipped;
* the betas of all four schedules against diffusers' ``DDPMScheduler``.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler

from diffstudio.engine.schedules import NoiseSchedule
from diffstudio.engine.schedules.cosine import cosine_alpha_bar, cosine_schedule
from diffstudio.engine.schedules.linear import linear_schedule
from diffstudio.engine.schedules.quadratic import quadratic_schedule
from diffstudio.engine.schedules.sigmoid import sigmoid_schedule
from diffstudio.errors import ConfigError

SCHEDULES = {
    "linear": linear_schedule,
    "cosine": cosine_schedule,
    "quadratic": quadratic_schedule,
    "sigmoid": sigmoid_schedule,
}
DIFFUSERS_NAMES = {
    "linear": "linear",
    "cosine": "squaredcos_cap_v2",
    "quadratic": "scaled_linear",
    "sigmoid": "sigmoid",
}


# --- eq. 5: the forward marginal ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_q_sample_moments_match_eq5(name: str) -> None:
    schedule = SCHEDULES[name](num_timesteps=1000)
    generator = torch.Generator().manual_seed(0)
    draws = 200_000
    x0_values = torch.tensor([1.5, -0.7, 0.0], dtype=torch.float64)
    for t in (0, 10, 250, 500, 999):
        x0 = x0_values.expand(draws, 3)
        noise = torch.randn(draws, 3, generator=generator, dtype=torch.float64)
        timesteps = torch.full((draws,), t, dtype=torch.long)
        x_t = schedule.q_sample(x0, timesteps, noise)
        assert x_t.dtype == torch.float64 and x_t.shape == x0.shape
        alpha_bar = float(schedule.alpha_bars[t])
        mean, var = math.sqrt(alpha_bar) * x0_values, 1.0 - alpha_bar
        # Standard errors of the sample mean and variance; 5 sigma leaves no flakiness.
        assert torch.allclose(x_t.mean(0), mean, atol=5 * math.sqrt(var / draws))
        assert torch.allclose(
            x_t.var(0), torch.full((3,), var, dtype=torch.float64),
            atol=5 * var * math.sqrt(2 / draws),
        )


def test_q_sample_keeps_dtype_and_broadcasts_per_sample_t() -> None:
    schedule = linear_schedule()
    x0 = torch.ones(4, 1, 2, 2)
    noise = torch.zeros_like(x0)
    t = torch.tensor([0, 1, 500, 999])
    x_t = schedule.q_sample(x0, t, noise)
    assert x_t.dtype == torch.float32
    expected = schedule.alpha_bars[t].sqrt().float().view(4, 1, 1, 1).expand_as(x0)
    assert torch.allclose(x_t, expected)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_alpha_bar_is_the_product_of_eq4_steps(name: str) -> None:
    """Running eq. 4 forward step by step gives eq. 5's mean coefficient and variance."""
    schedule = SCHEDULES[name](num_timesteps=200)
    mean_coef, var = 1.0, 0.0
    for t, beta in enumerate(schedule.betas.tolist()):
        mean_coef, var = math.sqrt(1 - beta) * mean_coef, (1 - beta) * var + beta
        assert mean_coef == pytest.approx(math.sqrt(float(schedule.alpha_bars[t])), rel=1e-12)
        assert var == pytest.approx(1 - float(schedule.alpha_bars[t]), rel=1e-10, abs=1e-15)


# --- eqs. 8-10: the posterior ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_posterior_matches_formulas(name: str) -> None:
    s = SCHEDULES[name](num_timesteps=300)
    betas, alphas, ab = s.betas, s.alphas, s.alpha_bars
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    assert torch.equal(s.alpha_bars_prev, ab_prev)
    c_x0, c_xt = s.posterior_mean_coefficients()
    # eq. 9: mu_tilde = sqrt(ab_{t-1}) beta_t / (1 - ab_t) x0
    #                  + sqrt(alpha_t) (1 - ab_{t-1}) / (1 - ab_t) x_t
    assert torch.allclose(c_x0, ab_prev.sqrt() * betas / (1 - ab), rtol=1e-12, atol=0)
    assert torch.allclose(c_xt, alphas.sqrt() * (1 - ab_prev) / (1 - ab), rtol=1e-12, atol=0)
    # eq. 10: beta_tilde = (1 - ab_{t-1}) / (1 - ab_t) beta_t
    expected_var = (1 - ab_prev) / (1 - ab) * betas
    assert torch.allclose(s.posterior_variances, expected_var, rtol=1e-12, atol=0)
    # At t = 0 (Ho et al.'s t = 1, arXiv:2006.11239) the posterior is a point mass at x_0.
    assert float(c_x0[0]) == pytest.approx(1.0) and float(c_xt[0]) == 0.0
    assert float(s.posterior_variances[0]) == 0.0
    assert bool(torch.all(s.posterior_variances <= betas))


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_posterior_matches_bayes_on_the_joint_gaussian(name: str) -> None:
    """Condition the joint Gaussian of (x_{t-1}, x_t) | x_0 on x_t, for scalar x_0.

    The marginal of x_{t-1} | x_0 comes from running eq. 4 from x_0 (mean m1 = a x_0, variance
    v1); then x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z gives m2 = sqrt(alpha_t) m1,
    v2 = alpha_t v1 + beta_t and cov = sqrt(alpha_t) v1. Gaussian conditioning:
    E[x_{t-1} | x_t] = m1 + cov / v2 (x_t - m2), Var = v1 - cov^2 / v2.
    """
    s = SCHEDULES[name](num_timesteps=300)
    c_x0, c_xt = s.posterior_mean_coefficients()
    post_var = s.posterior_variances
    x0, x_t = 0.8, -1.3
    a, v1 = 1.0, 0.0  # x_{t-1} | x_0 before the first step is x_0 itself
    for t, beta in enumerate(s.betas.tolist()):
        alpha = 1.0 - beta
        m1 = a * x0
        m2, v2, cov = math.sqrt(alpha) * m1, alpha * v1 + beta, math.sqrt(alpha) * v1
        bayes_mean = m1 + cov / v2 * (x_t - m2)
        bayes_var = v1 - cov**2 / v2
        ours_mean = float(c_x0[t]) * x0 + float(c_xt[t]) * x_t
        assert ours_mean == pytest.approx(bayes_mean, rel=1e-9, abs=1e-12), t
        assert float(post_var[t]) == pytest.approx(bayes_var, rel=1e-9, abs=1e-12), t
        # The linear coefficients separately: d mean / d x_t and d mean / d x_0.
        assert float(c_xt[t]) == pytest.approx(cov / v2, rel=1e-9, abs=1e-12)
        assert float(c_x0[t]) == pytest.approx(a - cov / v2 * math.sqrt(alpha) * a, rel=1e-9)
        a, v1 = math.sqrt(alpha) * a, v2


def test_posterior_moments_empirically() -> None:
    """Draw (x_{t-1}, x_t) from eqs. 5 and 4 and regress x_{t-1} on x_t: slope, intercept and
    residual variance match eqs. 9-10."""
    s = linear_schedule(num_timesteps=1000)
    generator = torch.Generator().manual_seed(1)
    n, x0 = 400_000, 0.6
    c_x0, c_xt = s.posterior_mean_coefficients()
    for t in (1, 50, 400, 999):
        ab_prev, beta = float(s.alpha_bars[t - 1]), float(s.betas[t])
        x_prev = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * torch.randn(
            n, generator=generator, dtype=torch.float64
        )
        x_t = math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * torch.randn(
            n, generator=generator, dtype=torch.float64
        )
        design = torch.stack([torch.ones(n, dtype=torch.float64), x_t], dim=1)
        coef = torch.linalg.lstsq(design, x_prev.unsqueeze(1)).solution.squeeze(1)
        residual = x_prev - design @ coef
        assert float(coef[1]) == pytest.approx(float(c_xt[t]), abs=5e-3)
        assert float(coef[0]) == pytest.approx(float(c_x0[t]) * x0, abs=5e-3)
        assert float(residual.var()) == pytest.approx(float(s.posterior_variances[t]), rel=1e-2)


# --- eq. 18: cosine ----------------------------------------------------------------------------


@pytest.mark.parametrize("num_timesteps", [100, 1000])
def test_cosine_matches_eq18(num_timesteps: int) -> None:
    s = cosine_schedule(num_timesteps=num_timesteps)
    offset = 0.008

    def f(step: float) -> float:
        return math.cos((step / num_timesteps + offset) / (1 + offset) * math.pi / 2) ** 2

    clipped = s.betas >= 0.999
    # Only the very end (where f -> 0) is clipped, and there beta is exactly 0.999.
    assert bool(clipped[-1]) and int(clipped.sum()) <= 2
    assert bool(torch.all(s.betas[clipped] == 0.999))
    assert bool(torch.all(s.betas <= 0.999))
    first_clipped = int(torch.nonzero(clipped)[0])
    for index in range(num_timesteps):
        beta_raw = 1 - f(index + 1) / f(index)
        assert float(s.betas[index]) == pytest.approx(min(beta_raw, 0.999), rel=1e-12, abs=1e-15)
        if index < first_clipped:
            # alpha_bar of Ho et al.'s step t = index + 1 is f(t) / f(0), exactly.
            assert float(s.alpha_bars[index]) == pytest.approx(f(index + 1) / f(0), rel=1e-11)
    grid = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    assert float(cosine_alpha_bar(grid)[0]) == pytest.approx(1.0, abs=1e-15)
    assert float(cosine_alpha_bar(grid)[-1]) < 1e-8


# --- linear, quadratic, sigmoid; parity with diffusers ----------------------------------------


def test_linear_endpoints_are_ddpms() -> None:
    s = linear_schedule()
    assert s.num_timesteps == 1000 and s.name == "linear"
    assert float(s.betas[0]) == pytest.approx(1e-4, rel=1e-12)
    assert float(s.betas[-1]) == pytest.approx(0.02, rel=1e-12)
    steps = s.betas.diff()
    assert torch.allclose(steps, torch.full_like(steps, (0.02 - 1e-4) / 999), rtol=1e-9)
    assert s.betas.dtype == torch.float64


@pytest.mark.parametrize("name", ["quadratic", "sigmoid", "cosine", "linear"])
def test_schedules_are_monotone_with_ddpm_endpoints(name: str) -> None:
    s = SCHEDULES[name](num_timesteps=1000)
    assert bool(torch.all(s.betas.diff() > 0)), "beta_t must increase"
    assert bool(torch.all(s.alpha_bars.diff() < 0)), "alpha_bar_t must decrease"
    if name in ("quadratic", "sigmoid"):
        low, high = (1e-4, 0.02)
        assert float(s.betas.min()) >= low - 1e-12 and float(s.betas.max()) <= high + 1e-12
    if name == "quadratic":
        assert float(s.betas[0]) == pytest.approx(1e-4)
        assert float(s.betas[-1]) == pytest.approx(0.02)
        assert torch.allclose(s.betas.sqrt().diff(), s.betas.sqrt().diff()[:1].expand(999))


@pytest.mark.parametrize("num_timesteps", [100, 1000])
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_betas_match_diffusers(name: str, num_timesteps: int) -> None:
    ours = SCHEDULES[name](num_timesteps=num_timesteps)
    reference = DDPMScheduler(
        num_train_timesteps=num_timesteps, beta_schedule=DIFFUSERS_NAMES[name]
    )
    theirs = reference.betas.double()
    assert theirs.shape == ours.betas.shape
    assert float((ours.betas - theirs).abs().max()) < 1e-6
    assert torch.allclose(ours.alpha_bars, reference.alphas_cumprod.double(), rtol=1e-5, atol=1e-7)


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "betas",
    [
        [0.1, 0.0, 0.2],
        [0.1, 1.0],
        [-0.01, 0.5],
        [0.5, 1.5],
        [0.1, float("nan")],
        [],
    ],
)
def test_noise_schedule_rejects_betas_outside_open_unit_interval(betas: list[float]) -> None:
    with pytest.raises(ConfigError):
        NoiseSchedule(torch.tensor(betas, dtype=torch.float64))


def test_noise_schedule_accepts_lists_and_stores_float64() -> None:
    s = NoiseSchedule(torch.tensor([0.1, 0.2], dtype=torch.float32), name="custom")
    assert s.betas.dtype == torch.float64 and s.num_timesteps == 2
    assert s.to_dict() == {"name": "custom", "num_timesteps": 2}
    assert torch.allclose(s.snr, s.alpha_bars / (1 - s.alpha_bars))
