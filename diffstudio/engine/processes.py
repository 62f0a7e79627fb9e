"""The one schedule contract: a forward noise process x_t = m(t) x_0 + s(t) z, t in [0, 1].

Every schedule in diffstudio (the DDPM beta schedules, NCSN's noise levels, the VE, VP and
sub-VP SDEs, and any plugin's) is a :class:`DiffusionProcess`. Its perturbation kernel is

    q(x_t | x_0) = N(m(t) x_0, s(t)^2 I)

(Ho et al. 2020, arXiv 2006.11239, eq. 4 with m = sqrt(alpha_bar), s = sqrt(1 - alpha_bar);
Song & Ermon 2019, arXiv 1907.05600, §4 with m = 1, s = sigma; Song et al. 2021,
arXiv 2011.13456, eq. 29 for the SDEs), and it is the marginal of the linear forward SDE
dx = f(x, t) dt + g(t) dw (arXiv 2011.13456, eq. 5) with

    f(x, t) = a(t) x,  a(t) = d log m / dt,   g(t)^2 = d s^2 / dt - 2 a(t) s(t)^2,

which follows from the moment equations of eq. 5 for a linear drift (the calculation of
arXiv 2011.13456, Appendix B). A subclass defines log m, s, a, g^2 and the discrete ``grid``;
everything the samplers, the trainer and the GUI's forward-process explorer read is derived
here: :meth:`marginal`, :meth:`q_sample`, :meth:`alpha_bar`, :meth:`snr`, :meth:`sigma`,
:meth:`drift`, :meth:`diffusion`, :attr:`prior_std`, :meth:`t_of_sigma` and :meth:`label`.

The built-in processes live one per file under :mod:`diffstudio.engine.schedules`. All
quantities are float64 CPU tensors; ``t`` arguments are floats or float64 tensors in [0, 1].
"""

from __future__ import annotations

import math

import torch

__all__ = ["DiffusionProcess"]

_F64 = torch.float64


def as_time(t: torch.Tensor | float) -> torch.Tensor:
    """``t`` as a float64 CPU tensor (a float gives a 0-d tensor)."""
    if isinstance(t, torch.Tensor):
        return t.detach().to(device="cpu", dtype=_F64)
    return torch.as_tensor(t, dtype=_F64)


class DiffusionProcess:
    """Base class of every schedule: a forward process x_t = m(t) x_0 + s(t) z.

    A subclass implements :meth:`log_mean`, :meth:`std`, :meth:`drift_rate`,
    :meth:`diffusion_squared` and :attr:`grid`, and sets ``kind`` and ``name``. Times ``t`` are
    floats or float64 tensors of any shape in [0, 1]; the methods work elementwise and return
    float64 tensors of t's shape.
    """

    #: Family of the process, recorded in run configs ("ddpm", "ncsn", "ve", "vp", "subvp").
    kind = "process"
    #: What made it (the schedule id, for run configs and plot legends).
    name = "process"
    #: Train at the discrete grid (DDPM, NCSN) or at continuous t ~ U[t_min, 1] (SDEs).
    discrete_training = False
    #: Smallest time samplers integrate to (the SDE papers' epsilon).
    t_min = 1e-5

    # -- what a subclass defines ---------------------------------------------------------
    def log_mean(self, t: torch.Tensor) -> torch.Tensor:
        """log m(t), m(t) in (0, 1]: the scale of x_0 in x_t."""
        raise NotImplementedError(f"{type(self).__name__} must define log_mean(t)")

    def std(self, t: torch.Tensor) -> torch.Tensor:
        """s(t) >= 0: the standard deviation of the noise in x_t (positive for t > 0)."""
        raise NotImplementedError(f"{type(self).__name__} must define std(t)")

    def drift_rate(self, t: torch.Tensor) -> torch.Tensor:
        """a(t) = d log m / dt, so that f(x, t) = a(t) x."""
        raise NotImplementedError(f"{type(self).__name__} must define drift_rate(t)")

    def diffusion_squared(self, t: torch.Tensor) -> torch.Tensor:
        """g(t)^2 = d s^2 / dt - 2 a(t) s(t)^2 >= 0."""
        raise NotImplementedError(f"{type(self).__name__} must define diffusion_squared(t)")

    @property
    def grid(self) -> torch.Tensor:
        """(N,) ascending float64 times in (0, 1] (VE processes may start at 0): the training
        times of a discrete process and the timesteps of the discrete-time samplers."""
        raise NotImplementedError(f"{type(self).__name__} must define the grid property")

    def label(self, t: torch.Tensor | float) -> torch.Tensor:
        """What the network is conditioned on at time t (default 999 t, which suits the U-Net's
        sinusoidal embedding; DDPM processes give the timestep index)."""
        return 999.0 * as_time(t)

    # -- derived ---------------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        """N, the number of grid points (the explorer's slider positions)."""
        return int(self.grid.numel())

    def marginal(self, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """(m(t), s(t)) with x_t = m x_0 + s z; both of t's shape, float64."""
        t = as_time(t)
        return self.log_mean(t).exp(), self.std(t)

    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor | float, noise: torch.Tensor
    ) -> torch.Tensor:
        """x_t = m(t) x_0 + s(t) noise, a draw from q(x_t | x_0).

        x0, noise: (B, ...) of the same shape; t: one time (a float or a 0-d tensor) for the
        whole batch or (B,) times in [0, 1], one per sample. Returns x0's shape, dtype and device.
        """
        if noise.shape != x0.shape:
            raise ValueError(
                f"q_sample needs noise of x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}"
            )
        m, s = self.marginal(t)
        if m.dim() > 0:
            if m.dim() != 1 or m.numel() != x0.shape[0]:
                raise ValueError(
                    f"q_sample takes one time or one per sample (shape ({x0.shape[0]},)); got "
                    f"times of shape {tuple(m.shape)}"
                )
            m = m.view(-1, *([1] * (x0.dim() - 1)))
            s = s.view(-1, *([1] * (x0.dim() - 1)))
        m = m.to(device=x0.device, dtype=x0.dtype)
        s = s.to(device=x0.device, dtype=x0.dtype)
        return m * x0 + s * noise

    def alpha_bar(self, t: torch.Tensor | float) -> torch.Tensor:
        """The VP view alpha_bar(t) = m^2 / (m^2 + s^2) in (0, 1]: DDPM's alpha_bar for DDPM
        schedules, the alpha_bar the discrete-time samplers use for every other process."""
        m, s = self.marginal(t)
        return m**2 / (m**2 + s**2)

    def snr(self, t: torch.Tensor | float) -> torch.Tensor:
        """Signal-to-noise ratio m^2 / s^2 (decreasing in t; infinite where s = 0)."""
        m, s = self.marginal(t)
        return m**2 / s**2

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """The noise level in the variance-exploding frame: s / m (x_t / m = x_0 + sigma z)."""
        m, s = self.marginal(t)
        return s / m

    def drift(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """f(x, t) = a(t) x (arXiv 2011.13456, eq. 5); x of any shape."""
        return float(self.drift_rate(as_time(t))) * x

    def diffusion(self, t: float) -> float:
        """g(t) (arXiv 2011.13456, eq. 5)."""
        return math.sqrt(max(float(self.diffusion_squared(as_time(t))), 0.0))

    @property
    def prior_std(self) -> float:
        """Standard deviation of x_1 when the data is forgotten (N(0, prior_std^2 I))."""
        return float(self.std(as_time(1.0)))

    def t_of_sigma(self, sigma: float) -> float:
        """The time in [0, 1] at which s/m = sigma (sigma is increasing in t), by bisection."""
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
        """What a run config records about the process (JSON-ready)."""
        return {"kind": self.kind, "name": self.name}
