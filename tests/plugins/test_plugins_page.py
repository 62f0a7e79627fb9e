"""The Plugins page as a manager, offscreen: Enabled toggles saved in the settings, installs in a
QProcess into a throw-away environment with pip's output streamed while the window keeps
painting, refusals named, the restart banner."""

from __future__ import annotations

import itertools
import sys
import time

import pytest
from plugin_venv import venv_python, venv_site
from PySide6.QtCore import Qt, QTimer

from diffstudio.gui.forms import ContributionPicker
from diffstudio.gui.settings import Preferences, open_settings
from diffstudio.gui.studio import Studio
from diffstudio.gui.views.plugins_view import ENABLED_COLUMN, PluginsView
from diffstudio.plugin_manager import load_plugins
from diffstudio.plugin_settings import disabled_plugins

SAMPLER = """
from diffstudio import Contribution, Param, hookimpl

@hookimpl
def diffstudio_samplers():
    return [Contribution(kind="sampler", id="acme-toggle", display_name="Acme",
                         description="test", factory="acme_toggle_mod:sample",
                         params=(Param("steps", "int", 3, minimum=1, maximum=10),))]
"""


@pytest.fixture
def page(qtbot, settings):
    def make(registry=None):
        studio = Studio(Preferences(open_settings()))
        view = PluginsView(studio)
        qtbot.addWidget(view)
        studio.set_registry(registry or load_plugins(safe_mode=False))
        view.resize(1200, 800)
        view.show()
        return view

    return make


def test_the_enabled_toggle_is_saved_and_asks_for_a_restart(page, install_fake_plugin,
                                                            monkeypatch):
    monkeypatch.delenv("DIFFSTUDIO_LOAD_PLUGINS", raising=False)
    sys.modules.pop("acme_toggle_mod", None)
    install_fake_plugin("acme-toggle", "acme_toggle_mod", SAMPLER)
    view = page()
    item = view.item_for("acme-toggle")
    assert item.checkState(ENABLED_COLUMN) == Qt.CheckState.Checked
    assert item.text(3) == "ok" and item.text(5).endswith(" s")
    assert view.item_for("builtin-samplers").data(ENABLED_COLUMN,
                                                  Qt.ItemDataRole.CheckStateRole) is None
    assert not view.banner.isVisible()
    item.setCheckState(ENABLED_COLUMN, Qt.CheckState.Unchecked)
    assert disabled_plugins() == ["acme-toggle"]
    assert view.banner.isVisible() and "Restart" in view.banner_label.text()
    # The next start: not imported, shown as disabled and unticked.
    sys.modules.pop("acme_toggle_mod", None)
    again = page(load_plugins(safe_mode=False))
    assert "acme_toggle_mod" not in sys.modules
    row = again.item_for("acme-toggle")
    assert row.text(3) == "disabled" and row.checkState(ENABLED_COLUMN) == Qt.CheckState.Unchecked
    assert "1 disabled" in again.summary.text()
    row.setCheckState(ENABLED_COLUMN, Qt.CheckState.Checked)
    assert disabled_plugins() == []


def _install_and_watch(qtbot, view, target) -> tuple[int, float]:
    """Install ``target`` offline; returns the exit code and the longest gap between 20 ms
    timer ticks meanwhile (the main thread never waits for pip)."""
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    view.offline_check.setChecked(True)
    view.target_edit.setText(str(target))
    with qtbot.waitSignal(view.finished, timeout=180_000) as blocker:
        view.install_button.click()
        assert view.busy and not view.install_button.isEnabled()
    timer.stop()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    return blocker.args[0], max(gaps, default=0.0)


def test_install_streams_pip_output_and_offers_a_restart(qtbot, page, venv, example_wheel,
                                                          tmp_path, monkeypatch):
    view = page()
    view.python = str(venv_python(venv))
    code, longest_gap = _install_and_watch(qtbot, view, example_wheel)
    log = view.log.toPlainText()
    assert code == 0, log
    assert "pinned: " in log and "Successfully installed diffstudio-example-sampler" in log
    assert "+ diffstudio-example-sampler 0.1.0" in log
    assert longest_gap < 0.5, f"the window stalled {longest_gap:.2f} s during the install"
    assert view.banner.isVisible() and view.install_button.isEnabled()

    # What the restarted window sees: the installed sampler, with a form from its schema.
    monkeypatch.syspath_prepend(str(venv_site(venv)))
    registry = load_plugins(safe_mode=False)
    assert "example-heun" in registry.ids("sampler")
    picker = ContributionPicker("sampler")
    qtbot.addWidget(picker)
    picker.set_contributions(registry.contributions("sampler"))
    assert picker.select("example-heun", {"steps": 7})
    assert set(picker.form().editors) == {"steps", "clip_x0"}
    assert picker.validated() == ("example-heun", {"steps": 7, "clip_x0": False})
    restarted = page(registry)
    assert restarted.item_for("example-heun").text(2) == "diffstudio-example-sampler 0.1.0"

    marker = tmp_path / "restarted"
    view.restart_command = (sys.executable, ["-c", f"open({str(marker)!r}, 'w').close()"])
    view.restart_button.click()
    qtbot.waitUntil(marker.exists, timeout=30_000)


def test_a_refused_install_is_named_and_changes_nothing(qtbot, page, venv, local_package):
    view = page()
    view.python = str(venv_python(venv))
    code, _ = _install_and_watch(qtbot, view, local_package("greedy-plugin", ["numpy==1.0"]))
    assert code == 2
    errors = [n for n in view.studio.notifications.items if n.level == "error"]
    assert errors and "would change numpy" in errors[-1].message
    assert "greedy-plugin 0.1 depends on numpy==1.0" in errors[-1].message
    assert not view.banner.isVisible()


def test_the_window_waits_for_a_running_install_before_closing(qtbot, settings, venv,
                                                               local_package):
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    window = QWidget()
    qtbot.addWidget(window)
    studio = Studio(Preferences(open_settings()))
    view = PluginsView(studio)
    QVBoxLayout(window).addWidget(view)
    studio.set_registry(load_plugins(safe_mode=True))
    window.show()
    view.python = str(venv_python(venv))
    view.offline_check.setChecked(True)
    view.target_edit.setText(str(local_package("polite-plugin", ["numpy"])))
    with qtbot.waitSignal(view.finished, timeout=180_000) as blocker:
        view.install_button.click()
        assert window.close() is False and window.isVisible()  # pip is not killed half-way
        assert any("still running" in n.message for n in studio.notifications.items)
    assert blocker.args[0] == 0
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5_000)  # then it closes
