"""DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models", arXiv:2211.01095, Algorithm 2: the multistep second-order solver "2M").

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
from diffstudio.engine.samplers import Generators, SamplerCallback, StopCheck
from diffstudio.engine.samplers._common import SPACINGS, configure_scheduler, run_scheduler
from diffstudio.errors import ConfigError

__all__ = ["dpm_solver_sample"]


def _check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")


@torch.no_grad()
def dpm_solver_sample(
    model: DiffusionModel,
    x: torch.Tensor,
    *,
    generator: Generators,
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
    dtype. Deterministic: ``generator`` (one torch.Generator per row of x) is accepted for the
    shared signature and unused.
    order: 1 (DDIM), 2 (2M, the default) or 3 (3M). spacing: ``"linspace"``, ``"leading"`` or
    ``"trailing"`` (diffusers' names).
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
