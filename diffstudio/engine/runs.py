"""A run is a directory; this module is the only code that knows its layout.

::

    run/
      config.json                     the training config, dataset summary, versions, and
                                      "history": the settings each resume changed
      metrics.jsonl                   one JSON object per logged step (step, loss, lr, images/s)
      latest.json                     names the newest complete checkpoint (written atomically)
      train.lock                      while training writes: its pid, host and start (run_lock)
      checkpoints/step-00001000/
        network/                      diffusers save_pretrained layout (config.json + safetensors)
        network_ema/                  the EMA copy, same layout (used for sampling)
        training_state.safetensors    optimizer moments, RNG states; JSON metadata in its header
        state.json                    step, loss, time trained
      previews/step-00001000.png      preview grids written during training
      samples/<name>/                 PNGs with metadata + samples.npz
      evaluations/<name>.json         evaluation results

Checkpoints are built in a temporary folder and renamed into place, then ``latest.json`` is
replaced atomically, so a process killed at any moment leaves the previous checkpoint intact;
old ones are pruned by renaming them to a ``.trash-`` name, then deleting it, and what a kill
left (temporary, trash or incomplete folders) is removed when training starts again.
Nothing here unpickles: weights and optimizer state are safetensors, the rest is JSON.

Importing this module is cheap (no torch): the window lists and describes runs before torch has
loaded; the functions that read or write tensors import torch when called.
:class:`RunConfig` is the typed view of ``config.json`` that the CLI, the window and evaluation
read instead of indexing the JSON themselves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffstudio.engine.io import atomic_directory, atomic_write_json, atomic_write_text
from diffstudio.engine.run_lock import LockHolder, RunLock
from diffstudio.errors import RunError

if TYPE_CHECKING:
    import torch

__all__ = [
    "WEIGHTS_NAME",
    "Run",
    "RunConfig",
    "load_network_weights",
    "optimizer_state_from_tensors",
    "optimizer_state_tensors",
    "save_network",
]

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
_CHECKPOINT = re.compile(r"^step-(\d+)$")
_STATE_KEY = "diffstudio"
_TRASH = ".trash-"  # a checkpoint being deleted (renamed first, so none is left half-deleted)


def save_network(network: torch.nn.Module, folder: Path) -> None:
    """Write ``network`` in diffusers ``save_pretrained`` layout (safetensors + config.json).

    A network that is not a diffusers ``ModelMixin`` gets the weights file only.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(network, "save_pretrained"):
        network.save_pretrained(folder, safe_serialization=True)
    else:
        state = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME))


def load_network_weights(network: torch.nn.Module, folder: Path) -> None:
    """Load safetensors weights from ``folder`` into an already built ``network`` (strict)."""
    from safetensors.torch import load_file

    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise RunError(f"no weights at {weights}; the checkpoint is incomplete")
    try:
        state = load_file(str(weights))
        network.load_state_dict(state, strict=True)
    except Exception as exc:
        raise RunError(
            f"the weights in {weights} do not fit the network built from the run's config "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def optimizer_state_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state_dict into safetensors-able tensors and JSON metadata."""
    import torch

    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in state_dict["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_state_from_tensors(
    tensors: dict[str, torch.Tensor], metadata: dict[str, Any]
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in metadata.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": metadata["param_groups"]}


@dataclass(frozen=True)
class RunConfig:
    """What a run's ``config.json`` says, typed: the training settings and the dataset facts.

    ``train`` is the full training-settings dict (:class:`TrainConfig` fields) as saved;
    ``sample_shape`` is (C, H, W) for images or (D,) for points; ``x0_clip`` the data bound
    (1.0 for images, None for points); ``num_classes`` the dataset's classes (None: unlabelled);
    ``class_conditional`` whether the network takes a class label.
    """

    dataset: str
    dataset_params: dict[str, Any]
    network: str
    network_params: dict[str, Any]
    schedule: str
    schedule_params: dict[str, Any]
    num_timesteps: int
    prediction_type: str
    sample_shape: tuple[int, ...]
    kind: str
    num_classes: int | None
    x0_clip: float | None
    total_steps: int | None
    train: dict[str, Any] = field(default_factory=dict)
    dataset_info: dict[str, Any] = field(default_factory=dict)

    @property
    def class_conditional(self) -> bool:
        return bool(self.network_params.get("class_conditional"))

    @classmethod
    def from_dict(cls, config: Any, where: str = "config.json") -> RunConfig:
        """Parse a run's config; a malformed one is a :class:`RunError` saying what is missing."""
        if not isinstance(config, Mapping):
            raise RunError(
                f"{where} holds {type(config).__name__}, not a diffstudio run config (a JSON "
                "object with 'train' and 'dataset_info'); it was not written by diffstudio "
                "train, or it was damaged"
            )
        train, info = config.get("train"), config.get("dataset_info")
        if not isinstance(train, Mapping) or not isinstance(info, Mapping):
            missing = [key for key, value in (("train", train), ("dataset_info", info))
                       if not isinstance(value, Mapping)]
            raise RunError(
                f"{where} has no {' or '.join(repr(m) for m in missing)} section; it was not "
                "written by diffstudio train, or it was damaged"
            )
        try:
            total = config.get("total_steps")
            return cls(
                dataset=str(train["dataset"]),
                dataset_params=dict(train.get("dataset_params") or {}),
                network=str(train["network"]),
                network_params=dict(train.get("network_params") or {}),
                schedule=str(train["schedule"]),
                schedule_params=dict(train.get("schedule_params") or {}),
                num_timesteps=int(train["num_timesteps"]),
                prediction_type=str(train["prediction_type"]),
                sample_shape=tuple(int(n) for n in info["sample_shape"]),
                kind=str(info.get("kind", "image")),
                num_classes=(int(info["num_classes"]) if info.get("num_classes") is not None
                             else None),
                x0_clip=float(info["x0_clip"]) if info.get("x0_clip") is not None else None,
                total_steps=int(total) if total is not None else None,
                train=dict(train),
                dataset_info=dict(info),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RunError(
                f"{where} is missing or has a bad value for {exc}; it was not written by "
                "diffstudio train, or it was damaged"
            ) from exc


class Run:
    """A run directory (it may not exist yet). Every path inside a run comes from here."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()

    @staticmethod
    def is_run(path: str | Path) -> bool:
        """Whether ``path`` holds a run (its config.json), without reading it."""
        return (Path(path) / "config.json").is_file()

    @property
    def name(self) -> str:
        return self.path.name

    # -- config and metrics -------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def evaluations_dir(self) -> Path:
        return self.path / "evaluations"

    @property
    def previews_dir(self) -> Path:
        return self.path / "previews"

    def preview_path(self, step: int) -> Path:
        return self.previews_dir / f"step-{step:08d}.png"

    @property
    def onnx_dir(self) -> Path:
        return self.path / "onnx"

    def onnx_path(self, checkpoint: Path, ema: bool = True, fp16: bool = False) -> Path:
        """Where ``diffstudio onnx export`` puts a checkpoint's network by default."""
        suffix = ("" if ema else "-raw") + ("-fp16" if fp16 else "")
        return self.onnx_dir / f"{Path(checkpoint).name}{suffix}.onnx"

    def new_samples_dir(self, label: str) -> Path:
        """A fresh folder name under ``samples/`` for ``label`` (a sampler id), time-stamped."""
        return self.samples_dir / f"{label}-{time.strftime('%Y%m%d-%H%M%S')}"

    def exists(self) -> bool:
        return self.config_path.is_file()

    # -- the user's note (free text about the run, kept beside its config) --------------------
    NOTE_LIMIT = 64 * 1024  # bytes of UTF-8: a note, not a lab notebook

    @property
    def note_path(self) -> Path:
        return self.path / "note.txt"

    def read_note(self) -> str:
        """The run's note ("" when it has none)."""
        try:
            return self.note_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""
        except (OSError, UnicodeDecodeError) as exc:
            raise RunError(f"the note {self.note_path} is unreadable: {exc}") from exc

    def write_note(self, text: str) -> None:
        """Replace the note atomically; an empty (or blank) note removes the file."""
        if "\x00" in text:
            raise RunError("a note cannot hold NUL characters; paste it as plain text")
        size = len(text.encode("utf-8"))
        if size > self.NOTE_LIMIT:
            raise RunError(f"the note is {size:,} bytes, more than a run's note holds "
                           f"({self.NOTE_LIMIT:,}); keep longer texts in a file in the run "
                           "folder")
        if not self.exists():
            raise RunError(f"{self.path} is not a diffstudio run (no config.json)")
        if not text.strip():
            self.note_path.unlink(missing_ok=True)
            return
        atomic_write_text(self.note_path, text)

    def read_config(self) -> dict[str, Any]:
        if not self.config_path.is_file():
            raise RunError(
                f"{self.path} is not a diffstudio run (no config.json); "
                "train one with 'diffstudio train --out FOLDER'"
            )
        try:
            config = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RunError(f"the run config {self.config_path} is unreadable: {exc}") from exc
        RunConfig.from_dict(config, str(self.config_path))  # malformed: one clear line
        return config

    def config(self) -> RunConfig:
        """The typed config (:class:`RunConfig`)."""
        return RunConfig.from_dict(self.read_config(), str(self.config_path))

    def config_history(self) -> list[dict[str, Any]]:
        """What each resume changed: ``[{"step", "time", "changes": {name: [old, new]}}]``."""
        history = self.read_config().get("history")
        return list(history) if isinstance(history, list) else []

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.config_path, config)

    def metrics(self) -> list[dict[str, Any]]:
        """Every complete record of metrics.jsonl (a torn last line is ignored)."""
        if not self.metrics_path.is_file():
            return []
        records = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def append_metrics(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, sort_keys=True) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """Keep only records up to ``step`` (on resume, steps after the checkpoint are redone)."""
        kept = [record for record in self.metrics() if record.get("step", 0) <= step]
        atomic_write_text(
            self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept)
        )

    # -- the writer's lock ----------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.path / "train.lock"

    def writer_lock(self) -> RunLock:
        """The lock training holds while it writes this run (one writer per run); sampling
        and evaluation do not need it."""
        return RunLock(self.lock_path, what=f"the run {self.path}")

    def lock_holder(self) -> LockHolder | None:
        """Who is training this run now (pid, host, since), or None (a stale lock is None)."""
        return self.writer_lock().holder()

    # -- checkpoints ----------------------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints_dir / f"step-{step:08d}"

    @staticmethod
    def checkpoint_step(checkpoint: Path) -> int:
        """The training step a checkpoint folder holds (from its name)."""
        match = _CHECKPOINT.match(Path(checkpoint).name)
        if not match:
            raise RunError(f"{checkpoint} is not a checkpoint folder (step-NNNNNNNN)")
        return int(match.group(1))

    @staticmethod
    def weights_dir(checkpoint: Path, ema: bool = True) -> Path:
        """The network folder of a checkpoint (diffusers ``save_pretrained`` layout): the EMA
        copy (used for sampling) or the raw weights."""
        return Path(checkpoint) / ("network_ema" if ema else "network")

    @classmethod
    def weights_file(cls, checkpoint: Path, ema: bool = True) -> Path:
        return cls.weights_dir(checkpoint, ema) / WEIGHTS_NAME

    @staticmethod
    def state_file(checkpoint: Path) -> Path:
        return Path(checkpoint) / "state.json"

    def read_state(self, checkpoint: Path) -> dict[str, Any]:
        """A checkpoint's state.json (step, loss, trained_seconds); {} when unreadable."""
        try:
            state = json.loads(self.state_file(checkpoint).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}
        return state if isinstance(state, dict) else {}

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first."""
        found = []
        if self.checkpoints_dir.is_dir():
            for child in self.checkpoints_dir.iterdir():
                match = _CHECKPOINT.match(child.name)
                if match and self.state_file(child).is_file():
                    found.append((int(match.group(1)), child))
        return sorted(found)

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint ``latest.json`` names, else the newest complete one, else None."""
        pointer = self.path / "latest.json"
        if pointer.is_file():
            try:
                name = json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
                candidate = self.path / name
                if self.state_file(candidate).is_file():
                    return candidate
            except (OSError, KeyError, TypeError, json.JSONDecodeError):
                pass
        complete = self.checkpoints()
        return complete[-1][1] if complete else None

    def resolve_checkpoint(self, checkpoint: str | None) -> Path:
        """A checkpoint folder from a name (``step-00000500``), a step number, or the latest."""
        if checkpoint in (None, "", "latest"):
            found = self.latest_checkpoint()
            if found is None:
                raise RunError(
                    f"the run {self.path} has no complete checkpoint yet; train it first"
                )
            return found
        assert checkpoint is not None
        for step, folder in self.checkpoints():
            if checkpoint in (folder.name, str(step)):
                return folder
        names = ", ".join(folder.name for _, folder in self.checkpoints()) or "none"
        raise RunError(f"no checkpoint {checkpoint!r} in {self.path}; available: {names}")

    def save_checkpoint(
        self,
        step: int,
        network: torch.nn.Module,
        ema_network: torch.nn.Module,
        tensors: dict[str, torch.Tensor],
        metadata: dict[str, Any],
        state: dict[str, Any],
        keep: int = 2,
    ) -> Path:
        """Write a complete checkpoint atomically, point latest.json at it, prune old ones."""
        from safetensors.torch import save_file

        target = self.checkpoint_dir(step)
        # A checkpoint of this very step redone after a resume: write the new one first, so a
        # failed write (a full disk) still leaves the old one.
        fresh = target.with_name(f".tmp-{target.name}-redo") if target.exists() else target
        if fresh != target:
            shutil.rmtree(fresh, ignore_errors=True)  # left by an earlier, killed redo
        with atomic_directory(fresh) as temp:
            save_network(network, self.weights_dir(temp, ema=False))
            save_network(ema_network, self.weights_dir(temp, ema=True))
            save_file(
                tensors,
                str(temp / "training_state.safetensors"),
                metadata={_STATE_KEY: json.dumps(metadata)},
            )
            atomic_write_json(self.state_file(temp), {"step": step, **state})
        if fresh != target:
            self._discard(target)
            os.replace(fresh, target)
        atomic_write_json(
            self.path / "latest.json", {"checkpoint": f"checkpoints/{target.name}", "step": step}
        )
        for _, folder in self.checkpoints()[:-keep] if keep > 0 else []:
            self._discard(folder)
        return target

    def _discard(self, folder: Path) -> None:
        """Delete a checkpoint folder so that a kill mid-way leaves no half checkpoint under
        a checkpoint's name: rename it to a trash name first (atomic), then delete that."""
        trash = folder.with_name(f"{_TRASH}{folder.name}-{uuid.uuid4().hex[:8]}")
        try:
            os.replace(folder, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def clean_partial(self) -> None:
        """Remove what a process killed mid-checkpoint or mid-prune left: temporary and trash
        folders, and checkpoint folders that are not complete (no state.json) unless
        latest.json names them. Call it holding the run's writer lock."""
        if not self.checkpoints_dir.is_dir():
            return
        latest = self.latest_checkpoint()
        for child in self.checkpoints_dir.iterdir():
            if not child.is_dir():
                continue
            if child.name.startswith((".tmp-", _TRASH)):
                shutil.rmtree(child, ignore_errors=True)
            elif (_CHECKPOINT.match(child.name) and not self.state_file(child).is_file()
                  and child != latest):
                self._discard(child)

    @classmethod
    def read_training_state(
        cls,
        checkpoint: Path,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
        """(tensors, metadata, state.json) of a checkpoint."""
        path = checkpoint / "training_state.safetensors"
        try:
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), framework="pt") as handle:
                metadata = json.loads((handle.metadata() or {}).get(_STATE_KEY, "{}"))
            tensors = load_file(str(path))
            state = json.loads(cls.state_file(checkpoint).read_text(encoding="utf-8"))
        except Exception as exc:
            raise RunError(
                f"the checkpoint {checkpoint} is unreadable ({type(exc).__name__}: {exc}); "
                f"move that folder out of {checkpoint.parent} and 'diffstudio train --resume' "
                "continues from the checkpoint before it"
            ) from exc
        return tensors, metadata, state
