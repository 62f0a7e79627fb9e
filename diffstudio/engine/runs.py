"""A run is a directory; this module is the only code that knows its layout.

::

    run/
      config.json                     the training config, dataset summary, versions
      metrics.jsonl                   one JSON object per logged step (step, loss, lr, images/s)
      latest.json                     names the newest complete checkpoint (written atomically)
      checkpoints/step-00001000/
        network/                      diffusers save_pretrained layout (config.json + safetensors)
        network_ema/                  the EMA copy, same layout (used for sampling)
        training_state.safetensors    optimizer moments, RNG states; JSON metadata in its header
        state.json                    step, loss, time trained
      previews/step-00001000.png      preview grids written during training
      samples/<name>/                 PNGs with metadata + samples.npz

Checkpoints are built in a temporary folder and renamed into place, then ``latest.json`` is
replaced atomically, so a process killed at any moment leaves the previous checkpoint intact.
Nothing here unpickles: weights and optimizer state are safetensors, the rest is JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from diffstudio.engine.io import atomic_directory, atomic_write_json, atomic_write_text
from diffstudio.errors import RunError

__all__ = ["WEIGHTS_NAME", "Run", "load_network_weights", "save_network"]

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
_CHECKPOINT = re.compile(r"^step-(\d+)$")
_STATE_KEY = "diffstudio"


def save_network(network: torch.nn.Module, folder: Path) -> None:
    """Write ``network`` in diffusers ``save_pretrained`` layout (safetensors + config.json).

    A network that is not a diffusers ``ModelMixin`` gets the weights file only.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(network, "save_pretrained"):
        network.save_pretrained(folder, safe_serialization=True)
    else:
        state = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME))


def load_network_weights(network: torch.nn.Module, folder: Path) -> None:
    """Load safetensors weights from ``folder`` into an already built ``network`` (strict)."""
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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def optimizer_state_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state_dict into safetensors-able tensors and JSON metadata."""
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


class Run:
    """A run directory (it may not exist yet)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()

    # -- config and metrics -------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def exists(self) -> bool:
        return self.config_path.is_file()

    def read_config(self) -> dict[str, Any]:
        if not self.config_path.is_file():
            raise RunError(
                f"{self.path} is not a diffstudio run (no config.json); "
                "train one with 'diffstudio train --out FOLDER'"
            )
        try:
            return json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RunError(f"the run config {self.config_path} is unreadable: {exc}") from exc

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

    # -- checkpoints ----------------------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first."""
        found = []
        if self.checkpoints_dir.is_dir():
            for child in self.checkpoints_dir.iterdir():
                match = _CHECKPOINT.match(child.name)
                if match and (child / "state.json").is_file():
                    found.append((int(match.group(1)), child))
        return sorted(found)

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint ``latest.json`` names, else the newest complete one, else None."""
        pointer = self.path / "latest.json"
        if pointer.is_file():
            try:
                name = json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
                candidate = self.path / name
                if (candidate / "state.json").is_file():
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
        target = self.checkpoints_dir / f"step-{step:08d}"
        if target.exists():
            shutil.rmtree(target)  # a checkpoint of this very step is being redone after resume
        with atomic_directory(target) as temp:
            save_network(network, temp / "network")
            save_network(ema_network, temp / "network_ema")
            save_file(
                tensors,
                str(temp / "training_state.safetensors"),
                metadata={_STATE_KEY: json.dumps(metadata)},
            )
            atomic_write_json(temp / "state.json", {"step": step, **state})
        atomic_write_json(
            self.path / "latest.json", {"checkpoint": f"checkpoints/{target.name}", "step": step}
        )
        for _, folder in self.checkpoints()[:-keep] if keep > 0 else []:
            shutil.rmtree(folder, ignore_errors=True)
        return target

    def clean_partial(self) -> None:
        """Remove temporary folders left by a process killed mid-checkpoint."""
        if self.checkpoints_dir.is_dir():
            for child in self.checkpoints_dir.iterdir():
                if child.name.startswith(".tmp-"):
                    shutil.rmtree(child, ignore_errors=True)

    @staticmethod
    def read_training_state(
        checkpoint: Path,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
        """(tensors, metadata, state.json) of a checkpoint."""
        path = checkpoint / "training_state.safetensors"
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                metadata = json.loads((handle.metadata() or {}).get(_STATE_KEY, "{}"))
            tensors = load_file(str(path))
            state = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
        except Exception as exc:
            raise RunError(
                f"the checkpoint {checkpoint} is unreadable ({type(exc).__name__}: {exc}); "
                "resume from an earlier one with --checkpoint"
            ) from exc
        return tensors, metadata, state
