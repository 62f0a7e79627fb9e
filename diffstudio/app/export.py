"""The export job: samples (runs, samples folders, PNG files, a filter over them) into a folder
as PNG copies, a contact sheet, a self-contained HTML gallery or a zip of all three.

``diffstudio export SOURCE... --format html --out DIR`` drives :func:`export` with a progress
bar, the Gallery page with its worker, the Sample page its last result with
:func:`export_outcome` (written first when it was not saved); all refuse to replace a file
unless ``overwrite`` (the CLI's ``--overwrite``, the window's question), before anything is
written. What the files hold and how they are kept safe is :mod:`diffstudio.engine.export`'s.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffstudio.app.events import Note, Progress
from diffstudio.app.threaded import Emit, StopCheck, events_of
from diffstudio.errors import Cancelled, ConfigError

__all__ = ["ExportOutcome", "ExportRequest", "collect_samples", "export", "export_outcome",
           "outcome_records"]


@dataclass
class ExportRequest:
    """What to export and where. ``sources``: run folders (their ``samples/``), samples
    folders, or PNG files; ``filters`` ``KEY=VALUE`` strings (see
    :class:`diffstudio.engine.sample_index.SampleFilter`); ``format`` png, sheet, html or zip;
    ``captions`` and ``columns`` shape the contact sheet."""

    sources: Sequence[str]
    out: str
    format: str = "png"
    filters: Sequence[str] = ()
    overwrite: bool = False
    captions: bool = True
    columns: int | None = None
    title: str = "diffstudio gallery"

    def validate(self) -> ExportRequest:
        from diffstudio.engine.export import FORMATS
        from diffstudio.engine.sample_index import SampleFilter

        if self.format not in FORMATS:
            raise ConfigError(f"unknown export format {self.format!r}; choose one of "
                              f"{', '.join(FORMATS)}")
        if not self.sources:
            raise ConfigError("nothing to export: give a run, a samples folder or PNG files")
        if not str(self.out).strip():
            raise ConfigError("choose the folder to export into (--out DIR)")
        if self.columns is not None and self.columns < 1:
            raise ConfigError(f"columns must be at least 1, got {self.columns}")
        SampleFilter.from_pairs(self.filters)  # a bad filter is said before any work
        return self


@dataclass
class ExportOutcome:
    """Where the export went: the folder, the files written, how many samples."""

    out: Path
    format: str
    files: list[Path] = field(default_factory=list)
    count: int = 0
    seconds: float = 0.0


def collect_samples(sources: Sequence[str | os.PathLike[str]]) -> list[Any]:
    """The sample records of ``sources`` (runs, folders, PNG files), in order, each file once.

    A run contributes everything under its ``samples/``; a folder every sample PNG under it
    (grids and previews are not samples); a PNG file itself, with or without metadata. Stars
    come from the index of the workspace holding the source (the Gallery's), when it has one."""
    from diffstudio.engine.runs import Run
    from diffstudio.engine.sample_index import SampleIndex, iter_sample_pngs, read_record

    records, seen = [], set()
    stars: dict[str, set[str]] = {}
    for source in sources:
        path = Path(source).expanduser()
        index = SampleIndex.find(path) if path.exists() else None
        starred = set() if index is None else stars.setdefault(
            str(index.database), index.starred_paths())
        if path.is_dir():
            root = Run(path).samples_dir if Run.is_run(path) else path
            found = sorted(iter_sample_pngs(root), key=lambda item: str(item[0]))
        elif path.is_file() and path.suffix.lower() == ".png":
            found = [(path, path.stat())]
        elif path.exists():
            raise ConfigError(f"{path} is not a PNG file, a samples folder or a run")
        else:
            raise ConfigError(f"{path} does not exist; give a run, a samples folder or PNGs")
        for file, stat in found:
            key = str(file.resolve())
            if key in seen:
                continue
            record = read_record(file, stat)
            if record is None:
                if path.is_file():
                    raise ConfigError(f"{path} is not a readable PNG sample")
                continue
            seen.add(key)
            record.starred = str(file) in starred or key in starred
            records.append(record)
    return records


def export(request: ExportRequest, *, records: Sequence[Any] | None = None,
           should_stop: StopCheck | None = None) -> Iterator[Any]:
    """Yields Note, Progress per sample, then Done(ExportOutcome). ``records`` (the Gallery's
    selection, from its index) replace reading ``request.sources``; the filters apply to them
    too. Refuses, before writing anything, to replace an existing file unless
    ``request.overwrite``; stopping between samples leaves no partial file."""
    from diffstudio.engine import export as files
    from diffstudio.engine.sample_index import SampleFilter

    if records is None:
        request.validate()
    elif not records:
        raise ConfigError("nothing to export: no sample is selected")
    where = SampleFilter.from_pairs(request.filters)

    def work(emit: Emit, stop: StopCheck) -> ExportOutcome:
        started = time.perf_counter()
        chosen = list(records) if records is not None else collect_samples(request.sources)
        chosen = [record for record in chosen if where.matches(record)]
        if not chosen:
            raise ConfigError("nothing to export: " + (
                "no sample matches --filter " + " ".join(request.filters) if request.filters
                else "the sources hold no sample PNG"))
        out = Path(request.out).expanduser()
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file; give a folder to export into")
        targets = files.planned_targets(chosen, out, request.format)
        existing = [target for target in targets if target.exists()]
        if existing and not request.overwrite:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise ConfigError(f"{existing[0]}{more} already exists; pass --overwrite to "
                              "replace it, or choose another --out folder")
        unknown = sum(1 for record in chosen if not record.has_metadata)
        if unknown:
            emit(Note(f"{unknown} of {len(chosen)} PNGs carry no diffstudio metadata "
                      "(unknown parameters); they are exported as they are"))
        out.mkdir(parents=True, exist_ok=True)
        total, stage = len(chosen), f"export {request.format}"

        def progress(done: int) -> None:
            if stop():
                raise Cancelled(f"export stopped after {done} of {total} samples")
            emit(Progress(stage, done, total, time.perf_counter() - started, unit="image"))

        progress(0)
        if request.format == "png":
            written = files.write_png_copies(chosen, out, progress=progress)
        elif request.format == "sheet":
            written = [files.write_contact_sheet(chosen, targets[0], captions=request.captions,
                                                 columns=request.columns, progress=progress)]
        elif request.format == "html":
            written = [files.write_html(chosen, targets[0], title=request.title,
                                        progress=progress)]
        else:
            written = [files.write_zip(chosen, targets[0], captions=request.captions,
                                       columns=request.columns, title=request.title,
                                       progress=progress)]
        return ExportOutcome(out=out, format=request.format, files=written, count=total,
                             seconds=time.perf_counter() - started)

    yield from events_of(work, should_stop=should_stop, name="diffstudio-export")


def outcome_records(outcome: Any) -> list[Any]:
    """The sample records of a Sample-page result (``diffstudio.app.sample.SampleOutcome``),
    read from nothing but its metadata, so the window can plan an export's file names: a
    saved result's PNGs where they are; an unsaved one's as ``<sampler>-live/sample-N.png``,
    a relative placeholder that :func:`export_outcome` writes before exporting."""
    from diffstudio.app.sample import outcome_sample_metadata
    from diffstudio.engine.sample_index import record_from_metadata
    from diffstudio.engine.sampling import sample_file_names

    if outcome.samples.ndim != 4:
        raise ConfigError("2-D points have no images to export; Save writes them to "
                          "samples.npz")
    _, _, height, width = outcome.samples.shape
    saved = list(outcome.paths)  # read once: a Save job may fill it meanwhile
    if len(saved) == len(outcome.samples):
        paths = [Path(path) for path in saved]
    else:
        folder = Path(f"{outcome.result.sampler}-live")
        paths = [folder / name for name in sample_file_names(outcome.result)]
    return [record_from_metadata(path, outcome_sample_metadata(outcome, index), width=width,
                                 height=height) for index, path in enumerate(paths)]


def export_outcome(request: ExportRequest, outcome: Any, *, records: Sequence[Any] | None = None,
                   should_stop: StopCheck | None = None) -> Iterator[Any]:
    """Export a Sample-page result like :func:`export` (the same events and files).

    ``records`` (default :func:`outcome_records`) are the samples planned; those whose PNG
    is not on disk (an unsaved result, or saved files since moved) are first written, pixel
    for pixel and with the metadata Save writes, into a temporary folder removed afterwards."""
    from diffstudio.app.sample import save_outcome_sample

    planned = list(outcome_records(outcome) if records is None else records)
    missing = [index for index, record in enumerate(planned)
               if not (Path(record.path).is_absolute() and Path(record.path).is_file())]
    if not missing:
        yield from export(request, records=planned, should_stop=should_stop)
        return
    with tempfile.TemporaryDirectory(prefix="diffstudio-export-") as temp:
        started = time.perf_counter()
        chosen = list(planned)
        for done, index in enumerate(missing, 1):
            if should_stop is not None and should_stop():
                raise Cancelled(f"export stopped after writing {done - 1} of {len(missing)} "
                                "samples")
            record = planned[index]
            folder = Path(temp) / record.folder
            folder.mkdir(exist_ok=True)
            target = save_outcome_sample(outcome, index, folder / Path(record.path).name)
            stat = target.stat()
            chosen[index] = dataclasses.replace(record, path=str(target),
                                                mtime_ns=stat.st_mtime_ns, size=stat.st_size)
            yield Progress("write PNGs", done, len(missing), time.perf_counter() - started,
                           unit="image")
        yield from export(request, records=chosen, should_stop=should_stop)
