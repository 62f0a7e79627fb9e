"""A "network" that knows the exact answer: the score of a Gaussian mixture under any process.

For data sum_k w_k N(mu_k, tau^2 I) and x_t = m x_0 + s z, the noised density is
sum_k w_k N(m mu_k, (m^2 tau^2 + s^2) I), whose score is exact in closed form. The network
returns s * score (prediction type ``score``), so it plugs into every sampler like a trained
one. It is the demo of the 2-D lab (Song & Ermon, arXiv 1907.05600, sec. 3.2: 0.8 N((5,5), I) +
0.2 N((-5,-5), I)) and the reference for sampler tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from diffstudio.errors import ConfigError

__all__ = ["MIXTURES", "MODE_RADIUS", "GaussianMixtureScore", "build_analytic_mixture",
           "mode_fractions"]

# name: (weights, means, component std)
MIXTURES: dict[str, tuple[tuple[float, ...], tuple[tuple[float, ...], ...], float]] = {
    "seed-mixture": ((0.8, 0.2), ((5.0, 5.0), (-5.0, -5.0)), 1.0),
    "standard-gaussian": ((1.0,), ((0.0, 0.0),), 1.0),
}
#: A point counts for a mode within this distance of its centre (3 component deviations).
MODE_RADIUS = 3.0


def mode_fractions(points: Any, modes: Sequence[Sequence[float]] | None = None,
                   radius: float = MODE_RADIUS) -> tuple[float, ...]:
    """The fraction of ``points`` (N, 2), an array or a tensor, within ``radius`` of each
    mode (default: the seed mixture's means, (5, 5) then (-5, -5))."""
    if modes is None:
        modes = MIXTURES["seed-mixture"][1]
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    points = np.asarray(points, dtype=np.float64)
    return tuple(float((np.linalg.norm(points - np.asarray(m), axis=1) <= radius).mean())
                 for m in modes)


class GaussianMixtureScore(nn.Module):
    """Exact noise-scaled score of a Gaussian mixture. x: (B, D); returns (B, D)."""

    conditions_on_marginal = True
    prediction_type = "score"  # what it returns; a run of it records this, whatever was asked

    def __init__(
        self, weights: Sequence[float], means: Sequence[Sequence[float]], std: float = 1.0
    ) -> None:
        super().__init__()
        weights_tensor = torch.as_tensor(weights, dtype=torch.float64)
        if weights_tensor.min() <= 0 or abs(float(weights_tensor.sum()) - 1.0) > 1e-9:
            raise ConfigError(f"mixture weights must be positive and sum to 1, got {weights}")
        self.register_buffer("log_weights", weights_tensor.log())
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float64))
        self.std = std

    def log_density(self, x: torch.Tensor, m: float = 1.0, s: float = 0.0) -> torch.Tensor:
        """log p_t(x) for x: (..., D) under the perturbation (m, s)."""
        variance = m * m * self.std**2 + s * s
        x = x.to(torch.float64)
        squared = ((x.unsqueeze(-2) - m * self.means) ** 2).sum(-1)  # (..., K)
        dim = self.means.shape[1]
        log_components = -0.5 * squared / variance - 0.5 * dim * math.log(2 * math.pi * variance)
        return torch.logsumexp(self.log_weights + log_components, dim=-1)

    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        marginal: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if marginal is None:
            raise ConfigError("the analytic mixture score needs the marginal (m, s) of the process")
        m = marginal[0].to(torch.float64).view(-1, 1, 1)
        s = marginal[1].to(torch.float64).view(-1, 1, 1)
        variance = m**2 * self.std**2 + s**2  # (B, 1, 1)
        difference = x.to(torch.float64).unsqueeze(1) - m * self.means  # (B, K, D)
        log_responsibility = self.log_weights - 0.5 * (difference**2).sum(-1) / variance[:, :, 0]
        responsibility = torch.softmax(log_responsibility, dim=1).unsqueeze(-1)  # (B, K, 1)
        score = -(responsibility * difference).sum(1) / variance[:, :, 0]
        return (s[:, :, 0] * score).to(x.dtype)


def build_analytic_mixture(
    sample_shape: tuple[int, ...], num_classes: int | None = None, *,
    mixture: str = "seed-mixture",
) -> GaussianMixtureScore:
    if mixture not in MIXTURES:
        raise ConfigError(f"mixture must be one of {sorted(MIXTURES)}, got {mixture!r}")
    weights, means, std = MIXTURES[mixture]
    if tuple(sample_shape) != (len(means[0]),):
        raise ConfigError(
            f"the {mixture!r} score is for points of shape ({len(means[0])},), "
            f"not {tuple(sample_shape)}"
        )
    return GaussianMixtureScore(weights, means, std)
