"""A trained network together with its noise schedule: what every sampler is given.

:class:`DiffusionModel` turns one network call into (eps, x0_pred) whatever the network's
parameterisation, counts network evaluations, and carries the class label to condition on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from diffstudio.engine.parameterization import PREDICTION_TYPES, to_eps_and_x0
from diffstudio.engine.schedules import NoiseSchedule
from diffstudio.errors import ConfigError

__all__ = ["DiffusionModel", "Prediction"]


@dataclass
class Prediction:
    """The network's answer at one step. eps, x0: same shape as x_t."""

    eps: torch.Tensor
    x0: torch.Tensor


class DiffusionModel:
    """network + schedule + parameterisation.

    x_t: (B, *sample_shape), same device and dtype as the network; t: an int in [0, T) or a (B,)
    integer tensor. ``x0_clip`` is the bound of the data (1.0 for images in [-1, 1]; ``None`` for
    unbounded data such as 2-D points): samplers clip x0_pred to it when asked.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        schedule: NoiseSchedule,
        *,
        prediction_type: str = "epsilon",
        x0_clip: float | None = 1.0,
        class_labels: torch.Tensor | None = None,
    ) -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise ConfigError(
                f"prediction type {prediction_type!r} is not one of {PREDICTION_TYPES}"
            )
        self.network = network
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.x0_clip = x0_clip
        self.class_labels = class_labels
        self.network_evaluations = 0
        self._alpha_bars = schedule.alpha_bars

    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_timesteps

    def alpha_bar(self, t: int) -> float:
        """alpha_bar_t as a Python float (t in [0, T); t = -1 gives 1.0)."""
        return 1.0 if t < 0 else float(self._alpha_bars[t])

    def network_output(self, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """One raw network call (counted). Returns the network's output tensor."""
        timesteps = torch.as_tensor(t, device=x_t.device)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(x_t.shape[0])
        kwargs: dict[str, Any] = {}
        if self.class_labels is not None:
            kwargs["class_labels"] = self.class_labels.to(x_t.device)
        out = self.network(x_t, timesteps, **kwargs)
        self.network_evaluations += 1
        return out.sample if hasattr(out, "sample") else out

    def predict(self, x_t: torch.Tensor, t: int) -> Prediction:
        """(eps, x0_pred) at integer timestep t (eq. 29 for epsilon networks)."""
        output = self.network_output(x_t, t)
        if output.shape[1] != x_t.shape[1]:
            # Learned-variance networks return 2C channels; the mean part comes first.
            output = output[:, : x_t.shape[1]]
        eps, x0 = to_eps_and_x0(self.prediction_type, output, x_t, self.alpha_bar(t))
        return Prediction(eps=eps, x0=x0)

    def clip(self, x0: torch.Tensor, enabled: bool) -> torch.Tensor:
        if enabled and self.x0_clip is not None:
            return x0.clamp(-self.x0_clip, self.x0_clip)
        return x0
