"""What a network predicts, and the one set of conversions between the three choices.

With x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps (seed 002 eq. 6):

* ``epsilon``: the network predicts eps (DDPM, eq. 24); x_0 = (x_t - sqrt(1-a) eps) / sqrt(a)
  (eq. 29).
* ``sample``: the network predicts x_0 directly; eps = (x_t - sqrt(a) x_0) / sqrt(1-a).
* ``v_prediction``: v = sqrt(a) eps - sqrt(1-a) x_0 (Salimans & Ho 2022); then
  x_0 = sqrt(a) x_t - sqrt(1-a) v and eps = sqrt(1-a) x_t + sqrt(a) v.

``alpha_bar`` is a tensor broadcastable to x (for example (B, 1, 1, 1)) or a float.
The names match diffusers' ``prediction_type``.

sqrt(alpha_bar) and sqrt(1 - alpha_bar) are taken in alpha_bar's own precision (a Python float
or a float64 tensor) and only then rounded to x's dtype: near t = 0, alpha_bar = 1 - 1e-4, and
forming 1 - alpha_bar in float32 would lose three to four digits of sqrt(1 - alpha_bar).
"""

from __future__ import annotations

import math

import torch

from diffstudio.errors import ConfigError

__all__ = ["PREDICTION_TYPES", "to_eps_and_x0", "training_target"]

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def _check(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ConfigError(
            f"prediction type {prediction_type!r} is not one of {PREDICTION_TYPES}"
        )


def _sqrt_coefficients(
    alpha_bar: torch.Tensor | float, like: torch.Tensor
) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """(sqrt(alpha_bar), sqrt(1 - alpha_bar)), computed before rounding to ``like``'s dtype."""
    if isinstance(alpha_bar, (int, float)):
        return math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
    a = torch.as_tensor(alpha_bar)
    if not a.is_floating_point():
        a = a.to(torch.float64)
    return (
        a.sqrt().to(device=like.device, dtype=like.dtype),
        (1.0 - a).sqrt().to(device=like.device, dtype=like.dtype),
    )


def to_eps_and_x0(
    prediction_type: str,
    output: torch.Tensor,
    x_t: torch.Tensor,
    alpha_bar: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps, x0_pred) from the network ``output`` at noisy input ``x_t``."""
    _check(prediction_type)
    sqrt_a, sqrt_1ma = _sqrt_coefficients(alpha_bar, x_t)
    if prediction_type == "epsilon":
        return output, (x_t - sqrt_1ma * output) / sqrt_a
    if prediction_type == "sample":
        return (x_t - sqrt_a * output) / sqrt_1ma, output
    return sqrt_1ma * x_t + sqrt_a * output, sqrt_a * x_t - sqrt_1ma * output


def training_target(
    prediction_type: str,
    x0: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar: torch.Tensor | float,
) -> torch.Tensor:
    """The regression target for the network: eps, x_0 or v."""
    _check(prediction_type)
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "sample":
        return x0
    sqrt_a, sqrt_1ma = _sqrt_coefficients(alpha_bar, x0)
    return sqrt_a * eps - sqrt_1ma * x0
