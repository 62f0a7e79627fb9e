"""The Sample page's other tabs as tools of their own: Compare and Interpolation show progress,
save like samples (PNGs with metadata the Gallery indexes and recall reads), the left form
follows the tab shown, and Ctrl+Enter / Esc press the shown tab's buttons."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from diffstudio.app.recall import recall_request
from diffstudio.engine.pngmeta import read_png_metadata
from diffstudio.errors import ConfigError


@pytest.fixture
def own_run(tmp_path, trained_run):
    """A copy of the session's run: saving writes into its samples folder."""
    run = tmp_path / "workspace" / "digits-copy"
    shutil.copytree(trained_run, run)
    return run


def test_compare_shows_progress_and_saves_like_samples(qtbot, make_window, own_run):
    window = make_window()
    view = window.sample_view
    view.select_run(str(own_run))
    view.tabs.setCurrentWidget(view.compare)
    view.sampler_picker.form("ddim").set_values({"steps": 6})
    view.sampler_picker.form("ddpm").set_values({"steps": 8})
    view.options.set_values({"num_samples": 3, "seed": 5})
    seen: list[str] = []
    assert not view.compare.save_button.isEnabled()  # nothing to save yet
    assert view.compare.start()
    view.compare.job.progress_ready.connect(lambda: seen.append(view.compare.status.text()))
    qtbot.waitUntil(lambda: view.compare.job is None, timeout=120_000)
    assert any("compare" in text and "step" in text for text in seen), seen
    assert len(view.compare.entries) == 2 and view.compare.save_button.isEnabled()

    assert view.compare.save()
    qtbot.waitUntil(lambda: view.compare.saved_to is not None, timeout=60_000)
    folder = own_run.resolve() / "samples" / view.compare.saved_to.rsplit("/", 1)[-1]
    assert folder.is_dir() and folder.name.startswith("compare-")
    rows = json.loads((folder / "comparison.json").read_text())["rows"]
    assert [row["sampler"] for row in rows] == ["ddpm", "ddim"] or \
        [row["sampler"] for row in rows] == ["ddim", "ddpm"]
    assert (folder / "comparison.png").is_file()
    for row in rows:
        pngs = sorted((folder / row["folder"]).glob("*.png"))
        assert len(pngs) == 3
        meta = read_png_metadata(pngs[0])
        assert meta["sampler"] == row["sampler"] and meta["seed"] == 5
        # Recall regenerates it: same run, sampler, steps and seed, batch as drawn.
        recall = recall_request(pngs[0])
        assert recall.request.sampler == row["sampler"] and recall.request.seed == 5
        assert recall.request.params["steps"] == row["params"]["steps"]
        assert recall.exact
    # Saving again into the same folder is refused (never overwritten without asking).
    from diffstudio.app.sample import save_comparison

    with pytest.raises(ConfigError, match="already exists"):
        save_comparison(view.compare.entries, folder)


def test_interpolation_shows_progress_cancels_and_saves(qtbot, make_window, own_run):
    window = make_window()
    window.show_page("Sample")
    view = window.sample_view
    view.select_run(str(own_run))
    view.tabs.setCurrentWidget(view.interpolation)
    panel = view.interpolation
    panel.form.set_values({"seed_a": 1, "seed_b": 2, "frames": 4, "steps": 8})
    seen: list[str] = []
    assert panel.start()
    panel.job.progress_ready.connect(lambda: seen.append(panel.status.text()))
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    assert any(text.startswith("Decoding: interpolate") for text in seen), seen
    assert panel.save_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert panel.save()
    qtbot.waitUntil(lambda: panel.saved_to is not None, timeout=60_000)
    folder = own_run.resolve() / "samples" / panel.saved_to.rsplit("/", 1)[-1]
    frames = sorted(folder.glob("frame-*.png"))
    assert len(frames) == 4 and (folder / "row.png").is_file()
    meta = read_png_metadata(frames[2])
    assert meta["interpolation"] == {"seed_a": 1, "seed_b": 2, "points": 4}
    assert meta["alpha"] == pytest.approx(2 / 3) and meta["steps"] == 8
    with np.load(folder / "interpolation.npz") as saved:
        assert np.allclose(saved["samples"], panel.result.samples)
    with pytest.raises(ConfigError, match="Interpolation tab"):
        recall_request(frames[2])  # a point on a path is not redrawn from a seed

    # More DDIM steps than the run's schedule has are refused on the field, before starting.
    limit = view.run_timesteps()
    assert limit == 1000
    panel.form.set_values({"frames": 4, "steps": limit + 1})
    assert not panel.start() and panel.job is None
    assert "at most 1000" in panel.form.field_message("steps")
    assert panel.status.text().startswith("Not started")

    # A long decode is cancelled from the tab (and by Esc, which presses the tab's Cancel).
    panel.form.set_values({"frames": 16, "steps": 1000})
    assert panel.start()
    qtbot.waitUntil(lambda: panel.cancel_button.isEnabled(), timeout=10_000)
    assert window.menus.stop_current()
    qtbot.waitUntil(lambda: panel.job is None, timeout=60_000)
    assert panel.status.text().startswith("Cancelled")
    assert panel.result is None and not panel.save_button.isEnabled()  # no stale row to save


def test_the_left_form_follows_the_tab_and_ctrl_enter_runs_its_job(qtbot, make_window,
                                                                    trained_run):
    window = make_window()
    window.show_page("Sample")
    view = window.sample_view
    view.select_run(str(trained_run))
    assert view.current_tab() == "live"
    assert view.sampler_box.isEnabled() and view.options.editors["batch_size"].isEnabled()
    assert not view.scope_note.isVisible()
    assert not view.live_buttons.isHidden()

    view.tabs.setCurrentWidget(view.compare)
    # Live's Sample / Save hide under the other tabs (they have their own buttons).
    assert view.live_buttons.isHidden()
    assert view.sampler_box.isEnabled() and not view.class_box.isEnabled()
    assert not view.options.editors["batch_size"].isEnabled()
    assert view.options.editors["num_samples"].isEnabled()
    assert "Compare" in view.scope_note.text() and view.scope_note.isVisible()
    assert view.tab_buttons()[0] is view.compare.compare_button
    # Clicking a sampler in the list shows its form on the left.
    for row in range(view.compare.samplers_list.count()):
        item = view.compare.samplers_list.item(row)
        if item.data(256) == "ddpm":
            view.compare.samplers_list.setCurrentItem(item)
    assert view.sampler_picker.current_id() == "ddpm"

    view.tabs.setCurrentWidget(view.interpolation)
    assert not view.sampler_box.isEnabled() and not view.options_box.isEnabled()
    assert view.model_box.isEnabled()

    view.tabs.setCurrentWidget(view.lab)
    assert not view.model_box.isEnabled() and "2-D lab" in view.scope_note.text()
    assert window.menus.run_current()  # presses the lab's Run, not Sample
    assert view.lab.job is not None and view.job is None
    assert window.menus.stop_current()
    qtbot.waitUntil(lambda: view.lab.job is None, timeout=60_000)

    view.tabs.setCurrentIndex(0)
    assert view.sampler_box.isEnabled() and view.options.editors["batch_size"].isEnabled()
    assert not view.live_buttons.isHidden()
    # A live sampling still running is cancellable from another tab: its buttons stay.
    view.sampler_picker.select("ddpm", {"steps": 1000})
    view.options.set_values({"num_samples": 2, "live_view": False})
    assert view.start()
    view.tabs.setCurrentWidget(view.compare)
    assert not view.live_buttons.isHidden() and view.cancel_button.isEnabled()
    view.cancel()
    qtbot.waitUntil(lambda: view.job is None, timeout=60_000)
    assert view.live_buttons.isHidden()


def test_the_compare_list_shows_every_sampler_uncut(qtbot, make_window):
    window = make_window()
    window.resize(1024, 700)
    window.show_page("Sample")
    view = window.sample_view
    view.tabs.setCurrentWidget(view.compare)
    listing = view.compare.samplers_list
    count = listing.count()
    assert count >= 4
    shown = min(count, 8)
    assert listing.height() >= shown * listing.sizeHintForRow(0)


def test_sample_images_hover_enlarge_copy_and_save(qtbot, make_window, trained_run, tmp_path):
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QGuiApplication

    window = make_window()
    window.resize(1440, 900)
    window.show_page("Sample")
    view = window.sample_view
    view.select_run(str(trained_run))
    view.sampler_picker.select("ddim", {"steps": 5})
    view.options.set_values({"num_samples": 6, "seed": 11, "live_view": False})
    assert view.start()
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    grid = view.x_view
    assert grid.tile_count() == 6
    # Every tile is found where it is drawn, and says its own seed.
    for index in range(6):
        centre = grid.tile_center(index)
        assert grid.index_at(QPointF(centre)) == index
        assert grid.tip(index).startswith(f"sample {index + 1} · seed {11 + index}")
        assert "ddim: " in grid.tip(index) and "steps=5" in grid.tip(index)
    assert grid.index_at(QPointF(1, 1)) is None  # the margin is no sample
    # A click enlarges the sample under the mouse.
    qtbot.mouseClick(grid, Qt.MouseButton.LeftButton, pos=grid.tile_center(4))
    assert view.enlarged is not None and "seed 15" in view.enlarged.windowTitle()
    view.enlarged.close()
    # Right click: the menu copies the parameters (the PNG's metadata) or saves the image.
    view._sample_menu(2, grid.mapToGlobal(grid.tile_center(2)))
    assert [a.text() for a in view.sample_menu.actions()][:3] == [
        "Enlarge", "Copy parameters", "Copy seed (13)"]
    view.sample_menu.close()
    text = view.copy_sample_parameters(2)
    assert QGuiApplication.clipboard().text() == text and '"seed": 13' in text
    view.save_sample(2, str(tmp_path / "one"))
    written = tmp_path / "one.png"
    qtbot.waitUntil(written.is_file, timeout=30_000)
    meta = read_png_metadata(written)
    assert meta["seed"] == 13 and meta["sampler"] == "ddim" and meta["index"] == 2
    from PIL import Image

    with Image.open(written) as image:
        assert image.size == (8, 8)
    # A new sampling run clears the tiles: no stale tooltip points at the old samples.
    view.options.set_values({"live_view": True})
    assert view.start()
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    assert grid.tile_count() == len(view.outcome.samples)  # the new result's tiles...
    view._on_model_loaded(view.summary)  # ...and a new job's model clears them at once
    assert grid.tile_count() == 0 and grid.image() is None
