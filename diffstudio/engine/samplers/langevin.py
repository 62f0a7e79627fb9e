"""Plain (unadjusted) Langevin dynamics at one noise level (Song & Ermon 2019, arXiv:1907.05600,
§2.2, eq. 4):

    x <- x + eps / 2 * grad log p(x) + sqrt(eps) z,   z ~ N(0, I)

with the model's score at its smallest noise level (or ``sigma``). The contrast to annealed
Langevin: started from uniform noise on a two-mode mixture, it keeps the fraction of points
each basin caught at the start instead of the modes' weights (Song & Ermon 2019, Fig. 3).
"""

from __future__ import annotations

import math

import torch

from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.samplers import (
    Generators,
    SamplerCallback,
    SamplerStep,
    StopCheck,
    check_stop,
    randn_like_per_sample,
)
from diffstudio.engine.samplers._common import initial_state, noise_levels, ve_score


@torch.no_grad()
def langevin_sample(
    model: DiffusionModel,
    x: torch.Tensor,
    *,
    generator: Generators,
    callback: SamplerCallback | None,
    should_stop: StopCheck | None,
    steps: int = 1000,
    step_size: float = 2e-5,
    sigma: float = 0.0,
    init: str = "uniform",
    init_range: float = 1.0,
) -> torch.Tensor:
    """eq. 4 for ``steps`` steps. x: (B, *shape) standard normal noise (used for init="prior").

    generator: one torch.Generator per row of x; row i's noise comes from generator[i] only.
    """
    if sigma:
        level, t = sigma, model.process.t_of_sigma(sigma)
    else:
        level, t = noise_levels(model, 0, 0.0, 0.0)[-1]
    x = initial_state(x, generator, init, level, init_range)
    for index in range(steps):
        check_stop(should_stop, index)
        score, x0_pred = ve_score(model, x, t)
        if callback is not None:
            callback(SamplerStep(index, steps, level, x, x0_pred))
        x = x + 0.5 * step_size * score + math.sqrt(step_size) * randn_like_per_sample(x, generator)
    return x
