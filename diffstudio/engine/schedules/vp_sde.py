"""The variance-preserving SDE (Song et al. 2021, arXiv 2011.13456, eq. 11; Appendix B).

beta(t) = beta_min + t (beta_max - beta_min), dx = -beta(t)/2 x dt + sqrt(beta(t)) dw: the
continuous limit of DDPM's Markov chain (eq. 10) with a linear schedule. Its perturbation
kernel (eq. 29) has log m(t) = -int_0^t beta / 2 = -t^2 (beta_max - beta_min)/4 - t beta_min/2
and s(t)^2 = 1 - m(t)^2. Trained at continuous t ~ U[t_min, 1] (eq. 7).
"""

from __future__ import annotations

import torch

from diffstudio.engine.processes import DiffusionProcess
from diffstudio.errors import ConfigError

__all__ = ["VPSDE", "vp_sde"]

_F64 = torch.float64


class VPSDE(DiffusionProcess):
    """VP SDE with beta(0) = beta_min and beta(1) = beta_max; grid t_i = (i+1)/N."""

    kind = "vp"
    t_min = 1e-3

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, num_scales: int = 1000):
        if not 0 < beta_min < beta_max:
            raise ConfigError(
                f"VP betas need 0 < beta_min < beta_max, got {beta_min}, {beta_max}; raise "
                "beta_max or lower beta_min"
            )
        if num_scales < 1:
            raise ConfigError(f"num_scales must be at least 1, got {num_scales}")
        self.beta_min, self.beta_max, self.num_scales = beta_min, beta_max, num_scales
        self.name = "vp-sde"

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """beta(t), linear in t."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_mean(self, t: torch.Tensor) -> torch.Tensor:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return (-torch.expm1(2.0 * self.log_mean(t))).clamp(min=0.0).sqrt()

    def drift_rate(self, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * self.beta(t)

    def diffusion_squared(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta(t)

    @property
    def grid(self) -> torch.Tensor:
        return torch.arange(1, self.num_scales + 1, dtype=_F64) / self.num_scales

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "beta_min": self.beta_min, "beta_max": self.beta_max}


def vp_sde(num_timesteps: int = 1000, beta_min: float = 0.1, beta_max: float = 20.0) -> VPSDE:
    """The ``vp-sde`` schedule factory: a VP SDE with ``num_timesteps`` grid points."""
    return VPSDE(beta_min=beta_min, beta_max=beta_max, num_scales=num_timesteps)
