"""The Runs page manages runs: rename, move to the trash (after asking), and a list that
follows the workspace without Refresh."""

from __future__ import annotations

import shutil

import pytest

from diffstudio.engine.runs import Run


def test_rename_trash_and_the_list_following_the_workspace(make_window, trained_run, tmp_path,
                                                           private_trash, qtbot):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    shutil.copytree(trained_run, workspace / "first")
    window = make_window(workspace=workspace)
    runs = window.runs_view
    qtbot.waitUntil(lambda: [r.name for r in runs.runs] == ["first"], timeout=60_000)
    # A run made elsewhere (the CLI, a file manager) appears by itself.
    shutil.copytree(trained_run, workspace / "second")
    qtbot.waitUntil(lambda: sorted(r.name for r in runs.runs) == ["first", "second"],
                    timeout=60_000)

    assert runs.select_path(str(workspace / "first"))
    runs.get_text = lambda title, label, value: "renamed"
    runs.rename_button.click()
    qtbot.waitUntil(lambda: sorted(r.name for r in runs.runs) == ["renamed", "second"],
                    timeout=60_000)
    assert runs.selected() is not None and runs.selected().name == "renamed"

    asked = []
    runs.ask = lambda title, text: asked.append(text) or False  # No: nothing happens
    runs.delete_button.click()
    assert asked and (workspace / "renamed").exists()
    runs.ask = lambda title, text: True
    runs.delete_button.click()
    qtbot.waitUntil(lambda: [r.name for r in runs.runs] == ["second"], timeout=60_000)
    assert (private_trash / "files" / "renamed" / "config.json").is_file()

    # A run another process trains cannot be renamed or trashed from here.
    with Run(workspace / "second").writer_lock():
        runs.refresh()
        qtbot.waitUntil(lambda: bool(runs.runs and runs.runs[0].training), timeout=60_000)
        assert runs.select_path(str(workspace / "second"))
        assert not runs.rename_button.isEnabled() and not runs.delete_button.isEnabled()


def test_notes_keep_unsaved_text_until_saved(make_window, trained_run, tmp_path, qtbot):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    shutil.copytree(trained_run, workspace / "first")
    shutil.copytree(trained_run, workspace / "second")
    window = make_window(workspace=workspace)
    runs = window.runs_view
    qtbot.waitUntil(lambda: len(runs.runs) == 2, timeout=60_000)
    first, second = str(workspace / "first"), str(workspace / "second")
    assert runs.select_path(first)
    assert not runs.save_note_button.isEnabled()
    runs.note_edit.setPlainText("try the cosine schedule")
    assert runs.save_note_button.isEnabled() and "unsaved" in runs.note_status.text()
    assert not Run(first).note_path.exists()  # nothing written without Save
    # Another run, a rescan, a rename: the typed text is still there when it comes back.
    assert runs.select_path(second)
    assert runs.note_edit.toPlainText() == ""
    runs.refresh()
    qtbot.waitUntil(lambda: runs._scan_job is None, timeout=60_000)
    runs.get_text = lambda title, label, value: "renamed"
    assert runs.select_path(first)
    runs.rename_button.click()
    renamed = str(workspace / "renamed")
    qtbot.waitUntil(lambda: runs.selected() is not None and runs.selected().path == renamed,
                    timeout=60_000)
    assert runs.note_edit.toPlainText() == "try the cosine schedule"
    assert runs.save_note()
    assert Run(renamed).read_note() == "try the cosine schedule"
    qtbot.waitUntil(lambda: any(r.note for r in runs.runs), timeout=60_000)
    row = next(i for i, r in enumerate(runs.runs) if r.path == renamed)
    assert runs.table.item(row, runs.table.columnCount() - 1).text() == \
        "try the cosine schedule"
    assert not runs.save_note_button.isEnabled()
    # A refused note says why and keeps the text.
    runs.note_edit.setPlainText("x" * (Run.NOTE_LIMIT + 10))
    assert not runs.save_note()
    assert "Not saved" in runs.note_status.text()
    assert len(runs.note_edit.toPlainText()) == Run.NOTE_LIMIT + 10


def test_new_run_with_its_settings(make_window, trained_run, tmp_path, qtbot):
    import json

    workspace = tmp_path / "ws"
    workspace.mkdir()
    shutil.copytree(trained_run, workspace / "first")
    config_path = workspace / "first" / "config.json"
    config = json.loads(config_path.read_text())
    config["train"]["learning_rate"] = 7e-4  # not the form's default: it must come from the run
    config_path.write_text(json.dumps(config))
    window = make_window(workspace=workspace)
    runs, train = window.runs_view, window.train_view
    qtbot.waitUntil(lambda: len(runs.runs) == 1, timeout=60_000)
    assert runs.select_path(str(workspace / "first"))
    window.show_page("Runs")
    runs.new_from_button.click()
    qtbot.waitUntil(lambda: "as a new run" in train.status.text(), timeout=30_000)
    assert window.current_page() == "Train"
    assert train.resume_dir is None  # a new run, not continuing this one
    values = train.form.values()
    for name in ("learning_rate", "batch_size", "steps"):
        assert values[name] == config["train"][name], name
    assert window.data_view.picker.current_id() == config["train"]["dataset"]
    assert window.model_view.network_picker.current_id() == config["train"]["network"]
    assert all(train.form.editors[name].isEnabled() for name in ("batch_size", "learning_rate"))

    # A run whose network plugin is not available is refused, not half-loaded.
    config["train"]["network"] = "acme-missing-net"
    config_path.write_text(json.dumps(config))
    train.form.set_values({"learning_rate": 1e-3})
    window.open_run_for_training(str(workspace / "first"), True)
    qtbot.waitUntil(lambda: any("acme-missing-net" in n.message
                                for n in window.studio.notifications.items), timeout=30_000)
    assert train.form.values()["learning_rate"] == 1e-3  # nothing changed


def test_selected_runs_overlay_their_loss_curves(make_window, trained_run, tmp_path, qtbot):
    import json

    workspace = tmp_path / "ws"
    workspace.mkdir()
    for name in ("first", "second"):
        shutil.copytree(trained_run, workspace / name)
    window = make_window(workspace=workspace)
    runs = window.runs_view
    qtbot.waitUntil(lambda: len(runs.runs) == 2, timeout=60_000)
    assert runs.select_path(str(workspace / "first"))
    qtbot.waitUntil(lambda: list(runs.curves_plot.curves) == ["first"], timeout=30_000)
    runs.table.selectAll()
    qtbot.waitUntil(lambda: sorted(runs.curves_plot.curves) == ["first", "second"],
                    timeout=30_000)
    assert runs.selected() is not None  # the actions still have one run to act on
    # Each curve is the run's logged loss (smoothed as on the Train page).
    from diffstudio.gui.plots import ema_smooth

    logged = [json.loads(line) for line in
              (workspace / "second" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logged if "loss" in r]
    curve = runs.curves_plot.curves["second"]
    xs, ys = curve.xData, curve.yData  # as given (getData is log10 on a log axis)
    assert len(xs) == len(losses)
    assert ys == pytest.approx(ema_smooth(losses, 0.8))
    # A file that grows (a training writing it) is read again; an unchanged one from cache.
    cached = runs._curve_cache[str(workspace / "first")]
    with (workspace / "second" / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps({"step": 100, "loss": 0.01}) + "\n")
    runs.load_curves()
    qtbot.waitUntil(lambda: runs.curves_plot.curves["second"].xData[-1] == 100,
                    timeout=30_000)
    assert runs._curve_cache[str(workspace / "first")] is cached
