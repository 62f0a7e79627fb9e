"""Helpers shared by several samplers: timestep sub-sequences, time grids, noise levels, and the
driver of diffusers' multistep schedulers. Private to :mod:`diffstudio.engine.samplers`; plugin
authors get :func:`timestep_sequence` from there.

Each helper names the samplers that use it. The algorithms themselves stay one per file.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.samplers import (
    Generators,
    SamplerCallback,
    SamplerStep,
    StopCheck,
    check_stop,
    rand_like_per_sample,
)
from diffstudio.engine.schedules.ncsn import NCSNLevels
from diffstudio.errors import ConfigError

__all__ = [
    "SPACINGS",
    "configure_scheduler",
    "initial_state",
    "noise_levels",
    "run_scheduler",
    "sde_times",
    "timestep_sequence",
    "ve_score",
]


# --- discrete timesteps (ddpm.py, ddim.py) ------------------------------------------------------


def timestep_sequence(num_timesteps: int, steps: int, spacing: str = "uniform") -> list[int]:
    """Descending timesteps to visit, from the noisiest.

    * ``uniform``: 0, k, 2k, ... with k = T // steps (DDIM's "uniform"; diffusers' "leading").
    * ``quadratic``: int((linspace(0, sqrt(0.8 T), steps))^2) (DDIM's "quad", Song et al. 2021,
      arXiv:2010.02502, App. D.2), duplicates removed.
    * ``trailing``: round(linspace(T, 0, steps, endpoint=False)) - 1 (Lin et al. 2024,
      arXiv:2305.08891, §3.3), which always starts at the last timestep.
    """
    if steps < 1 or steps > num_timesteps:
        raise ConfigError(f"steps must be between 1 and {num_timesteps}, got {steps}")
    if spacing == "uniform":
        sequence = np.arange(0, steps) * (num_timesteps // steps)
    elif spacing == "quadratic":
        sequence = np.unique((np.linspace(0, np.sqrt(num_timesteps * 0.8), steps) ** 2).astype(int))
    elif spacing == "trailing":
        sequence = np.round(np.arange(num_timesteps, 0, -num_timesteps / steps)).astype(int) - 1
        sequence = np.sort(sequence)
    else:
        raise ConfigError(
            f"timestep spacing {spacing!r} is not one of 'uniform', 'quadratic', 'trailing'"
        )
    return [int(t) for t in sequence[::-1]]


# --- continuous time (reverse_sde.py, predictor_corrector.py, probability_flow.py) -------------


def sde_times(model: DiffusionModel, steps: int, t_min: float) -> list[float]:
    """steps + 1 times from 1 down to t_min (the process's own when t_min is 0)."""
    t_min = t_min or model.process.t_min
    return torch.linspace(1.0, t_min, steps + 1, dtype=torch.float64).tolist()


# --- noise levels in the variance-exploding frame (annealed_langevin.py, langevin.py) ----------


def noise_levels(
    model: DiffusionModel, levels: int, sigma_max: float, sigma_min: float
) -> list[tuple[float, float]]:
    """[(sigma_i, t_i)] from the largest level down. 0 for sigma_max/min means the model's.

    The model's own NCSN levels when it has them and nothing else is asked; otherwise ``levels``
    (10 by default) geometrically spaced levels, as Song & Ermon 2019 (arXiv:1907.05600, §5),
    each at the model's time where s/m = sigma.
    """
    process = model.process
    own = isinstance(process, NCSNLevels)
    if own and not sigma_max and not sigma_min and levels in (0, process.num_scales):
        times = process.grid.flip(0)
        return [(float(process.sigma(t)), float(t)) for t in times]
    grid_sigmas = process.sigma(process.grid)
    sigma_max = sigma_max or float(grid_sigmas.max())
    sigma_min = sigma_min or float(grid_sigmas.min())
    if not 0 < sigma_min < sigma_max:
        raise ConfigError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    count = levels or 10
    sigmas = torch.logspace(
        math.log10(sigma_max), math.log10(sigma_min), count, dtype=torch.float64
    )
    return [(float(sigma), process.t_of_sigma(float(sigma))) for sigma in sigmas]


def ve_score(
    model: DiffusionModel, x: torch.Tensor, t: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad log p_sigma(x), x0_pred) in the VE frame x = x_0 + sigma z, at the model's time t.

    With x_native = m x: grad_x log p(x) = m * score_native(m x).
    """
    m = float(model.process.marginal(t)[0])
    score, x0 = model.score(x * m if m != 1.0 else x, t)
    return (score * m if m != 1.0 else score), x0


def initial_state(
    x: torch.Tensor, generator: Generators, init: str, scale: float, init_range: float
) -> torch.Tensor:
    """The starting point: ``prior`` = x * scale (x is N(0, I) noise), ``uniform`` = U(-r, r)
    drawn per sample from ``generator``, ``given`` = x itself."""
    if init == "prior":
        return x * scale
    if init == "uniform":
        return rand_like_per_sample(x, generator) * (2 * init_range) - init_range
    if init == "given":
        return x.clone()
    raise ConfigError(f"init must be 'prior', 'uniform' or 'given', got {init!r}")


# --- diffusers' multistep schedulers (dpm_solver.py, unipc.py) ---------------------------------

#: diffusers' ``timestep_spacing`` values: "linspace" is round(linspace(0, T - 1, steps + 1))
#: without its 0 (the DPM-Solver default, always starting at T - 1); "leading" multiples of
#: T // (steps + 1); "trailing" round(arange(T, 0, -T / steps)) - 1.
SPACINGS = ("linspace", "leading", "trailing")


def configure_scheduler(scheduler: Any, model: DiffusionModel, steps: int) -> Any:
    """``set_timesteps(steps)`` on a diffusers multistep scheduler, check the timesteps, and
    replace its sigmas by float64 values from ``model``'s alpha_bar.

    Both DPM-Solver++ and UniPC schedulers read sigma_t = sqrt((1 - a) / a) from
    ``scheduler.sigmas[i]``, with a final 0 for x_0. Raises :class:`ConfigError` when the
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
    callback per step, stopping between steps when asked."""
    num_steps = len(scheduler.timesteps)
    for index, timestep in enumerate(scheduler.timesteps):
        check_stop(should_stop, index)
        t = int(timestep)
        x0_pred = model.clip(model.predict(x, t).x0, clip_x0)
        if callback is not None:
            callback(SamplerStep(index, num_steps, t, x, x0_pred))
        x = scheduler.step(x0_pred, timestep, x).prev_sample
    return x
