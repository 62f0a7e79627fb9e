"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
of Diffusion Models", arXiv:2302.04867), with the B(h) = e^h - 1 variant "bh2" and data
prediction.

Like DPM-Solver++ it integrates the probability-flow ODE for x0_theta in the half-log-SNR
lambda = log(alpha_t / sigma_t). Each step has two parts (§3, Algorithms 1-2):

* UniC, the corrector: once x0_theta(x_i, t_i) is known, x_i (the predictor's result) is
  recomputed with it included in the difference quotients: one order higher, and free, since
  the network is not called again at the corrected point (the next step reuses the value);
* UniP, the predictor: the multistep update of order p from x_i to x_{i+1} with the last p
  values of x0_theta (p ramps up over the first steps and, with ``lower_order_final``, down
  over the last ones).

One network evaluation per step; the last step has no corrector after it.

This module drives diffusers' ``UniPCMultistepScheduler`` (``solver_type="bh2"``,
``predict_x0=True``), configured with this model's betas and number of timesteps, and feeds it
x0_pred from :meth:`DiffusionModel.predict` with ``prediction_type="sample"``, for the reasons
given in dpm_solver.py (one conversion layer for every prediction type; ``clip_x0`` clips the
x0_pred the solver integrates). Its ``sigmas`` are replaced by float64 values from this model's
alpha_bar, as in dpm_solver.py (both through ``_common.configure_scheduler``).

The :class:`SamplerStep` of step i reports the state the network saw (before UniC corrects it).
"""

from __future__ import annotations

import torch

from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.samplers import Generators, SamplerCallback, StopCheck
from diffstudio.engine.samplers._common import SPACINGS, configure_scheduler, run_scheduler
from diffstudio.errors import ConfigError

__all__ = ["unipc_sample"]


@torch.no_grad()
def unipc_sample(
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
    """UniPC (bh2) from x_T to x_0 in ``steps`` network evaluations.

    x: (B, *sample_shape) initial noise, left unmodified; returns x_0 of the same shape and
    dtype. Deterministic: ``generator`` (one torch.Generator per row of x) is accepted for the
    shared signature and unused.
    order: the predictor's order, 1, 2 (the default) or 3 (the corrector adds one).
    spacing: one of ``"linspace"``, ``"leading"``, ``"trailing"`` (diffusers' names).
    clip_x0: clip x0_pred to the model's data range before each update.
    lower_order_final: lower the order over the last steps (diffusers' default).
    """
    from diffusers import UniPCMultistepScheduler

    if order not in (1, 2, 3):
        raise ConfigError(f"order must be one of [1, 2, 3], got {order!r}")
    if spacing not in SPACINGS:
        raise ConfigError(f"spacing must be one of {list(SPACINGS)}, got {spacing!r}")
    scheduler = UniPCMultistepScheduler(
        num_train_timesteps=model.num_timesteps,
        trained_betas=model.schedule.betas.tolist(),
        solver_order=order,
        prediction_type="sample",  # we feed x0_pred
        predict_x0=True,
        solver_type="bh2",
        lower_order_final=lower_order_final,
        final_sigmas_type="zero",
        timestep_spacing=spacing,
        steps_offset=0,
        thresholding=False,
    )
    configure_scheduler(scheduler, model, steps)
    return run_scheduler(scheduler, model, x, callback, should_stop, clip_x0)
