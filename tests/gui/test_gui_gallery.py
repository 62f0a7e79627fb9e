"""The Gallery page: it indexes the workspace's samples in the background, paints thumbnails
made off the main thread (small images enlarged nearest), filters, stars, deletes to the trash
with the index in sync, exports as a job, and recalls a sample into the Sample page, where
pressing Sample redraws it bit for bit."""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from diffstudio.app import ModelSource, SampleRequest, run_job, sample


def _workspace(tmp_path, trained_run, registry):
    workspace = tmp_path / "ws"
    run = workspace / trained_run.name
    shutil.copytree(trained_run, run)
    shutil.rmtree(run / "samples", ignore_errors=True)  # only this test's samples count
    out = run / "samples" / "ddpm-batch"
    run_job(sample(SampleRequest(ModelSource(run=str(run)), "ddpm", {"steps": 10},
                                 num_samples=4, seed=3, batch_size=2, device="cpu", save=True,
                                 out=str(out)), registry=registry))
    Image.new("RGB", (12, 12), (0, 150, 0)).save(workspace / "photo.png")
    return workspace, run, out


def test_gallery_browses_filters_stars_recalls_deletes_and_exports(
        qtbot, make_window, trained_run, registry, tmp_path, private_trash):
    workspace, run, out = _workspace(tmp_path, trained_run, registry)
    asked = []
    window = make_window(workspace=workspace, ask=lambda title, text: asked.append(title) or True)
    view = window.gallery_view
    window.show_page("Gallery")
    qtbot.waitUntil(lambda: len(view.all_records) == 5, timeout=60_000)
    assert view.model.rowCount() == 5
    assert view.sampler_combo.findData("ddpm") >= 0 and view.run_combo.findData(run.name) >= 0
    # Thumbnails are made in the pool for what is painted; an 8x8 digit becomes 128x128 with
    # square pixels.
    qtbot.waitUntil(lambda: len(view.model.pixmaps) == 5, timeout=60_000)
    digit = next(r for r in view.all_records if r.seed == 3)
    thumb = view.model.pixmaps[(digit.path, digit.mtime_ns)].toImage()
    assert (thumb.width(), thumb.height()) == (128, 128)
    assert thumb.pixel(0, 0) == thumb.pixel(15, 15)

    # Filters.
    view.seed_edit.setText("6")
    assert view.model.rowCount() == 1
    view.list.setCurrentIndex(view.model.index(0))
    record = view.current()
    assert record.seed == 6 and record.params["steps"] == 10
    table = {view.metadata.item(r, 0).text(): view.metadata.item(r, 1).text()
             for r in range(view.metadata.rowCount())}
    assert table["sampler"] == "ddpm" and table["seed"] == "6"
    # Star: kept in the index and across a rescan.
    view.toggle_star()
    assert view.index.get(record.path).starred
    view.seed_edit.setText("")
    view.starred_box.setChecked(True)
    assert view.model.rowCount() == 1
    view.refresh()
    qtbot.waitUntil(lambda: view.scan_job is None, timeout=60_000)
    assert view.model.rowCount() == 1 and view.model.records[0].starred
    view.starred_box.setChecked(False)

    # A PNG without metadata shows "unknown parameters" and cannot be recalled.
    view.seed_edit.setText("")
    row = next(i for i, r in enumerate(view.model.records) if not r.has_metadata)
    view.list.setCurrentIndex(view.model.index(row))
    assert "unknown parameters" in view.detail_title.text()
    assert not view.recall_button.isEnabled()

    # Export the shown samples as HTML (a job); again, the window asks before replacing.
    view.list.clearSelection()
    view.format_combo.setCurrentIndex(view.format_combo.findData("html"))
    assert view.export_selected(str(tmp_path / "export"))
    qtbot.waitUntil(lambda: view.export_job is None, timeout=60_000)
    assert (tmp_path / "export" / "gallery.html").is_file()
    assert "5 samples" in (tmp_path / "export" / "gallery.html").read_text()
    asked.clear()
    window_ask_no = view.ask
    view.ask = lambda title, text: False
    assert not view.export_selected(str(tmp_path / "export"))
    view.ask = window_ask_no

    # Delete to the trash: the file goes, the index and the view follow.
    view.list.setCurrentIndex(view.model.index(row))
    photo = workspace / "photo.png"
    assert view.delete_selected() == 1
    assert not photo.exists() and view.index.get(photo) is None
    assert list((private_trash / "files").glob("photo*.png"))  # the test's own trash
    assert view.model.rowCount() == 4

    # Recall seed 6 (the second of the batch seeds 5, 6) and sample it again in the window.
    view.seed_edit.setText("6")
    view.list.setCurrentIndex(view.model.index(0))
    assert view.recall_selected()
    qtbot.waitUntil(lambda: window.current_page() == "Sample", timeout=30_000)
    sample_view = window.sample_view
    options = sample_view.options.values()
    assert (options["seed"], options["num_samples"], options["batch_size"]) == (5, 2, 2)
    assert sample_view.sampler_picker.current_id() == "ddpm"
    assert sample_view.current_run() == str(run.resolve())
    assert sample_view.build_request().params["steps"] == 10
    assert sample_view.start()
    qtbot.waitUntil(lambda: sample_view.job is None, timeout=120_000)
    with np.load(out / "samples.npz") as saved:
        np.testing.assert_array_equal(sample_view.outcome.samples[1], saved["samples"][3])
    # Saving them from the Sample page adds them to the Gallery.
    sample_view.save()
    qtbot.waitUntil(lambda: len(view.all_records) == 6, timeout=60_000)

    # Another workspace: nothing of the old one stays on the page.
    window.studio.set_workspace(tmp_path / "empty")
    assert view.model.rowCount() == 0 and view.current() is None
    qtbot.waitUntil(lambda: view.scan_job is None, timeout=30_000)
    assert view.model.rowCount() == 0 and "0</b> of 0" in view.summary.text()
    view.model.wait()


def test_a_dropped_png_is_shown_and_recalled(qtbot, make_window, trained_run, registry,
                                             tmp_path):
    _, _, out = _workspace(tmp_path, trained_run, registry)
    window = make_window(workspace=tmp_path / "elsewhere")
    view = window.gallery_view
    assert window.current_page() == "Train"
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(out / "sample-000004.png"))])
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, data,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    assert window.current_page() == "Gallery"
    shown = view.current()
    assert shown is not None and shown.seed == 4 and view.recall_button.isEnabled()
    assert "ddpm" in view.detail_title.text()
    assert view.recall_selected()
    qtbot.waitUntil(lambda: window.current_page() == "Sample", timeout=30_000)
    assert window.sample_view.options.values()["seed"] == 3
    view.model.wait()


def test_the_sample_page_exports_its_result_saved_or_not(qtbot, make_window, trained_run,
                                                         tmp_path):
    """The Sample page's Export… is the Gallery's export job: an unsaved result is written
    (pixel for pixel as Save would) in the job, then exported; a saved one exports its PNGs."""
    import zipfile

    from diffstudio.engine.pngmeta import read_png_metadata

    run = tmp_path / "workspace" / trained_run.name  # saving must not change the fixture
    shutil.copytree(trained_run, run)
    asked = []
    window = make_window(ask=lambda title, text: asked.append(title) or False)
    window.show_page("Sample")
    view = window.sample_view
    assert not view.exporter.export_button.isEnabled()  # nothing to export yet
    view.select_run(str(run))
    view.sampler_picker.select("ddim", {"steps": 3})
    view.options.set_values({"num_samples": 3, "seed": 21, "live_view": False})
    assert view.start()
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    assert view.exporter.export_button.isEnabled() and view.outcome.paths == []

    out = tmp_path / "out"
    view.exporter.format_combo.setCurrentIndex(view.exporter.format_combo.findData("png"))
    assert view.export_result(str(out))
    assert not view.exporter.export_button.isEnabled()  # one export at a time
    assert window.studio.jobs.get("export-sample") is view.exporter.job
    qtbot.waitUntil(lambda: not view.exporter.is_running(), timeout=60_000)
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [f"{run.name}__ddim-live__sample-{seed:06d}.png"
                                       for seed in (21, 22, 23)]
    meta = read_png_metadata(files[1])
    assert (meta["seed"], meta["sampler"], meta["index"]) == (22, "ddim", 1)
    assert "Exported 3 samples" in view.exporter.status.text()
    # Exporting again into the same folder asks; refused, nothing starts.
    assert not view.export_result(str(out)) and asked == ["Replace files?"]
    assert view.exporter.job is None
    # The exported PNG is the one Save writes: compare after saving.
    view.save()
    qtbot.waitUntil(lambda: len(view.outcome.paths) == 3 and "save" not in window.studio.jobs,
                    timeout=60_000)
    saved = view.outcome.paths[1]
    assert files[1].read_bytes() == saved.read_bytes()

    # A saved result exports its own files, named after their folder, here as a zip.
    view.exporter.format_combo.setCurrentIndex(view.exporter.format_combo.findData("zip"))
    assert view.export_result(str(out))
    qtbot.waitUntil(lambda: not view.exporter.is_running(), timeout=60_000)
    with zipfile.ZipFile(out / "gallery.zip") as archive:
        names = archive.namelist()
    assert f"png/{run.name}__{saved.parent.name}__sample-000022.png" in names
    assert {"contact-sheet.png", "gallery.html"} <= set(names)


def test_the_date_range_queries_the_index_and_groups_have_header_rows(
        qtbot, make_window, trained_run, registry, tmp_path):
    import os
    import time

    from diffstudio.gui.views.gallery_view import GroupHeader

    workspace, run, out = _workspace(tmp_path, trained_run, registry)
    ddim = run / "samples" / "ddim-batch"
    run_job(sample(SampleRequest(ModelSource(run=str(run)), "ddim", {"steps": 3},
                                 num_samples=2, seed=40, batch_size=2, device="cpu", save=True,
                                 out=str(ddim)), registry=registry))
    old = time.time() - 10 * 86400  # the ddpm samples were made ten days ago
    for path in out.glob("sample-*.png"):
        os.utime(path, (old, old))
    window = make_window(workspace=workspace)
    view = window.gallery_view
    window.show_page("Gallery")
    qtbot.waitUntil(lambda: len(view.all_records) == 7, timeout=60_000)

    view.date_combo.setCurrentIndex(view.date_combo.findData("7d"))
    qtbot.waitUntil(lambda: len(view.all_records) == 3, timeout=30_000)  # 2 ddim + the photo
    assert {r.seed for r in view.all_records} == {40, 41, None}
    assert "<b>3</b> of 7 samples (3 in the last 7 days)" in view.summary.text()
    assert not view.from_edit.isEnabled()
    view.date_combo.setCurrentIndex(view.date_combo.findData("range"))
    assert view.from_edit.isEnabled() and view.to_edit.isEnabled()
    ten_days_ago = view.to_edit.date().addDays(-10)
    view.from_edit.setDate(ten_days_ago.addDays(-1))
    view.to_edit.setDate(ten_days_ago.addDays(1))
    qtbot.waitUntil(lambda: view.scan_job is None and len(view.all_records) == 4,
                    timeout=30_000)
    assert {r.sampler for r in view.all_records} == {"ddpm"}
    view.date_combo.setCurrentIndex(view.date_combo.findData("all"))
    qtbot.waitUntil(lambda: view.scan_job is None and len(view.all_records) == 7,
                    timeout=30_000)

    # Group by sampler: a header row per group, on a line of its own across the list.
    view.group_combo.setCurrentIndex(view.group_combo.findData("sampler"))
    entries = view.model.entries
    headers = [(row, e) for row, e in enumerate(entries) if isinstance(e, GroupHeader)]
    assert [(e.title, e.count) for _, e in headers] == [
        ("ddim", 2), ("ddpm", 4), ("(unknown parameters)", 1)]
    assert view.model.rowCount() == 10 and len(view.model.records) == 7
    qtbot.waitUntil(lambda: view.list.visualRect(view.model.index(9)).height() > 0)
    viewport = view.list.viewport().width()
    for row, header in headers:
        rect = view.list.visualRect(view.model.index(row))
        first = view.list.visualRect(view.model.index(row + 1))
        assert rect.width() > viewport - 2 * view.delegate.cell  # no cell fits beside it
        assert rect.width() <= viewport and first.top() >= rect.bottom()  # samples below
        assert view.model.index(row).data() == header.text()
    # A header is no sample: not selectable, not exported, not dragged.
    view.list.selectAll()
    assert len(view.selected()) == 7
    assert not any(view.list.selectionModel().isSelected(view.model.index(row))
                   for row, _ in headers)
    assert "<b>7</b> of 7" in view.summary.text()
    view.group_combo.setCurrentIndex(view.group_combo.findData(None))
    assert view.model.rowCount() == 7 and view.list.uniformItemSizes()
    view.model.wait()


def test_the_detail_pane_shows_a_samples_nearest_training_images_when_evaluated(
        qtbot, make_window, trained_run, registry, tmp_path):
    """An evaluation of the sample's folder that retrieved its neighbours (written as the
    Evaluate page writes it) shows them in the detail pane with the retrieval grid; a sample
    no evaluation covers says how to compute them."""
    import json

    workspace, _, out = _workspace(tmp_path, trained_run, registry)
    evaluation = {
        "format": "diffstudio-evaluation/1", "n": 4,
        "source": {"kind": "folder", "folder": str(out.resolve()), "read_from": "samples.npz",
                   "seeds": [3, 6]},
        "reference": {"dataset": "digits", "params": {}, "size": 1797, "used": 1797},
        "retrieval": {"pixel": {"k": 5, "indices": [[10 + row, 20, 30, 40, 50]
                                                    for row in range(4)],
                                "distances": [[0.5, 1, 2, 3, 4]] * 4}},
        "memorization": {"threshold": 1.0, "ratios": [2.0, 0.4, 2.0, 2.0], "flagged": [1]}}
    (out / "evaluation-20260101-000000.json").write_text(json.dumps(evaluation))
    window = make_window(workspace=workspace)
    view = window.gallery_view
    window.show_page("Gallery")
    qtbot.waitUntil(lambda: len(view.all_records) == 5, timeout=60_000)
    view.detail_tabs.setCurrentIndex(1)

    view.seed_edit.setText("4")  # the second sample of the folder: row 1, flagged
    view.list.setCurrentIndex(view.model.index(0))
    qtbot.waitUntil(lambda: view.neighbours_grid.k == 5, timeout=30_000)
    note = view.neighbours_note.text()
    assert "5 nearest training images" in note and "evaluation-20260101-000000.json" in note
    assert "Flagged by the memorisation check" in note
    grid = view.neighbours_grid
    assert grid.order() == [0] and grid.name(0) == "sample"
    assert "training image #11" in grid.tooltip_for(0, 1) and "pixel" in grid.tooltip_for(0, 1)
    assert "ratio 0.400" in grid.tooltip_for(0, 0)
    assert grid.isVisible() and grid.width() <= view.neighbours_scroll.viewport().width()

    # The photo: no evaluation holds it; the note says how to compute them.
    view.seed_edit.setText("")
    row = next(i for i, r in enumerate(view.model.records) if not r.has_metadata)
    view.list.setCurrentIndex(view.model.index(row))
    qtbot.waitUntil(lambda: "Evaluate page" in view.neighbours_note.text(), timeout=30_000)
    assert grid.k == 0 and "Memorisation check" in view.neighbours_note.text()
    qtbot.waitUntil(lambda: view.neighbours_job is None, timeout=30_000)
    view.model.wait()
