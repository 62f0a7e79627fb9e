"""Sigmoid schedule (GeoDiff, Xu et al. 2022, arXiv 2203.02923; diffusers' "sigmoid"): beta_t
follows a logistic curve over [-6, 6] rescaled to [beta_start, beta_end], flat at both ends."""

from __future__ import annotations

import torch

from diffstudio.engine.schedules.ddpm import NoiseSchedule, ScheduleProcess

__all__ = ["sigmoid_process", "sigmoid_schedule"]


def sigmoid_schedule(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> NoiseSchedule:
    """DDPM's table: (T,) betas on a logistic curve."""
    grid = torch.linspace(-6.0, 6.0, num_timesteps, dtype=torch.float64)
    betas = torch.sigmoid(grid) * (beta_end - beta_start) + beta_start
    return NoiseSchedule(betas, name="sigmoid")


def sigmoid_process(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> ScheduleProcess:
    """The ``sigmoid`` schedule factory: :func:`sigmoid_schedule` as a DiffusionProcess."""
    return ScheduleProcess(sigmoid_schedule(num_timesteps, beta_start, beta_end))
