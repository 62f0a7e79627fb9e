"""The Sample page's jobs, each the application layer's generator (:mod:`diffstudio.app.sample`)
in a :class:`~diffstudio.gui.workers.JobWorker`: sampling with live frames (:class:`SampleJob`),
several samplers on identical noise (:class:`CompareJob`), a DDIM interpolation between two
seeds (:class:`InterpolationJob`); and loading a dataset to look at.

Live frames are throttled by time in the job and only the newest is kept: frames the screen
could not show are dropped, never queued.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import Signal

from diffstudio.app.lab import LabEntry, LabRequest, langevin_lab
from diffstudio.app.sample import (
    CompareEntry,
    CompareRequest,
    InterpolateRequest,
    Interpolation,
    ModelSummary,
    SampleFrame,
    SampleOutcome,
    SampleRequest,
    TrajectoryFrame,
    compare,
    interpolate,
    sample,
)
from diffstudio.gui.workers import JobWorker, to_numpy

__all__ = [
    "CompareEntry",
    "CompareJob",
    "CompareRequest",
    "DatasetPreview",
    "InterpolateRequest",
    "Interpolation",
    "InterpolationJob",
    "LabEntry",
    "LabJob",
    "LabRequest",
    "ModelSummary",
    "SampleFrame",
    "SampleJob",
    "SampleOutcome",
    "SampleRequest",
    "TrajectoryFrame",
    "load_dataset_preview",
]


class SampleJob(JobWorker):
    """Runs :func:`diffstudio.app.sample.sample`; ``model_loaded`` carries the
    :class:`ModelSummary`, ``frame_ready`` says a new frame waits in :meth:`take_frame`."""

    model_loaded = Signal(object)  # ModelSummary
    frame_ready = Signal()

    def __init__(self, request: SampleRequest, registry: Any = None) -> None:
        super().__init__("sample", lambda stop: sample(request, registry=registry,
                                                       should_stop=stop))
        self.request = request

    def route(self, event: Any) -> None:
        if isinstance(event, ModelSummary):
            self.model_loaded.emit(event)
        elif isinstance(event, SampleFrame):
            self.post_latest(event)
            self.frame_ready.emit()
        else:
            super().route(event)

    def take_frame(self) -> SampleFrame | None:
        return self.take_latest(SampleFrame)

    @property
    def frames_skipped(self) -> int:
        return self.skipped(SampleFrame)


class CompareJob(JobWorker):
    """Runs :func:`diffstudio.app.sample.compare`; ``entry_ready`` reports each sampler as it
    finishes; succeeds with the list of :class:`CompareEntry`."""

    entry_ready = Signal(object)  # CompareEntry

    def __init__(self, request: CompareRequest, registry: Any = None) -> None:
        super().__init__("compare", lambda stop: compare(request, registry=registry,
                                                         should_stop=stop))
        self.request = request

    def route(self, event: Any) -> None:
        if isinstance(event, CompareEntry):
            self.entry_ready.emit(event)
        else:
            super().route(event)


class LabJob(JobWorker):
    """Runs :func:`diffstudio.app.lab.langevin_lab`; ``entry_ready`` reports each sampler as it
    finishes; succeeds with the :class:`~diffstudio.app.lab.LabOutcome`."""

    entry_ready = Signal(object)  # LabEntry

    def __init__(self, request: LabRequest, registry: Any = None) -> None:
        super().__init__("lab", lambda stop: langevin_lab(request, registry=registry,
                                                          should_stop=stop))
        self.request = request

    def route(self, event: Any) -> None:
        if isinstance(event, LabEntry):
            self.entry_ready.emit(event)
        else:
            super().route(event)


class InterpolationJob(JobWorker):
    """Runs :func:`diffstudio.app.sample.interpolate`; succeeds with an :class:`Interpolation`."""

    def __init__(self, request: InterpolateRequest, registry: Any = None) -> None:
        super().__init__("interpolate", lambda stop: interpolate(request, registry=registry,
                                                                 should_stop=stop))
        self.request = request


# -- looking at a dataset -------------------------------------------------------------------------
@dataclass
class DatasetPreview:
    """A loaded dataset for the Data page: ``samples`` are the first images (N, C, H, W) or up
    to 4000 points (N, 2); ``density``/``extent`` the exact density when the dataset knows it
    (the engine's ``density_grid``)."""

    dataset: Any  # diffstudio.engine.datasets.Dataset
    samples: np.ndarray
    density: np.ndarray | None = None
    extent: tuple[float, float, float, float] | None = None


def load_dataset_preview(
    registry: Any, dataset_id: str, params: Mapping[str, Any], images: int = 64
) -> DatasetPreview:
    """Build a dataset with the engine and pick what the Data page shows of it."""
    from diffstudio.engine.components import build_dataset
    from diffstudio.engine.datasets import density_grid

    dataset = build_dataset(registry, dataset_id, params)
    if dataset.kind == "points":
        grid = density_grid(dataset)
        density, extent = (to_numpy(grid[0]), grid[1]) if grid is not None else (None, None)
        return DatasetPreview(dataset, to_numpy(dataset.data[:4000]), density, extent)
    return DatasetPreview(dataset, to_numpy(dataset.data[:images]))
