"""The application layer: every long-running thing diffstudio does is a *job*, a generator of
events over a typed request, driven alike by the command line (a tqdm bar) and the window (a
worker thread that can pause or stop it between any two events).

::

    train(TrainRequest)             -> TrainEvent, Progress ..., Done(TrainResult)
    sample(SampleRequest)           -> ModelSummary, Progress, SampleFrame ..., Done(SampleOutcome)
    compare(CompareRequest)         -> Progress, CompareEntry ..., Done(list[CompareEntry])
    interpolate(InterpolateRequest) -> Progress ..., Done(Interpolation)
    evaluate(EvalRequest)           -> Progress, SweepStep ..., Done(EvalOutcome)
    export(ExportRequest)           -> Note, Progress ..., Done(ExportOutcome)
    export_onnx(OnnxExportRequest)  -> Note, Progress ..., Done(OnnxOutcome)
    verify_onnx(OnnxVerifyRequest)  -> Note ..., Done(OnnxOutcome)
    plugin_install.install(InstallRequest) / uninstall(UninstallRequest)
                                    -> Note, PipLine ..., Done(InstallOutcome)

:func:`recall_request` reads a sample PNG back into the request that regenerates it.

Requests are plain dataclasses (no torch, no Qt), validated against the plugin schemas; a model
to sample comes from a :class:`ModelSource` (a run, a pretrained diffusers model, or a run's
ONNX export on onnxruntime with ``backend="onnx"``), loaded by
:func:`load_source`. :class:`Progress` carries done/total/elapsed and the ETA every front end
shows; :class:`Note` a line for the user. Every job accepts ``should_stop`` (polled by the
engine every step) and stops cleanly when closed. Adding a job means writing one generator:
:func:`run_job` drives it with no front end, :func:`diffstudio.cli.options.drive` in a terminal,
``diffstudio.gui.workers.JobWorker`` in the window.

Importing this package is cheap: torch is imported by a job when it runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from diffstudio.app.evaluate import EvalOutcome, EvalRequest, SweepStep, evaluate
from diffstudio.app.events import Done, Note, Progress
from diffstudio.app.export import ExportOutcome, ExportRequest, export
from diffstudio.app.onnx import (
    OnnxExportRequest,
    OnnxOutcome,
    OnnxVerifyRequest,
    export_onnx,
    verify_onnx,
)
from diffstudio.app.recall import Recall, recall_request
from diffstudio.app.sample import (
    CompareEntry,
    CompareRequest,
    InterpolateRequest,
    Interpolation,
    ModelSummary,
    SampleFrame,
    SampleOutcome,
    SampleRequest,
    compare,
    interpolate,
    sample,
    save_outcome,
)
from diffstudio.app.sources import LoadedSource, ModelSource, load_source
from diffstudio.app.train import TrainRequest, train

__all__ = [
    "CompareEntry",
    "CompareRequest",
    "Done",
    "EvalOutcome",
    "EvalRequest",
    "ExportOutcome",
    "ExportRequest",
    "InterpolateRequest",
    "Interpolation",
    "LoadedSource",
    "ModelSource",
    "ModelSummary",
    "Note",
    "OnnxExportRequest",
    "OnnxOutcome",
    "OnnxVerifyRequest",
    "Progress",
    "Recall",
    "SampleFrame",
    "SampleOutcome",
    "SampleRequest",
    "SweepStep",
    "TrainRequest",
    "compare",
    "evaluate",
    "export",
    "export_onnx",
    "interpolate",
    "load_source",
    "recall_request",
    "run_job",
    "sample",
    "save_outcome",
    "train",
    "verify_onnx",
]


def run_job(events: Iterable[Any]) -> Any:
    """Drive a job to its end with no front end and return its result (scripts, tests)."""
    iterator = iter(events)
    try:
        for event in iterator:
            if isinstance(event, Done):
                return event.result
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    raise RuntimeError("the job ended without a result")
