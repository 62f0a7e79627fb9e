"""The variance-exploding SDE (Song et al. 2021, arXiv 2011.13456, eq. 9; Appendix C).

sigma(t) = sigma_min (sigma_max / sigma_min)^t, dx = sqrt(d sigma^2 / dt) dw, so m(t) = 1,
f = 0 and g(t)^2 = d sigma^2 / dt = 2 sigma(t)^2 log(sigma_max / sigma_min). The perturbation
kernel is N(x_0, [sigma(t)^2 - sigma(0)^2] I) (eq. 29); like the paper's code we take
s(t) = sigma(t), which differs by sigma_min^2 in the variance. Trained at continuous
t ~ U[t_min, 1] (eq. 7).
"""

from __future__ import annotations

import math

import torch

from diffstudio.engine.processes import DiffusionProcess
from diffstudio.errors import ConfigError

__all__ = ["VESDE", "ve_sde"]

_F64 = torch.float64


class VESDE(DiffusionProcess):
    """VE SDE between sigma_min = s(0) and sigma_max = s(1); ``num_scales`` grid points
    t = 0, 1/(N-1), ..., 1 for the discrete-time samplers."""

    kind = "ve"
    t_min = 1e-5

    def __init__(
        self, sigma_min: float = 0.01, sigma_max: float = 50.0, num_scales: int = 1000
    ) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ConfigError(
                f"VE noise levels need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}; "
                "raise sigma_max or lower sigma_min"
            )
        if num_scales < 1:
            raise ConfigError(f"num_scales must be at least 1, got {num_scales}")
        self.sigma_min, self.sigma_max, self.num_scales = sigma_min, sigma_max, num_scales
        self.name = "ve-sde"
        self._log_ratio = math.log(sigma_max / sigma_min)

    def log_mean(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t)

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def drift_rate(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t)

    def diffusion_squared(self, t: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.std(t) ** 2 * self._log_ratio

    @property
    def grid(self) -> torch.Tensor:
        if self.num_scales == 1:
            return torch.ones(1, dtype=_F64)
        return torch.linspace(0.0, 1.0, self.num_scales, dtype=_F64)

    def t_of_sigma(self, sigma: float) -> float:
        return min(max(math.log(sigma / self.sigma_min) / self._log_ratio, 0.0), 1.0)

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


def ve_sde(num_timesteps: int = 1000, sigma_min: float = 0.01, sigma_max: float = 50.0) -> VESDE:
    """The ``ve-sde`` schedule factory: a VE SDE with ``num_timesteps`` grid points."""
    return VESDE(sigma_min=sigma_min, sigma_max=sigma_max, num_scales=num_timesteps)
