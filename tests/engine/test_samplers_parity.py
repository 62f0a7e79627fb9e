"""Our DDPM and DDIM samplers against diffusers' schedulers, and DDIM against closed forms on
Gaussian data.

Network: a randomly initialised tiny U-Net (``digits-8`` on (1, 8, 8), seeded, eval mode). The
diffusers loops get the same initial noise, the same betas (``trained_betas``, ``leading``
spacing, ``steps_offset=0``, ``set_alpha_to_one=True``) and per-sample generators seeded like
ours (one per row, which diffusers' ``randn_tensor`` also accepts): both sides draw each row's
noise from its own generator per noisy step, in step order, so the added noise is identical as
well.

Three views of "the same sampler", because fp32 is not enough for one end-to-end comparison:
diffusers computes its coefficients in float32 (``1 - alpha_prod_t / alpha_prod_t_prev`` near
t = 0 loses 3-4 digits: its DDPM steps there are off by up to ~1e-4), we compute them in
float64; and a random U-Net is chaotic under these iterations (it even differs by ~1e-6 between
batch sizes), so last-bit differences grow to ~1e-3 over 50 steps.

* ``float64`` end to end: network and sample in float64, diffusers' ``alphas_cumprod`` replaced
  by our float64 alpha_bar (diffusers builds it from float32 betas), each side with its own
  generators seeded alike; the trajectories agree to ~1e-14. This pins down every formula, the
  timesteps, the noise order and the clipping.
* ``float32`` per step: our fp32 run is recorded (state, x0_pred and network output at each step)
  and diffusers' ``step``, evaluated in float64 with the same noise, is applied to each recorded
  state; each of our fp32 steps agrees with it to 1e-5 (observed ~1e-6).
* ``float32`` end to end with a smooth network (the exact eps of Gaussian data, on images):
  against diffusers' own float32 DDIM loop, and against diffusers' float64 DDPM loop fed our
  fp32 noise, to 1e-5.

Errors are max |ours - theirs| / max(1, max |theirs|); ``pytest -s`` prints the largest seen.
"""

from __future__ import annotations

import contextlib
import copy
import math
from unittest import mock

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.schedulers import scheduling_ddim, scheduling_ddpm

from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.networks.unet import build_unet
from diffstudio.engine.samplers import (
    SamplerStep,
    per_sample_generators,
    randn_like_per_sample,
    timestep_sequence,
)
from diffstudio.engine.samplers.ddim import ddim_invert, ddim_sample
from diffstudio.engine.samplers.ddpm import ddpm_sample
from diffstudio.engine.schedules import NoiseSchedule
from diffstudio.engine.schedules.cosine import cosine_schedule
from diffstudio.engine.schedules.linear import linear_schedule
from diffstudio.errors import ConfigError
from diffstudio.testing import GaussianEpsNetwork, gaussian_model

TOLERANCE = 1e-5  # fp32 agreement (max abs, per unit of the sample's scale)
TOLERANCE_F64 = 1e-10  # float64 agreement, same measure
SEED = 2024
SCHEDULES = {"linear": linear_schedule, "cosine": cosine_schedule}


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    network = build_unet((1, 8, 8), preset="digits-8").eval()
    torch.random.set_rng_state(state)
    return network


@pytest.fixture(scope="module")
def unet64(unet) -> torch.nn.Module:
    return copy.deepcopy(unet).double()


@pytest.fixture(scope="module")
def noise() -> torch.Tensor:
    return torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))


class Recorder(torch.nn.Module):
    """Wraps a network and keeps a copy of every output (for the per-step comparisons)."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs) -> torch.Tensor:
        out = self.network(x, timesteps, **kwargs)
        out = out.sample if hasattr(out, "sample") else out
        self.outputs.append(out.clone())
        return out


def _generators(batch: int) -> list[torch.Generator]:
    """The samplers' per-sample generators (diffusers' ``randn_tensor`` takes such a list too,
    drawing row i from generator i)."""
    return per_sample_generators(range(SEED, SEED + batch))


def _reference(cls, schedule: NoiseSchedule, dtype: torch.dtype, **config):
    """A diffusers scheduler on our betas; in float64 it also gets our float64 alpha_bar."""
    scheduler = cls(
        num_train_timesteps=schedule.num_timesteps, trained_betas=schedule.betas.tolist(),
        timestep_spacing="leading", steps_offset=0, **config,
    )
    if dtype == torch.float64:
        scheduler.alphas_cumprod = schedule.alpha_bars.clone()
        one = torch.tensor(1.0, dtype=torch.float64)
        if hasattr(scheduler, "final_alpha_cumprod"):
            scheduler.final_alpha_cumprod = one
        if hasattr(scheduler, "one"):
            scheduler.one = one
    return scheduler


@torch.no_grad()
def _diffusers_loop(scheduler, network, x: torch.Tensor, steps: int, **step_kwargs):
    """The standard diffusers sampling loop; returns the final sample."""
    scheduler.set_timesteps(steps)
    x = x.clone()
    for t in scheduler.timesteps:
        output = network(x, t.expand(x.shape[0]))
        output = output.sample if hasattr(output, "sample") else output
        x = scheduler.step(output, t, x, **step_kwargs).prev_sample
    return x


def _scaled_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| / max(1, max |theirs|)."""
    return float((ours - theirs).abs().max()) / max(1.0, float(theirs.abs().max()))


def _record(name: str, error: float) -> float:
    """``error``, checked to be a number (a NaN would pass every ``<`` comparison's negation)."""
    assert math.isfinite(error), f"{name}: the error is {error}"
    return error


def _compare_end_to_end(
    name, sampler, model, reference, network, x, steps, tolerance, **kwargs
) -> None:
    ours = sampler(
        model, x.clone(), generator=_generators(x.shape[0]), callback=None, should_stop=None,
        steps=steps,
        **kwargs,
    )
    step_kwargs = {"generator": _generators(x.shape[0])}
    if "eta" in kwargs:
        step_kwargs["eta"] = kwargs["eta"]
    theirs = _diffusers_loop(reference, network, x, steps, **step_kwargs)
    assert ours.dtype == theirs.dtype == x.dtype
    assert _record(name, _scaled_error(ours, theirs)) < tolerance


@contextlib.contextmanager
def _fp32_noise():
    """Make diffusers' schedulers draw the noise our fp32 sampler draws (from a generator seeded
    with SEED, in float32, in call order), cast to whatever dtype they ask for."""
    draws: list[torch.Generator] = []

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
        del generator, layout
        if not draws:
            draws.extend(_generators(shape[0]))
        noise = randn_like_per_sample(torch.empty(tuple(shape), dtype=torch.float32), draws)
        return noise.to(device=device, dtype=dtype)

    with (
        mock.patch.object(scheduling_ddim, "randn_tensor", randn_tensor),
        mock.patch.object(scheduling_ddpm, "randn_tensor", randn_tensor),
    ):
        yield


def _compare_per_step(name, sampler, model, schedule, cls, config, x, steps, **kwargs) -> None:
    """Run ours in fp32, recording every step; apply diffusers' float64 step to each state."""
    recorder = Recorder(model.network)
    model.network = recorder
    states: list[SamplerStep] = []
    final = sampler(
        model, x.clone(), generator=_generators(x.shape[0]), callback=states.append,
        should_stop=None,
        steps=steps, **kwargs,
    )
    exact = _reference(cls, schedule, torch.float64, **config)
    exact.set_timesteps(steps)
    assert [s.t for s in states] == exact.timesteps.tolist()
    assert len(recorder.outputs) == len(states) == steps
    step_kwargs = {"eta": kwargs["eta"]} if "eta" in kwargs else {}
    worst, exact_samples = 0.0, []
    with _fp32_noise():
        for index, t in enumerate(exact.timesteps):
            state = states[index]
            result = exact.step(
                recorder.outputs[index].double(), t, state.x.double(), **step_kwargs
            )
            exact_samples.append(result.prev_sample)
            target = states[index + 1].x if index + 1 < len(states) else final
            worst = max(
                worst,
                _scaled_error(target.double(), result.prev_sample),
                _scaled_error(state.x0_pred.double(), result.pred_original_sample),
            )
    assert _record(name, worst) < TOLERANCE
    # For the report only: diffusers' own float32 step on the same states, same measure.
    theirs = _reference(cls, schedule, torch.float32, **config)
    theirs.set_timesteps(steps)
    worst_theirs = 0.0
    with _fp32_noise():
        for index, t in enumerate(theirs.timesteps):
            state = states[index]
            result = theirs.step(recorder.outputs[index], t, state.x, **step_kwargs)
            worst_theirs = max(
                worst_theirs, _scaled_error(result.prev_sample.double(), exact_samples[index])
            )
    _record(f"({name}: diffusers' float32 step)", worst_theirs)


# --- DDIM ------------------------------------------------------------------------------------


def _ddim_config(clip: bool, prediction_type: str = "epsilon") -> dict:
    return {"set_alpha_to_one": True, "clip_sample": clip, "prediction_type": prediction_type}


@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_matches_diffusers(unet, unet64, noise, eta: float, steps: int, clip: bool) -> None:
    schedule = linear_schedule(num_timesteps=1000)
    config = _ddim_config(clip)
    model = DiffusionModel(unet64, schedule, prediction_type="epsilon", x0_clip=1.0)
    reference = _reference(DDIMScheduler, schedule, torch.float64, **config)
    _compare_end_to_end(
        "ddim float64 end to end", ddim_sample, model, reference, unet64, noise.double(), steps,
        TOLERANCE_F64, eta=eta, clip_x0=clip,
    )
    assert model.network_evaluations == steps
    model = DiffusionModel(unet, schedule, prediction_type="epsilon", x0_clip=1.0)
    _compare_per_step(
        "ddim float32 per step", ddim_sample, model, schedule, DDIMScheduler, config, noise,
        steps, eta=eta, clip_x0=clip,
    )


@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_float32_end_to_end_smooth_network(eta: float, clip: bool) -> None:
    """Against diffusers' default float32 config (beta_schedule="linear"), whole trajectory."""
    schedule = linear_schedule()
    network = GaussianEpsNetwork(schedule, std=0.6)
    model = DiffusionModel(network, schedule, x0_clip=1.0)
    reference = DDIMScheduler(
        beta_schedule="linear", set_alpha_to_one=True, steps_offset=0, clip_sample=clip
    )
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    _compare_end_to_end(
        "ddim float32 end to end (smooth net)", ddim_sample, model, reference, network, x, 50,
        TOLERANCE, eta=eta, clip_x0=clip,
    )


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_ddim_prediction_types_match_diffusers(
    unet, unet64, noise, prediction_type: str, eta: float
) -> None:
    schedule = cosine_schedule(num_timesteps=1000)
    config = _ddim_config(True, prediction_type)
    model = DiffusionModel(unet64, schedule, prediction_type=prediction_type, x0_clip=1.0)
    reference = _reference(DDIMScheduler, schedule, torch.float64, **config)
    _compare_end_to_end(
        f"ddim {prediction_type} float64 end to end", ddim_sample, model, reference, unet64,
        noise.double(), 25, TOLERANCE_F64, eta=eta, clip_x0=True,
    )
    model = DiffusionModel(unet, schedule, prediction_type=prediction_type, x0_clip=1.0)
    _compare_per_step(
        f"ddim {prediction_type} float32 per step", ddim_sample, model, schedule, DDIMScheduler,
        config, noise, 25, eta=eta, clip_x0=True,
    )


@pytest.mark.parametrize(
    ("spacing", "diffusers_spacing", "steps"),
    [("uniform", "leading", 30), ("trailing", "trailing", 10), ("trailing", "trailing", 25)],
)
def test_ddim_spacings_match_diffusers(unet64, noise, spacing, diffusers_spacing, steps) -> None:
    """T // steps not a whole stride (30 of 1000) and trailing spacing. (With trailing spacing
    and a ragged stride, diffusers' DDIM steps to t - T // steps rather than to the next
    timestep it visits; ours steps to the next visited timestep, so only whole strides are
    compared here.)"""
    schedule = linear_schedule(num_timesteps=1000)
    model = DiffusionModel(unet64, schedule, x0_clip=1.0)
    reference = _reference(DDIMScheduler, schedule, torch.float64, **_ddim_config(True))
    reference.register_to_config(timestep_spacing=diffusers_spacing)
    reference.set_timesteps(steps)
    assert reference.timesteps.tolist() == timestep_sequence(1000, steps, spacing)
    _compare_end_to_end(
        f"ddim {spacing} spacing float64", ddim_sample, model, reference, unet64,
        noise.double(), steps, TOLERANCE_F64, eta=0.5, spacing=spacing, clip_x0=True,
    )


def test_ddim_variance_noise_path_matches(unet64, noise) -> None:
    """Diffusers' explicit ``variance_noise``: the noise our generator draws, one per step."""
    schedule = linear_schedule(num_timesteps=100)
    model = DiffusionModel(unet64, schedule, x0_clip=1.0)
    steps, eta, x = 10, 0.7, noise.double()
    ours = ddim_sample(
        model, x.clone(), generator=_generators(x.shape[0]), callback=None, should_stop=None,
        steps=steps,
        eta=eta, clip_x0=False,
    )
    reference = _reference(DDIMScheduler, schedule, torch.float64, **_ddim_config(False))
    reference.set_timesteps(steps)
    draws = _generators(x.shape[0])
    with torch.no_grad():
        for t in reference.timesteps:
            output = unet64(x, t.expand(x.shape[0])).sample
            z = randn_like_per_sample(x, draws)
            x = reference.step(output, t, x, eta=eta, variance_noise=z).prev_sample
    assert _record("ddim variance_noise float64", _scaled_error(ours, x)) < TOLERANCE_F64


# --- DDPM ------------------------------------------------------------------------------------

VARIANCES = [("small", "fixed_small"), ("large", "fixed_large")]


@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
@pytest.mark.parametrize(("variance", "variance_type"), VARIANCES)
@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
def test_ddpm_matches_diffusers(
    unet, unet64, noise, schedule_name: str, variance: str, variance_type: str, clip: bool
) -> None:
    schedule = SCHEDULES[schedule_name](num_timesteps=100)
    config = {"variance_type": variance_type, "clip_sample": clip, "prediction_type": "epsilon"}
    model = DiffusionModel(unet64, schedule, x0_clip=1.0)
    reference = _reference(DDPMScheduler, schedule, torch.float64, **config)
    _compare_end_to_end(
        "ddpm float64 end to end", ddpm_sample, model, reference, unet64, noise.double(), 100,
        TOLERANCE_F64, variance=variance, clip_x0=clip,
    )
    assert model.network_evaluations == 100
    model = DiffusionModel(unet, schedule, x0_clip=1.0)
    _compare_per_step(
        "ddpm float32 per step", ddpm_sample, model, schedule, DDPMScheduler, config, noise,
        100, variance=variance, clip_x0=clip,
    )


@pytest.mark.parametrize(("variance", "variance_type"), VARIANCES)
def test_ddpm_with_skipped_steps_matches_diffusers(unet, unet64, noise, variance, variance_type):
    """Fewer steps than T: beta'_t = 1 - alpha_bar_t / alpha_bar_prev on both sides."""
    schedule = linear_schedule(num_timesteps=100)
    config = {"variance_type": variance_type, "clip_sample": True}
    model = DiffusionModel(unet64, schedule, x0_clip=1.0)
    reference = _reference(DDPMScheduler, schedule, torch.float64, **config)
    _compare_end_to_end(
        "ddpm 20 of 100 steps float64", ddpm_sample, model, reference, unet64, noise.double(),
        20, TOLERANCE_F64, variance=variance,
    )
    model = DiffusionModel(unet, schedule, x0_clip=1.0)
    _compare_per_step(
        "ddpm 20 of 100 steps float32 per step", ddpm_sample, model, schedule, DDPMScheduler,
        config, noise, 20, variance=variance,
    )


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_ddpm_prediction_types_match_diffusers(unet64, noise, prediction_type: str) -> None:
    schedule = linear_schedule(num_timesteps=100)
    model = DiffusionModel(unet64, schedule, prediction_type=prediction_type, x0_clip=1.0)
    reference = _reference(
        DDPMScheduler, schedule, torch.float64, clip_sample=True, prediction_type=prediction_type
    )
    _compare_end_to_end(
        f"ddpm {prediction_type} float64", ddpm_sample, model, reference, unet64,
        noise.double(), 100, TOLERANCE_F64, variance="small",
    )


@pytest.mark.parametrize(("variance", "variance_type"), VARIANCES)
def test_ddpm_float32_end_to_end_smooth_network(variance: str, variance_type: str) -> None:
    """Our fp32 trajectory against diffusers' float64 one, both with our fp32 noise."""
    schedule = linear_schedule(num_timesteps=100)
    network = GaussianEpsNetwork(schedule, std=0.6)
    model = DiffusionModel(network, schedule, x0_clip=1.0)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    ours = ddpm_sample(
        model, x.clone(), generator=_generators(x.shape[0]), callback=None, should_stop=None,
        steps=100,
        variance=variance,
    )
    config = {"variance_type": variance_type, "clip_sample": True}
    with _fp32_noise():
        theirs = _diffusers_loop(
            _reference(DDPMScheduler, schedule, torch.float64, **config), network, x.double(), 100
        )
    assert _record("ddpm float32 end to end (smooth net)", _scaled_error(ours, theirs)) < TOLERANCE
    with _fp32_noise():  # for the report: diffusers' own float32 run against the same reference
        theirs32 = _diffusers_loop(
            _reference(DDPMScheduler, schedule, torch.float32, **config), network, x, 100
        )
    _record("(ddpm end to end: diffusers' float32)", _scaled_error(theirs32.double(), theirs))


# --- closed forms on Gaussian data -----------------------------------------------------------


def test_ddim_inversion_reconstructs() -> None:
    """x_0 -> ddim_invert -> ddim_sample(eta=0) returns x_0 for a smooth (exact) network.

    The inverse step needs eps at the unknown noisier point. Explicit Euler ("current": eps at
    the less noisy end) errs to first order, O(1 / steps); the default ("target": the current
    point with the target's label, as diffusers' DDIMInverseScheduler) uses the label sampling
    uses, and errs about half as much at the same steps (0.55x measured at 20-500 steps; both
    are first order).
    """
    model = gaussian_model(linear_schedule(num_timesteps=1000), std=0.5, mean=0.2)
    x0 = 0.2 + 0.5 * torch.randn(256, 2, generator=torch.Generator().manual_seed(3))
    x0 = x0.double()
    errors = {}
    for eps_at in ("current", "target"):
        for steps in (100, 500):
            latent = ddim_invert(model, x0, steps=steps, eps_at=eps_at)
            assert latent.shape == x0.shape and latent.dtype == x0.dtype
            # The latent is distributed like x_T: mean ~0, std ~1.
            assert abs(float(latent.mean())) < 0.1 and 0.9 < float(latent.std()) < 1.1
            back = ddim_sample(
                model, latent, generator=None, callback=None, should_stop=None, steps=steps,
                eta=0.0, clip_x0=False,
            )
            errors[eps_at, steps] = _record(
                f"ddim invert ({eps_at}) / reconstruct ({steps} steps)",
                float((back - x0).abs().max()),
            )
    assert errors["current", 500] < 0.02  # data std 0.5: within 4 % of it
    assert errors["current", 500] < 0.3 * errors["current", 100]  # first order
    for steps in (100, 500):
        assert errors["target", steps] < 0.6 * errors["current", steps]
    with pytest.raises(ConfigError, match="eps_at"):
        ddim_invert(model, x0, steps=10, eps_at="midpoint")


def test_ddim_inversion_matches_diffusers_inverse_scheduler() -> None:
    """The default inversion is diffusers' DDIMInverseScheduler step for step (float64, the same
    network called with the target timestep, alpha_bar of the start taken as 1)."""
    from diffusers import DDIMInverseScheduler

    schedule = linear_schedule(num_timesteps=1000)
    model = gaussian_model(schedule, std=0.5, mean=0.2)
    x0 = (0.2 + 0.5 * torch.randn(16, 2, generator=torch.Generator().manual_seed(5))).double()
    steps = 50
    scheduler = DDIMInverseScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                     clip_sample=False, set_alpha_to_one=True)
    scheduler.alphas_cumprod = schedule.alpha_bars.clone()  # float64, as ours
    scheduler.initial_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    scheduler.set_timesteps(steps)
    x = x0.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(model.network(x, t), t, x).prev_sample
    ours = ddim_invert(model, x0, steps=steps)
    assert [int(t) for t in scheduler.timesteps] == timestep_sequence(1000, steps)[::-1]
    assert _record("ddim invert vs DDIMInverseScheduler", _scaled_error(ours, x)) < 1e-12


def _ddim_gain(model: DiffusionModel, steps: int) -> float:
    """The exact scalar x_0 = c x_T of DDIM (eta = 0) with the exact Gaussian network.

    Per step x_prev = (sqrt(a_p a) s^2 + sqrt((1 - a_p)(1 - a))) / (a s^2 + 1 - a) x_t.
    """
    s2 = model.network.std**2
    timesteps = timestep_sequence(model.num_timesteps, steps)
    gain = 1.0
    for index, t in enumerate(timesteps):
        prev = timesteps[index + 1] if index + 1 < len(timesteps) else -1
        a, a_p = model.alpha_bar(t), model.alpha_bar(prev)
        gain *= (math.sqrt(a_p * a) * s2 + math.sqrt((1 - a_p) * (1 - a))) / (a * s2 + 1 - a)
    return gain


@pytest.mark.parametrize("std", [0.3, 2.0])
def test_ddim_maps_noise_to_gaussian_data_std(std: float) -> None:
    """With the exact eps of N(0, s^2 I) data, DDIM (eta = 0) maps N(0, I) noise to std ~ s."""
    schedule = linear_schedule(num_timesteps=1000)
    model = gaussian_model(schedule, std=std)
    x_t = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = ddim_sample(
        model, x_t, generator=None, callback=None, should_stop=None, steps=500, eta=0.0,
        clip_x0=False,
    )
    # The map is linear, out = c x_T, with the closed-form c of the discrete scheme (DDIM eq. 12)
    gain = _ddim_gain(model, 500)
    assert torch.allclose(out, gain * x_t, rtol=1e-9, atol=1e-12)
    # ... which rises towards the probability-flow ODE's s / std(x_T) as the steps grow: each
    # DDIM step shrinks the variance a little (Cauchy-Schwarz), a first-order error.
    first = timestep_sequence(1000, 500)[0]
    ode_gain = std / model.network.marginal_std(first)
    gains = [_ddim_gain(model, steps) for steps in (10, 50, 500, 1000)]
    assert gains == sorted(gains) and gains[-1] < ode_gain
    assert gain == pytest.approx(ode_gain, rel=2e-2)
    assert float(out.std()) == pytest.approx(std, rel=3e-2)
    _record(f"ddim 500 steps std / s - 1 (s = {std})", abs(float(out.std()) / std - 1))


def test_ddpm_samples_gaussian_data_std() -> None:
    model = gaussian_model(linear_schedule(num_timesteps=1000), std=0.5, mean=1.0)
    x_t = torch.randn(4000, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    out = ddpm_sample(
        model, x_t, generator=per_sample_generators(range(7, 7 + x_t.shape[0])), callback=None,
        should_stop=None,
        steps=1000, variance="small", clip_x0=False,
    )
    assert float(out.mean()) == pytest.approx(1.0, abs=0.03)
    assert float(out.std()) == pytest.approx(0.5, rel=5e-2)

