"""A trained network together with its noise process: what every sampler is given.

This is the one conversion layer between how a network was trained and how it is sampled:

* Discrete-time samplers (DDPM, DDIM, DPM-Solver) see the **VP view**: timesteps i = 0..N-1 on
  the process's grid, alpha_bar_i = m_i^2 / (m_i^2 + s_i^2), and x in the variance-preserving
  frame x_vp = x / sqrt(m^2 + s^2). :meth:`DiffusionModel.predict` returns (eps, x0_pred) there,
  whatever the network was trained as (a DDPM eps-network, an NCSN score network, a score-SDE
  network), so DDIM samples an NCSN or a VE-SDE model as readily as a DDPM one.
* Continuous-time samplers (reverse SDE, predictor-corrector, probability-flow ODE, Langevin)
  call :meth:`DiffusionModel.score` at any t in [0, 1] in the process's own frame
  (``model.process``); a DDPM model is sampled this way through its VP-SDE view.

It also counts network evaluations and carries the class label to condition on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from diffstudio.engine.parameterization import PREDICTION_TYPES, frame_to_eps_and_x0
from diffstudio.engine.processes import DiffusionProcess
from diffstudio.engine.schedules.ddpm import NoiseSchedule, ScheduleProcess, as_process
from diffstudio.errors import ConfigError

__all__ = ["DiffusionModel", "Prediction", "network_device_dtype"]


def network_device_dtype(network: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where a network computes: its first parameter's (or buffer's) device and dtype."""
    for tensor in (*network.parameters(), *network.buffers()):
        return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


@dataclass
class Prediction:
    """The network's answer at one step. eps, x0: same shape as x_t.

    ``variance`` is the extra output of a learned-variance network (Improved DDPM, eq. 20: the
    interpolation v between log beta and log beta_tilde, mapped from [-1, 1]), else None.
    """

    eps: torch.Tensor
    x0: torch.Tensor
    variance: torch.Tensor | None = None


class DiffusionModel:
    """network + noise process + parameterisation.

    x: (B, *sample_shape), same device and dtype as the network. ``x0_clip`` is the bound of the
    data (1.0 for images in [-1, 1]; ``None`` for unbounded data such as 2-D points): samplers
    clip x0_pred to it when asked. ``schedule`` may be a DDPM :class:`NoiseSchedule` or any
    :class:`DiffusionProcess`.

    A network is called as ``network(x, labels, class_labels=...)``; a network with the attribute
    ``conditions_on_marginal = True`` (for example an analytic score) also gets
    ``marginal=(m, s)``, two (B,) tensors.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        schedule: NoiseSchedule | DiffusionProcess,
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
        self.process = as_process(schedule)
        self.prediction_type = prediction_type
        self.x0_clip = x0_clip
        self.class_labels = class_labels
        self.network_evaluations = 0
        # Cost of one network call in network evaluations (2 for classifier-free guidance).
        self.evaluations_per_call = int(getattr(network, "evaluations_per_call", 1))
        grid = self.process.grid
        m, s = self.process.marginal(grid)
        self._grid = grid
        self._m, self._s = m, s
        self._labels = self.process.label(grid)
        if isinstance(self.process, ScheduleProcess):
            self._alpha_bars = self.process.schedule.alpha_bars  # exactly the schedule's
        else:
            self._alpha_bars = m**2 / (m**2 + s**2)

    # -- the VP view (discrete timesteps) ---------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        return self._grid.numel()

    @property
    def schedule(self) -> NoiseSchedule:
        """The DDPM schedule of the VP view (the original one for DDPM models)."""
        if isinstance(self.process, ScheduleProcess):
            return self.process.schedule
        alpha_bars = self._alpha_bars
        previous = torch.cat([torch.ones(1, dtype=alpha_bars.dtype), alpha_bars[:-1]])
        betas = (1.0 - alpha_bars / previous).clamp(min=1e-12, max=0.999999)
        return NoiseSchedule(betas, name=f"{self.process.name} (VP view)")

    def alpha_bar(self, t: int) -> float:
        """alpha_bar of timestep t as a Python float (t in [0, N); t = -1 gives 1.0)."""
        return 1.0 if t < 0 else float(self._alpha_bars[t])

    def predict(self, x: torch.Tensor, t: int) -> Prediction:
        """(eps, x0_pred) at integer timestep t, for x in the VP frame (eq. 29 for DDPM)."""
        m, s = float(self._m[t]), float(self._s[t])
        scale = (m * m + s * s) ** 0.5
        x_native = x if scale == 1.0 else x * scale
        output = self.network_output(x_native, float(self._labels[t]), (m, s))
        return self._prediction(output, x_native, m, s)

    # -- the continuous view -----------------------------------------------------------------
    def predict_at(self, x: torch.Tensor, t: float) -> Prediction:
        """(eps, x0_pred) at continuous time t for x in the process's own frame."""
        m, s = (float(v) for v in self.process.marginal(t))
        output = self.network_output(x, float(self.process.label(t)), (m, s))
        return self._prediction(output, x, m, s)

    def score(self, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(grad_x log p_t(x), x0_pred) at continuous t, x in the process's frame.

        The score of the Gaussian perturbation is -eps / s (eq. 36's target).
        """
        prediction = self.predict_at(x, t)
        s = float(self.process.std(torch.as_tensor(t, dtype=torch.float64)))
        return -prediction.eps / s, prediction.x0

    # -- the network call --------------------------------------------------------------------
    def network_output(
        self,
        x: torch.Tensor,
        label: float | int | torch.Tensor,
        marginal: tuple[float, float] | tuple[torch.Tensor, torch.Tensor] | None = None,
        class_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One raw network call (counted), the one way every caller -- samplers and training
        alike -- calls a network. ``label`` is the conditioning value (for DDPM the timestep):
        a number for the whole batch (samplers) or a (B,) tensor used as given (training);
        ``marginal`` (m, s) as numbers or (B,) tensors, passed to networks that condition on
        it; ``class_labels`` (B,) overrides the model's own (training's label dropout).
        Returns the network's output tensor."""
        if isinstance(label, torch.Tensor) and label.dim() == 1:
            labels = label  # a batch of labels, already of the network's dtype: no sync
        else:
            labels = torch.as_tensor(label, device=x.device)
            if labels.dim() == 0:
                labels = labels.expand(x.shape[0])
            if labels.is_floating_point() and bool(((labels - labels.round()).abs() < 1e-6).all()):
                labels = labels.round().long()  # DDPM networks are trained on integer timesteps
        kwargs: dict[str, Any] = {}
        chosen = class_labels if class_labels is not None else self.class_labels
        if chosen is not None:
            kwargs["class_labels"] = chosen.to(x.device)
        if marginal is not None and getattr(self.network, "conditions_on_marginal", False):
            kwargs["marginal"] = tuple(
                value.to(dtype=x.dtype, device=x.device).reshape(-1)
                if isinstance(value, torch.Tensor)
                else torch.full((x.shape[0],), value, dtype=x.dtype, device=x.device)
                for value in marginal
            )
        out = self.network(x, labels, **kwargs)
        self.network_evaluations += self.evaluations_per_call
        return out.sample if hasattr(out, "sample") else out

    def _prediction(self, output: torch.Tensor, x: torch.Tensor, m: float, s: float) -> Prediction:
        variance = None
        if output.shape[1] != x.shape[1]:
            # Learned-variance networks return 2C channels: the mean part, then v.
            channels = x.shape[1]
            output, variance = output[:, :channels], output[:, channels : 2 * channels]
        eps, x0 = frame_to_eps_and_x0(self.prediction_type, output, x, m, s)
        return Prediction(eps=eps, x0=x0, variance=variance)

    def clip(self, x0: torch.Tensor, enabled: bool) -> torch.Tensor:
        if enabled and self.x0_clip is not None:
            return x0.clamp(-self.x0_clip, self.x0_clip)
        return x0
