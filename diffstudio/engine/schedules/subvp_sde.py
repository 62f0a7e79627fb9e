"""The sub-VP SDE (Song et al. 2021, arXiv 2011.13456, eq. 12; Appendix B).

The VP drift -beta(t)/2 x with g(t)^2 = beta(t) (1 - exp(-2 int_0^t beta)). Its perturbation
kernel (eq. 29) has the VP mean m(t) and s(t) = 1 - m(t)^2, whose variance stays below the VP
one (s^2 <= 1 - m^2). Trained at continuous t ~ U[t_min, 1] (eq. 7).
"""

from __future__ import annotations

import torch

from diffstudio.engine.schedules.vp_sde import VPSDE

__all__ = ["SubVPSDE", "subvp_sde"]


class SubVPSDE(VPSDE):
    """Sub-VP SDE with beta(0) = beta_min and beta(1) = beta_max; the VP grid."""

    kind = "subvp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, num_scales: int = 1000):
        super().__init__(beta_min, beta_max, num_scales)
        self.name = "subvp-sde"

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.expm1(2.0 * self.log_mean(t))

    def diffusion_squared(self, t: torch.Tensor) -> torch.Tensor:
        # beta (1 - exp(-2 int beta)) = beta (1 - m^4), since m^2 = exp(-int beta).
        return self.beta(t) * (-torch.expm1(4.0 * self.log_mean(t)))


def subvp_sde(
    num_timesteps: int = 1000, beta_min: float = 0.1, beta_max: float = 20.0
) -> SubVPSDE:
    """The ``subvp-sde`` schedule factory: a sub-VP SDE with ``num_timesteps`` grid points."""
    return SubVPSDE(beta_min=beta_min, beta_max=beta_max, num_scales=num_timesteps)
