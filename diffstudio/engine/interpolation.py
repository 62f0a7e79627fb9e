"""Interpolating between two initial noises, for DDIM's latent-space interpolation.

DDIM with eta = 0 maps the initial noise x_T to x_0 deterministically, so a path between two
noises decodes to a path between two samples (Song, Meng & Ermon, arXiv 2010.02502, sec. 5.3,
footnote 15). The noises are interpolated spherically rather than linearly: x_T ~ N(0, I) in
high dimension lies near the sphere of radius sqrt(d), and a straight line between two such
points passes through low-norm noise the model never saw (the same argument as for GAN latents,
White 2016).
"""

from __future__ import annotations

import math

import torch

__all__ = ["seed_noise", "slerp", "slerp_path"]


def seed_noise(seed: int, sample_shape: tuple[int, ...]) -> torch.Tensor:
    """The initial noise x_T (*sample_shape) that ``sampling.generate`` draws for ``seed``: the
    first draw of ``torch.Generator().manual_seed(seed)`` (float32, CPU)."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randn(sample_shape, generator=generator)


def slerp(x0: torch.Tensor, x1: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical linear interpolation (Shoemake 1985) between two tensors of the same shape.

    With theta the angle between x0 and x1 (as flattened vectors)::

        slerp(x0, x1, alpha) = sin((1 - alpha) theta) / sin(theta) x0
                             + sin(alpha theta) / sin(theta) x1

    alpha = 0 gives x0 and alpha = 1 gives x1. Nearly parallel inputs (sin theta ~ 0) fall back
    to linear interpolation. Computed in float64, returned in x0's dtype.
    """
    if x0.shape != x1.shape:
        raise ValueError(f"slerp needs tensors of one shape, got {tuple(x0.shape)} and "
                         f"{tuple(x1.shape)}")
    a, b = x0.double(), x1.double()
    cosine = (a.flatten() @ b.flatten()) / (a.norm() * b.norm())
    theta = float(torch.arccos(cosine.clamp(-1.0, 1.0)))
    if abs(math.sin(theta)) < 1e-6:
        result = (1.0 - alpha) * a + alpha * b
    else:
        result = (math.sin((1.0 - alpha) * theta) * a + math.sin(alpha * theta) * b) / math.sin(
            theta
        )
    return result.to(x0.dtype)


def slerp_path(x0: torch.Tensor, x1: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` >= 2 points from x0 to x1 (both included), evenly spaced in alpha:
    (count, *x0.shape)."""
    if count < 2:
        raise ValueError(f"a path needs at least 2 points, got {count}")
    return torch.stack([slerp(x0, x1, index / (count - 1)) for index in range(count)])
