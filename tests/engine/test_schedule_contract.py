"""Every registered schedule (built-in or plugin) satisfies the one schedule contract,
:class:`diffstudio.engine.processes.DiffusionProcess`: its factory returns one; the grid, the
marginal (m, s), alpha_bar, snr and q_sample agree with each other; and the SDE coefficients
are the ones the marginal implies (f = (d log m / dt) x, g^2 = d s^2/dt - 2 (d log m/dt) s^2).
"""

from __future__ import annotations

import json

import pytest
import torch

from diffstudio.engine.components import build_schedule
from diffstudio.engine.processes import DiffusionProcess
from diffstudio.errors import PluginError
from diffstudio.plugin_manager import load_plugins
from diffstudio.specs import Contribution

REGISTRY = load_plugins(safe_mode=False)
SCHEDULE_IDS = REGISTRY.ids("schedule")
STEPS = 50


@pytest.fixture(params=SCHEDULE_IDS)
def process(request) -> DiffusionProcess:
    return build_schedule(REGISTRY, request.param, {}, STEPS)


def test_the_built_in_schedules_are_all_registered():
    assert {"linear", "cosine", "quadratic", "sigmoid", "ncsn", "ve-sde", "vp-sde",
            "subvp-sde"} <= set(SCHEDULE_IDS)


def test_the_factory_returns_a_process_with_a_grid(process):
    assert isinstance(process, DiffusionProcess)
    grid = process.grid
    assert grid.dtype == torch.float64 and grid.shape == (process.num_timesteps,)
    assert process.num_timesteps >= 2
    assert bool((grid.diff() > 0).all()) and float(grid[0]) >= 0.0 and float(grid[-1]) == 1.0
    assert 0.0 < process.t_min < 0.1
    assert process.label(grid).shape == grid.shape
    json.dumps(process.to_dict())  # what a run config records


def _times(process: DiffusionProcess) -> torch.Tensor:
    """The grid and random times in [t_min, 1], sorted."""
    u = torch.rand(64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    random = process.t_min + (1.0 - process.t_min) * u
    return torch.cat([process.grid, random]).sort().values


def test_marginal_alpha_bar_and_snr(process):
    t = _times(process)
    m, s = process.marginal(t)
    assert m.shape == s.shape == t.shape and m.dtype == s.dtype == torch.float64
    assert bool((m > 0).all() and (s > 0).all()), "m and s must be positive for t > 0"
    assert bool((m <= 1 + 1e-12).all())
    alpha_bar = process.alpha_bar(t)
    assert bool(((alpha_bar > 0) & (alpha_bar <= 1)).all())
    torch.testing.assert_close(alpha_bar, m**2 / (m**2 + s**2), rtol=1e-12, atol=0)
    snr = process.snr(t)
    torch.testing.assert_close(snr, m**2 / s**2, rtol=1e-12, atol=0)
    assert bool((snr.diff() < 0).all()), "the SNR must fall as t grows"
    torch.testing.assert_close(process.sigma(t), s / m, rtol=1e-12, atol=0)
    assert process.prior_std == pytest.approx(float(s[-1]))
    # A float gives the same as a 0-d tensor.
    assert float(process.alpha_bar(0.5)) == float(process.alpha_bar(torch.tensor(0.5)))


def test_q_sample_is_m_x0_plus_s_noise(process):
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 1, 3, 3, generator=generator)
    noise = torch.randn(4, 1, 3, 3, generator=generator)
    t = process.grid[torch.tensor([0, 5, STEPS // 3, -1]) % process.num_timesteps]
    x_t = process.q_sample(x0, t, noise)
    assert x_t.shape == x0.shape and x_t.dtype == x0.dtype
    m, s = process.marginal(t)
    expected = m.view(-1, 1, 1, 1) * x0.double() + s.view(-1, 1, 1, 1) * noise.double()
    torch.testing.assert_close(x_t.double(), expected, rtol=1e-6, atol=1e-6)
    # One time for the whole batch, as a float: the same as repeating it.
    one = process.q_sample(x0, float(t[2]), noise)
    torch.testing.assert_close(one, process.q_sample(x0, t[2].repeat(4), noise))


def test_q_sample_names_a_shape_mistake(process):
    x0 = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="noise of x0's shape"):
        process.q_sample(x0, 0.5, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="one per sample"):
        process.q_sample(x0, torch.full((2,), 0.5), torch.zeros(3, 2))


def test_drift_and_diffusion_follow_from_the_marginal(process):
    """a = d log m/dt and g^2 = d s^2/dt - 2 a s^2 by central differences, between grid
    points (DDPM's VP view is piecewise smooth, with kinks at the grid)."""
    grid = process.grid
    t = 0.5 * (grid[1:] + grid[:-1])
    t = t[t > process.t_min]
    h = 1e-3 * float(grid.diff().min())
    log_m = process.log_mean
    rate = (log_m(t + h) - log_m(t - h)) / (2 * h)
    torch.testing.assert_close(process.drift_rate(t), rate, rtol=1e-5, atol=1e-8)
    variance_rate = (process.std(t + h) ** 2 - process.std(t - h) ** 2) / (2 * h)
    expected = variance_rate - 2.0 * rate * process.std(t) ** 2
    torch.testing.assert_close(process.diffusion_squared(t), expected, rtol=1e-4, atol=1e-8)
    assert bool((process.diffusion_squared(t) >= 0).all())
    x = torch.ones(2, 2, dtype=torch.float64)
    middle = float(t[len(t) // 2])
    torch.testing.assert_close(process.drift(x, middle), float(process.drift_rate(
        torch.tensor(middle, dtype=torch.float64))) * x)


class _OneSchedule:
    """A registry holding one schedule contribution (what build_schedule reads)."""

    def __init__(self, factory: str) -> None:
        self.contribution = Contribution(kind="schedule", id="bare", display_name="Bare",
                                         description="x", factory=factory, plugin="acme")

    def get(self, kind: str, contribution_id: str) -> Contribution:
        assert (kind, contribution_id) == ("schedule", "bare")
        return self.contribution


def test_a_factory_returning_a_bare_noise_schedule_is_told_how_to_wrap_it():
    registry = _OneSchedule("diffstudio.engine.schedules.linear:linear_schedule")
    with pytest.raises(PluginError, match=r"bare NoiseSchedule.*ScheduleProcess\(NoiseSchedule"):
        build_schedule(registry, "bare", {}, 10)  # type: ignore[arg-type]


def test_a_factory_returning_something_else_is_refused():
    registry = _OneSchedule("builtins:dict")
    with pytest.raises(PluginError, match=r"must return a diffstudio\.engine\.processes"):
        build_schedule(registry, "bare", {}, 10)  # type: ignore[arg-type]
