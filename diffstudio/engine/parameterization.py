"""What a network predicts, and the one set of conversions between the four choices.

In a process's own frame x_t = m x_0 + s eps (``diffstudio.engine.processes``; for DDPM
m = sqrt(alpha_bar), s = sqrt(1 - alpha_bar), Ho et al. arXiv 2006.11239 eq. 4), with
c = sqrt(m^2 + s^2), a = m / c, b = s / c (a^2 + b^2 = 1; c = 1 for variance-preserving processes):

* ``epsilon``: the network predicts eps (DDPM, eq. 24); x_0 = (x_t - s eps) / m (eq. 29).
* ``sample``: the network predicts x_0 directly; eps = (x_t - m x_0) / s.
* ``v_prediction``: v = a eps - b x_0 (Salimans & Ho 2022); then, with x' = x_t / c,
  x_0 = a x' - b v and eps = b x' + a v.
* ``score``: the network predicts s * grad log p_t(x_t), the noise-scaled score of NCSN (whose
  output is divided by sigma, Song & Ermon 2020) and score SDEs; since the score of the
  perturbation kernel is -eps / s, eps = -output (the sign is the only difference from
  ``epsilon``) and the denoising score-matching loss with lambda = s^2 (eqs. 32-33, 36) is
  || output + eps ||^2.

The names of the first three match diffusers' ``prediction_type``. Coefficients are formed in
their own precision (Python floats or float64 tensors) and only then rounded to x's dtype: near
t = 0, alpha_bar = 1 - 1e-4, and forming 1 - alpha_bar in float32 would lose three to four
digits of sqrt(1 - alpha_bar).
"""

from __future__ import annotations

import math

import torch

from diffstudio.errors import ConfigError

__all__ = [
    "PREDICTION_TYPES",
    "frame_target",
    "frame_to_eps_and_x0",
]

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction", "score")

Coefficient = torch.Tensor | float


def _check(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ConfigError(
            f"prediction type {prediction_type!r} is not one of {PREDICTION_TYPES}"
        )


def _as(value: Coefficient, like: torch.Tensor) -> Coefficient:
    if isinstance(value, (int, float)):
        return float(value)
    return torch.as_tensor(value).to(device=like.device, dtype=like.dtype)


def _frame(m: Coefficient, s: Coefficient, like: torch.Tensor):
    """(m, s, c, a, b) in x's dtype, computed at m and s's own precision first."""
    if isinstance(m, (int, float)) and isinstance(s, (int, float)):
        c = math.hypot(m, s)
        values = (m, s, c, m / c, s / c)
    else:
        m64 = torch.as_tensor(m, dtype=torch.float64)
        s64 = torch.as_tensor(s, dtype=torch.float64)
        c = torch.sqrt(m64**2 + s64**2)
        values = (m64, s64, c, m64 / c, s64 / c)
    return tuple(_as(value, like) for value in values)


def frame_to_eps_and_x0(
    prediction_type: str,
    output: torch.Tensor,
    x_t: torch.Tensor,
    m: Coefficient,
    s: Coefficient,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps, x0_pred) from the network ``output`` at ``x_t = m x_0 + s eps``."""
    _check(prediction_type)
    m, s, c, a, b = _frame(m, s, x_t)
    if prediction_type == "epsilon":
        return output, (x_t - s * output) / m
    if prediction_type == "score":
        return -output, (x_t + s * output) / m
    if prediction_type == "sample":
        return (x_t - m * output) / s, output
    x_unit = x_t / c
    return b * x_unit + a * output, a * x_unit - b * output


def frame_target(
    prediction_type: str,
    x0: torch.Tensor,
    eps: torch.Tensor,
    m: Coefficient,
    s: Coefficient,
) -> torch.Tensor:
    """The regression target for the network in the frame (m, s): eps, x_0, v or -eps."""
    _check(prediction_type)
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "score":
        return -eps
    if prediction_type == "sample":
        return x0
    _, _, _, a, b = _frame(m, s, x0)
    return a * eps - b * x0
