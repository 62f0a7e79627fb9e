"""NCSN's geometric noise levels (Song & Ermon 2019, arXiv 1907.05600, §4).

L levels sigma_1 > sigma_2 > ... > sigma_L with a constant ratio sigma_{i-1} / sigma_i, the
data perturbed as x~ = x + sigma z (m = 1, s = sigma) and the network trained by denoising
score matching at those levels only, weighted by lambda(sigma) = sigma^2 (eqs. 5-6). The levels
lie on the VE SDE's curve between sigma_min and sigma_max (arXiv 2011.13456, §3.4, eqs. 8-9),
so NCSN is a :class:`~diffstudio.engine.schedules.ve_sde.VESDE` trained on its L grid points.
"""

from __future__ import annotations

import torch

from diffstudio.engine.schedules.ve_sde import VESDE
from diffstudio.errors import ConfigError

__all__ = ["NCSNLevels", "ncsn_levels"]


class NCSNLevels(VESDE):
    """The VE curve between sigma_min and sigma_max, trained at its ``levels`` grid points."""

    kind = "ncsn"
    discrete_training = True

    def __init__(
        self, sigma_max: float = 1.0, sigma_min: float = 0.01, levels: int = 10
    ) -> None:
        if levels < 2:
            raise ConfigError(f"NCSN needs at least 2 noise levels, got {levels}; use levels >= 2")
        super().__init__(sigma_min=sigma_min, sigma_max=sigma_max, num_scales=levels)
        self.name = "ncsn"

    @property
    def sigmas(self) -> torch.Tensor:
        """(L,) the levels, largest first (sigma_1 .. sigma_L)."""
        return self.std(self.grid).flip(0)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "levels": self.num_scales}


def ncsn_levels(
    num_timesteps: int = 1000, sigma_max: float = 1.0, sigma_min: float = 0.01, levels: int = 10
) -> NCSNLevels:
    """The ``ncsn`` schedule factory (num_timesteps does not apply: the levels are the steps)."""
    return NCSNLevels(sigma_max=sigma_max, sigma_min=sigma_min, levels=levels)
