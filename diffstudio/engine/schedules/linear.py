"""Linear schedule of DDPM (Ho et al. 2020, arXiv 2006.11239, §4): beta_1 = 1e-4 rising
linearly to beta_T = 0.02 over T = 1000 steps."""

from __future__ import annotations

import torch

from diffstudio.engine.schedules.ddpm import NoiseSchedule, ScheduleProcess

__all__ = ["linear_process", "linear_schedule"]


def linear_schedule(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> NoiseSchedule:
    """DDPM's table: (T,) betas from beta_start to beta_end."""
    betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    return NoiseSchedule(betas, name="linear")


def linear_process(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> ScheduleProcess:
    """The ``linear`` schedule factory: :func:`linear_schedule` as a DiffusionProcess."""
    return ScheduleProcess(linear_schedule(num_timesteps, beta_start, beta_end))
