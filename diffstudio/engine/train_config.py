"""The training settings: one declaration, from which the config's validation, the CLI's flags
(``diffstudio train --batch-size ...``) and the Train page's form are all made.

Each setting is a :class:`~diffstudio.specs.Param`, the same type plugins declare their
parameters with. :class:`TrainConfig` is what a run's ``config.json`` saves under "train": the
settings plus the dataset, network and schedule ids and their (plugin-validated) parameters.
This module imports no torch: the window builds its form from it before torch has loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from diffstudio.errors import ConfigError
from diffstudio.specs import Param

__all__ = ["COMPONENT_FIELDS", "PREDICTION_TYPES", "TRAIN_SETTINGS", "TrainConfig", "setting"]

# As diffstudio.engine.parameterization.PREDICTION_TYPES (a test keeps them equal); repeated so
# this module stays free of torch.
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "sample", "v_prediction", "score")

# The fields that are not plain settings: the components and their plugin parameters.
COMPONENT_FIELDS = ("dataset", "dataset_params", "network", "network_params", "schedule",
                    "schedule_params")

# Upper bound of step counts and intervals: beyond any run, so "never" (a checkpoint or a
# preview only at the end, as the benchmarks ask with 10**9) stays valid; below 2**31 for forms.
_LONG = 1_000_000_000

TRAIN_SETTINGS: tuple[Param, ...] = (
    # -- the diffusion process ---------------------------------------------------------------
    Param("num_timesteps", "int", 1000, minimum=2, maximum=100_000,
          help="T, the number of steps of the discrete forward process (DDPM timesteps, NCSN "
               "noise levels); continuous-time SDEs train on t in [t_min, 1] and ignore it"),
    Param("prediction_type", "choice", "epsilon", choices=PREDICTION_TYPES,
          help="what the network is trained to predict: the noise eps (DDPM), x_0 (sample), "
               "v = alpha eps - sigma x_0 (v_prediction) or the noise-scaled score (score)"),
    # -- length of the run -------------------------------------------------------------------
    Param("steps", "int", 3000, minimum=0, maximum=_LONG,
          help="optimizer steps to train for (on continuing a run: the new total); "
               "ignored when epochs is above 0"),
    Param("epochs", "int", 0, minimum=0, maximum=1_000_000,
          help="above 0: train for this many passes over the data (ceil(N / batch_size) "
               "steps each) instead of a number of steps"),
    # -- optimisation ------------------------------------------------------------------------
    Param("batch_size", "int", 128, minimum=1, maximum=65_536,
          help="samples per optimizer step"),
    Param("learning_rate", "float", 1e-3, minimum=1e-8, maximum=1.0,
          help="AdamW learning rate, reached at the end of the warm-up"),
    Param("lr_schedule", "choice", "cosine", choices=("constant", "linear", "cosine"),
          help="how the learning rate decays after the warm-up: to 0 at the last step "
               "(linear, cosine) or not at all (constant)"),
    Param("warmup_steps", "int", 500, minimum=0, maximum=_LONG,
          help="steps of linear learning-rate warm-up from 0 (0: none)"),
    Param("weight_decay", "float", 0.0, minimum=0.0, maximum=1.0,
          help="AdamW's decoupled weight decay (0: none)"),
    Param("ema_decay", "float", 0.999, minimum=0.0, maximum=0.99999,
          help="decay of the exponential moving average of the weights, which previews and "
               "sampling use (0: the EMA is the current weights)"),
    Param("grad_clip", "float", 1.0, minimum=0.0, maximum=1e6,
          help="largest gradient norm; larger gradients are scaled down to it (0: no clipping)"),
    # -- objective ---------------------------------------------------------------------------
    Param("label_dropout", "float", 0.1, minimum=0.0, maximum=0.99,
          help="class-conditional networks only: share of labels replaced by the null class, "
               "so one network also learns the unconditional model that classifier-free "
               "guidance needs (Ho & Salimans, arXiv 2207.12598, Algorithm 1)"),
    Param("hybrid_lambda", "float", 0.001, minimum=0.0, maximum=0.999,
          help="learned-variance networks only: lambda of L_hybrid = L_simple + lambda L_vlb "
               "(Nichol & Dhariwal, arXiv 2102.09672, eq. 16; they use 0.001)"),
    # -- hardware and reproducibility --------------------------------------------------------
    Param("mixed_precision", "choice", "auto", choices=("auto", "no", "bf16", "fp16"),
          help="autocast precision of the network: auto is bf16 on a CUDA GPU that supports "
               "it, else float32 (no)"),
    Param("device", "str", "auto",
          help="where to train: auto (a CUDA GPU, else Apple MPS, else the CPU), cpu, cuda, "
               "cuda:N or mps"),
    Param("seed", "int", 0, minimum=0, maximum=2**31 - 1,
          help="seeds the initialisation, the batches, the noise and the times: the same seed "
               "and settings train the same run"),
    # -- what the run writes -----------------------------------------------------------------
    Param("log_every", "int", 10, minimum=1, maximum=_LONG,
          help="steps between points of the loss curve (mean loss, learning rate, images/s)"),
    Param("checkpoint_every", "int", 500, minimum=1, maximum=_LONG,
          help="steps between checkpoints; the last step and a stop always write one"),
    Param("keep_checkpoints", "int", 2, minimum=0, maximum=1000,
          help="checkpoints kept on disk, the newest (0: all)"),
    Param("preview_every", "int", 500, minimum=0, maximum=_LONG,
          help="steps between preview samples drawn from the EMA weights (0: no previews)"),
    Param("preview_samples", "int", 16, minimum=1, maximum=4096,
          help="samples in each preview (hundreds for 2-D points)"),
    Param("preview_steps", "int", 25, minimum=1, maximum=10_000,
          help="DDIM steps of each preview (more: better previews, slower)"),
)

_BY_NAME = {param.name: param for param in TRAIN_SETTINGS}


def _valid_values(param: Param) -> str:
    """What ``param`` accepts, in words: "an integer from 1 to 1000", "one of 'a', 'b'"."""
    if param.type == "choice":
        return "one of " + ", ".join(repr(choice) for choice in param.choices or ())
    if param.type not in ("int", "float"):
        return f"a {param.type}"
    kind = "an integer" if param.type == "int" else "a number"
    low, high = param.minimum, param.maximum
    if param.type == "int":
        low, high = (None if v is None else int(v) for v in (low, high))
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} >= {low}"
    return kind if high is None else f"{kind} <= {high}"


def setting(name: str) -> Param:
    """The declaration of one training setting."""
    return _BY_NAME[name]


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as the run's config.json "train".

    The plain settings and their defaults are :data:`TRAIN_SETTINGS` (a test keeps the fields
    and the declaration equal); ``epochs`` > 0 overrides ``steps`` (epochs * ceil(N / batch)).
    """

    dataset: str = "digits"
    dataset_params: dict[str, Any] = field(default_factory=dict)
    network: str = "unet"
    network_params: dict[str, Any] = field(default_factory=dict)
    schedule: str = "linear"
    schedule_params: dict[str, Any] = field(default_factory=dict)
    num_timesteps: int = 1000
    prediction_type: str = "epsilon"
    steps: int = 3000
    epochs: int = 0
    batch_size: int = 128
    learning_rate: float = 1e-3
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
                raise ConfigError(
                    f"{text}; valid: {_valid_values(param)} ({flag} on the command line)"
                ) from exc
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
