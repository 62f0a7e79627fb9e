"""DDIM sampling (Song, Meng & Ermon 2021, arXiv:2010.02502, eq. 12).

On a sub-sequence of timesteps t -> prev (alpha_bar_{-1} = 1; the paper writes alpha for
alpha_bar):

    x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)                    (eq. 9)
    sigma_t = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t))
                  sqrt(1 - alpha_bar_t / alpha_bar_prev)                               (eq. 16)
    x_prev  = sqrt(alpha_bar_prev) x0_pred + sqrt(1 - alpha_bar_prev - sigma_t^2) eps + sigma_t z

eta = 0 is the deterministic DDIM; eta = 1 is DDPM's ancestral sampler with beta_tilde.
With eta > 0 noise is drawn at every step (also the last, where sigma = 0), as diffusers'
``DDIMScheduler`` does, so the two agree for the same generator.

Same algorithm as diffusers' ``DDIMScheduler`` with ``timestep_spacing="leading"``,
``steps_offset=0``, ``set_alpha_to_one=True``, ``clip_sample=clip_x0`` and the default
``use_clipped_model_output=False`` (the direction term uses the unclipped eps). Each step goes
to the next timestep visited; diffusers' DDIM steps to t - T // steps, which is the same except
for ``trailing`` spacing when steps does not divide T. Another deliberate difference: the
coefficients are computed in float64 from the float64 schedule, where diffusers
uses float32 (its ``alphas_cumprod`` is a float32 cumprod of float32 betas); in float64 the two
trajectories agree to ~1e-14 (tests/test_samplers_parity.py), in float32 ours is the closer to
the exact step.

Also here: deterministic inversion (the same update run from x_0 towards x_T, the encoding of
§4.3), used for reconstruction and interpolation.
"""

from __future__ import annotations

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
from diffstudio.engine.samplers._common import timestep_sequence
from diffstudio.errors import ConfigError


@torch.no_grad()
def ddim_sample(
    model: DiffusionModel,
    x: torch.Tensor,
    *,
    generator: Generators,
    callback: SamplerCallback | None,
    should_stop: StopCheck | None,
    steps: int = 50,
    eta: float = 0.0,
    spacing: str = "uniform",
    clip_x0: bool = True,
) -> torch.Tensor:
    """DDIM from x_T to x_0 in ``steps`` network evaluations. x: (B, *sample_shape), left
    unmodified.

    generator: one torch.Generator per row of x, drawn from only when eta > 0 (row i's noise
    from generator[i]); with eta = 0 the sampler is deterministic and ignores it.
    """
    timesteps = timestep_sequence(model.num_timesteps, steps, spacing)
    for index, t in enumerate(timesteps):
        check_stop(should_stop, index)
        prev = timesteps[index + 1] if index + 1 < len(timesteps) else -1
        alpha_bar, alpha_bar_prev = model.alpha_bar(t), model.alpha_bar(prev)
        prediction = model.predict(x, t)
        x0_pred = model.clip(prediction.x0, clip_x0)
        if callback is not None:
            callback(SamplerStep(index, len(timesteps), t, x, x0_pred))
        variance = (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev)
        sigma = eta * variance**0.5
        direction = max(1.0 - alpha_bar_prev - sigma**2, 0.0) ** 0.5 * prediction.eps
        x = alpha_bar_prev**0.5 * x0_pred + direction
        if eta > 0:
            x = x + sigma * randn_like_per_sample(x, generator)
    return x


@torch.no_grad()
def ddim_invert(
    model: DiffusionModel,
    x0: torch.Tensor,
    *,
    steps: int = 50,
    spacing: str = "uniform",
    eps_at: str = "target",
    callback: SamplerCallback | None = None,
    should_stop: StopCheck | None = None,
) -> torch.Tensor:
    """Deterministic DDIM inversion: x_0 -> x_T by running eq. 12 (eta = 0) forwards in time.

    A step from level ``prev`` to the noisier ``t`` needs eps at the unknown x_t; it is
    approximated by the network at the current x_prev, conditioned on

    * ``eps_at="target"`` (default): the target timestep t, eps(x_prev, t), as diffusers'
      ``DDIMInverseScheduler`` and null-text inversion (Mokady et al. 2023) do. Sampling back
      from t calls eps(x_t, t) with the same label, so the round trip errs only by how much
      eps(., t) changes between x_prev and x_t (about half the error of the alternative on
      Gaussian data; both are first order in the step size);
    * ``eps_at="current"``: the current timestep, eps(x_prev, prev): explicit Euler on the DDIM
      ODE, first order in the step size.

    ``ddim_sample(..., eta=0)`` on the result reconstructs x_0 closely.
    """
    if eps_at not in ("target", "current"):
        raise ConfigError(f"eps_at must be 'target' or 'current', got {eps_at!r}")
    timesteps = timestep_sequence(model.num_timesteps, steps, spacing)[::-1]
    x = x0
    for index, t in enumerate(timesteps):
        check_stop(should_stop, index)
        prev = timesteps[index - 1] if index > 0 else -1
        alpha_bar_prev, alpha_bar = model.alpha_bar(prev), model.alpha_bar(t)
        prediction = model.predict(x, t if eps_at == "target" else max(prev, 0))
        x0_pred = (x - (1.0 - alpha_bar_prev) ** 0.5 * prediction.eps) / alpha_bar_prev**0.5
        if callback is not None:
            callback(SamplerStep(index, len(timesteps), t, x, x0_pred))
        x = alpha_bar**0.5 * x0_pred + (1.0 - alpha_bar) ** 0.5 * prediction.eps
    return x
