"""Enable, disable, load only some: persisted in the window's settings file, a disabled plugin is
never imported, ``DIFFSTUDIO_LOAD_PLUGINS`` picks the third-party plugins to load."""

from __future__ import annotations

import json
import sys

import pytest

from diffstudio.cli import main
from diffstudio.plugin_manager import load_plugins
from diffstudio.plugin_settings import disabled_plugins, set_plugin_disabled, settings_path

SOURCE = """
from diffstudio import Contribution, Param, hookimpl

@hookimpl
def diffstudio_samplers():
    return [Contribution(kind="sampler", id="{id}", display_name="{id}", description="test",
                         factory="{module}:sample",
                         params=(Param("steps", "int", 3, minimum=1, maximum=10),))]

def sample(model, x, *, generator, callback, should_stop, steps=3):
    return x
"""


@pytest.fixture
def two_plugins(install_fake_plugin, settings, monkeypatch):
    monkeypatch.delenv("DIFFSTUDIO_LOAD_PLUGINS", raising=False)
    for name in ("acme-alpha", "acme-beta"):
        module = name.replace("-", "_") + "_mod"
        sys.modules.pop(module, None)
        install_fake_plugin(name, module, SOURCE.format(id=name, module=module))
    return settings


def _statuses(capsys) -> dict[str, str]:
    capsys.readouterr()
    assert main(["plugins", "--json"]) == 0
    return {p["name"]: p["status"] for p in json.loads(capsys.readouterr().out)["plugins"]}


def test_a_disabled_plugin_is_blocked_and_never_imported(two_plugins):
    set_plugin_disabled("acme-alpha", True)
    registry = load_plugins(safe_mode=False)
    alpha = next(p for p in registry.plugins if p.name == "acme-alpha")
    assert alpha.status == "disabled" and alpha.disabled_reason == "disabled in the settings"
    assert "acme_alpha_mod" not in sys.modules  # never imported
    assert registry.manager.is_blocked("acme-alpha")
    assert "acme-alpha" not in registry.ids("sampler")
    assert "acme-beta" in registry.ids("sampler") and "acme_beta_mod" in sys.modules


def test_disable_and_enable_persist_across_starts(two_plugins, capsys):
    assert main(["plugins", "disable", "acme-beta"]) == 0
    assert "acme-beta: disabled" in capsys.readouterr().out
    assert disabled_plugins(two_plugins) == ["acme-beta"]
    assert _statuses(capsys)["acme-beta"] == "disabled"  # a fresh start reads the file
    assert main(["plugins", "disable", "acme-alpha"]) == 0
    assert disabled_plugins() == ["acme-beta", "acme-alpha"]
    assert main(["plugins", "enable", "acme-beta"]) == 0
    statuses = _statuses(capsys)
    assert statuses["acme-beta"] == "ok" and statuses["acme-alpha"] == "disabled"
    assert "acme-beta" not in two_plugins.read_text()


def test_built_ins_and_unknown_names_are_one_line_errors(two_plugins, capsys):
    assert main(["plugins", "disable", "builtin-samplers"]) == 2
    assert "built in and cannot be disabled" in capsys.readouterr().err
    assert main(["plugins", "disable", "acme-gamma"]) == 2
    err = capsys.readouterr().err
    assert "no plugin 'acme-gamma'" in err and "acme-alpha" in err
    assert not two_plugins.exists()  # nothing written


def test_load_plugins_variable_loads_only_those(two_plugins, monkeypatch):
    monkeypatch.setenv("DIFFSTUDIO_LOAD_PLUGINS", "acme-beta")
    registry = load_plugins()
    alpha = next(p for p in registry.plugins if p.name == "acme-alpha")
    assert alpha.disabled and "DIFFSTUDIO_LOAD_PLUGINS" in alpha.disabled_reason
    assert "acme_alpha_mod" not in sys.modules
    assert "acme-beta" in registry.ids("sampler")
    assert "ddim" in registry.ids("sampler")  # built-ins always load
    monkeypatch.setenv("DIFFSTUDIO_LOAD_PLUGINS", "")
    registry = load_plugins()
    assert registry.safe_mode and "acme-beta" not in registry.ids("sampler")


def test_the_settings_file_is_the_windows_and_qsettings_reads_what_we_write(
    monkeypatch, tmp_path
):
    from PySide6.QtCore import QSettings

    from diffstudio.gui.settings import open_settings

    monkeypatch.delenv("DIFFSTUDIO_SETTINGS_FILE", raising=False)
    monkeypatch.setenv("DIFFSTUDIO_SETTINGS_ORG", "diffstudio-test-org")
    monkeypatch.setenv("DIFFSTUDIO_SETTINGS_APP", "plugins-test")
    assert str(settings_path()) == open_settings().fileName()

    path = tmp_path / "shared.ini"
    window = QSettings(str(path), QSettings.Format.IniFormat)
    window.setValue("workspace", "/some/runs")
    window.setValue("sample/params", '{"steps": 5, "eta": 0.5}')
    window.sync()
    set_plugin_disabled("acme-alpha", True, path)
    set_plugin_disabled("acme-beta", True, path)
    reread = QSettings(str(path), QSettings.Format.IniFormat)
    assert reread.value("plugins/disabled") == ["acme-alpha", "acme-beta"]
    assert reread.value("workspace") == "/some/runs"
    assert reread.value("sample/params") == '{"steps": 5, "eta": 0.5}'
    reread.setValue("plugins/disabled", ["acme-beta"])
    reread.setValue("workspace", "/other")
    reread.sync()
    assert disabled_plugins(path) == ["acme-beta"]
    set_plugin_disabled("acme-beta", False, path)
    assert disabled_plugins(path) == []
    assert QSettings(str(path), QSettings.Format.IniFormat).value("workspace") == "/other"
