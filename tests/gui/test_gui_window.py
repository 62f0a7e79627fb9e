"""The main window: it opens fast on the embedded default, loads the engine in the background,
shows plugin failures, and remembers its settings."""

from __future__ import annotations

import os
import subprocess
import sys

from PySide6.QtWidgets import QComboBox

from diffstudio.gui.main_window import PAGES, MainWindow
from diffstudio.gui.settings import Preferences, open_settings
from diffstudio.plugin_manager import load_plugins

IMPORT_ERROR = """
import a_module_that_does_not_exist
"""


def test_importing_the_gui_loads_no_torch():
    code = ("import sys, diffstudio.gui.app; "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, "
            "[m for m in ('torch', 'diffusers') if m in sys.modules]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_building_the_window_loads_no_torch(tmp_path):
    """Every page, with remembered settings (an FID weights path among them), is built before
    torch is imported: the window paints at once and the engine loads in the background."""
    settings = tmp_path / "settings.ini"
    code = (
        "import sys\n"
        "from diffstudio.gui.app import create_application\n"
        "from diffstudio.gui.main_window import MainWindow\n"
        "from diffstudio.gui.settings import Preferences, open_settings\n"
        "app = create_application()\n"
        "preferences = Preferences(open_settings())\n"
        "preferences.set('fid_weights', '/somewhere/pt_inception.pth')\n"
        "window = MainWindow(preferences, start_engine=False)\n"
        "window.evaluate_view.weights_edit.setText('/elsewhere/weights.pth')\n"
        "window.show()\n"
        "app.processEvents()\n"
        "loaded = [m for m in ('torch', 'diffusers') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", DIFFSTUDIO_SETTINGS_FILE=str(settings))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_window_shows_before_the_engine_and_opens_on_the_default(qtbot, registry):
    window = MainWindow(Preferences(open_settings()), registry=registry)
    qtbot.addWidget(window)
    window.show()
    # Shown at once, busy until torch and the engine have loaded in the background.
    assert window.isVisible()
    assert not window.studio.ready
    assert window.busy_bar.isVisible()
    assert not window.train_view.train_button.isEnabled()
    qtbot.waitUntil(lambda: window.studio.ready, timeout=120_000)
    qtbot.waitUntil(lambda: not window.studio.running(), timeout=120_000)
    assert not window.busy_bar.isVisible()
    assert window.current_page() == "Train"
    assert [window.sidebar.item(i).text() for i in range(len(PAGES))] == list(PAGES)
    assert window.data_view.picker.current_id() == "digits"
    assert window.model_view.network_picker.current_id() == "unet"
    preset = window.model_view.network_picker.form().editors["preset"]
    assert isinstance(preset, QComboBox) and preset.currentData() == "digits-8"
    assert window.model_view.schedule_picker.current_id() == "cosine"  # the default, as on the CLI
    assert window.train_view.train_button.isEnabled()
    assert window.device_combo.itemData(0).id == "cpu"
    assert window.studio.device.id == "cpu" and window.studio.precision == "no"
    # The default dataset is shown on the Data page once the engine is ready.
    qtbot.waitUntil(lambda: window.data_view.preview is not None, timeout=60_000)
    assert window.data_view.preview.samples.shape[1:] == (1, 8, 8)
    assert "1,797" in window.data_view.info.text()
    # The forward-process explorer draws linear and cosine from the engine's schedules.
    assert {"linear", "cosine"} <= set(window.model_view.curves.curves)
    assert window.model_view.xt_view.image() is not None


def test_plugin_load_error_is_shown_with_name_and_traceback(make_window, install_fake_plugin):
    install_fake_plugin("acme-broken", "acme_broken", IMPORT_ERROR)
    registry = load_plugins(safe_mode=False)
    window = make_window(registry_override=registry)
    assert "1 failed" in window.plugin_badge()
    view = window.plugins_view
    assert "acme-broken" in view.summary.text() and "failed to load" in view.summary.text()
    details = view.details.toPlainText()
    assert "acme-broken" in details
    assert "a_module_that_does_not_exist" in details and "Traceback" in details
    warnings = [n for n in window.notifications.items if n.level == "warning"]
    assert any("acme-broken" in n.message and "Traceback" in n.details for n in warnings)
    # Everything else still works: the built-in samplers are offered.
    assert "ddim" in window.sample_view.sampler_picker.contributions


def test_a_slow_plugin_is_named_with_its_time_in_the_window(make_window, install_fake_plugin,
                                                           monkeypatch):
    import diffstudio.plugin_manager as plugin_manager

    monkeypatch.setattr(plugin_manager, "SLOW_PLUGIN_SECONDS", 0.1)
    install_fake_plugin("acme-slow", "acme_slow", "import time\ntime.sleep(0.2)\n")
    window = make_window(registry_override=load_plugins(safe_mode=False))
    warnings = [n for n in window.notifications.items if n.level == "warning"]
    assert any(n.message.startswith("Slow plugin(s)") and "acme-slow (0.2 s)" in n.message
               for n in warnings)


def test_settings_persist_between_launches(qtbot, make_window, tmp_path):
    window = make_window(workspace=tmp_path / "my-runs")
    window.resize(1300, 820)
    window.train_view.form.set_values({"steps": 1234, "batch_size": 32})
    window.data_view.picker.select("toy2d", {"name": "two-moons", "num_points": 321})
    window.show_page("Runs")
    window.close()
    assert not window.isVisible()

    saved = Preferences(open_settings())
    assert saved.workspace == tmp_path / "my-runs"
    assert saved.get_str("window/page") == "Runs"

    again = make_window(workspace=tmp_path / "my-runs")
    assert again.current_page() == "Runs"
    assert again.train_view.form.values()["steps"] == 1234
    assert again.train_view.form.values()["batch_size"] == 32
    assert again.data_view.picker.current_id() == "toy2d"
    values = again.data_view.picker.form().values()
    assert values["name"] == "two-moons" and values["num_points"] == 321
    # A 2-D dataset brings the MLP with it.
    assert again.model_view.network_picker.current_id() == "mlp"
    # The geometry is saved and restored (the offscreen screen clamps it, so not compared).
    assert Preferences(open_settings()).get_bytes("window/geometry") is not None


def test_errors_go_to_the_notification_area_with_details(make_window):
    window = make_window()
    try:
        raise RuntimeError("something broke")
    except RuntimeError as exc:
        window.notifications.exception(exc, source="test")
    area = window.notification_area
    assert "something broke" in area.latest_text()
    area.show_details(0)
    assert area.panel.isVisible()
    assert "Traceback" in area.details.toPlainText()
    area.dismiss()
    assert "something broke" not in area.latest_text()
    assert len(window.notifications.items) >= 2  # nothing lost (the engine-ready note too)


def test_every_page_fits_a_1024_by_700_window(make_window, qtbot):
    """No page may force the window wider or taller than 1024x700 (the smallest screen the
    product supports): a page's minimum size is the window's."""
    window = make_window()
    window.resize(1024, 700)
    for name in window.page_names():
        window.show_page(name)
        qtbot.wait(10)
        hint = window.minimumSizeHint()
        assert hint.width() <= 1024 and hint.height() <= 700, (name, hint)
    assert window.width() == 1024
