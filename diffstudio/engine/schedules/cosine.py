"""Cosine schedule of Improved DDPM (Nichol & Dhariwal 2021, arXiv 2102.09672, eq. 17).

alpha_bar(t) = f(t) / f(0),  f(t) = cos((t/T + s) / (1 + s) * pi/2)^2,  s = 0.008, and
beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, clipped at ``max_beta`` = 0.999 to avoid the
singularity at t = T (§3.2).
"""

from __future__ import annotations

import math

import torch

from diffstudio.engine.schedules.ddpm import NoiseSchedule, ScheduleProcess

__all__ = ["cosine_alpha_bar", "cosine_process", "cosine_schedule"]


def cosine_alpha_bar(t: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """f(t) / f(0) for continuous t in [0, 1] (eq. 17), t's shape."""
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return f / math.cos(s / (1 + s) * math.pi / 2) ** 2


def cosine_schedule(
    num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999
) -> NoiseSchedule:
    """DDPM's table: (T,) betas of the cosine alpha_bar."""
    grid = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    alpha_bar = cosine_alpha_bar(grid, s)
    betas = (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
    return NoiseSchedule(betas, name="cosine")


def cosine_process(
    num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999
) -> ScheduleProcess:
    """The ``cosine`` schedule factory: :func:`cosine_schedule` as a DiffusionProcess."""
    return ScheduleProcess(cosine_schedule(num_timesteps, s, max_beta))
