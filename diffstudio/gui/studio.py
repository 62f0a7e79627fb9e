"""The state the views share: plugins, the loaded engine, the device, the workspace and its runs.

Views talk to each other through this object's signals rather than to each other, so each view
module stays small and testable on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from diffstudio.gui.notifications import NotificationCenter
from diffstudio.gui.settings import Preferences
from diffstudio.gui.workers import (
    DeviceInfo,
    EngineInfo,
    Job,
    JobWorker,
    default_cpu_threads,
)

__all__ = ["Studio"]


class Studio(QObject):
    """Shared state. ``registry`` is set when the plugins are loaded (before torch is), and
    ``engine`` when torch, diffusers and the engine are imported and the devices probed."""

    registry_changed = Signal(object)  # PluginRegistry
    engine_ready = Signal(object)  # EngineInfo
    workspace_changed = Signal(str)
    runs_changed = Signal(list)  # list[RunSummary]
    device_changed = Signal(str)
    jobs_changed = Signal()
    open_run_for_training = Signal(str)  # run folder
    new_run_from = Signal(str)  # run folder whose settings start a new run
    open_run_for_sampling = Signal(str)  # run folder
    open_run_for_evaluation = Signal(str)  # run folder
    dataset_loaded = Signal(object)  # diffstudio.engine.datasets.Dataset

    def __init__(
        self,
        preferences: Preferences,
        notifications: NotificationCenter | None = None,
        *,
        safe_mode: bool = False,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.preferences = preferences
        self.notifications = notifications or NotificationCenter(self)
        self.safe_mode = safe_mode
        self.registry: Any = None
        self.engine: EngineInfo | None = None
        self.device: DeviceInfo = DeviceInfo("cpu", "CPU")
        self.precision = "no"
        self.runs: list[Any] = []
        self.dataset: Any = None  # the dataset last loaded on the Data page
        self.jobs: dict[str, Job] = {}
        self.closing = False  # the window is stopping its jobs in order to close
        self.cpu_threads = preferences.get_int("cpu_threads", default_cpu_threads())

    # -- engine -----------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.engine is not None

    def set_registry(self, registry: Any) -> None:
        self.registry = registry
        self.registry_changed.emit(registry)

    def set_engine(self, engine: EngineInfo) -> None:
        self.engine = engine
        if self.registry is None:
            self.set_registry(engine.registry)
        self.engine_ready.emit(engine)

    def set_device(self, device: DeviceInfo, precision: str) -> None:
        self.device, self.precision = device, precision
        self.device_changed.emit(device.id)

    # -- workspace --------------------------------------------------------------------------------
    @property
    def workspace(self) -> Path:
        return self.preferences.workspace

    def set_workspace(self, path: str | Path) -> None:
        self.preferences.workspace = path
        self.workspace_changed.emit(str(self.workspace))

    def set_runs(self, runs: list[Any]) -> None:
        self.runs = runs
        self.runs_changed.emit(runs)

    # -- jobs -------------------------------------------------------------------------------------
    def add_job(self, role: str, job: Job) -> None:
        """Track a job under ``role`` ("train", "sample", ...) until it finishes; it runs with
        the chosen number of CPU threads."""
        if job.cpu_threads is None:
            job.cpu_threads = self.cpu_threads
        self.jobs[role] = job

        def forget() -> None:
            if self.jobs.get(role) is job:
                del self.jobs[role]
            self.jobs_changed.emit()

        job.finished.connect(forget)
        if isinstance(job, JobWorker):  # a job's notes (a pretrained model's caveats...) shown
            source = role.capitalize()
            job.note.connect(lambda text, level: (
                self.notifications.warning if level == "warning" else self.notifications.info
            )(text, source=source))
        self.jobs_changed.emit()

    def running(self) -> dict[str, Job]:
        return {role: job for role, job in self.jobs.items() if job.isRunning()}
