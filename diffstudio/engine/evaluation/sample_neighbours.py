"""The nearest training images of one saved sample, from an evaluation that retrieved them.

An evaluation writes its retrieval into its JSON (format ``diffstudio-evaluation/1``): for
each evaluated sample, in order, the indices of its nearest images in the reference dataset
and their distances (``retrieval.<space>``), and with the memorisation check its ratio and
whether it is flagged. Row ``i`` is sample ``i`` of what was evaluated, so a sample PNG is
matched to a row this way:

* **a samples folder** evaluated on the Evaluate page or with ``diffstudio eval FOLDER``
  writes ``FOLDER/evaluation-<time>.json``. Read from ``samples.npz``, row ``i`` is the
  sample the PNG's metadata calls ``index`` ``i``; read from the PNGs, it is the file's
  place among the folder's sample PNGs in name order (unreadable ones skipped, as the
  evaluation skipped them). A folder whose files changed after the evaluation is not matched.
* **a run** evaluated with a sampler writes ``RUN/evaluations/<sampler>-...json``; it drew
  sample ``i`` with seed ``seed + i`` in memory. A PNG drawn from the same checkpoint and
  weights, with the same sampler and parameters, class and seed, is that sample: its row is
  ``seed - first seed``.

The newest matching evaluation wins. Its Inception-space neighbours are shown when the
Inception features covered the whole reference set; after a reference subset (the Evaluate
page's reference limit) the pixel-space ones, which always search every training image (a
copy of one outside the subset would be missed otherwise).

:func:`find_sample_neighbours` reads only JSON (no torch); :func:`load_sample_neighbours` also
loads the reference images those indices name (the dataset's plugin, so torch).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from diffstudio.engine.sample_index import SampleRecord
from diffstudio.errors import EvaluationError

__all__ = ["SampleNeighbours", "candidate_evaluations", "find_sample_neighbours",
           "load_sample_neighbours"]

_FORMAT = "diffstudio-evaluation/1"
_SPACES = ("inception", "pixel")


@dataclass
class SampleNeighbours:
    """One sample's row of an evaluation: ``indices`` and ``distances`` (k,) into the
    reference dataset (``reference``: its id and parameters, as the JSON records them), the
    memorisation ``ratio`` and ``flagged`` when the check ran; ``how`` says how the sample was
    matched, in words. ``sample`` (C, H, W) and ``images`` (k, C, H, W), in [-1, 1], are
    filled by :func:`load_sample_neighbours`."""

    evaluation: Path
    row: int
    space: str
    indices: np.ndarray
    distances: np.ndarray
    reference: dict[str, Any]
    how: str
    ratio: float | None = None
    flagged: bool = False
    threshold: float | None = None
    sample: np.ndarray | None = None
    images: np.ndarray | None = None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return None
    if not isinstance(data.get("retrieval"), dict) or not data["retrieval"]:
        return None  # evaluated without the nearest training images
    return data


def _run_folders(record: SampleRecord) -> list[Path]:
    """The run the sample names, and the run folder holding it (``RUN/samples/X/s.png``:
    the workspace may have moved since it was drawn)."""
    found = []
    if record.meta.get("run"):
        found.append(Path(str(record.meta["run"])))
    path = Path(record.path)
    if len(path.parents) > 2 and path.parents[1].name == "samples":
        found.append(path.parents[2])
    unique: list[Path] = []
    for folder in found:
        if (folder / "config.json").is_file() and folder not in unique:
            unique.append(folder)
    return unique


def candidate_evaluations(record: SampleRecord) -> list[Path]:
    """The evaluation JSONs that may hold this sample, newest first: the folder's own
    ``evaluation-*.json`` and its run's ``evaluations/*.json``."""
    folder = Path(record.path).parent
    files = list(folder.glob("evaluation-*.json"))
    for run in _run_folders(record):
        files.extend((run / "evaluations").glob("*.json"))

    def modified(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    return sorted(set(files), key=modified, reverse=True)


def _same_path(a: Any, b: Path) -> bool:
    try:
        return Path(str(a)).expanduser().resolve() == b.resolve()
    except (OSError, ValueError):
        return False


def _folder_row(record: SampleRecord, data: dict[str, Any], path: Path) -> tuple[int, str] | None:
    source = data.get("source") or {}
    folder = Path(record.path).parent
    if source.get("kind") != "folder" or path.parent != folder:
        return None
    if not _same_path(source.get("folder"), folder):
        return None
    written = path.stat().st_mtime
    if source.get("read_from") == "samples.npz":
        npz = folder / "samples.npz"
        index = record.meta.get("index")
        if not npz.is_file() or npz.stat().st_mtime > written or not isinstance(index, int):
            return None
        seeds = source.get("seeds")
        if seeds and record.seed is not None and not seeds[0] <= record.seed <= seeds[-1]:
            return None
        return index, f"sample {index + 1} of this folder's samples.npz"
    skipped = {Path(str(item.get("path", ""))).name for item in source.get("skipped") or []}
    pngs = sorted(p for p in folder.glob("*.png") if p.name != "grid.png")
    if any(p.stat().st_mtime > written for p in pngs if p.is_file()):
        return None  # files came or changed after the evaluation: rows no longer line up
    order = [p.name for p in pngs if p.name not in skipped]
    name = Path(record.path).name
    if name not in order:
        return None
    row = order.index(name)
    return row, f"PNG {row + 1} of this folder, in name order"


def _run_row(record: SampleRecord, data: dict[str, Any]) -> tuple[int, str] | None:
    source = data.get("source") or {}
    meta = record.meta
    if source.get("kind") != "run" or record.seed is None or not record.has_metadata:
        return None
    if not any(_same_path(source.get("run"), run) for run in _run_folders(record)):
        return None
    if str(source.get("checkpoint") or "") != record.checkpoint:
        return None
    if "ema" in meta and "ema" in source and bool(meta["ema"]) != bool(source["ema"]):
        return None
    theirs = str(source.get("network_sha256") or "")
    if theirs and record.network_sha256 and theirs != record.network_sha256:
        return None
    if source.get("sampler") != record.sampler or meta.get("init_noise"):
        return None
    if json.dumps(source.get("sampler_params") or {}, sort_keys=True, default=str) != \
            json.dumps(record.params, sort_keys=True, default=str):
        return None
    if source.get("class_label") != record.class_label or record.guidance not in (None, 1.0):
        return None
    first = source.get("seed")
    if not isinstance(first, int):
        return None
    row = record.seed - first
    if not 0 <= row < int(data.get("n") or 0):
        return None
    return row, (f"the run's evaluation drew seed {record.seed} with the same checkpoint, "
                 "sampler and parameters")


def find_sample_neighbours(record: SampleRecord) -> SampleNeighbours | None:
    """The newest evaluation row that is this sample, or None (see the module docstring)."""
    for path in candidate_evaluations(record):
        data = _read(path)
        if data is None:
            continue
        try:
            matched = _folder_row(record, data, path) or _run_row(record, data)
        except OSError:
            continue
        if matched is None:
            continue
        row, how = matched
        if row >= int(data.get("n") or 0):
            continue
        reference = data.get("reference") or {}
        subset = (reference.get("used") or 0) < (reference.get("size") or 0)
        order = tuple(reversed(_SPACES)) if subset else _SPACES
        space = next((s for s in order if s in data["retrieval"]), None)
        if space is None:
            continue
        found = data["retrieval"][space]
        try:
            indices = np.asarray(found["indices"][row], dtype=np.int64)
            distances = np.asarray(found["distances"][row], dtype=np.float64)
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        neighbours = SampleNeighbours(path, row, space, indices, distances,
                                      dict(reference), how)
        report = data.get("memorization")
        if isinstance(report, dict):
            ratios = report.get("ratios") or []
            if row < len(ratios):
                neighbours.ratio = float(ratios[row])
                neighbours.flagged = row in set(report.get("flagged") or [])
                neighbours.threshold = report.get("threshold")
        return neighbours
    return None


_DATASETS: dict[str, Any] = {}  # the last reference dataset loaded, by its JSON spec
_DATASETS_LOCK = threading.Lock()


def _reference_dataset(registry: Any, reference: dict[str, Any]) -> Any:
    from diffstudio.engine.evaluation.sources import reference_from_registry

    dataset_id = reference.get("dataset")
    if not dataset_id:
        raise EvaluationError("the evaluation does not say which reference dataset it used")
    if dataset_id not in registry.ids("dataset"):
        raise EvaluationError(f"the evaluation's reference dataset {dataset_id!r} is not "
                              "installed")
    key = json.dumps([dataset_id, reference.get("params") or {}], sort_keys=True, default=str)
    with _DATASETS_LOCK:
        if key not in _DATASETS:
            dataset, _ = reference_from_registry(registry, dataset_id, reference.get("params"))
            _DATASETS.clear()  # one at a time: a reference set can be large
            _DATASETS[key] = dataset
        return _DATASETS[key]


def _pixels(path: str | os.PathLike[str]) -> np.ndarray:
    """A PNG as (C, H, W) in [-1, 1], grey as one channel (as a samples folder is read)."""
    from diffstudio.engine.image_files import open_image

    picture, reason = open_image(path)
    if picture is None:
        raise EvaluationError(f"cannot read {path}: {reason}")
    grey = picture.mode in ("L", "I;16", "1")
    array = np.asarray(picture.convert("L" if grey else "RGB"), dtype=np.float32) / 127.5 - 1.0
    return array[None] if grey else array.transpose(2, 0, 1)


def load_sample_neighbours(record: SampleRecord, registry: Any) -> SampleNeighbours | None:
    """:func:`find_sample_neighbours` with the sample's pixels and the reference images its
    neighbours name (the evaluation's reference dataset, built from its plugin)."""
    found = find_sample_neighbours(record)
    if found is None:
        return None
    dataset = _reference_dataset(registry, found.reference)
    size = found.reference.get("size")
    if isinstance(size, int) and size != len(dataset):
        raise EvaluationError(f"the reference dataset now holds {len(dataset):,} images, not the "
                              f"{size:,} {found.evaluation.name} was computed against")
    if found.indices.size and int(found.indices.max()) >= len(dataset):
        raise EvaluationError(f"{found.evaluation.name} names training image "
                              f"#{int(found.indices.max())}, beyond the reference dataset")
    import torch

    images = dataset.data[torch.from_numpy(found.indices)].detach().float().cpu().numpy()
    return replace(found, sample=_pixels(record.path), images=images)
