"""The probability-flow ODE (Song et al. 2021, arXiv:2011.13456, eq. 13, §4.3):

    dx/dt = f(x, t) - 1/2 g(t)^2 grad log p_t(x)

a deterministic map between noise at t = 1 and data at t = t_min with the same marginals as
the SDE. Two solvers: ``heun`` (fixed steps, second order, two evaluations per step) and
``rk45`` (Dormand-Prince 5(4) with adaptive steps, as the reference code's
scipy RK45, rtol = atol = 1e-5).
:func:`probability_flow_encode` runs it forwards (data to
noise), which makes the map invertible up to solver error.
"""

from __future__ import annotations

import torch

from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.samplers import (
    Generators,
    SamplerCallback,
    SamplerStep,
    StopCheck,
    check_stop,
)
from diffstudio.engine.samplers._common import sde_times
from diffstudio.errors import ConfigError, SamplingError

# Dormand-Prince 5(4) tableau.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def _velocity(model: DiffusionModel, x: torch.Tensor, t: float):
    """(dx/dt, x0_pred) of the probability-flow ODE at time t."""
    score, x0_pred = model.score(x, t)
    g2 = model.process.diffusion(t) ** 2
    return model.process.drift(x, t) - 0.5 * g2 * score, x0_pred


def _heun(model, x, times, callback, should_stop, report: bool):
    steps = len(times) - 1
    x0_pred = x
    for index in range(steps):
        check_stop(should_stop, index)
        t, t_next = times[index], times[index + 1]
        velocity, x0_pred = _velocity(model, x, t)
        if callback is not None and report:
            callback(SamplerStep(index, steps, t, x, x0_pred))
        x_euler = x + (t_next - t) * velocity
        velocity_next, _ = _velocity(model, x_euler, t_next)
        x = x + (t_next - t) * 0.5 * (velocity + velocity_next)
    return x


def _rk45(model, x, t_start, t_end, rtol, atol, callback, should_stop, max_steps=100000):
    """Adaptive Dormand-Prince from t_start to t_end (either direction)."""
    direction = 1.0 if t_end > t_start else -1.0
    t = t_start
    h = direction * min(abs(t_end - t_start), 0.01)
    k1, x0_pred = _velocity(model, x, t)
    index = 0
    while direction * (t_end - t) > 1e-12:
        check_stop(should_stop, index)
        if index >= max_steps:
            raise SamplingError(f"RK45 took more than {max_steps} steps; loosen the tolerances")
        h = direction * min(abs(h), abs(t_end - t))
        stages = [k1]
        for row, c in zip(_A[1:], _C[1:], strict=True):
            increment = sum(a * k for a, k in zip(row, stages, strict=False))
            velocity, _ = _velocity(model, x + h * increment, t + c * h)
            stages.append(velocity)
        x5 = x + h * sum(b * k for b, k in zip(_B5, stages, strict=True) if b)
        x4 = x + h * sum(b * k for b, k in zip(_B4, stages, strict=True) if b)
        scale = atol + rtol * torch.maximum(x.abs(), x5.abs())
        error = float(((x5 - x4) / scale).pow(2).mean().sqrt())
        if error <= 1.0:
            if callback is not None:
                callback(SamplerStep(index, 0, t, x, x0_pred))
            t, x = t + h, x5
            k1 = stages[-1]  # first-same-as-last: the 7th stage is the velocity at (t + h, x5)
            x0_pred = _x0_from_velocity(model, x, t, k1)
            index += 1
        factor = 0.9 * (1.0 / max(error, 1e-10)) ** 0.2
        h = h * min(5.0, max(0.2, factor))
    return x, index


def _x0_from_velocity(
    model: DiffusionModel, x: torch.Tensor, t: float, velocity: torch.Tensor
) -> torch.Tensor:
    """x_0 estimate from a velocity already computed (no extra network call):
    score = 2 (f - v) / g^2, x_0 = (x + s^2 score) / m (Tweedie)."""
    process = model.process
    m, s = (float(v) for v in process.marginal(t))
    score = 2.0 * (process.drift(x, t) - velocity) / process.diffusion(t) ** 2
    return (x + s * s * score) / m


@torch.no_grad()
def probability_flow_sample(
    model: DiffusionModel,
    x: torch.Tensor,
    *,
    generator: Generators,
    callback: SamplerCallback | None,
    should_stop: StopCheck | None,
    method: str = "heun",
    steps: int = 100,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t_min: float = 0.0,
    denoise: bool = True,
) -> torch.Tensor:
    """Noise to data. x: (B, *shape) standard normal noise (scaled to the process's prior).
    Deterministic: ``generator`` (one torch.Generator per row of x) is accepted for the shared
    signature and unused.

    ``heun`` takes ``steps`` steps; ``rk45`` ignores ``steps`` and adapts to the tolerances
    (its callback reports ``num_steps = 0``: the count is not known in advance). rk45 solves the
    batch as one system, its steps chosen from the error of the whole batch, so an rk45 sample
    depends on the batch it was drawn in (it regenerates from the same seeds and batch size).
    """
    x = x * model.process.prior_std
    times = sde_times(model, steps, t_min)
    if method == "heun":
        x = _heun(model, x, times, callback, should_stop, report=True)
    elif method == "rk45":
        x, _ = _rk45(model, x, 1.0, times[-1], rtol, atol, callback, should_stop)
    else:
        raise ConfigError(f"ODE method must be 'heun' or 'rk45', got {method!r}")
    if denoise:
        x = model.score(x, times[-1])[1]
    return x


@torch.no_grad()
def probability_flow_encode(
    model: DiffusionModel,
    x0: torch.Tensor,
    *,
    method: str = "rk45",
    steps: int = 100,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t_min: float = 0.0,
    should_stop: StopCheck | None = None,
) -> torch.Tensor:
    """Data to noise: integrate the ODE from t_min to 1; returns x_1 / prior_std (~ N(0, I))."""
    times = sde_times(model, steps, t_min)[::-1]
    if method == "heun":
        x = _heun(model, x0, times, None, should_stop, report=False)
    elif method == "rk45":
        x, _ = _rk45(model, x0, times[0], 1.0, rtol, atol, None, should_stop)
    else:
        raise ConfigError(f"ODE method must be 'heun' or 'rk45', got {method!r}")
    return x / model.process.prior_std
