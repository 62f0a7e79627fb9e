"""The 2-D lab: the seed's experiment in one click, the mode weights beside the truth."""

from __future__ import annotations

import pytest

from diffstudio.app.events import Done
from diffstudio.app.lab import LabRequest, langevin_lab, mode_fractions


def test_the_lab_recovers_the_weights_with_annealed_langevin_and_not_with_plain(registry):
    events = list(langevin_lab(LabRequest(num_points=600), registry=registry))
    outcome = events[-1].result if isinstance(events[-1], Done) else None
    assert outcome is not None
    by_id = {entry.sampler: entry for entry in outcome.entries}
    annealed, plain = by_id["annealed-langevin"].fractions, by_id["langevin"].fractions
    assert annealed[0] == pytest.approx(0.8, abs=0.06) and annealed[1] == pytest.approx(0.2,
                                                                                      abs=0.06)
    assert abs(plain[0] - 0.8) > 0.15 and sum(plain) > 0.9  # both modes, wrong weights
    assert "sigma_max" in by_id["annealed-langevin"].reasons  # the data's suggestion was used


def test_mode_fractions_counts_points_within_the_radius():
    points = [[5, 5], [5, 7.9], [-5, -5], [0, 0]]
    assert mode_fractions(points) == (0.5, 0.25)


def test_the_lab_tab_shows_both_samplers_with_their_fractions(make_window, qtbot):
    window = make_window()
    lab = window.sample_view.lab
    window.show_page("Sample")
    window.sample_view.tabs.setCurrentWidget(lab)
    lab.points_spin.setValue(300)
    assert lab.start()
    assert not lab.run_button.isEnabled() and lab.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: lab.job is None, timeout=240_000)
    for sampler in ("annealed-langevin", "langevin"):
        caption = lab.captions[sampler].text()
        assert "near (5, 5)" in caption and "truth <b>0.8 / 0.2</b>" in caption, caption
        assert lab.plots[sampler].particles.data.size == 300
    assert lab.status.text().startswith("Done")
    assert lab.run_button.isEnabled()
