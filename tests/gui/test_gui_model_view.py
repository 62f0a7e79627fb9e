"""The Model & schedule page's forward-process explorer works for every registered schedule
(DDPM, NCSN, the score SDEs, plugins): choosing one and moving the slider raises nothing, and
the curves and x_t come from the schedule's own process."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt


def _load(qtbot, window, dataset_id: str) -> None:
    """Load a dataset on the Data page and wait until the explorer has its samples."""
    view = window.model_view
    qtbot.waitUntil(lambda: view._x0 is not None, timeout=60_000)  # the default, digits
    if dataset_id != "digits":
        window.data_view.picker.select(dataset_id, {"num_points": 300})
        qtbot.waitUntil(window.data_view.load, timeout=60_000)
        qtbot.waitUntil(lambda: view._x0.dim() == 2, timeout=60_000)


def _slider_positions(maximum: int) -> list[int]:
    return sorted({0, maximum // 2, maximum})


@pytest.mark.parametrize("dataset_id", ["digits", "toy2d"])
def test_explorer_walks_every_registered_schedule(qtbot, make_window, registry, dataset_id):
    window = make_window()
    view = window.model_view
    kind = "image" if dataset_id == "digits" else "points"
    _load(qtbot, window, dataset_id)
    view.diffusion_form.set_values({"num_timesteps": 40})
    schedule_ids = registry.ids("schedule")
    assert {"linear", "ncsn", "ve-sde", "vp-sde", "subvp-sde"} <= set(schedule_ids)

    with qtbot.captureExceptions() as exceptions:
        for schedule_id in schedule_ids:
            assert view.schedule_picker.select(schedule_id)
            name = view.chosen_name
            assert name.startswith(schedule_id)
            process = view.schedules[name]
            # The curves: the process's grid in [0, 1], alpha-bar in (0, 1] and SNR, both
            # falling along t, one value per slider position.
            times, alpha_bars, snr = view.curves.curves[name]
            steps = process.num_timesteps
            assert times.shape == alpha_bars.shape == snr.shape == (steps,)
            assert view.t_slider.maximum() == steps - 1
            assert np.all(np.diff(times) > 0) and times[0] >= 0.0 and times[-1] <= 1.0
            assert np.all((alpha_bars > 0) & (alpha_bars <= 1)), schedule_id
            assert np.all(np.diff(alpha_bars) < 0), schedule_id
            assert np.all(np.isfinite(snr)) and np.all(np.diff(snr) < 0), schedule_id
            assert {"linear", "cosine"} <= set(view.curves.curves)

            seen = []
            for position in _slider_positions(view.t_slider.maximum()):
                view.t_slider.setValue(position)
                t = float(process.grid[position])
                assert view.curves.marker() == pytest.approx(t)
                text = view.t_label.text()
                assert f"step {position + 1}/{steps}" in text and name in text
                assert f"alpha-bar = {float(process.alpha_bar(t)):.4f}" in text
                if kind == "image":
                    image = view.xt_view.image()
                    assert image is not None and not image.isNull()
                    assert f"t = {t:.4g}" in view.xt_view.caption()
                    seen.append(image.copy())
                else:
                    points = np.stack(view.xt_points.particles.getData(), axis=1)
                    assert points.shape == tuple(view._x0.shape)
                    assert np.all(np.isfinite(points))
                    seen.append(points)
            # The slider changes x_t: the first and last positions show different draws.
            if kind == "image":
                assert seen[0] != seen[-1], schedule_id
            else:
                assert not np.allclose(seen[0], seen[-1]), schedule_id
    assert not exceptions, [str(e[1]) for e in exceptions]


def test_explorer_shows_x_t_of_the_chosen_process(qtbot, make_window):
    """The points shown are exactly the process's q_sample at the slider's grid time."""
    window = make_window()
    view = window.model_view
    _load(qtbot, window, "toy2d")
    view.schedule_picker.select("ve-sde", {"sigma_min": 0.05, "sigma_max": 5.0})
    process = view.schedules[view.chosen_name]
    view.t_slider.setValue(view.t_slider.maximum())
    shown = np.stack(view.xt_points.particles.getData(), axis=1)
    expected = process.q_sample(view._x0, process.grid[-1], view._noise).numpy()
    np.testing.assert_allclose(shown, expected, rtol=1e-6)
    # At t = 1 the VE SDE's x_t = x_0 + sigma_max z with sigma_max = 5.
    assert (shown - view._x0.numpy()).std() == pytest.approx(5.0, rel=0.15)


def test_ncsn_levels_suggested_from_the_data_and_used_only_on_request(qtbot, make_window):
    """Issue 17: on 2-D data the NCSN schedule's sigma_max 1 cannot carry points between the
    modes; the page says so below the field, suggests the data's range, and changes the values
    only when "Use the data's noise levels" is pressed. Image data suggests nothing."""
    import torch

    window = make_window()
    view = window.model_view
    _load(qtbot, window, "digits")
    assert view.schedule_picker.select("ncsn")
    form = view.schedule_picker.form("ncsn")
    assert form.field_hint("sigma_max") == "" and view.levels_button.isHidden()
    _load(qtbot, window, "toy2d")
    hint = form.field_hint("sigma_max")
    assert hint.startswith("⚠") and "Technique 1" in hint
    points = window.studio.dataset.data[:2000].double()
    largest = float(torch.cdist(points, points).max())
    assert f"{largest:.3g}" in hint and form.values()["sigma_max"] == 1.0  # hinted, not set
    assert not view.levels_button.isHidden()
    view.schedule_picker.select("linear")  # no sigma levels: no hints, no button
    assert view.levels_button.isHidden()
    view.schedule_picker.select("ncsn")
    qtbot.mouseClick(view.levels_button, Qt.MouseButton.LeftButton)
    values = form.values()
    assert values["sigma_max"] == pytest.approx(largest, rel=1e-2)
    assert values["sigma_min"] == pytest.approx(largest / 100, rel=1e-2)
    assert values["levels"] == 10  # the other fields kept
    assert form.field_hint("sigma_max").startswith("the data suggests")
    assert view.levels_button.isHidden()
