"""DDIM interpolation: slerp between two seeds' noises (engine), decoded from the window."""

from __future__ import annotations

import math

import numpy as np
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


def test_interpolation_tab_decodes_a_row(qtbot, make_window, trained_run):
    window = make_window()
    view = window.sample_view
    view.select_run(str(trained_run))
    panel = view.interpolation
    panel.form.set_values({"seed_a": 3, "seed_b": 4, "frames": 5, "steps": 10})
    assert panel.start()
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    path = panel.result
    assert path.samples.shape == (5, 1, 8, 8)
    assert path.alphas == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert panel.view.image() is not None
    # The ends are exactly what sampling seeds 3 and 4 with DDIM (eta 0) gives.
    from diffstudio.engine.sampling import generate, load_model

    loaded = load_model(trained_run, device="cpu", registry=window.studio.registry)
    ends = generate(loaded.model, "ddim", {"steps": 10, "eta": 0.0},
                    sample_shape=loaded.sample_shape, num_samples=2, seed=3,
                    registry=window.studio.registry)
    assert np.allclose(path.samples[0], ends.samples[0].numpy(), atol=1e-5)
    assert np.allclose(path.samples[-1], ends.samples[1].numpy(), atol=1e-5)
    assert math.isfinite(path.seconds)
