"""Quadratic schedule (the DDPM code's "quad" option; diffusers' "scaled_linear"):
sqrt(beta_t) rises linearly from sqrt(beta_start) to sqrt(beta_end)."""

from __future__ import annotations

import torch

from diffstudio.engine.schedules import NoiseSchedule


def quadratic_schedule(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> NoiseSchedule:
    root = torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64)
    return NoiseSchedule(root**2, name="quadratic")
