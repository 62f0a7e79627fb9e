"""Where the samples of an evaluation come from, and what they say about themselves.

A *run* (its config names the training set: the default reference) or a *samples folder*
(``samples.npz`` written by ``diffstudio sample``, else its PNGs, whose metadata names the run
that made them). Run paths and configs are read through :class:`~diffstudio.engine.runs.Run`
and :class:`~diffstudio.engine.runs.RunConfig`, never spelled out here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffstudio.engine.datasets import Dataset, SkippedFile
from diffstudio.engine.image_files import file_problem, open_image
from diffstudio.engine.runs import Run, RunConfig
from diffstudio.errors import DiffstudioError, EvaluationError

__all__ = [
    "LoadedSamples",
    "folder_source",
    "is_run_folder",
    "load_samples_folder",
    "reference_from_registry",
    "run_model_info",
    "training_reference",
]


def is_run_folder(path: str | Path) -> bool:
    """True when ``path`` is a run (it has a config.json); else it is taken as samples."""
    return Run.is_run(Path(path).expanduser())


def _sample_pngs(folder: Path) -> list[Path]:
    """Every entry named ``*.png`` except the grid, sorted (directories and links included:
    :func:`~diffstudio.engine.image_files.open_image` says why one cannot be read)."""
    return sorted(p for p in folder.glob("*.png") if p.name != "grid.png")


def _first_metadata(pngs: list[Path]) -> dict[str, Any]:
    """The ``diffstudio`` metadata of the first readable PNG ({} when none has any)."""
    from diffstudio.engine.pngmeta import read_png_metadata

    for path in pngs:
        if not file_problem(path):
            try:
                return read_png_metadata(path)
            except Exception:  # not a PNG after all: its pixels are refused with the reason
                continue
    return {}


def training_reference(source: str | Path | None) -> tuple[str | None, dict[str, Any], str]:
    """The default reference of an evaluation: ``(dataset id, params, where it came from)`` of
    the run's training set, or of the run a samples folder's PNGs name; ``(None, {}, "")`` when
    neither says. A run whose config is malformed raises its :class:`RunError`."""
    if source is None:
        return None, {}, ""
    location = Path(source).expanduser()
    if is_run_folder(location):
        config = Run(location).config()
        return config.dataset, dict(config.dataset_params), f"the training set of {location}"
    if location.is_dir():
        run = _first_metadata(_sample_pngs(location)).get("run")
        if run and is_run_folder(run):
            try:
                config = Run(run).config()
            except DiffstudioError:
                return None, {}, ""
            return (config.dataset, dict(config.dataset_params),
                    f"the training set of {run} (named in the PNGs)")
    return None, {}, ""


def reference_from_registry(
    registry: Any, dataset_id: str, params: Mapping[str, Any] | None = None
) -> tuple[Dataset, dict[str, Any]]:
    """Build a reference dataset from its plugin id; returns it with a JSON description."""
    from diffstudio.engine.components import build_dataset

    contribution = registry.get("dataset", dataset_id)
    values = contribution.validate(params)
    dataset = build_dataset(registry, dataset_id, values)
    if dataset.kind != "image":
        raise EvaluationError(
            f"the reference dataset {dataset_id!r} holds {dataset.kind}, not images; Inception "
            "metrics need an image dataset"
        )
    return dataset, {"dataset": dataset_id, "params": values}


@dataclass
class LoadedSamples:
    """Samples read from a folder: (N, C, H, W) float32 in [-1, 1], with what is known of them."""

    samples: torch.Tensor
    seeds: list[int] | None
    metadata: dict[str, Any]
    source: str  # "samples.npz" or "png"
    folder: Path
    skipped: list[SkippedFile] = field(default_factory=list)  # PNGs that could not be read

    def skipped_note(self) -> str:
        """One line naming the unreadable files ("" when none was skipped)."""
        if not self.skipped:
            return ""
        shown = "; ".join(f"{Path(item.path).name}: {item.reason}" for item in self.skipped[:3])
        more = f" (and {len(self.skipped) - 3} more)" if len(self.skipped) > 3 else ""
        return (f"note: skipped {len(self.skipped)} unreadable file(s) in {self.folder}: "
                f"{shown}{more}")


def load_samples_folder(folder: str | Path) -> LoadedSamples:
    """Read ``samples.npz`` (from ``diffstudio sample``) or else every ``*.png`` of ``folder``.

    PNGs are read in sorted name order, as grey when every file is single-channel, else RGB,
    and mapped from 0..255 to [-1, 1]; a file that cannot be read (corrupt, truncated, not an
    image, over the pixel limit, a directory or a link named ``*.png``) is skipped and listed in
    ``skipped``. The ``diffstudio`` metadata of the first readable PNG (run, sampler, steps,
    network evaluations) is returned when present.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise EvaluationError(f"no samples folder at {root}; give the folder 'diffstudio sample' "
                              "wrote (it holds samples.npz and PNGs)")
    pngs = _sample_pngs(root)
    metadata = _first_metadata(pngs)
    npz = root / "samples.npz"
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as data:
                array = np.asarray(data["samples"], dtype=np.float32)
                seeds = [int(s) for s in data["seeds"]] if "seeds" in data else None
        except Exception as exc:
            raise EvaluationError(f"cannot read {npz}: {type(exc).__name__}: {exc}") from exc
        if array.ndim != 4:
            raise EvaluationError(
                f"{npz} holds samples shaped {array.shape}; image samples (N, C, H, W) are needed "
                "(2-D point samples have no Inception features)"
            )
        return LoadedSamples(torch.from_numpy(array), seeds, metadata, "samples.npz", root)
    if not pngs:
        raise EvaluationError(f"{root} holds neither samples.npz nor PNG images")
    arrays, skipped = [], []
    for path in pngs:
        picture, reason = open_image(path)
        if picture is None:
            skipped.append(SkippedFile(str(path), reason))
            continue
        arrays.append(np.asarray(picture.convert(
            "RGB" if picture.mode not in ("L", "I;16") else "L")))
    if not arrays:
        first = skipped[0]
        raise EvaluationError(
            f"no readable PNG in {root}: all {len(skipped)} were skipped (e.g. "
            f"{Path(first.path).name}: {first.reason}); give the folder 'diffstudio sample' wrote"
        )
    grey = all(a.ndim == 2 for a in arrays)
    if not grey:
        arrays = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise EvaluationError(f"the PNGs in {root} have different sizes: {sorted(shapes)[:3]}")
    stack = np.stack(arrays).astype(np.float32)
    stack = stack[:, None] if grey else stack.transpose(0, 3, 1, 2)
    samples = torch.from_numpy(stack / 127.5 - 1.0)
    return LoadedSamples(samples, None, metadata, "png", root, skipped)


def run_model_info(run: Run, config: RunConfig, checkpoint: Path | None) -> dict[str, Any]:
    """The model facts an evaluation records (and the comparison tables group by)."""
    info: dict[str, Any] = {
        "run_name": run.name,
        "network": config.network,
        "prediction_type": config.prediction_type,
        "schedule": config.schedule,
        "num_timesteps": config.num_timesteps,
        "dataset": config.dataset,
    }
    if checkpoint is not None:
        state = run.read_state(checkpoint)
        if state:
            info["training_steps"] = state.get("step")
            info["training_seconds"] = state.get("trained_seconds")
        info["checkpoint"] = checkpoint.name
    return info


def folder_source(loaded: LoadedSamples) -> tuple[dict[str, Any], dict[str, Any]]:
    """(source, model) records for samples read from a folder, from the PNG metadata if any."""
    meta = loaded.metadata
    source = {
        "kind": "folder",
        "folder": str(loaded.folder.resolve()),
        "read_from": loaded.source,
        "run": meta.get("run"),
        "checkpoint": meta.get("checkpoint"),
        "sampler": meta.get("sampler"),
        "sampler_params": meta.get("sampler_params"),
        "steps": meta.get("steps"),
        "network_evaluations": meta.get("network_evaluations"),
        "seeds": [loaded.seeds[0], loaded.seeds[-1]] if loaded.seeds else None,
        "skipped": [{"path": item.path, "reason": item.reason} for item in loaded.skipped],
    }
    model: dict[str, Any] = {}
    named = meta.get("run")
    if named and is_run_folder(named):
        run = Run(named)
        try:
            config = run.config()
        except DiffstudioError:
            return source, model
        name = meta.get("checkpoint")
        checkpoint = run.checkpoints_dir / str(name) if name else None
        model = run_model_info(
            run, config, checkpoint if checkpoint is not None and checkpoint.is_dir() else None)
    return source, model
