"""The training settings, declared once: :data:`TRAIN_SETTINGS` and the :class:`TrainConfig`
they check. Nothing here imports torch, so the window and the command line build their forms
and flags from it before torch has loaded.

Every plain field of :class:`TrainConfig` has exactly one :class:`~diffstudio.specs.Param` in
:data:`TRAIN_SETTINGS` (the same type plugins declare their parameters with): its type, its
default (the dataclass default, a test keeps the two equal), its range or choices and a help
text. :meth:`TrainConfig.validate` coerces and checks every field through those Params, so a
value from a config file, a CLI flag or a form is refused with the same message. The fields in
:data:`COMPONENT_FIELDS` are not plain settings: they name a plugin contribution (dataset,
network, schedule) and carry its parameters, which the contribution's own schema validates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from diffstudio.errors import ConfigError
from diffstudio.specs import Param

__all__ = ["COMPONENT_FIELDS", "TRAIN_SETTINGS", "TrainConfig"]

_LONG = 1_000_000_000  # upper bound of step counts: larger than any run, small enough for a form

TRAIN_SETTINGS: tuple[Param, ...] = (
    # -- the diffusion process ---------------------------------------------------------------
    Param("num_timesteps", "int", 1000, minimum=1, maximum=100_000,
          help="T, the number of steps of the discrete forward process (DDPM timesteps, NCSN "
               "noise levels); continuous-time processes train on t in [t_min, 1] and ignore it"),
    Param("prediction_type", "choice", "epsilon",
          choices=("epsilon", "sample", "v_prediction", "score"),
          help="what the network is trained to predict: the noise eps (DDPM), x_0 (sample), "
               "v = a eps - b x_0 (v_prediction) or the noise-scaled score -eps (score)"),
    # -- length of the run -------------------------------------------------------------------
    Param("steps", "int", 3000, minimum=0, maximum=_LONG,
          help="optimizer steps to train for (on continuing a run: the new total); "
               "ignored when epochs is above 0"),
    Param("epochs", "int", 0, minimum=0, maximum=_LONG,
          help="passes over the dataset, each ceil(N / batch_size) steps; above 0 it sets the "
               "length of the run instead of steps"),
    # -- optimisation ------------------------------------------------------------------------
    Param("batch_size", "int", 128, minimum=1, maximum=65_536,
          help="samples per optimizer step"),
    Param("learning_rate", "float", 1e-3, minimum=1e-10, maximum=10.0,
          help="AdamW learning rate reached after the warm-up"),
    Param("lr_schedule", "choice", "cosine", choices=("constant", "linear", "cosine"),
          help="how the learning rate decays after the warm-up, down to 0 at the last step "
               "(constant: no decay)"),
    Param("warmup_steps", "int", 500, minimum=0, maximum=_LONG,
          help="steps of linear learning-rate warm-up from 0 (0: none)"),
    Param("weight_decay", "float", 0.0, minimum=0.0, maximum=1.0,
          help="AdamW's decoupled weight decay (0: none)"),
    Param("grad_clip", "float", 1.0, minimum=0.0, maximum=1e6,
          help="largest gradient norm; larger gradients are scaled down to it (0: no clipping)"),
    Param("ema_decay", "float", 0.999, minimum=0.0, maximum=0.999999,
          help="decay of the exponential moving average of the weights, which previews and "
               "sampling use (0: the EMA is the current weights)"),
    # -- objective ---------------------------------------------------------------------------
    Param("label_dropout", "float", 0.1, minimum=0.0, maximum=0.99,
          help="class-conditional networks only: share of labels replaced by the null class, "
               "so one network also learns the unconditional model that classifier-free "
               "guidance needs (Ho & Salimans, arXiv 2207.12598, Algorithm 1)"),
    Param("hybrid_lambda", "float", 0.001, minimum=0.0, maximum=0.99,
          help="learned-variance networks only: lambda of L_hybrid = L_simple + lambda L_vlb "
               "(Nichol & Dhariwal, arXiv 2102.09672, eq. 16)"),
    # -- hardware and reproducibility --------------------------------------------------------
    Param("mixed_precision", "choice", "auto", choices=("auto", "no", "bf16", "fp16"),
          help="autocast precision of the network: auto is bf16 on a CUDA GPU that supports "
               "it, else full precision (no)"),
    Param("device", "choice", "auto", choices=("auto", "cpu", "cuda", "mps"),
          help="where to train: auto picks what Hugging Face Accelerate finds (CUDA, then "
               "Apple MPS, then the CPU)"),
    Param("seed", "int", 0, minimum=0, maximum=2**31 - 1,
          help="seeds the network's initialisation, the batches, the noise and the timesteps; "
               "the same seed and settings train the same run"),
    # -- what the run writes -----------------------------------------------------------------
    Param("log_every", "int", 10, minimum=1, maximum=_LONG,
          help="steps between points of the loss curve (mean loss, learning rate, images/s)"),
    Param("checkpoint_every", "int", 500, minimum=1, maximum=_LONG,
          help="steps between checkpoints; the last step and a stop always write one"),
    Param("keep_checkpoints", "int", 2, minimum=0, maximum=100_000,
          help="checkpoints kept on disk, the newest (0: keep all)"),
    Param("preview_every", "int", 500, minimum=0, maximum=_LONG,
          help="steps between preview samples drawn from the EMA weights (0: no previews)"),
    Param("preview_samples", "int", 16, minimum=1, maximum=4096,
          help="samples in each preview (hundreds for 2-D points)"),
    Param("preview_steps", "int", 25, minimum=1, maximum=10_000,
          help="DDIM steps of each preview (more: better previews, slower)"),
)

# TrainConfig fields that are not in TRAIN_SETTINGS: a plugin id and its parameters each,
# validated by the contribution's schema (``Contribution.validate``) when the run is built.
COMPONENT_FIELDS: tuple[str, ...] = (
    "dataset", "dataset_params", "network", "network_params", "schedule", "schedule_params",
)

_BY_NAME = {param.name: param for param in TRAIN_SETTINGS}


def _default(name: str) -> Any:
    return _BY_NAME[name].default


def _valid_values(param: Param) -> str:
    """What ``param`` accepts, in words: 'an integer from 1 to 1000', 'one of ...'."""
    if param.type == "choice":
        return "one of " + ", ".join(repr(choice) for choice in param.choices or ())
    kind = "an integer" if param.type == "int" else "a number"
    low, high = param.minimum, param.maximum
    if param.type == "int":
        low = int(low) if low is not None else None
        high = int(high) if high is not None else None
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} >= {low}"
    if high is not None:
        return f"{kind} <= {high}"
    return kind


def _coerce(param: Param, value: Any) -> Any:
    try:
        return param.coerce(value)
    except ConfigError as exc:
        raise ConfigError(
            f"training setting {param.name} must be {_valid_values(param)}, got {value!r} "
            f"({param.help.split(';')[0]})"
        ) from exc


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as the run's config.json ("train").

    The plain settings are declared, with their ranges and help, in :data:`TRAIN_SETTINGS`;
    the defaults here are theirs.
    """

    dataset: str = "digits"
    dataset_params: dict[str, Any] = field(default_factory=dict)
    network: str = "unet"
    network_params: dict[str, Any] = field(default_factory=dict)
    schedule: str = "linear"
    schedule_params: dict[str, Any] = field(default_factory=dict)
    num_timesteps: int = _default("num_timesteps")
    prediction_type: str = _default("prediction_type")
    steps: int = _default("steps")
    epochs: int = _default("epochs")
    batch_size: int = _default("batch_size")
    learning_rate: float = _default("learning_rate")
    weight_decay: float = _default("weight_decay")
    warmup_steps: int = _default("warmup_steps")
    lr_schedule: str = _default("lr_schedule")
    ema_decay: float = _default("ema_decay")
    grad_clip: float = _default("grad_clip")
    label_dropout: float = _default("label_dropout")
    hybrid_lambda: float = _default("hybrid_lambda")
    mixed_precision: str = _default("mixed_precision")
    device: str = _default("device")
    seed: int = _default("seed")
    log_every: int = _default("log_every")
    checkpoint_every: int = _default("checkpoint_every")
    keep_checkpoints: int = _default("keep_checkpoints")
    preview_every: int = _default("preview_every")
    preview_samples: int = _default("preview_samples")
    preview_steps: int = _default("preview_steps")

    def validate(self) -> TrainConfig:
        """Coerce every field to its declared type (a string "64" from a flag becomes 64) and
        raise :class:`ConfigError` naming the first field whose value cannot work, the value
        and what is valid. Returns self."""
        for param in TRAIN_SETTINGS:
            setattr(self, param.name, _coerce(param, getattr(self, param.name)))
        for kind in ("dataset", "network", "schedule"):
            value = getattr(self, kind)
            if not isinstance(value, str) or not value:
                raise ConfigError(
                    f"{kind} must be the id of an installed {kind} plugin, got {value!r}; "
                    f"'diffstudio plugins' lists them"
                )
            params = getattr(self, f"{kind}_params")
            if not isinstance(params, Mapping):
                raise ConfigError(
                    f"{kind}_params must be a mapping of the {kind}'s parameter names to "
                    f"values, got {params!r}"
                )
            setattr(self, f"{kind}_params", dict(params))
        if self.steps == 0 and self.epochs == 0:
            raise ConfigError("the run has no length: set steps or epochs to more than 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A validated TrainConfig from a dict (a config file, a run's config.json "train",
        flags); an unknown name is an error that lists the known ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        return cls(**dict(values)).validate()
