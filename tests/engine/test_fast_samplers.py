"""DPM-Solver++ and UniPC: against diffusers' schedulers, the conformance kit, and a quality check
on Gaussian data.

Our samplers drive diffusers' ``DPMSolverMultistepScheduler`` / ``UniPCMultistepScheduler`` fed
x0_pred (``prediction_type="sample"``) from :meth:`DiffusionModel.predict`, with float64 sigmas
from our schedule. The references here are plain diffusers loops fed the raw network output
(eps or v), as a diffusers user would write them:

* float64 end to end, random ``digits-8`` U-Net: against diffusers with its sigmas replaced by
  our float64 ones (the only difference then is who converts eps to x0): ~1e-16; and against
  unmodified diffusers (float32 sigmas): ~1e-7 of the sample's scale (tolerance 1e-5);
* float32 end to end with a smooth network (the exact eps of Gaussian data, on images) against
  diffusers' default float32 scheduler: ~1e-7 (tolerance 1e-5).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.networks.unet import build_unet
from diffstudio.engine.samplers.ddim import ddim_sample
from diffstudio.engine.samplers.dpm_solver import dpm_solver_sample
from diffstudio.engine.samplers.unipc import unipc_sample
from diffstudio.engine.schedules import NoiseSchedule
from diffstudio.engine.schedules.cosine import cosine_schedule
from diffstudio.engine.schedules.linear import linear_schedule
from diffstudio.errors import ConfigError
from diffstudio.testing import GaussianEpsNetwork, SamplerConformance, gaussian_model
from diffstudio_builtins.samplers import diffstudio_samplers

BUILTINS = {contribution.id: contribution for contribution in diffstudio_samplers()}
TOLERANCE = 1e-5  # max abs difference per unit of the sample's scale
TOLERANCE_F64 = 1e-10

SOLVERS = {
    "dpm-solver++": (
        dpm_solver_sample, DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}
    ),
    "unipc": (unipc_sample, UniPCMultistepScheduler, {"solver_type": "bh2", "predict_x0": True}),
}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: faster for these small networks on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the conformance kit ---------------------------------------------------------------------


class TestDPMSolverConformance(SamplerConformance):
    sampler = staticmethod(dpm_solver_sample)
    contribution = BUILTINS["dpm-solver-pp"]
    params = {"order": 2}
    deterministic = True


class TestDPMSolverThirdOrderConformance(SamplerConformance):
    sampler = staticmethod(dpm_solver_sample)
    contribution = BUILTINS["dpm-solver-pp"]
    params = {"order": 3, "spacing": "trailing", "clip_x0": False}
    deterministic = True
    model_cases = ("points",)


class TestUniPCConformance(SamplerConformance):
    sampler = staticmethod(unipc_sample)
    contribution = BUILTINS["unipc"]
    params = {"order": 2}
    deterministic = True


# --- parity with diffusers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def unet64() -> torch.nn.Module:
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    network = build_unet((1, 8, 8), preset="digits-8").eval()
    torch.random.set_rng_state(state)
    return copy.deepcopy(network).double()


@pytest.fixture(scope="module")
def noise() -> torch.Tensor:
    return torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _scaled_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| / max(1, max |theirs|)."""
    return float((ours.double() - theirs.double()).abs().max()) / max(
        1.0, float(theirs.abs().max())
    )


def _record(name: str, error: float) -> float:
    """``error``, checked to be a number (a NaN would pass every ``<`` comparison's negation)."""
    assert math.isfinite(error), f"{name}: the error is {error}"
    return error


@torch.no_grad()
def _diffusers_loop(
    scheduler_class, schedule: NoiseSchedule | None, network, x: torch.Tensor, steps: int,
    *, exact_sigmas: bool, **config,
) -> torch.Tensor:
    """The standard diffusers loop on the raw network output. ``schedule``: our betas
    (``trained_betas``), or None for the scheduler's default linear betas. ``exact_sigmas``:
    replace its float32 sigmas by float64 ones from our alpha_bar."""
    if schedule is not None:
        config = {
            "num_train_timesteps": schedule.num_timesteps,
            "trained_betas": schedule.betas.tolist(), **config,
        }
    scheduler = scheduler_class(**config)
    scheduler.set_timesteps(steps)
    if exact_sigmas:
        assert schedule is not None
        alpha_bars = schedule.alpha_bars[scheduler.timesteps]
        sigmas = ((1 - alpha_bars) / alpha_bars).sqrt()
        scheduler.sigmas = torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])
    x = x.clone()
    for t in scheduler.timesteps:
        output = network(x, t.expand(x.shape[0]))
        output = output.sample if hasattr(output, "sample") else output
        x = scheduler.step(output, t, x).prev_sample
    return x


def _run(sampler, model: DiffusionModel, x: torch.Tensor, steps: int, **kwargs) -> torch.Tensor:
    return sampler(
        model, x.clone(), generator=None, callback=None, should_stop=None, steps=steps, **kwargs
    )


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize(
    ("steps", "order", "spacing"),
    [(10, 2, "linspace"), (20, 2, "linspace"), (15, 3, "linspace"), (12, 2, "trailing"),
     (8, 1, "leading")],
)
def test_matches_diffusers_float64(unet64, noise, solver, steps, order, spacing) -> None:
    sampler, scheduler_class, config = SOLVERS[solver]
    schedule = linear_schedule(num_timesteps=1000)
    model = DiffusionModel(unet64, schedule, prediction_type="epsilon", x0_clip=1.0)
    ours = _run(sampler, model, noise.double(), steps, order=order, spacing=spacing,
                clip_x0=False)
    assert model.network_evaluations == steps
    config = {**config, "solver_order": order, "timestep_spacing": spacing,
              "prediction_type": "epsilon"}
    exact = _diffusers_loop(scheduler_class, schedule, unet64, noise.double(), steps,
                            exact_sigmas=True, **config)
    error = _record(f"{solver} float64 (float64 sigmas)", _scaled_error(ours, exact))
    assert error < TOLERANCE_F64
    plain = _diffusers_loop(scheduler_class, schedule, unet64, noise.double(), steps,
                            exact_sigmas=False, **config)
    error = _record(f"{solver} float64 (diffusers' sigmas)", _scaled_error(ours, plain))
    assert error < TOLERANCE


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_v_prediction_cosine_matches_diffusers(unet64, noise, solver) -> None:
    """Our conversion of v to x0 (in predict) against diffusers' own."""
    sampler, scheduler_class, config = SOLVERS[solver]
    schedule = cosine_schedule(num_timesteps=1000)
    model = DiffusionModel(unet64, schedule, prediction_type="v_prediction", x0_clip=1.0)
    ours = _run(sampler, model, noise.double(), 20, clip_x0=False)
    config = {**config, "prediction_type": "v_prediction"}
    exact = _diffusers_loop(scheduler_class, schedule, unet64, noise.double(), 20,
                            exact_sigmas=True, **config)
    assert _record(f"{solver} v float64", _scaled_error(ours, exact)) < TOLERANCE_F64


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("steps", [10, 25])
def test_float32_end_to_end_smooth_network(solver, steps) -> None:
    """Against diffusers' default float32 scheduler (beta_schedule="linear", 1000 steps)."""
    sampler, scheduler_class, config = SOLVERS[solver]
    schedule = linear_schedule()
    network = GaussianEpsNetwork(schedule, std=0.6)
    model = DiffusionModel(network, schedule, x0_clip=1.0)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    ours = _run(sampler, model, x, steps, clip_x0=False)
    assert ours.dtype == torch.float32
    theirs = _diffusers_loop(scheduler_class, None, network, x, steps, exact_sigmas=False,
                             **config)
    assert _record(f"{solver} float32 (smooth net)", _scaled_error(ours, theirs)) < TOLERANCE


def test_clip_clips_the_integrated_x0(unet64, noise) -> None:
    """clip_x0 clips the x0_pred reported and integrated; the final step returns it."""
    model = DiffusionModel(unet64, linear_schedule(num_timesteps=1000), x0_clip=1.0)
    for sampler in (dpm_solver_sample, unipc_sample):
        steps_seen = []
        out = sampler(model, noise.double(), generator=None, callback=steps_seen.append,
                      should_stop=None, steps=10, clip_x0=True)
        assert all(float(s.x0_pred.abs().max()) <= 1.0 for s in steps_seen)
        # The last step is first order to sigma = 0: x_0 is the clipped x0_pred itself.
        assert float(out.abs().max()) <= 1.0 + 1e-12


# --- quality on Gaussian data ----------------------------------------------------------------


@pytest.mark.parametrize("steps", [10, 15, 20])
def test_closer_to_the_data_std_than_ddim(steps: int) -> None:
    """With the exact eps of N(0, 0.5^2 I) data, the fast solvers land nearer the true std."""
    std = 0.5
    model = gaussian_model(linear_schedule(num_timesteps=1000), std=std)
    x_t = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    errors = {}
    for name, sampler in (("ddim", ddim_sample), ("dpm-solver++", dpm_solver_sample),
                          ("unipc", unipc_sample)):
        out = _run(sampler, model, x_t, steps, clip_x0=False)
        errors[name] = abs(float(out.std()) / std - 1)
        _record(f"|std / s - 1| {name} {steps} steps", errors[name])
    assert errors["dpm-solver++"] < errors["ddim"], errors
    assert errors["unipc"] < errors["ddim"], errors
    if steps == 20:
        assert errors["dpm-solver++"] < 0.5 * errors["ddim"], errors
        assert errors["dpm-solver++"] < 0.06 and errors["unipc"] < 0.06, errors


# --- parameters and registration -------------------------------------------------------------


@pytest.mark.parametrize("sampler", [dpm_solver_sample, unipc_sample])
def test_bad_parameters_are_config_errors(sampler) -> None:
    model = gaussian_model(linear_schedule(num_timesteps=100))
    x = torch.randn(2, 2)
    with pytest.raises(ConfigError, match="order"):
        _run(sampler, model, x, 5, order=4)
    with pytest.raises(ConfigError, match="spacing"):
        _run(sampler, model, x, 5, spacing="uniform")
    with pytest.raises(ConfigError, match="steps must be"):
        _run(sampler, model, x, 101)
    with pytest.raises(ConfigError, match="fewer steps"):
        _run(sampler, model, x, 100, spacing="linspace")  # rounding repeats a timestep


def test_registered_as_builtin_samplers() -> None:
    from diffstudio.engine.components import get_sampler
    from diffstudio.engine.sampling import generate
    from diffstudio.plugin_manager import load_plugins

    registry = load_plugins(safe_mode=True)
    model = gaussian_model(linear_schedule(num_timesteps=100))
    for sampler_id, function in (("dpm-solver-pp", dpm_solver_sample), ("unipc", unipc_sample)):
        contribution, sampler = get_sampler(registry, sampler_id)
        assert sampler is function
        defaults = contribution.validate({})
        assert defaults == {"steps": 20, "order": 2, "spacing": "linspace", "clip_x0": True,
                            "lower_order_final": True}
        result = generate(model, sampler_id, {"steps": 10}, sample_shape=(2,), num_samples=3,
                          registry=registry)
        assert result.samples.shape == (3, 2) and result.network_evaluations == 10
        with pytest.raises(ConfigError):
            contribution.validate({"order": 5})

