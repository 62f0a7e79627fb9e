"""The built-in samplers against the shared conformance kit (:mod:`diffstudio.testing`)."""

from __future__ import annotations

import pytest
import torch

from diffstudio.engine.samplers.annealed_langevin import annealed_langevin_sample
from diffstudio.engine.samplers.ddim import ddim_sample
from diffstudio.engine.samplers.ddpm import ddpm_sample
from diffstudio.engine.samplers.langevin import langevin_sample
from diffstudio.engine.samplers.predictor_corrector import predictor_corrector_sample
from diffstudio.engine.samplers.probability_flow import probability_flow_sample
from diffstudio.engine.samplers.reverse_sde import reverse_sde_sample
from diffstudio.testing import GaussianEpsNetwork, SamplerConformance, gaussian_model


class TestDDIM(SamplerConformance):
    sampler = staticmethod(ddim_sample)
    params = {"eta": 0.0}
    deterministic = True


class TestDDIMStochastic(SamplerConformance):
    sampler = staticmethod(ddim_sample)
    params = {"eta": 0.5}


class TestDDIMQuadraticSpacing(SamplerConformance):
    sampler = staticmethod(ddim_sample)
    params = {"eta": 0.0, "spacing": "quadratic", "clip_x0": False}
    deterministic = True


class TestDDIMTrailing(SamplerConformance):
    sampler = staticmethod(ddim_sample)
    params = {"eta": 1.0, "spacing": "trailing"}


class TestDDPMSmall(SamplerConformance):
    sampler = staticmethod(ddpm_sample)
    params = {"variance": "small"}


class TestDDPMLarge(SamplerConformance):
    sampler = staticmethod(ddpm_sample)
    params = {"variance": "large", "clip_x0": False}


class TestAnnealedLangevin(SamplerConformance):
    sampler = staticmethod(annealed_langevin_sample)
    params = {"levels": 3, "step_lr": 1e-4}
    steps_param = "steps_per_level"


class TestLangevin(SamplerConformance):
    sampler = staticmethod(langevin_sample)
    params = {"step_size": 1e-4}


class TestReverseSDE(SamplerConformance):
    sampler = staticmethod(reverse_sde_sample)
    params = {}


class TestPredictorCorrector(SamplerConformance):
    sampler = staticmethod(predictor_corrector_sample)
    params = {"corrector_steps": 1}


class TestPredictorCorrectorEulerMaruyama(SamplerConformance):
    sampler = staticmethod(predictor_corrector_sample)
    params = {"predictor": "euler-maruyama", "corrector_steps": 2}


class TestProbabilityFlowHeun(SamplerConformance):
    sampler = staticmethod(probability_flow_sample)
    params = {"method": "heun"}
    deterministic = True


class TestProbabilityFlowRK45(SamplerConformance):
    """An adaptive solver cannot know its step count in advance: it reports num_steps = 0 and
    one callback per accepted step; the two step-count checks are adapted to that."""

    sampler = staticmethod(probability_flow_sample)
    params = {"method": "rk45", "rtol": 1e-3, "atol": 1e-3}
    deterministic = True
    step_counts = (10,)  # ignored by rk45; one run is enough

    def test_callback_once_per_step(self, case: str) -> None:
        steps = []
        self._run(case, callback=steps.append)
        assert steps and [s.index for s in steps] == list(range(len(steps)))
        assert all(s.num_steps == 0 for s in steps)
        assert all(bool(torch.isfinite(s.x0_pred).all()) for s in steps)

    def test_finite_at_few_steps(self, case: str, num_steps: int) -> None:
        _, x, out = self._run(case)
        assert out.shape == x.shape and bool(torch.isfinite(out).all())


# --- the kit itself ----------------------------------------------------------------------------


def test_base_class_is_not_collected() -> None:
    assert not SamplerConformance.__name__.startswith("Test")


def test_gaussian_eps_network_is_the_posterior_mean_of_eps() -> None:
    """Monte Carlo check of E[eps | x_t] for x_0 ~ N(m, s^2): regress eps on x_t."""
    model = gaussian_model(std=0.5, mean=0.3)
    network: GaussianEpsNetwork = model.network
    generator = torch.Generator().manual_seed(0)
    n = 200_000
    for t in (0, 30, 99):
        x0 = 0.3 + 0.5 * torch.randn(n, 1, generator=generator, dtype=torch.float64)
        eps = torch.randn(n, 1, generator=generator, dtype=torch.float64)
        x_t = model.schedule.q_sample(x0, torch.full((n,), t), eps)
        predicted = network(x_t, torch.full((n,), t))
        # E[eps | x_t] is the L2 projection: the residual is uncorrelated with x_t.
        residual = eps - predicted
        assert float((residual * x_t).mean()) == pytest.approx(0.0, abs=5e-3)
        assert float(residual.mean()) == pytest.approx(0.0, abs=5e-3)
        assert float(x_t.std()) == pytest.approx(network.marginal_std(t), rel=1e-2)
