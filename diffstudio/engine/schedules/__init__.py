"""Discrete noise schedules (DDPM family).

A schedule is a sequence beta_1..beta_T; everything else follows (seed 002, §2.2-2.3):

* alpha_t = 1 - beta_t,  alpha_bar_t = prod_{s<=t} alpha_s                 (eq. 5)
* q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)               (eq. 5)
* posterior q(x_{t-1} | x_t, x_0) = N(mu_tilde_t, beta_tilde_t I)            (eqs. 8-10)

Indices are 0-based in code: ``betas[t]`` for t in 0..T-1 is the seed's beta_{t+1}, as in
diffusers. Tensors are float64 so that closed-form tests are exact; samplers read scalars.
Each schedule (linear, cosine, quadratic, sigmoid) is one file returning a :class:`NoiseSchedule`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffstudio.errors import ConfigError

__all__ = ["NoiseSchedule"]


@dataclass(frozen=True)
class NoiseSchedule:
    """beta_t for t = 0..T-1 (float64) and the quantities derived from it.

    ``name`` records which schedule made it (for run configs and plots).
    """

    betas: torch.Tensor
    name: str = "custom"

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas, dtype=torch.float64).flatten()
        if betas.numel() < 1:
            raise ConfigError("a noise schedule needs at least one step")
        if not bool(torch.all((betas > 0) & (betas < 1))):
            raise ConfigError(
                f"schedule {self.name!r}: every beta_t must lie in (0, 1); got min "
                f"{betas.min().item():.3g}, max {betas.max().item():.3g}"
            )
        object.__setattr__(self, "betas", betas)

    @property
    def num_timesteps(self) -> int:
        return self.betas.numel()

    @property
    def alphas(self) -> torch.Tensor:
        """alpha_t = 1 - beta_t."""
        return 1.0 - self.betas

    @property
    def alpha_bars(self) -> torch.Tensor:
        """alpha_bar_t = prod_{s<=t} alpha_s (eq. 5)."""
        return torch.cumprod(self.alphas, dim=0)

    @property
    def alpha_bars_prev(self) -> torch.Tensor:
        """alpha_bar_{t-1}, with alpha_bar_{-1} = 1 (no noise before the first step)."""
        return torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bars[:-1]])

    @property
    def posterior_variances(self) -> torch.Tensor:
        """beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t (eq. 10)."""
        return (1.0 - self.alpha_bars_prev) / (1.0 - self.alpha_bars) * self.betas

    @property
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t)."""
        return self.alpha_bars / (1.0 - self.alpha_bars)

    def posterior_mean_coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_x0, c_xt) with mu_tilde_t = c_x0 * x_0 + c_xt * x_t (eq. 9)."""
        c_x0 = self.alpha_bars_prev.sqrt() * self.betas / (1.0 - self.alpha_bars)
        c_xt = self.alphas.sqrt() * (1.0 - self.alpha_bars_prev) / (1.0 - self.alpha_bars)
        return c_x0, c_xt

    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (eq. 6).

        x0, noise: (B, ...); t: (B,) integer timesteps in [0, T). Output has x0's dtype.
        """
        alpha_bar = self.alpha_bars.to(x0.device)[t].to(x0.dtype)
        alpha_bar = alpha_bar.view(-1, *([1] * (x0.dim() - 1)))
        return alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * noise

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "num_timesteps": self.num_timesteps}
