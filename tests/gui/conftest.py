"""Fixtures for the GUI tests: private settings, a tiny trained run, a window whose engine has
loaded, and a guard that fails a test leaving a QThread job running."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QEventLoop

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from diffstudio.gui.settings import SETTINGS_FILE_VARIABLE
from diffstudio.gui.workers import running_jobs
from diffstudio.plugin_manager import load_plugins

ENGINE_TIMEOUT_MS = 120_000


@pytest.fixture(scope="session", autouse=True)
def refcount_guard(qapp: Any) -> Any:
    """PySide6 6.12.0 on Python < 3.12 loses references to None/True; keep the suite alive."""
    from diffstudio.gui.refcount_guard import install

    return install(qapp)


@pytest.fixture(autouse=True)
def private_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own settings file: the user's settings are never touched."""
    path = tmp_path / "settings" / "diffstudio.ini"
    monkeypatch.setenv(SETTINGS_FILE_VARIABLE, str(path))
    return path


@pytest.fixture(autouse=True)
def no_running_jobs(qapp: Any) -> Iterator[None]:
    """Fail a test that leaves a job's thread running (every QThread ends with its job)."""
    yield
    leftover = running_jobs()
    for job in leftover:
        job.request_stop()
        job.wait(30_000)
    QEventLoop().processEvents()  # QCoreApplication.processEvents loses refs in PySide6 6.12.0
    assert not leftover, f"test left jobs running: {[job.objectName() for job in leftover]}"


@pytest.fixture(scope="session")
def registry() -> Any:
    return load_plugins(safe_mode=True)


@contextmanager
def _one_cpu_thread() -> Iterator[None]:
    """Train fixtures with one PyTorch thread, as the window's jobs do (on a busy 2-core
    machine two OpenMP threads can be tens of times slower); restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, registry: Any) -> Path:
    """A digits run trained for a few steps through the engine directly (T = 1000, so that
    DDPM takes 1000 network calls: long enough to cancel half-way)."""
    from diffstudio.engine.training import TrainConfig, Trainer

    run_dir = tmp_path_factory.mktemp("workspace") / "digits-tiny"
    config = TrainConfig(steps=6, batch_size=8, num_timesteps=1000, log_every=2,
                         checkpoint_every=6, warmup_steps=1, preview_every=0, device="cpu")
    with _one_cpu_thread():
        Trainer(config, run_dir, registry=registry).train()
    return run_dir


@pytest.fixture(scope="session")
def trained_conditional_run(tmp_path_factory: pytest.TempPathFactory, registry: Any) -> Path:
    """A class-conditional digits run (label dropout 0.1), trained for a few steps."""
    from diffstudio.engine.training import TrainConfig, Trainer

    run_dir = tmp_path_factory.mktemp("workspace-conditional") / "digits-conditional"
    config = TrainConfig(steps=4, batch_size=8, num_timesteps=100, log_every=2,
                         checkpoint_every=4, warmup_steps=1, preview_every=0, device="cpu",
                         network_params={"class_conditional": True})
    with _one_cpu_thread():
        Trainer(config, run_dir, registry=registry).train()
    return run_dir


@pytest.fixture(scope="session")
def trained_points_run(tmp_path_factory: pytest.TempPathFactory, registry: Any) -> Path:
    """A 2-D mixture run (MLP), trained for a few steps."""
    from diffstudio.engine.training import TrainConfig, Trainer

    run_dir = tmp_path_factory.mktemp("workspace-points") / "mixture-tiny"
    config = TrainConfig(dataset="toy2d", dataset_params={"num_points": 500}, network="mlp",
                         network_params={"hidden": 32, "depth": 1}, steps=4, batch_size=32,
                         num_timesteps=100, log_every=2, checkpoint_every=4, warmup_steps=1,
                         preview_every=0, device="cpu")
    with _one_cpu_thread():
        Trainer(config, run_dir, registry=registry).train()
    return run_dir


@pytest.fixture
def make_window(qtbot: Any, tmp_path: Path, registry: Any) -> Iterator[Callable[..., Any]]:
    """``make_window(registry=..., ask=..., workspace=...)``: a shown MainWindow whose engine
    has loaded. Jobs still running at the end are stopped and waited for."""
    from diffstudio.gui.main_window import MainWindow
    from diffstudio.gui.settings import Preferences, open_settings

    windows: list[Any] = []

    def make(*, registry_override: Any = None, ask: Callable[[str, str], bool] | None = None,
             workspace: Path | None = None, wait_ready: bool = True) -> Any:
        preferences = Preferences(open_settings())
        preferences.workspace = workspace or tmp_path / "workspace"
        window = MainWindow(preferences, registry=registry_override or registry,
                            ask=ask or (lambda title, text: True))
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        if wait_ready:
            qtbot.waitUntil(lambda: window.studio.ready, timeout=ENGINE_TIMEOUT_MS)
            qtbot.waitUntil(lambda: not window.studio.running(), timeout=ENGINE_TIMEOUT_MS)
        return window

    yield make
    for window in windows:
        for job in window.studio.running().values():
            job.request_stop()
            job.wait(60_000)
