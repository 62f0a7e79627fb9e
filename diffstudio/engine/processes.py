"""Noise processes: one continuous-time description for DDPM, NCSN and score-SDE models.

Every model in diffstudio perturbs data the same way (seed 002 §2.2, §4.3, §4.4):

    x_t = m(t) x_0 + s(t) z,   z ~ N(0, I),   t in [0, 1]

and is the marginal of the forward SDE dx = f(x, t) dt + g(t) dw (eq. 34) with
f(x, t) = (d log m / dt) x and g(t)^2 = d s^2/dt - 2 (d log m / dt) s^2. The processes:

* :class:`ScheduleProcess`: a discrete DDPM schedule (eq. 5), m = sqrt(alpha_bar),
  s = sqrt(1 - alpha_bar); log alpha_bar is interpolated linearly between t_i = (i+1)/N, so it is
  also a VP SDE with piecewise-constant beta(t) ~ N beta_i (the "VP view" of a DDPM model).
* :class:`NCSNLevels`: the L geometric noise levels of NCSN (§4.3): m = 1, s = sigma_i; the same
  curve as a VE SDE between sigma_min and sigma_max, trained at its L levels only.
* :class:`VESDE`, :class:`VPSDE`, :class:`SubVPSDE`: Song et al. 2021 (§4.4), trained at
  continuous t ~ U[t_min, 1] (eq. 36).

Each process also fixes the network's conditioning value ``label(t)`` (the timestep index for
DDPM, 999 t otherwise, which suits the U-Net's sinusoidal embedding) and a grid of discrete
times (``grid``) on which the discrete-time samplers (DDPM, DDIM, DPM-Solver) run, through the
VP view alpha_bar = m^2 / (m^2 + s^2) of :class:`diffstudio.engine.model.DiffusionModel`.

All quantities are float64.
"""

from __future__ import annotations

import math

import torch

from diffstudio.engine.schedules import NoiseSchedule
from diffstudio.errors import ConfigError

__all__ = [
    "VESDE",
    "VPSDE",
    "DiffusionProcess",
    "NCSNLevels",
    "ScheduleProcess",
    "SubVPSDE",
    "as_process",
]

_F64 = torch.float64


def _t(t: torch.Tensor | float) -> torch.Tensor:
    return torch.as_tensor(t, dtype=_F64)


class DiffusionProcess:
    """Base class. ``t`` arguments are floats or float64 tensors in [0, 1]."""

    kind = "process"
    name = "process"
    #: Train at the discrete grid (DDPM, NCSN) or at continuous t ~ U[t_min, 1] (SDEs).
    discrete_training = False
    #: Smallest time samplers integrate to (the SDE papers' epsilon).
    t_min = 1e-5

    # -- what a subclass defines ---------------------------------------------------------
    def log_mean(self, t: torch.Tensor) -> torch.Tensor:
        """log m(t)."""
        raise NotImplementedError

    def std(self, t: torch.Tensor) -> torch.Tensor:
        """s(t)."""
        raise NotImplementedError

    def drift_rate(self, t: torch.Tensor) -> torch.Tensor:
        """a(t) = d log m / dt, so that f(x, t) = a(t) x."""
        raise NotImplementedError

    def diffusion_squared(self, t: torch.Tensor) -> torch.Tensor:
        """g(t)^2."""
        raise NotImplementedError

    @property
    def grid(self) -> torch.Tensor:
        """Ascending discrete times: training times of discrete processes, sampler grid."""
        raise NotImplementedError

    def label(self, t: torch.Tensor) -> torch.Tensor:
        """What the network is conditioned on at time t (default 999 t)."""
        return 999.0 * _t(t)

    # -- derived ---------------------------------------------------------------------------
    def marginal(self, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """(m(t), s(t)) with x_t = m x_0 + s z."""
        t = _t(t)
        return self.log_mean(t).exp(), self.std(t)

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """The noise level in the variance-exploding frame: s / m (x_t / m = x_0 + sigma z)."""
        m, s = self.marginal(t)
        return s / m

    def drift(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """f(x, t) (eq. 34)."""
        return float(self.drift_rate(_t(t))) * x

    def diffusion(self, t: float) -> float:
        """g(t) (eq. 34)."""
        return math.sqrt(max(float(self.diffusion_squared(_t(t))), 0.0))

    @property
    def prior_std(self) -> float:
        """Standard deviation of x_1 when the data is forgotten (N(0, prior_std^2 I))."""
        return float(self.std(_t(1.0)))

    def t_of_sigma(self, sigma: float) -> float:
        """The time at which s/m = sigma (sigma is increasing in t), by bisection."""
        low, high = 0.0, 1.0
        if sigma <= float(self.sigma(low)):
            return low
        if sigma >= float(self.sigma(high)):
            return high
        for _ in range(80):
            middle = 0.5 * (low + high)
            if float(self.sigma(middle)) < sigma:
                low = middle
            else:
                high = middle
        return 0.5 * (low + high)

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name}


class ScheduleProcess(DiffusionProcess):
    """A discrete DDPM schedule seen as a process (the "VP view").

    Grid t_i = (i+1)/N for i = 0..N-1, label(t) = N t - 1 (so label(t_i) = i, the timestep the
    network was trained on); alpha_bar(t) interpolates log alpha_bar linearly between grid points
    (alpha_bar(0) = 1), so beta(t) = -d log alpha_bar / dt is piecewise constant, ~ N beta_i.
    """

    kind = "ddpm"
    discrete_training = True
    t_min = 1e-3

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule
        self.name = schedule.name
        self.num_timesteps = schedule.num_timesteps
        self._log_alpha_bars = torch.cat(
            [torch.zeros(1, dtype=_F64), schedule.alpha_bars.log()]
        )  # at t = 0, 1/N, ..., 1

    def _interp(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        position = t.clamp(0.0, 1.0) * self.num_timesteps
        index = position.floor().long().clamp(max=self.num_timesteps - 1)
        fraction = position - index.to(_F64)
        low, high = self._log_alpha_bars[index], self._log_alpha_bars[index + 1]
        return low + fraction * (high - low), (high - low) * self.num_timesteps

    def log_mean(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * self._interp(t)[0]

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return (-torch.expm1(self._interp(t)[0])).clamp(min=0.0).sqrt()

    def drift_rate(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * self._interp(t)[1]

    def diffusion_squared(self, t: torch.Tensor) -> torch.Tensor:
        return -self._interp(t)[1]  # beta(t)

    @property
    def grid(self) -> torch.Tensor:
        return torch.arange(1, self.num_timesteps + 1, dtype=_F64) / self.num_timesteps

    def label(self, t: torch.Tensor) -> torch.Tensor:
        return (_t(t) * self.num_timesteps - 1.0).clamp(min=0.0)

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "num_timesteps": self.num_timesteps}


class VESDE(DiffusionProcess):
    """Variance-exploding SDE: sigma(t) = sigma_min (sigma_max / sigma_min)^t, m = 1, f = 0,
    g(t)^2 = d sigma^2 / dt = 2 sigma(t)^2 log(sigma_max / sigma_min) (Song et al. 2021, eq. 9)."""

    kind = "ve"
    t_min = 1e-5

    def __init__(
        self, sigma_min: float = 0.01, sigma_max: float = 50.0, num_scales: int = 1000
    ) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ConfigError(
                f"VE noise levels need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}"
            )
        if num_scales < 1:
            raise ConfigError(f"num_scales must be at least 1, got {num_scales}")
        self.sigma_min, self.sigma_max, self.num_scales = sigma_min, sigma_max, num_scales
        self.name = "ve-sde"
        self._log_ratio = math.log(sigma_max / sigma_min)

    def log_mean(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t)

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def drift_rate(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t)

    def diffusion_squared(self, t: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.std(t) ** 2 * self._log_ratio

    @property
    def grid(self) -> torch.Tensor:
        if self.num_scales == 1:
            return torch.ones(1, dtype=_F64)
        return torch.linspace(0.0, 1.0, self.num_scales, dtype=_F64)

    def t_of_sigma(self, sigma: float) -> float:
        return min(max(math.log(sigma / self.sigma_min) / self._log_ratio, 0.0), 1.0)

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


class NCSNLevels(VESDE):
    """NCSN's geometric noise levels sigma_1 > ... > sigma_L (Song & Ermon 2019; seed §4.3):
    the VE curve between sigma_min and sigma_max, trained at its ``levels`` grid points only
    (denoising score matching with lambda(sigma) = sigma^2, eqs. 32-33)."""

    kind = "ncsn"
    discrete_training = True

    def __init__(
        self, sigma_max: float = 1.0, sigma_min: float = 0.01, levels: int = 10
    ) -> None:
        if levels < 2:
            raise ConfigError(f"NCSN needs at least 2 noise levels, got {levels}")
        super().__init__(sigma_min=sigma_min, sigma_max=sigma_max, num_scales=levels)
        self.name = "ncsn"

    @property
    def sigmas(self) -> torch.Tensor:
        """The levels, largest first (sigma_1 .. sigma_L)."""
        return self.std(self.grid).flip(0)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "levels": self.num_scales}


class VPSDE(DiffusionProcess):
    """Variance-preserving SDE: beta(t) = beta_min + t (beta_max - beta_min),
    dx = -beta/2 x dt + sqrt(beta) dw; log m = -t^2 (beta_max - beta_min)/4 - t beta_min/2,
    s^2 = 1 - m^2 (Song et al. 2021, eq. 11; the continuous limit of DDPM's linear schedule)."""

    kind = "vp"
    t_min = 1e-3

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, num_scales: int = 1000):
        if not 0 < beta_min < beta_max:
            raise ConfigError(
                f"VP betas need 0 < beta_min < beta_max, got {beta_min}, {beta_max}"
            )
        self.beta_min, self.beta_max, self.num_scales = beta_min, beta_max, num_scales
        self.name = "vp-sde"

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_mean(self, t: torch.Tensor) -> torch.Tensor:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return (-torch.expm1(2.0 * self.log_mean(t))).clamp(min=0.0).sqrt()

    def drift_rate(self, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * self.beta(t)

    def diffusion_squared(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta(t)

    @property
    def grid(self) -> torch.Tensor:
        return torch.arange(1, self.num_scales + 1, dtype=_F64) / self.num_scales

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "beta_min": self.beta_min, "beta_max": self.beta_max}


class SubVPSDE(VPSDE):
    """Sub-VP SDE: the VP drift with g(t)^2 = beta(t) (1 - exp(-2 int_0^t beta)), whose
    marginal std s = 1 - m^2 stays below the VP one (Song et al. 2021, eq. 12)."""

    kind = "subvp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, num_scales: int = 1000):
        super().__init__(beta_min, beta_max, num_scales)
        self.name = "subvp-sde"

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.expm1(2.0 * self.log_mean(t))

    def diffusion_squared(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta(t) * (-torch.expm1(4.0 * self.log_mean(t)))


def as_process(schedule: NoiseSchedule | DiffusionProcess) -> DiffusionProcess:
    """A process from a schedule contribution's result (DDPM schedules get the VP view)."""
    if isinstance(schedule, DiffusionProcess):
        return schedule
    if isinstance(schedule, NoiseSchedule):
        return ScheduleProcess(schedule)
    raise ConfigError(
        f"a schedule must be a NoiseSchedule or a DiffusionProcess, got {type(schedule).__name__}"
    )


# -- factories named by the built-in schedule contributions -----------------------------------
def ncsn_levels(
    num_timesteps: int = 1000, sigma_max: float = 1.0, sigma_min: float = 0.01, levels: int = 10
) -> NCSNLevels:
    """NCSN's L geometric levels (num_timesteps does not apply: the levels are the steps)."""
    return NCSNLevels(sigma_max=sigma_max, sigma_min=sigma_min, levels=levels)


def ve_sde(num_timesteps: int = 1000, sigma_min: float = 0.01, sigma_max: float = 50.0) -> VESDE:
    return VESDE(sigma_min=sigma_min, sigma_max=sigma_max, num_scales=num_timesteps)


def vp_sde(num_timesteps: int = 1000, beta_min: float = 0.1, beta_max: float = 20.0) -> VPSDE:
    return VPSDE(beta_min=beta_min, beta_max=beta_max, num_scales=num_timesteps)


def subvp_sde(
    num_timesteps: int = 1000, beta_min: float = 0.1, beta_max: float = 20.0
) -> SubVPSDE:
    return SubVPSDE(beta_min=beta_min, beta_max=beta_max, num_scales=num_timesteps)
