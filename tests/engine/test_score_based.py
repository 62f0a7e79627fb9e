"""Score-based samplers against exact scores: NCSN's 2-D experiment, SDE samplers on Gaussians,
the VP view between DDPM and SDE models, and the learned-variance bound."""

from __future__ import annotations

import math

import pytest
import torch

from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.networks.analytic import GaussianMixtureScore, build_analytic_mixture
from diffstudio.engine.objectives import vlb_terms
from diffstudio.engine.samplers import per_sample_generators
from diffstudio.engine.samplers.annealed_langevin import annealed_langevin_sample
from diffstudio.engine.samplers.ddim import ddim_sample
from diffstudio.engine.samplers.ddpm import ddpm_sample
from diffstudio.engine.samplers.langevin import langevin_sample
from diffstudio.engine.samplers.predictor_corrector import predictor_corrector_sample
from diffstudio.engine.samplers.probability_flow import (
    probability_flow_encode,
    probability_flow_sample,
)
from diffstudio.engine.samplers.reverse_sde import reverse_sde_sample
from diffstudio.engine.schedules import VESDE, VPSDE, NCSNLevels, ScheduleProcess, SubVPSDE
from diffstudio.engine.schedules.linear import linear_schedule

RUN = {"callback": None, "should_stop": None}
MEAN = torch.tensor([2.0, -1.0])
STD = 0.5


def gaussian_score_model(process) -> DiffusionModel:
    network = GaussianMixtureScore((1.0,), (tuple(MEAN.tolist()),), std=STD)
    return DiffusionModel(network, process, prediction_type="score", x0_clip=None)


def noise(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn((n, 2), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def generators(n: int, seed: int) -> list[torch.Generator]:
    """One generator per sample, as samplers take them (seeds disjoint between seeds)."""
    return per_sample_generators(range(seed * 100_000, seed * 100_000 + n))


def assert_gaussian(samples: torch.Tensor, mean_tol: float = 0.05, cov_tol: float = 0.03):
    assert torch.isfinite(samples).all()
    mean = samples.mean(0)
    cov = torch.cov(samples.T)
    assert torch.allclose(mean, MEAN.double(), atol=mean_tol), mean
    assert torch.allclose(cov, STD**2 * torch.eye(2, dtype=cov.dtype), atol=cov_tol), cov


def mode_weight(samples: torch.Tensor) -> float:
    """Fraction of points in the (5, 5) basin."""
    return float((samples.sum(1) > 0).double().mean())


# -- Song & Ermon 2019 (arXiv:1907.05600), Fig. 3: the 2-D mixture -------------------------------
def test_annealed_langevin_recovers_the_mixture_weights_and_plain_langevin_does_not():
    network = build_analytic_mixture((2,), mixture="seed-mixture")
    process = NCSNLevels(sigma_max=20.0, sigma_min=1.0, levels=10)
    model = DiffusionModel(network, process, prediction_type="score", x0_clip=None)
    x = noise(2000)
    annealed = annealed_langevin_sample(model, x, generator=generators(2000, 1), **RUN,
                                        steps_per_level=100, step_lr=0.1, init="uniform",
                                        init_range=8.0)
    assert model.network_evaluations == 1000
    assert abs(mode_weight(annealed) - 0.8) <= 0.05
    plain = langevin_sample(model, x, generator=generators(2000, 1), **RUN,
                            steps=1000, step_size=0.1, init="uniform", init_range=8.0)
    assert abs(mode_weight(plain) - 0.8) > 0.15, mode_weight(plain)  # stays near 0.5
    assert abs(mode_weight(plain) - 0.5) < 0.1


def test_mixture_score_is_the_gradient_of_its_log_density():
    network = build_analytic_mixture((2,))
    x = noise(16) * 6
    for m, s in ((1.0, 0.0001), (1.0, 3.0), (0.6, 0.8)):
        x_grad = x.clone().requires_grad_(True)
        log_p = network.log_density(x_grad, m, s).sum()
        (grad,) = torch.autograd.grad(log_p, x_grad)
        marginal = (torch.full((16,), m, dtype=x.dtype), torch.full((16,), s, dtype=x.dtype))
        out = network(x, torch.zeros(16), marginal=marginal)
        assert torch.allclose(out / s, grad, rtol=1e-6, atol=1e-8)


# -- SDE samplers with the exact score of a Gaussian ------------------------------------------
@pytest.mark.parametrize("process", [VPSDE(), SubVPSDE(), VESDE(sigma_min=0.01, sigma_max=20.0)],
                         ids=["vp", "subvp", "ve"])
def test_predictor_corrector_matches_the_gaussian(process):
    model = gaussian_score_model(process)
    samples = predictor_corrector_sample(model, noise(4000), generator=generators(4000, 2), **RUN,
                                         steps=300, corrector_steps=1, snr=0.16)
    assert model.network_evaluations == 300 * 2 + 1
    assert_gaussian(samples)


@pytest.mark.parametrize("process", [VPSDE(), VESDE(sigma_min=0.01, sigma_max=20.0)],
                         ids=["vp", "ve"])
def test_reverse_sde_matches_the_gaussian(process):
    model = gaussian_score_model(process)
    samples = reverse_sde_sample(model, noise(4000), generator=generators(4000, 3), **RUN,
                                 steps=500)
    assert_gaussian(samples)


@pytest.mark.parametrize("method", ["heun", "rk45"])
@pytest.mark.parametrize("process", [VPSDE(), VESDE(sigma_min=0.01, sigma_max=20.0)],
                         ids=["vp", "ve"])
def test_probability_flow_matches_the_gaussian_and_inverts(process, method):
    model = gaussian_score_model(process)
    samples = probability_flow_sample(model, noise(4000), generator=None, **RUN, method=method,
                                      steps=100, denoise=False)
    assert_gaussian(samples)
    data = MEAN.double() + STD * noise(64, seed=5)
    encoded = probability_flow_encode(model, data, method=method, steps=200)
    decoded = probability_flow_sample(model, encoded, generator=None, **RUN, method=method,
                                      steps=200, denoise=False)
    assert (decoded - data).abs().max() < 2e-2
    # The encoding is (close to) standard normal noise.
    assert encoded.std().item() == pytest.approx(1.0, abs=0.25)


def test_rk45_adapts_and_reports_each_accepted_step():
    model = gaussian_score_model(VPSDE())
    steps = []
    probability_flow_sample(model, noise(8), generator=None, callback=steps.append,
                            should_stop=None, method="rk45")
    assert len(steps) > 3 and [s.index for s in steps] == list(range(len(steps)))
    assert all(s.num_steps == 0 for s in steps)  # not known in advance
    assert steps[0].t == 1.0 and steps[-1].t < 0.1


# -- the VP view: one conversion layer between DDPM and SDE models -----------------------------
def test_ddim_samples_a_score_sde_model_and_sde_samplers_sample_a_ddpm_model():
    ve_model = gaussian_score_model(VESDE(sigma_min=0.01, sigma_max=20.0))
    assert_gaussian(ddim_sample(ve_model, noise(4000), generator=None, **RUN, steps=100,
                                clip_x0=False))
    ddpm_like = DiffusionModel(
        GaussianMixtureScore((1.0,), ((2.0, -1.0),), std=STD),
        linear_schedule(num_timesteps=1000), prediction_type="score", x0_clip=None,
    )
    assert isinstance(ddpm_like.process, ScheduleProcess)
    assert_gaussian(predictor_corrector_sample(ddpm_like, noise(4000),
                                               generator=generators(4000, 4), **RUN, steps=300))
    assert_gaussian(probability_flow_sample(ddpm_like, noise(4000), generator=None, **RUN,
                                            steps=100))


def test_schedule_process_agrees_with_the_discrete_schedule():
    schedule = linear_schedule()
    process = ScheduleProcess(schedule)
    m, s = process.marginal(process.grid)
    assert torch.allclose(m**2, schedule.alpha_bars, rtol=1e-12)
    assert torch.allclose(s**2, 1 - schedule.alpha_bars, rtol=1e-10)
    assert torch.equal(process.label(process.grid), torch.arange(1000, dtype=torch.float64))
    # The linear DDPM schedule is the VP SDE with beta_min = 0.1, beta_max = 20 (N = 1000), to
    # first order in beta: log prod(1 - beta_i) against -int beta differ by sum beta_i^2 / 2.
    vp = VPSDE()
    t = torch.linspace(0.01, 1, 50, dtype=torch.float64)
    assert torch.allclose(process.log_mean(t), vp.log_mean(t), rtol=0.01, atol=1e-4)


def test_sde_coefficients_match_the_marginals():
    """g^2 = d s^2/dt - 2 (d log m/dt) s^2 and f = d log m/dt x, checked by finite differences."""
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    h = 1e-6
    for process in (VPSDE(), SubVPSDE(), VESDE(), NCSNLevels()):
        log_m = lambda u, p=process: p.log_mean(u)  # noqa: E731
        dlogm = (log_m(t + h) - log_m(t - h)) / (2 * h)
        ds2 = (process.std(t + h) ** 2 - process.std(t - h) ** 2) / (2 * h)
        assert torch.allclose(process.drift_rate(t), dlogm, rtol=1e-5, atol=1e-8)
        assert torch.allclose(process.diffusion_squared(t), ds2 - 2 * dlogm * process.std(t) ** 2,
                              rtol=1e-5)
        for sigma in (0.05, 0.5, 5.0):
            if float(process.sigma(0.0)) < sigma < float(process.sigma(1.0)):
                assert float(process.sigma(process.t_of_sigma(sigma))) == pytest.approx(sigma)


# -- Improved DDPM: the variational bound and the learned-variance sampler ----------------------
def test_vlb_of_a_true_noise_network_equals_the_analytic_value():
    schedule = linear_schedule(num_timesteps=100)
    generator = torch.Generator().manual_seed(0)
    x0 = (torch.randn((64, 1, 4, 4), generator=generator, dtype=torch.float64) * 0.5).clamp(-1, 1)
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    t = torch.randint(1, 100, (64,), generator=generator)
    t[:8] = 0
    alpha_bar = schedule.alpha_bars[t].view(-1, 1, 1, 1)
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    v = torch.ones_like(x0)  # Sigma = beta_t
    terms = vlb_terms(schedule, x0, x_t, t, eps, v)
    beta, beta_tilde = schedule.betas[t], schedule.posterior_variances[t]
    expected_kl = 0.5 * (torch.log(beta / beta_tilde) + beta_tilde / beta - 1) / math.log(2)
    assert torch.allclose(terms[8:], expected_kl[8:], rtol=1e-6)
    # t = 0: the decoder's mean is x_0 itself; -log of the mass of a bin of width 2/255.
    sigma0 = math.sqrt(float(schedule.betas[0]))
    normal = torch.distributions.Normal(0.0, 1.0)
    inside = x0[:8].abs() < 0.999
    half_bin = torch.tensor(1 / 255 / sigma0)
    bin_mass = normal.cdf(half_bin) - normal.cdf(-half_bin)
    edge_mass = normal.cdf(half_bin)
    expected_nll = -torch.where(inside, bin_mass.log(), edge_mass.log()).double()
    expected_nll = expected_nll.flatten(1).mean(1) / math.log(2)
    assert torch.allclose(terms[:8], expected_nll, rtol=1e-5)


def test_learned_variance_network_trains_with_l_hybrid_and_samples(tmp_path):
    from diffstudio.engine.sampling import generate, load_model
    from diffstudio.engine.training import TrainConfig, Trainer
    from diffstudio.plugin_manager import load_plugins

    registry = load_plugins(safe_mode=True)
    config = TrainConfig(dataset="digits", network="unet",
                         network_params={"learned_variance": True}, num_timesteps=50, steps=12,
                         batch_size=8, warmup_steps=2, log_every=4, preview_every=0,
                         device="cpu")
    events = []
    Trainer(config, tmp_path / "run", registry=registry, callback=events.append).train()
    assert all(math.isfinite(e.loss) for e in events if e.kind == "step")
    loaded = load_model(tmp_path / "run", device="cpu", registry=registry)
    result = generate(loaded.model, "ddpm", {"steps": 10}, sample_shape=(1, 8, 8),
                      num_samples=2, registry=registry)
    assert torch.isfinite(result.samples).all()
    # "learned" is refused for a network without the variance output.
    with pytest.raises(Exception, match="learned-variance network"):
        ddpm_sample(gaussian_score_model(linear_schedule(num_timesteps=10)), noise(2),
                    generator=None, **RUN, steps=10, variance="learned")


# -- NCSN and SDE training end to end ------------------------------------------------------------
@pytest.mark.parametrize(("schedule", "sampler", "params"), [
    ("ncsn", "annealed-langevin", {"steps_per_level": 5, "step_lr": 1e-3, "init": "prior"}),
    ("vp-sde", "predictor-corrector", {"steps": 20}),
    ("ve-sde", "probability-flow", {"steps": 10}),
])
def test_score_models_train_and_sample(tmp_path, schedule, sampler, params):
    from diffstudio.engine.sampling import generate, load_model
    from diffstudio.engine.training import TrainConfig, Trainer
    from diffstudio.plugin_manager import load_plugins

    registry = load_plugins(safe_mode=True)
    config = TrainConfig(dataset="toy2d", dataset_params={"num_points": 512}, network="mlp",
                         schedule=schedule, prediction_type="score", steps=60, batch_size=64,
                         learning_rate=3e-3, warmup_steps=5, log_every=10, preview_every=30,
                         preview_samples=8, device="cpu")
    events = []
    Trainer(config, tmp_path / "run", registry=registry, callback=events.append).train()
    losses = [e.loss for e in events if e.kind == "step"]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]
    loaded = load_model(tmp_path / "run", device="cpu", registry=registry)
    assert loaded.model.process.kind == {"ncsn": "ncsn", "vp-sde": "vp", "ve-sde": "ve"}[schedule]
    result = generate(loaded.model, sampler, params, sample_shape=(2,), num_samples=16,
                      registry=registry)
    assert result.samples.shape == (16, 2) and torch.isfinite(result.samples).all()
