"""The training job: one path from a request to checkpoints, for ``diffstudio train`` and the
Train page alike.

:class:`TrainRequest` says where (a new run ``out``, or ``resume`` an existing one) and what:
the training settings given (``settings``: TrainConfig fields, the plugin ids and their
parameters), laid over a base (the resumed run's own settings, or a settings file) and the
defaults by :meth:`TrainRequest.resolve` -- the CLI's flags and the window's form both end up
there. :func:`train` runs the engine's Trainer and yields its events: the engine's TrainEvent
("start", "step" with loss, lr and images/s, "preview", "checkpoint", "done"), a
:class:`~diffstudio.app.events.Progress` per logged step with the same images/s and an ETA, and
finally ``Done(TrainResult)``. Closing the job (Ctrl+C) or Stop makes the trainer write a
checkpoint first: nothing trained is lost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffstudio.app.events import Done, Note, Progress
from diffstudio.app.threaded import StopCheck
from diffstudio.engine.train_config import DEFAULT_COMPONENTS
from diffstudio.errors import ConfigError

__all__ = ["TrainRequest", "launch_rank", "noise_level_warning", "read_settings_file", "train"]

COMPONENTS = ("dataset", "network", "schedule")


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """Training settings from a JSON file: a TrainConfig dict, or a run's config.json (its
    "train" section)."""
    try:
        payload = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(payload, dict):
        raise ConfigError(f"config {path} must hold a JSON object of training settings")
    train = payload.get("train", payload)
    if not isinstance(train, dict):
        raise ConfigError(f"config {path}: 'train' must be a JSON object of training settings")
    return train


def default_network(registry: Any, dataset_id: str) -> str:
    """The MLP for 2-D points, the U-Net for images."""
    if dataset_id in registry.ids("dataset") and "points" in registry.get(
            "dataset", dataset_id).tags:
        return "mlp"
    return "unet"


@dataclass
class TrainRequest:
    """A training to start (``out``: a new run folder) or continue (``resume``: a run folder).

    ``settings``: TrainConfig fields given by the user (ids such as ``dataset``, their
    ``*_params``, and plain settings such as ``steps``); ``base``: settings they are laid over
    (a settings file), else the resumed run's own. ``cuda_index`` picks the GPU of a "cuda"
    device for the thread that trains.
    """

    out: str | None = None
    resume: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    base: Mapping[str, Any] | None = None
    cuda_index: int | None = None

    @property
    def run_dir(self) -> str:
        if bool(self.out) == bool(self.resume):
            raise ConfigError("give a new run folder (--out RUN) or a run to continue "
                              "(--resume RUN), one of them")
        if self.out and launch_rank() == 0:  # the other processes find rank 0's folder
            check_new_run_folder(self.out)
        return str(self.resume or self.out)

    def base_settings(self) -> dict[str, Any]:
        if self.base is not None:
            return dict(self.base)
        if self.resume:
            from diffstudio.engine.runs import Run

            return dict(Run(self.resume).config().train)
        return {}

    def chosen_ids(self, registry: Any) -> dict[str, str]:
        """The dataset, network and schedule ids this request trains."""
        base = self.base_settings()
        given = self.settings
        dataset = str(given.get("dataset") or base.get("dataset")
                      or DEFAULT_COMPONENTS["dataset"])
        return {
            "dataset": dataset,
            "network": str(given.get("network") or base.get("network")
                           or default_network(registry, dataset)),
            "schedule": str(given.get("schedule") or base.get("schedule")
                            or DEFAULT_COMPONENTS["schedule"]),
        }

    def resolve(self, registry: Any) -> Any:
        """The full, validated TrainConfig: defaults < base < given; a component's parameters
        carry over from the base only while its id stays the same; an explicit ``steps``
        without ``epochs`` sets the length of the run."""
        from diffstudio.engine.training import TrainConfig

        self.run_dir  # noqa: B018 (one of out/resume, or the clear error)
        base = self.base_settings()
        chosen = self.chosen_ids(registry)
        values = dict(base)
        values.update({k: v for k, v in self.settings.items()
                       if k not in COMPONENTS and not k.endswith("_params")})
        values.update(chosen)
        for kind in COMPONENTS:
            contribution = registry.get(kind, chosen[kind])  # unknown: says what is installed
            params = dict(base.get(f"{kind}_params") or {}) if base.get(kind) == chosen[kind] \
                else {}
            params.update(self.settings.get(f"{kind}_params") or {})
            values[f"{kind}_params"] = contribution.validate(params)
        if "steps" in self.settings and "epochs" not in self.settings:
            values["epochs"] = 0
        return TrainConfig.from_dict(values)


def launch_rank() -> int:
    """This process's rank under ``accelerate launch`` or torchrun (their ``RANK``); 0 when
    it was started alone. Only rank 0 checks, prints and writes."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def noise_level_warning(config: Any, registry: Any) -> str:
    """A warning when the schedule's largest noise level is under half the largest distance
    between the training points (Song & Ermon 2020, arXiv:2006.09011, Technique 1: then
    Langevin cannot carry samples between modes and their weights come out wrong); "" when
    it fits, or for data without a computed scale (images)."""
    schedule = registry.get("schedule", config.schedule)
    dataset = registry.get("dataset", config.dataset)
    if "points" not in dataset.tags or not {"sigma_max", "sigma_min"} <= {
            p.name for p in schedule.params}:
        return ""
    from diffstudio.engine.components import build_dataset
    from diffstudio.engine.suggestions import noise_scale, suggest_schedule_levels

    suggested = suggest_schedule_levels(
        [p.name for p in schedule.params],
        noise_scale(build_dataset(registry, config.dataset, config.dataset_params)))
    sigma_max = float(config.schedule_params.get("sigma_max", 0.0))
    if "sigma_max" not in suggested or sigma_max >= 0.5 * suggested["sigma_max"].value:
        return ""
    best = suggested["sigma_max"]
    return (f"the schedule's sigma_max {sigma_max:.3g} is under half the data's "
            f"{best.value:.3g} ({best.reason}): samples cannot move between modes, so their "
            f"weights will come out wrong; train with --schedule.sigma-max {best.value:.3g} "
            f"--schedule.sigma-min {suggested['sigma_min'].value:.3g}")


def check_new_run_folder(out: str) -> None:
    """Refuse, before anything is built, an ``--out`` that is a file or cannot be written."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose a new folder for the run")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, so no folder can be made inside it")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"--out {out}: {existing} is not writable by this user; choose a folder you can "
            "write to"
        )


def train(
    request: TrainRequest,
    *,
    registry: Any = None,
    should_stop: StopCheck | None = None,
) -> Iterator[Any]:
    """Yields the trainer's TrainEvents (not its per-step ticks), a Progress before every step
    (the images/s of the last logged window and the trainer's ETA), then Done(TrainResult).

    The trainer is itself a generator (``Trainer.run``), driven here in the consumer's thread:
    a consumer that stops pulling pauses training; ``should_stop`` turning true stops it at the
    next step with a checkpoint and a "stopped" result; closing this job writes a checkpoint of
    the steps since the last one and ends without a result."""
    if registry is None:
        from diffstudio.plugin_manager import load_plugins

        registry = load_plugins()
    config = request.resolve(registry)
    if request.cuda_index is not None:
        import torch

        torch.cuda.set_device(request.cuda_index)  # per thread: the one pulling this job
    from diffstudio.engine.training import Trainer

    warning = noise_level_warning(config, registry)
    if warning:
        yield Note(warning, level="warning")
    trainer = Trainer(config, request.run_dir, resume=bool(request.resume), registry=registry)
    events = trainer.run()
    try:
        for event in events:
            if event.kind == "tick":
                if should_stop is not None and should_stop():
                    trainer.request_stop()
                yield Progress("train", event.step, event.total_steps, event.elapsed or 0.0,
                               unit="step", rate=event.images_per_second, remaining=event.eta)
                continue
            if event.kind == "step":
                yield Progress("train", event.step, event.total_steps, event.elapsed or 0.0,
                               unit="step", rate=event.images_per_second,
                               detail=f"loss {event.loss:.4f}" if event.loss is not None else "",
                               remaining=event.eta)
            yield event
    finally:
        events.close()  # a job closed mid-way: the trainer checkpoints what it trained
    yield Done(trainer.result)
