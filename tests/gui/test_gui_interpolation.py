"""DDIM interpolation decoded from the window (slerp itself: tests/engine/test_interpolation.py)."""

from __future__ import annotations

import math

import numpy as np


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
