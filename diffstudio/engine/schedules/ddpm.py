"""DDPM's discrete forward process (Ho et al. 2020, arXiv 2006.11239) and its process view.

A DDPM schedule is a sequence beta_1..beta_T; everything else follows:

* alpha_t = 1 - beta_t,  alpha_bar_t = prod_{s<=t} alpha_s                        (eq. 4)
* q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)                      (eq. 4)
* posterior q(x_{t-1} | x_t, x_0) = N(mu_tilde_t, beta_tilde_t I)                   (eqs. 6-7)

:class:`NoiseSchedule` is that table of betas and what the DDPM posterior and the variational
bound need. :class:`ScheduleProcess` is the same schedule as a
:class:`~diffstudio.engine.processes.DiffusionProcess` (the one schedule contract): grid
t_i = (i+1)/T, m(t_i) = sqrt(alpha_bar_i), s(t_i) = sqrt(1 - alpha_bar_i), with log alpha_bar
interpolated linearly between grid points, so that it is also a VP SDE with piecewise-constant
beta(t) ~ T beta_i (arXiv 2011.13456, eq. 11: the "VP view" of a DDPM model).

Indices are 0-based in code: ``betas[t]`` for t in 0..T-1 is the paper's beta_{t+1}, as in
diffusers. Tensors are float64 so that closed-form tests are exact; samplers read scalars.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffstudio.engine.processes import DiffusionProcess, as_time
from diffstudio.errors import ConfigError

__all__ = ["NoiseSchedule", "ScheduleProcess", "as_process"]

_F64 = torch.float64


@dataclass(frozen=True)
class NoiseSchedule:
    """beta_t for t = 0..T-1 (float64, each in (0, 1)) and the quantities derived from it.

    This is DDPM's table, indexed by integer timesteps; the schedule contract every consumer
    uses is :class:`ScheduleProcess` (``ScheduleProcess(schedule)`` or :func:`as_process`).
    ``name`` records which schedule made it (for run configs and plots).
    """

    betas: torch.Tensor
    name: str = "custom"

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas, dtype=_F64).flatten()
        if betas.numel() < 1:
            raise ConfigError("a noise schedule needs at least one step; pass a non-empty betas")
        if not bool(torch.all((betas > 0) & (betas < 1))):
            raise ConfigError(
                f"schedule {self.name!r}: every beta_t must lie in (0, 1); got min "
                f"{betas.min().item():.3g}, max {betas.max().item():.3g}"
            )
        object.__setattr__(self, "betas", betas)

    @property
    def num_timesteps(self) -> int:
        return self.betas.numel()

    @property
    def alphas(self) -> torch.Tensor:
        """alpha_t = 1 - beta_t, (T,)."""
        return 1.0 - self.betas

    @property
    def alpha_bars(self) -> torch.Tensor:
        """alpha_bar_t = prod_{s<=t} alpha_s (eq. 4), (T,) in (0, 1)."""
        return torch.cumprod(self.alphas, dim=0)

    @property
    def alpha_bars_prev(self) -> torch.Tensor:
        """alpha_bar_{t-1}, with alpha_bar_{-1} = 1 (no noise before the first step)."""
        return torch.cat([torch.ones(1, dtype=_F64), self.alpha_bars[:-1]])

    @property
    def posterior_variances(self) -> torch.Tensor:
        """beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t (eq. 7)."""
        return (1.0 - self.alpha_bars_prev) / (1.0 - self.alpha_bars) * self.betas

    @property
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t), (T,)."""
        return self.alpha_bars / (1.0 - self.alpha_bars)

    def posterior_mean_coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_x0, c_xt) with mu_tilde_t = c_x0 * x_0 + c_xt * x_t (eq. 7)."""
        c_x0 = self.alpha_bars_prev.sqrt() * self.betas / (1.0 - self.alpha_bars)
        c_xt = self.alphas.sqrt() * (1.0 - self.alpha_bars_prev) / (1.0 - self.alpha_bars)
        return c_x0, c_xt

    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (eq. 4) at integer steps.

        x0, noise: (B, ...); t: (B,) integer timesteps in [0, T). Output has x0's dtype. (The
        contract's :meth:`DiffusionProcess.q_sample` takes continuous times instead.)
        """
        alpha_bar = self.alpha_bars.to(x0.device)[t].to(x0.dtype)
        alpha_bar = alpha_bar.view(-1, *([1] * (x0.dim() - 1)))
        return alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * noise

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "num_timesteps": self.num_timesteps}


class ScheduleProcess(DiffusionProcess):
    """A DDPM :class:`NoiseSchedule` as a :class:`DiffusionProcess` (the "VP view").

    Grid t_i = (i+1)/T for i = 0..T-1, label(t) = T t - 1 (so label(t_i) = i, the timestep the
    network was trained on); alpha_bar(t) interpolates log alpha_bar linearly between grid
    points (alpha_bar(0) = 1), so beta(t) = -d log alpha_bar / dt is piecewise constant,
    ~ T beta_i. At the grid points m^2 = alpha_bar_i and s^2 = 1 - alpha_bar_i (eq. 4).
    ``schedule`` keeps the table for what only DDPM has (posterior, variational bound).
    """

    kind = "ddpm"
    discrete_training = True
    t_min = 1e-3

    def __init__(self, schedule: NoiseSchedule) -> None:
        if not isinstance(schedule, NoiseSchedule):
            raise ConfigError(
                f"ScheduleProcess wraps a NoiseSchedule, got {type(schedule).__name__}; build "
                "one with NoiseSchedule(betas, name=...)"
            )
        self.schedule = schedule
        self.name = schedule.name
        self._steps = schedule.num_timesteps
        self._log_alpha_bars = torch.cat(
            [torch.zeros(1, dtype=_F64), schedule.alpha_bars.log()]
        )  # at t = 0, 1/T, ..., 1

    def _interp(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        position = t.clamp(0.0, 1.0) * self._steps
        index = position.floor().long().clamp(max=self._steps - 1)
        fraction = position - index.to(_F64)
        low, high = self._log_alpha_bars[index], self._log_alpha_bars[index + 1]
        return low + fraction * (high - low), (high - low) * self._steps

    def log_mean(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * self._interp(t)[0]

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return (-torch.expm1(self._interp(t)[0])).clamp(min=0.0).sqrt()

    def drift_rate(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * self._interp(t)[1]

    def diffusion_squared(self, t: torch.Tensor) -> torch.Tensor:
        return -self._interp(t)[1]  # beta(t)

    @property
    def num_timesteps(self) -> int:
        return self._steps

    @property
    def grid(self) -> torch.Tensor:
        return torch.arange(1, self._steps + 1, dtype=_F64) / self._steps

    def label(self, t: torch.Tensor | float) -> torch.Tensor:
        return (as_time(t) * self._steps - 1.0).clamp(min=0.0)

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "num_timesteps": self._steps}


def as_process(schedule: NoiseSchedule | DiffusionProcess) -> DiffusionProcess:
    """The process of a schedule: a DiffusionProcess unchanged, a NoiseSchedule's VP view.

    The single adapter between DDPM's table and the contract (used by
    :class:`~diffstudio.engine.model.DiffusionModel`, which also takes a bare NoiseSchedule).
    """
    if isinstance(schedule, DiffusionProcess):
        return schedule
    if isinstance(schedule, NoiseSchedule):
        return ScheduleProcess(schedule)
    raise ConfigError(
        f"a schedule must be a DiffusionProcess (or a DDPM NoiseSchedule), got "
        f"{type(schedule).__name__}; see diffstudio.hookspecs.diffstudio_schedules"
    )
