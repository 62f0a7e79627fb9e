"""Shared fixtures: fake installed plugin distributions, tiny runs, and a thread-leak guard."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.pop("DIFFSTUDIO_SAFE_MODE", None)


@pytest.fixture
def install_fake_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., None]]:
    """Make a plugin distribution discoverable by importlib.metadata, as pip would.

    ``install_fake_plugin("acme-sampler", "acme_sampler", source)`` writes the module and a
    ``.dist-info`` folder with an entry point in the ``diffstudio`` group onto sys.path.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    installed: list[str] = []

    def install(distribution: str, module: str, source: str, version: str = "1.0") -> None:
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n",
            encoding="utf-8",
        )
        (info / "entry_points.txt").write_text(
            f"[diffstudio]\n{distribution} = {module}\n", encoding="utf-8"
        )
        installed.append(module)

    yield install
    for module in installed:
        sys.modules.pop(module, None)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread of its own running (workers must end with their job)."""
    before = set(threading.enumerate())
    yield
    leaked = [
        thread for thread in threading.enumerate()
        if thread not in before and thread.is_alive() and not thread.daemon
    ]
    for thread in leaked:
        thread.join(timeout=5)
    still = [thread.name for thread in leaked if thread.is_alive()]
    assert not still, f"test leaked running threads: {still}"


@pytest.fixture(autouse=True)
def private_trash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What a test moves to the system trash lands in its own folder, never the user's:
    send2trash reads $XDG_DATA_HOME once, at import, so its module values are replaced."""
    data_home = tmp_path / "xdg-data"
    try:
        from send2trash import plat_other
    except ImportError:  # not the freedesktop implementation (macOS, Windows)
        return data_home / "Trash"
    monkeypatch.setattr(plat_other, "XDG_DATA_HOME", os.fsencode(data_home))
    monkeypatch.setattr(plat_other, "HOMETRASH_B", os.fsencode(data_home / "Trash"))
    monkeypatch.setattr(plat_other, "HOMETRASH", str(data_home / "Trash"))
    return data_home / "Trash"
