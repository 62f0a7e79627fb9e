"""Quadratic schedule (the "quad" option of the DDPM code of Ho et al. 2020, arXiv 2006.11239;
diffusers' "scaled_linear"): sqrt(beta_t) rises linearly from sqrt(beta_start) to
sqrt(beta_end)."""

from __future__ import annotations

import torch

from diffstudio.engine.schedules.ddpm import NoiseSchedule, ScheduleProcess

__all__ = ["quadratic_process", "quadratic_schedule"]


def quadratic_schedule(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> NoiseSchedule:
    """DDPM's table: (T,) betas whose square roots are evenly spaced."""
    root = torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64)
    return NoiseSchedule(root**2, name="quadratic")


def quadratic_process(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> ScheduleProcess:
    """The ``quadratic`` schedule factory: :func:`quadratic_schedule` as a DiffusionProcess."""
    return ScheduleProcess(quadratic_schedule(num_timesteps, beta_start, beta_end))
