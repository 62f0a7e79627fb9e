"""The menu bar, the shortcuts and the preferences dialog do what the pages' own controls do."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QDesktopServices

from diffstudio.gui.main_window import PAGES
from diffstudio.gui.preferences_dialog import PreferencesDialog


def test_the_menus_and_their_shortcuts(make_window, qtbot):
    window = make_window()
    menus = [action.text().replace("&", "") for action in window.menuBar().actions()]
    assert menus == ["File", "Edit", "View", "Run", "Help"]
    shortcuts = dict(window.menus.shortcut_rows())
    assert shortcuts["Quit"] == "Ctrl+Q" and shortcuts["Quick start"] == "F1"
    assert shortcuts["Stop"] == "Esc" and "Ctrl+Return" in shortcuts["Run this page's job"]
    for index, name in enumerate(PAGES[:9]):  # Ctrl+1..: the pages, in the sidebar's order
        assert shortcuts[name] == f"Ctrl+{index + 1}"
        qtbot.keyClick(window, Qt.Key(Qt.Key.Key_1 + index), Qt.KeyboardModifier.ControlModifier)
        assert window.current_page() == name


def test_ctrl_enter_runs_the_current_pages_job_and_esc_stops_it(make_window, qtbot):
    window = make_window()
    window.show_page("Data")
    assert window.menus.run_current()  # the Data page's "Load and preview"
    qtbot.waitUntil(lambda: window.studio.dataset is not None, timeout=60_000)
    window.show_page("Runs")  # a page without a job says where jobs run
    assert not window.menus.run_current()
    assert "Ctrl+Enter runs the job of" in window.notifications.items[-1].message
    window.show_page("Sample")  # nothing chosen to sample: the button is off, so is the key
    assert not window.sample_view.sample_button.isEnabled()
    assert not window.menus.run_current()
    assert not window.menus.stop_current()  # nothing running: nothing to stop


def test_preferences_edit_the_values_where_the_window_keeps_them(make_window, tmp_path):
    window = make_window()
    dialog = PreferencesDialog(window)
    assert dialog.workspace_edit.text() == str(window.studio.workspace)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dialog.workspace_edit.setText(str(elsewhere))
    dialog.weights_edit.setText(str(tmp_path / "pt_inception.pth"))
    dialog.fps_spin.setValue(4)
    dialog.theme_combo.setCurrentIndex(dialog.theme_combo.findData("dark"))
    before = window.sample_view.options.values()
    dialog.apply()
    assert window.studio.workspace == elsewhere
    assert window.evaluate_view.weights_edit.text() == str(tmp_path / "pt_inception.pth")
    assert window.preferences.get_str("fid_weights") == str(tmp_path / "pt_inception.pth")
    after = window.sample_view.options.values()
    assert after["live_fps"] == 4  # ... and nothing else on the Sample page changed
    assert {k: v for k, v in after.items() if k != "live_fps"} == \
        {k: v for k, v in before.items() if k != "live_fps"}
    assert window.preferences.get_str("theme") == "dark"
    assert window.menus.actions["theme:dark"].isChecked()
    dialog.deleteLater()


def test_about_names_the_versions_the_engine_found(make_window):
    import torch

    window = make_window()
    text = window.menus.about_text()
    assert f"<td>torch</td><td>{torch.__version__}</td>" in text
    assert "<td>CUDA</td>" in text and "<td>Qt</td>" in text


def test_opening_something_that_is_not_a_run_says_so(make_window, tmp_path):
    window = make_window()
    window.menus.open_run_folder(str(tmp_path))
    assert "is not a diffstudio run" in window.notifications.items[-1].message


def test_open_folder_without_a_file_manager_says_so_in_the_window(make_window, trained_run,
                                                                 monkeypatch, qtbot):
    window = make_window(workspace=trained_run.parent)
    runs = window.runs_view
    runs.refresh()
    qtbot.waitUntil(lambda: bool(runs.runs), timeout=60_000)
    assert runs.select_path(str(trained_run))
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: False))
    runs.open_button.click()
    assert "No file manager could be started" in window.notifications.items[-1].message


def test_fields_that_do_not_apply_are_disabled_and_say_why(make_window):
    window = make_window()
    evaluate = window.evaluate_view
    evaluate.from_folder.setChecked(True)  # the samples exist: nothing is generated
    for name in ("seed", "sample_batch_size", "step_sweep"):
        assert not evaluate.options.editors[name].isEnabled(), name
        assert "only when generating from a run" in evaluate.options.editors[name].toolTip()
    assert evaluate.options.editors["num_samples"].isEnabled()
    evaluate.from_run.setChecked(True)
    assert evaluate.options.editors["seed"].isEnabled()
    # Label dropout follows the network's class_conditional box.
    picker = window.model_view.network_picker
    picker.select("unet", {"class_conditional": False})
    dropout = window.train_view.form.editors["label_dropout"]
    assert not dropout.isEnabled() and "class-conditional" in dropout.toolTip()
    picker.form().editors["class_conditional"].setChecked(True)
    assert dropout.isEnabled()
    picker.form().editors["class_conditional"].setChecked(False)
    window.train_view.new_run()  # enables the run's fields again, but not what cannot apply
    assert not dropout.isEnabled()
