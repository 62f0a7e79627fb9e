"""The ONNX jobs: export a run's network (verified against PyTorch) and verify an exported file.

``diffstudio onnx export|verify`` drive them with a progress bar, the Runs page with a worker
thread; both get the same notes and the same :class:`OnnxOutcome`. Sampling on onnxruntime is
the sample job with ``ModelSource(backend="onnx")``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffstudio.app.events import Note, Progress
from diffstudio.app.threaded import Emit, StopCheck, events_of
from diffstudio.errors import ConfigError

__all__ = ["OnnxExportRequest", "OnnxOutcome", "OnnxVerifyRequest", "export_onnx",
           "onnxruntime_notes", "verify_onnx"]


@dataclass
class OnnxExportRequest:
    """Export ``run``'s checkpoint (latest when None; EMA weights unless ``ema`` is False) to
    ``out`` (default ``RUN/onnx/step-N[-raw][-fp16].onnx``). ``exporter`` "auto" tries dynamo,
    then TorchScript; ``device`` the onnxruntime device the verification runs on."""

    run: str
    out: str | None = None
    checkpoint: str | None = None
    ema: bool = True
    opset: int = 18
    fp16: bool = False
    exporter: str = "auto"
    overwrite: bool = False
    device: str = "cpu"


@dataclass
class OnnxVerifyRequest:
    """Check ``file`` against ``run`` (the checkpoint and EMA choice it was exported from unless
    given)."""

    file: str
    run: str
    checkpoint: str | None = None
    ema: bool | None = None
    device: str = "cpu"


@dataclass
class OnnxOutcome:
    """The file, its JSON (exporter, opset, inputs, weights hash, verification, date) and the
    verification's one-line summary."""

    path: Path
    metadata: dict[str, Any]
    summary: str
    notes: list[str] = field(default_factory=list)


def onnxruntime_notes() -> list[str]:
    """What is wrong with this environment's onnxruntime (two packages at once, none)."""
    from diffstudio.engine.onnx_network import detect_onnxruntime

    info = detect_onnxruntime()
    notes = list(info.notes)
    if not info.packages and info.version is None:
        notes.append(info.describe())
    return notes


def export_onnx(request: OnnxExportRequest, *, registry: Any = None,
                should_stop: StopCheck | None = None) -> Iterator[Any]:
    """Yields Note and Progress (export, verify), then Done(OnnxOutcome)."""
    if not request.run:
        raise ConfigError("choose a run to export")

    def work(emit: Emit, should_stop: StopCheck) -> OnnxOutcome:
        from diffstudio.engine.onnx_export import export_run

        for note in onnxruntime_notes():
            emit(Note(note, level="warning"))
        stages = ["export", "verify"]

        def report(line: str) -> None:
            stage = "verify" if line.startswith("verifying") else "export"
            emit(Progress("onnx", stages.index(stage), len(stages), unit="stage", detail=line))
            if "failed" in line:
                emit(Note(line, level="warning"))

        path, meta = export_run(
            request.run, request.out, checkpoint=request.checkpoint, ema=request.ema,
            opset=request.opset, fp16=request.fp16, exporter=request.exporter,
            overwrite=request.overwrite, device=request.device, registry=registry,
            report=report)
        emit(Progress("onnx", 2, 2, unit="stage", detail="verified"))
        verification = meta["verification"]
        summary = (f"{meta['exporter']} exporter, opset {meta['opset']}, max |onnxruntime - "
                   f"PyTorch| = {verification['max_abs_error']:.2e} "
                   f"(limit {verification['tolerance']:.0e}, {verification['provider']})")
        return OnnxOutcome(path, meta, summary, list(meta.get("notes", [])))

    yield from events_of(work, should_stop=should_stop, name="diffstudio-onnx-export")


def verify_onnx(request: OnnxVerifyRequest, *, registry: Any = None,
                should_stop: StopCheck | None = None) -> Iterator[Any]:
    """Yields Note, then Done(OnnxOutcome); a stale or mismatched file raises OnnxError."""

    def work(emit: Emit, should_stop: StopCheck) -> OnnxOutcome:
        from diffstudio.engine.onnx_export import verify_file

        for note in onnxruntime_notes():
            emit(Note(note, level="warning"))
        verification, graph, meta = verify_file(
            request.file, request.run, checkpoint=request.checkpoint, ema=request.ema,
            device=request.device, registry=registry)
        inputs = ", ".join(f"{entry['name']} {entry['dtype']}{entry['shape']}"
                           for entry in graph.inputs)
        summary = (f"{verification.describe()}; opset {graph.opset}, inputs {inputs}, "
                   f"dynamic batch: {'yes' if graph.dynamic_batch else 'no'}")
        return OnnxOutcome(Path(request.file), meta, summary)

    yield from events_of(work, should_stop=should_stop, name="diffstudio-onnx-verify")
