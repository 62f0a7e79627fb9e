"""The window part of the self-test, and the icon the window carries (from the package's
resources, whatever the installation)."""

from __future__ import annotations

import time

import pytest

from diffstudio.gui import workers
from diffstudio.gui.app import application_icon
from diffstudio.gui.selftest import open_and_close_window
from diffstudio.resources import ICON_SIZES


def test_the_window_opens_loads_the_engine_and_closes(qapp, registry, tmp_path):
    settings = tmp_path / "selftest.ini"
    detail = open_and_close_window(settings, tmp_path, registry=registry)
    assert detail.startswith("opened on 'offscreen'")
    assert "engine ready after" in detail and detail.endswith("closed")
    assert settings.is_file()  # its own settings file, not the user's
    assert str(tmp_path) in settings.read_text(encoding="utf-8")  # the workspace it was given
    assert not [w for w in qapp.topLevelWidgets() if w.isVisible()]


def test_the_application_icon_has_every_size(qapp):
    icon = application_icon()
    sizes = sorted(size.width() for size in icon.availableSizes())
    assert sizes == list(ICON_SIZES)


def test_an_engine_that_fails_to_load_fails_the_check_at_once(qapp, registry, tmp_path,
                                                              monkeypatch):
    def broken() -> list:
        raise RuntimeError("the CUDA driver is broken")

    monkeypatch.setattr(workers, "probe_devices", broken)
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"the engine did not load: .*CUDA driver is broken"):
        open_and_close_window(tmp_path / "selftest.ini", tmp_path, registry=registry,
                              timeout_s=120)
    assert time.perf_counter() - started < 60  # it did not wait for the timeout
    assert not [w for w in qapp.topLevelWidgets() if w.isVisible()]
