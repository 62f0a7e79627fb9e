"""The application-menu entry the install scripts register (python -m diffstudio.desktop):
written under the user's data folder only, pointing at the command by its absolute path, and
removed again."""

from __future__ import annotations

import configparser
import os
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest

from diffstudio.desktop import install_menu_entry, main, uninstall_menu_entry
from diffstudio.resources import APP_ID, ICON_SIZES, icon_png


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / "data"))
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def _entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


def test_freedesktop_entry_icons_and_metainfo_are_installed_then_removed(home):
    executable = home / "venv" / "bin" / "diffstudio"
    written = install_menu_entry(executable, platform="linux")
    data = home / "data"
    assert all(path.is_file() and path.is_relative_to(data) for path in written)
    desktop = data / "applications" / f"{APP_ID}.desktop"
    entry = _entry(desktop)
    assert entry["Exec"] == str(executable) and entry["TryExec"] == str(executable)
    assert entry["Icon"] == APP_ID
    for size in ICON_SIZES:
        icon = data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        assert icon.read_bytes() == icon_png(size).read_bytes()
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg").is_file()
    assert (data / "metainfo" / f"{APP_ID}.metainfo.xml").is_file()
    removed = uninstall_menu_entry(platform="linux")
    assert set(removed) == set(written)
    assert not desktop.exists()


def test_an_executable_path_with_spaces_and_dollars_is_quoted_per_the_spec(home):
    executable = home / "My Apps" / "cost$ 100%" / "diffstudio"
    install_menu_entry(executable, platform="linux")
    exec_line = _entry(home / "data" / "applications" / f"{APP_ID}.desktop")["Exec"]
    # Quoted; $ escaped (and that backslash doubled by the string escaping); % doubled.
    assert exec_line == '"' + str(home) + '/My Apps/cost' + '\\\\' + '$ 100%%/diffstudio"'


def test_macos_gets_an_app_in_applications_with_the_icns(home):
    executable = home / "Library" / "venv" / "bin" / "diffstudio"
    written = install_menu_entry(executable, platform="darwin")
    app = home / "Applications" / "diffstudio.app"
    assert all(path.is_relative_to(app) for path in written)
    info = plistlib.loads((app / "Contents" / "Info.plist").read_bytes())
    assert info["CFBundleIdentifier"] == APP_ID and info["CFBundleExecutable"] == "diffstudio"
    launcher = app / "Contents" / "MacOS" / "diffstudio"
    assert os.access(launcher, os.X_OK)
    assert f"exec '{executable}' \"$@\"" in launcher.read_text(encoding="utf-8")
    assert (app / "Contents" / "Resources" / "diffstudio.icns").read_bytes()[:4] == b"icns"
    assert uninstall_menu_entry(platform="darwin") == [app] and not app.exists()


def test_the_launcher_script_really_starts_the_command(home):
    """The .app's launcher is a real shell script: run it against a stand-in command."""
    stand_in = home / "bin" / "diffstudio"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\necho started with \"$@\"\n", encoding="utf-8")
    stand_in.chmod(0o755)
    install_menu_entry(stand_in, platform="darwin")
    launcher = home / "Applications" / "diffstudio.app" / "Contents" / "MacOS" / "diffstudio"
    result = subprocess.run([str(launcher), "--version"], capture_output=True, text=True,
                            timeout=30)
    assert result.stdout.strip() == "started with --version"


def test_the_module_command_line_installs_for_the_command_next_to_python(home, capsys):
    if sys.platform != "linux":
        pytest.skip("the freedesktop layout is what this checks")
    assert main(["install", "--exec", str(home / "x" / "diffstudio")]) == 0
    assert "menu entry for" in capsys.readouterr().out
    assert main(["uninstall"]) == 0
    assert "removed" in capsys.readouterr().out
