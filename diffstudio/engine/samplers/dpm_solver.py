"""DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models", Algorithm 2: the multistep second-order solver "2M").

The probability-flow ODE written for the data prediction x0_theta, in the half-log-SNR
lambda_t = log(alpha_t / sigma_t) (alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t)),
is solved exactly in its linear part. With h_i = lambda_{t_i} - lambda_{t_{i-1}} and
r_i = h_{i-1} / h_i, one step from t_{i-1} to t_i is (eq. 4.1 / Algorithm 2)

    D_i = (1 + 1 / (2 r_i)) x0_theta(x_{i-1}, t_{i-1}) - 1 / (2 r_i) x0_theta(x_{i-2}, t_{i-2})
    x_i = (sigma_{t_i} / sigma_{t_{i-1}}) x_{i-1} - alpha_{t_i} (exp(-h_i) - 1) D_i

with a first-order (DDIM) step first, for lack of a previous x0_theta, and, below 15 steps,
first-order last steps for stability (diffusers' ``lower_order_final``). One network
evaluation per step. ``order = 1`` is DDIM; ``order = 3`` is the third-order multistep variant.

This module drives diffusers' ``DPMSolverMultistepScheduler`` (``algorithm_type="dpmsolver++"``,
``solver_type="midpoint"``), configured with this model's betas (``trained_betas``) and number
of timesteps, and feeds it x0_pred from :meth:`DiffusionModel.predict` with
``prediction_type="sample"``, because:

* every prediction type (epsilon, sample, v_prediction, score, and the VP view of NCSN/SDE
  models) reaches the solver through the one conversion layer, :meth:`DiffusionModel.predict`;
* DPM-Solver++ integrates x0_theta anyway, and x0_pred is what is clipped: ``clip_x0`` clips it
  to the data range before the update, the static thresholding of DPM-Solver++ §5 (diffusers
  offers only dynamic thresholding on its own conversion).

Deliberate difference: after ``set_timesteps``, the scheduler's ``sigmas`` (float32 in
diffusers, from a float32 cumulative product of float32 betas) are replaced by the same
quantities computed in float64 from this model's alpha_bar, the ones ``predict`` used to form
x0_pred (as ddim.py and ddpm.py do). Diffusers rounds the state x to float32 inside every step
(it "upcasts" it), so float64 samples keep float32 precision in that term.

tests/test_fast_samplers.py checks this against a plain loop over diffusers' scheduler fed the
raw eps output.
"""

from __future__ import annotations

from typing import Any

import torch

from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.samplers import SamplerCallback, SamplerStep, StopCheck, check_stop
from diffstudio.errors import ConfigError

__all__ = ["SPACINGS", "configure_scheduler", "dpm_solver_sample", "run_scheduler"]

#: diffusers' ``timestep_spacing`` values: "linspace" is round(linspace(0, T - 1, steps + 1))
#: without its 0 (the DPM-Solver default, always starting at T - 1); "leading" multiples of
#: T // (steps + 1); "trailing" round(arange(T, 0, -T / steps)) - 1.
SPACINGS = ("linspace", "leading", "trailing")


def configure_scheduler(scheduler: Any, model: DiffusionModel, steps: int) -> Any:
    """``set_timesteps(steps)`` on a diffusers multistep scheduler, check the timesteps, and
    replace its sigmas by float64 values from ``model``'s alpha_bar.

    Shared by dpm_solver.py and unipc.py (both schedulers read sigma_t = sqrt((1 - a) / a) from
    ``scheduler.sigmas[i]``, with a final 0 for x_0). Raises :class:`ConfigError` when the
    spacing repeats a timestep (too many steps for it).
    """
    num_timesteps = model.num_timesteps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= num_timesteps:
        raise ConfigError(f"steps must be an integer between 1 and {num_timesteps}, got {steps!r}")
    scheduler.set_timesteps(steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    spacing = scheduler.config.timestep_spacing
    if len(set(timesteps)) != len(timesteps) or not all(0 <= t < num_timesteps for t in timesteps):
        raise ConfigError(
            f"{steps} steps with spacing {spacing!r} repeat or leave the timesteps 0.."
            f"{num_timesteps - 1} ({timesteps[:4]}...); use fewer steps (at most "
            f"{num_timesteps - 1}) or spacing 'trailing'"
        )
    alpha_bars = torch.tensor([model.alpha_bar(t) for t in timesteps], dtype=torch.float64)
    sigmas = ((1.0 - alpha_bars) / alpha_bars).sqrt()
    if tuple(scheduler.sigmas.shape) != (len(timesteps) + 1,):
        raise ConfigError(  # a diffusers version that stores sigmas differently
            f"unexpected diffusers {type(scheduler).__name__}.sigmas shape "
            f"{tuple(scheduler.sigmas.shape)}; expected ({len(timesteps) + 1},)"
        )
    scheduler.sigmas = torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])
    return scheduler


def run_scheduler(
    scheduler: Any,
    model: DiffusionModel,
    x: torch.Tensor,
    callback: SamplerCallback | None,
    should_stop: StopCheck | None,
    clip_x0: bool,
) -> torch.Tensor:
    """Drive a configured diffusers multistep scheduler with x0_pred from ``model``, one
    callback per step, stopping between steps when asked (shared by DPM-Solver++ and UniPC)."""
    num_steps = len(scheduler.timesteps)
    for index, timestep in enumerate(scheduler.timesteps):
        check_stop(should_stop, index)
        t = int(timestep)
        x0_pred = model.clip(model.predict(x, t).x0, clip_x0)
        if callback is not None:
            callback(SamplerStep(index, num_steps, t, x, x0_pred))
        x = scheduler.step(x0_pred, timestep, x).prev_sample
    return x


def _check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")


@torch.no_grad()
def dpm_solver_sample(
    model: DiffusionModel,
    x: torch.Tensor,
    *,
    generator: torch.Generator | list[torch.Generator] | None,
    callback: SamplerCallback | None,
    should_stop: StopCheck | None,
    steps: int = 20,
    order: int = 2,
    spacing: str = "linspace",
    clip_x0: bool = True,
    lower_order_final: bool = True,
) -> torch.Tensor:
    """DPM-Solver++ from x_T to x_0 in ``steps`` network evaluations.

    x: (B, *sample_shape) initial noise, left unmodified; returns x_0 of the same shape and
    dtype. Deterministic: ``generator`` is accepted for the shared signature and unused.
    order: 1 (DDIM), 2 (2M, the default) or 3 (3M). spacing: one of :data:`SPACINGS`.
    clip_x0: clip x0_pred to the model's data range before each update.
    lower_order_final: first-order last steps below 15 steps (diffusers' default).
    """
    from diffusers import DPMSolverMultistepScheduler

    _check_choice("order", order, (1, 2, 3))
    _check_choice("spacing", spacing, SPACINGS)
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=model.num_timesteps,
        trained_betas=model.schedule.betas.tolist(),
        solver_order=order,
        prediction_type="sample",  # we feed x0_pred (see the module docstring)
        algorithm_type="dpmsolver++",
        solver_type="midpoint",
        lower_order_final=lower_order_final,
        final_sigmas_type="zero",
        timestep_spacing=spacing,
        steps_offset=0,
        thresholding=False,
    )
    configure_scheduler(scheduler, model, steps)
    return run_scheduler(scheduler, model, x, callback, should_stop, clip_x0)
