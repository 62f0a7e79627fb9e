"""Spherical interpolation between two seeds' initial noises (diffstudio.engine.interpolation)."""

from __future__ import annotations

import pytest
import torch

from diffstudio.engine.interpolation import seed_noise, slerp, slerp_path


def test_slerp_ends_on_its_inputs_and_keeps_the_norm():
    a, b = seed_noise(0, (1, 8, 8)), seed_noise(1, (1, 8, 8))
    assert torch.equal(slerp(a, b, 0.0), a.double().to(a.dtype))
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    middle = slerp(a, b, 0.5)
    # Two near-orthogonal noises of equal norm: the midpoint keeps that norm (a line would not).
    assert float(middle.norm()) == pytest.approx(float(a.norm() + b.norm()) / 2, rel=0.05)
    assert float(((a + b) / 2).norm()) < 0.8 * float(middle.norm())
    path = slerp_path(a, b, 5)
    assert path.shape == (5, 1, 8, 8) and torch.equal(path[0], a)
    # Parallel inputs fall back to a straight line.
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a)
    with pytest.raises(ValueError):
        slerp_path(a, b, 1)


def test_seed_noise_is_the_noise_generate_starts_from():
    generator = torch.Generator().manual_seed(7)
    assert torch.equal(seed_noise(7, (2, 3)), torch.randn((2, 3), generator=generator))
