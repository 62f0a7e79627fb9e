"""The training settings: one declaration, from which the config's validation, the CLI's flags
(``diffstudio train --batch-size ...``) and the Train page's form are all made.

Each setting is a :class:`~diffstudio.specs.Param`, the same type plugins declare their
parameters with. :class:`TrainConfig` is what a run's ``config.json`` saves under "train": the
settings plus the dataset, network and schedule ids and their (plugin-validated) parameters.
This module imports no torch: the window builds its form from it before torch has loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from diffstudio.errors import ConfigError, RunError
from diffstudio.specs import Param

__all__ = [
    "COMPONENT_FIELDS",
    "PREDICTION_TYPES",
    "TRAIN_SETTINGS",
    "TrainConfig",
    "TrainSetting",
    "resume_changes",
    "setting",
]

# As diffstudio.engine.parameterization.PREDICTION_TYPES (a test keeps them equal); repeated so
# this module stays free of torch.
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "sample", "v_prediction", "score")



@dataclass(frozen=True)
class TrainSetting(Param):
    """One training setting: a :class:`~diffstudio.specs.Param` that also says whether a
    resumed run may change it. ``resumable`` settings change how training goes on (its length,
    the learning rate and its schedule, clipping, EMA decay, batch size, device, precision,
    intervals), not the model being trained (network, schedule, data, objective)."""

    resumable: bool = False


# The fields that are not plain settings: the components and their plugin parameters.
COMPONENT_FIELDS = ("dataset", "dataset_params", "network", "network_params", "schedule",
                    "schedule_params")

# The components a training gets when it names none (the CLI, the window's first choice, the
# TrainConfig fields). The cosine schedule (Nichol & Dhariwal 2021, arXiv:2102.09672, eq. 17)
# won the digits preset's sweep: at 5 minutes of CPU training its samples are closer to the
# real digits than the linear schedule's (bench/README.md, "The digits preset").
DEFAULT_COMPONENTS = {"dataset": "digits", "schedule": "cosine"}

TRAIN_SETTINGS: tuple[TrainSetting, ...] = (
    TrainSetting("num_timesteps", "int", 1000, minimum=2, maximum=100_000,
                 help="T, the number of diffusion steps of the forward process"),
    TrainSetting("prediction_type", "choice", "epsilon", choices=PREDICTION_TYPES,
                 help="what the network predicts: the noise eps, x_0 (sample), v, or the score"),
    TrainSetting("steps", "int", 2500, minimum=0, maximum=100_000_000, resumable=True,
                 help="optimizer steps to train for (on continuing: the new total)"),
    TrainSetting("epochs", "int", 0, minimum=0, maximum=1_000_000, resumable=True,
                 help="> 0: train for this many passes over the data instead of a number of steps"),
    TrainSetting("batch_size", "int", 128, minimum=1, maximum=65_536, resumable=True,
                 help="samples per step"),
    TrainSetting("learning_rate", "float", 2e-3, minimum=1e-8, maximum=1.0, resumable=True,
                 help="AdamW learning rate after warm-up"),
    TrainSetting("lr_schedule", "choice", "cosine", choices=("constant", "linear", "cosine"),
                 resumable=True, help="how the learning rate decays after warm-up"),
    TrainSetting("warmup_steps", "int", 500, minimum=0, resumable=True,
                 help="steps of linear learning-rate warm-up"),
    TrainSetting("weight_decay", "float", 0.0, minimum=0.0, maximum=1.0,
                 help="AdamW weight decay"),
    TrainSetting("ema_decay", "float", 0.999, minimum=0.0, maximum=0.99999, resumable=True,
                 help="decay of the EMA copy of the weights used for previews and sampling"),
    TrainSetting("grad_clip", "float", 1.0, minimum=0.0, maximum=1e6, resumable=True,
                 help="largest gradient norm (0: no clipping)"),
    TrainSetting("label_dropout", "float", 0.1, minimum=0.0, maximum=0.99,
                 help="class-conditional networks: share of labels dropped (classifier-free "
                      "guidance)"),
    TrainSetting("hybrid_lambda", "float", 0.001, minimum=0.0, maximum=0.999,
                 help="learned-variance networks: weight of L_vlb in L_hybrid (Improved DDPM: "
                      "0.001)"),
    TrainSetting("mixed_precision", "choice", "auto", choices=("auto", "no", "bf16", "fp16"),
                 resumable=True,
                 help="autocast precision; auto is bf16 on a CUDA GPU that has it, else float32"),
    TrainSetting("device", "str", "auto", resumable=True,
                 help="auto, cpu, cuda, cuda:N or mps"),
    TrainSetting("seed", "int", 0, minimum=0, maximum=2**31 - 1,
                 help="seeds initialisation and data"),
    TrainSetting("log_every", "int", 10, minimum=1, resumable=True,
                 help="steps between points of the loss curve"),
    TrainSetting("checkpoint_every", "int", 500, minimum=1, resumable=True,
                 help="steps between checkpoints (a stop always writes one)"),
    TrainSetting("keep_checkpoints", "int", 2, minimum=0, maximum=1000, resumable=True,
                 help="checkpoints kept on disk (0: all)"),
    TrainSetting("preview_every", "int", 500, minimum=0, resumable=True,
                 help="steps between preview samples from the EMA weights (0: none)"),
    TrainSetting("preview_samples", "int", 16, minimum=1, maximum=4096, resumable=True,
                 help="samples in each preview (use hundreds for 2-D points)"),
    TrainSetting("preview_steps", "int", 25, minimum=1, maximum=10_000, resumable=True,
                 help="DDIM steps used for the previews"),
)

_BY_NAME = {param.name: param for param in TRAIN_SETTINGS}


def setting(name: str) -> Param:
    """The declaration of one training setting."""
    return _BY_NAME[name]


def resume_changes(saved: Mapping[str, Any], given: Mapping[str, Any], where: str = "the run",
                   *, strict: bool = True) -> dict[str, list[Any]]:
    """The settings a resume changes, ``{name: [old, new]}``, between the run's saved "train"
    dict and the new one. With ``strict`` (the run has a checkpoint: there is a model to keep)
    a change to anything not declared ``resumable`` -- a component, its parameters, T, the
    prediction type, the objective, the seed -- is a :class:`RunError` that lists what may
    change."""
    changes = {name: [saved.get(name), value] for name, value in sorted(given.items())
               if saved.get(name) != value}
    fixed = [name for name in changes
             if name not in _BY_NAME or not _BY_NAME[name].resumable]
    if strict and fixed:
        may = ", ".join(param.name for param in TRAIN_SETTINGS if param.resumable)
        raise RunError(
            f"resuming {where} would change {', '.join(fixed)}, which change the model being "
            f"trained; on resume only these settings may change: {may}. Start a new run "
            "(--out) for other settings"
        )
    return changes


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as the run's config.json "train".

    The plain settings and their defaults are :data:`TRAIN_SETTINGS` (a test keeps the fields
    and the declaration equal); ``epochs`` > 0 overrides ``steps`` (epochs * ceil(N / batch)).
    """

    dataset: str = DEFAULT_COMPONENTS["dataset"]
    dataset_params: dict[str, Any] = field(default_factory=dict)
    network: str = "unet"
    network_params: dict[str, Any] = field(default_factory=dict)
    schedule: str = DEFAULT_COMPONENTS["schedule"]
    schedule_params: dict[str, Any] = field(default_factory=dict)
    num_timesteps: int = 1000
    prediction_type: str = "epsilon"
    steps: int = 2500
    epochs: int = 0
    batch_size: int = 128
    learning_rate: float = 2e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 500
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    label_dropout: float = 0.1
    hybrid_lambda: float = 0.001
    mixed_precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    preview_every: int = 500
    preview_samples: int = 16
    preview_steps: int = 25

    def validate(self) -> TrainConfig:
        """Coerce and check every setting against its declaration; raise :class:`ConfigError`
        naming the setting, the bad value and the valid range."""
        for param in TRAIN_SETTINGS:
            try:
                setattr(self, param.name, param.coerce(getattr(self, param.name)))
            except ConfigError as exc:
                flag = "--" + param.name.replace("_", "-")
                text = str(exc).replace("parameter ", "training setting ", 1)
                raise ConfigError(f"{text} ({flag} on the command line)") from exc
        if self.steps == 0 and self.epochs == 0:
            raise ConfigError("set steps or epochs to more than 0")
        device = self.device.strip().lower()
        kind, _, index = device.partition(":")
        if kind not in ("auto", "cpu", "cuda", "mps") or (index and not (
                kind == "cuda" and index.isdigit())):
            raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        self.device = device
        for name in ("dataset", "network", "schedule"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name} must be a contribution id, got {getattr(self, name)!r}")
        for name in ("dataset_params", "network_params", "schedule_params"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"{name} must be a mapping of parameters, got "
                                  f"{type(getattr(self, name)).__name__}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        if not isinstance(values, dict):
            raise ConfigError(f"training settings must be a JSON object, got "
                              f"{type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown training setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**values).validate()
