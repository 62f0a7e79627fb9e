"""The resources shipped inside the package: icons at every size, the Windows .ico and macOS
.icns, the .desktop entry and the AppStream metainfo, consistent with one another."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from diffstudio.errors import PluginError
from diffstudio.frozen import (
    FROZEN_PLUGIN_INSTALL_REFUSAL,
    bundle_dir,
    check_plugin_install_possible,
    installation,
    is_frozen,
    plugin_install_refusal,
)
from diffstudio.resources import APP_ID, ICON_SIZES, icon_png, resource


@pytest.mark.parametrize("size", ICON_SIZES)
def test_each_png_icon_has_its_size_and_transparency(size):
    with Image.open(icon_png(size)) as image:
        assert image.format == "PNG" and image.size == (size, size)
        assert image.mode == "RGBA"
        assert image.getpixel((0, 0))[3] == 0  # rounded corners: transparent


def test_unknown_icon_size_is_refused():
    with pytest.raises(ValueError, match="the sizes are"):
        icon_png(17)


def test_windows_ico_and_macos_icns_hold_several_sizes():
    with Image.open(resource("diffstudio.ico")) as ico:
        assert ico.format == "ICO"
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    with Image.open(resource("diffstudio.icns")) as icns:
        assert icns.format == "ICNS"
        assert {(16, 16, 2), (512, 512, 2)} <= set(icns.info["sizes"])


def test_desktop_entry_launches_diffstudio_with_its_icon():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(resource(f"{APP_ID}.desktop").read_text(encoding="utf-8"))
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Exec"] == "diffstudio"
    assert entry["Icon"] == APP_ID and entry["Terminal"] == "false"
    assert entry["Categories"].endswith(";")


def test_metainfo_names_the_desktop_entry_and_validates():
    path = resource(f"{APP_ID}.metainfo.xml")
    root = ET.fromstring(path.read_text(encoding="utf-8"))
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.findtext("launchable") == f"{APP_ID}.desktop"
    import diffstudio

    assert root.find("releases/release").get("version") == diffstudio.__version__
    if shutil.which("appstreamcli"):
        result = subprocess.run(["appstreamcli", "validate", "--no-net", str(path)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_not_frozen_here_so_plugins_can_be_installed():
    assert not is_frozen() and bundle_dir() is None
    assert plugin_install_refusal() is None
    check_plugin_install_possible()
    assert installation() == f"Python environment {sys.prefix}"


def test_a_frozen_bundle_refuses_plugin_installs_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert is_frozen() and bundle_dir() == tmp_path
    assert plugin_install_refusal() == FROZEN_PLUGIN_INSTALL_REFUSAL
    with pytest.raises(PluginError, match="self-contained application bundle") as error:
        check_plugin_install_possible()
    assert "install.sh" in str(error.value) and "pipx install diffstudio" in str(error.value)
    assert installation() == f"application bundle {tmp_path}"
