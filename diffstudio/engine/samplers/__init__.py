"""Samplers: plain functions with one shared signature (after k-diffusion)::

    def sample(model: DiffusionModel, x: Tensor, *, generator: torch.Generator,
               callback: Callable[[SamplerStep], None] | None,
               should_stop: Callable[[], bool] | None, **params) -> Tensor

``x`` is the initial noise x_T: (B, *sample_shape). ``generator`` (a CPU generator, so a seed
gives the same noise on every device) draws all the noise a stochastic sampler adds, in step
order. ``callback`` gets one :class:`SamplerStep` per step. ``should_stop`` is polled before each
step; when it returns True the sampler raises :class:`diffstudio.errors.Cancelled`. Network
evaluations are counted by the model (``model.network_evaluations``). The return value is x_0.

One algorithm per file: ``ddpm.py`` (ancestral sampling), ``ddim.py`` (DDIM).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from diffstudio.errors import Cancelled, ConfigError

__all__ = [
    "SamplerCallback",
    "SamplerStep",
    "StopCheck",
    "check_stop",
    "randn",
    "timestep_sequence",
]


@dataclass
class SamplerStep:
    """One sampler step, as reported to the callback.

    index: 0-based step number; num_steps: the total; t: the timestep (or noise level) of x;
    x: the current state x_t (B, *sample_shape); x0_pred: the network's estimate of x_0 from x.
    """

    index: int
    num_steps: int
    t: float
    x: torch.Tensor
    x0_pred: torch.Tensor


SamplerCallback = Callable[[SamplerStep], None]
StopCheck = Callable[[], bool]


def check_stop(should_stop: StopCheck | None, index: int) -> None:
    """Raise :class:`Cancelled` between steps when the user asked to stop."""
    if should_stop is not None and should_stop():
        raise Cancelled(f"sampling stopped by request before step {index}")


def randn(
    like: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator] | None
) -> torch.Tensor:
    """Standard normal noise shaped like ``like``, drawn on the generator's device, moved to
    ``like``'s device (so a CPU generator reproduces the same samples on any device).

    ``generator`` may be one generator for the batch, or a list of one per batch element (then
    element i is drawn from generator i only, so a sample does not depend on its batch).
    """
    if isinstance(generator, (list, tuple)):
        if len(generator) != like.shape[0]:
            raise ConfigError(
                f"{len(generator)} generators for a batch of {like.shape[0]}; give one per sample"
            )
        return torch.stack([randn(like[i], g) for i, g in enumerate(generator)])
    device = generator.device if generator is not None else like.device
    noise = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=device)
    return noise.to(like.device)


def timestep_sequence(num_timesteps: int, steps: int, spacing: str = "uniform") -> list[int]:
    """Descending timesteps to visit, from the noisiest.

    * ``uniform``: 0, k, 2k, ... with k = T // steps (DDIM's "uniform"; diffusers' "leading").
    * ``quadratic``: int((linspace(0, sqrt(0.8 T), steps))^2) (DDIM's "quad", Song et al. 2021,
      App. D.2), duplicates removed.
    * ``trailing``: round(linspace(T, 0, steps, endpoint=False)) - 1 (Lin et al. 2024), which
      always starts at the last timestep.
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
