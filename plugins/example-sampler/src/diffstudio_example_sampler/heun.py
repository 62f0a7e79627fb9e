"""Heun's method on the DDIM ODE (Song et al. 2021, arXiv:2010.02502, eq. 14; Karras et al.
2022, arXiv:2206.00364, Algorithm 1).

With sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) and y = x / sqrt(alpha_bar_t), deterministic
DDIM is Euler's method on dy/dsigma = eps_theta(x, t). Heun adds a corrector: evaluate the slope
again at the Euler end point and step with the mean of the two slopes. The last step (to
sigma = 0) is a plain Euler step, as in Karras et al.
"""

from __future__ import annotations

import torch

from diffstudio.engine.samplers import (
    Generators,
    SamplerCallback,
    SamplerStep,
    StopCheck,
    check_stop,
    timestep_sequence,
)


@torch.no_grad()
def heun_sample(
    model,
    x: torch.Tensor,
    *,
    generator: Generators,
    callback: SamplerCallback | None,
    should_stop: StopCheck | None,
    steps: int = 10,
    clip_x0: bool = False,
) -> torch.Tensor:
    """Noise to data in ``steps`` Heun steps (2 network evaluations each, 1 for the last).

    x: (B, *sample_shape) initial noise, left unmodified; returns x_0 of the same shape.
    ``generator`` holds one torch.Generator per row of x; this sampler adds no noise, so it is
    unused. A stochastic sampler draws its noise with
    ``diffstudio.engine.samplers.randn_like_per_sample(x, generator)`` (row i from
    ``generator[i]``), never ``torch.randn(shape, generator=generator)``.
    The keyword defaults are the ones declared in plugin.py (the conformance kit checks it).
    """
    timesteps = timestep_sequence(model.num_timesteps, steps, "trailing")
    for index, t in enumerate(timesteps):
        check_stop(should_stop, index)
        prev = timesteps[index + 1] if index + 1 < len(timesteps) else -1
        alpha_bar, alpha_bar_prev = model.alpha_bar(t), model.alpha_bar(prev)
        sigma = ((1 - alpha_bar) / alpha_bar) ** 0.5
        sigma_prev = ((1 - alpha_bar_prev) / alpha_bar_prev) ** 0.5
        prediction = model.predict(x, t)
        if callback is not None:
            callback(SamplerStep(index, len(timesteps), t, x, model.clip(prediction.x0, clip_x0)))
        y = x / alpha_bar**0.5
        slope = prediction.eps
        y_next = y + (sigma_prev - sigma) * slope
        if prev >= 0:
            corrected = model.predict(y_next * alpha_bar_prev**0.5, prev)
            y_next = y + (sigma_prev - sigma) * 0.5 * (slope + corrected.eps)
        x = y_next * alpha_bar_prev**0.5
        if clip_x0 and prev < 0:
            x = model.clip(x, True)
    return x
