"""Built-in samplers: DDPM ancestral sampling and DDIM (seed 002 §4.1, §4.2)."""

from __future__ import annotations

from diffstudio import Contribution, Param, hookimpl

_CLIP = Param(
    "clip_x0", "bool", True, help="clip the predicted x_0 to the data range (images only)"
)
_SPACING = Param(
    "spacing", "choice", "uniform", choices=("uniform", "quadratic", "trailing"),
    help="which timesteps a shortened schedule visits",
)


@hookimpl
def diffstudio_samplers() -> list[Contribution]:
    return [
        Contribution(
            kind="sampler",
            id="ddpm",
            display_name="DDPM (ancestral)",
            description="Algorithm 2 of Ho et al. 2020: one network call per timestep.",
            factory="diffstudio.engine.samplers.ddpm:ddpm_sample",
            params=(
                Param("steps", "int", 1000, minimum=1, maximum=100000,
                      help="timesteps visited (all T for the original sampler)"),
                Param("variance", "choice", "small", choices=("small", "large"),
                      help="sigma_t^2 = beta_tilde_t (small) or beta_t (large)"),
                _CLIP,
                _SPACING,
            ),
        ),
        Contribution(
            kind="sampler",
            id="ddim",
            display_name="DDIM",
            description="Song et al. 2021, eq. 31: deterministic at eta = 0, few steps.",
            factory="diffstudio.engine.samplers.ddim:ddim_sample",
            params=(
                Param("steps", "int", 50, minimum=1, maximum=100000, help="network evaluations"),
                Param("eta", "float", 0.0, minimum=0.0, maximum=1.0,
                      help="0 = deterministic DDIM, 1 = DDPM-like noise"),
                _SPACING,
                _CLIP,
            ),
        ),
    ]
