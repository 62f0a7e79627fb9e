"""Linear schedule of DDPM (Ho et al. 2020; seed 002 §4.1): beta_1 = 1e-4 rising linearly to
beta_T = 0.02 over T = 1000 steps."""

from __future__ import annotations

import torch

from diffstudio.engine.schedules import NoiseSchedule


def linear_schedule(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> NoiseSchedule:
    betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    return NoiseSchedule(betas, name="linear")
