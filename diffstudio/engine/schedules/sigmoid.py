"""Sigmoid schedule (GeoDiff, Xu et al. 2022; diffusers' "sigmoid"): beta_t follows a logistic
curve over [-6, 6] rescaled to [beta_start, beta_end], flat at both ends."""

from __future__ import annotations

import torch

from diffstudio.engine.schedules import NoiseSchedule


def sigmoid_schedule(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> NoiseSchedule:
    grid = torch.linspace(-6.0, 6.0, num_timesteps, dtype=torch.float64)
    betas = torch.sigmoid(grid) * (beta_end - beta_start) + beta_start
    return NoiseSchedule(betas, name="sigmoid")
