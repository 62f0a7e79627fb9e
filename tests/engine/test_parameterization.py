"""The one conversion layer round-trips: the training target of each parameterisation, read
back as a network output, gives exactly the eps and x_0 that made x_t = m x_0 + s eps."""

import pytest
import torch

from diffstudio.engine.parameterization import (
    PREDICTION_TYPES,
    frame_target,
    frame_to_eps_and_x0,
)
from diffstudio.errors import ConfigError


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize(("m", "s"), [(0.999, 0.0447), (0.6, 0.8), (0.05, 0.9987),
                                      (1.0, 50.0)])  # VP early/middle/late, and a VE level
def test_target_read_back_as_output_recovers_eps_and_x0(prediction_type, m, s):
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 5, 5, generator=generator, dtype=torch.float64)
    eps = torch.randn(4, 3, 5, 5, generator=generator, dtype=torch.float64)
    x_t = m * x0 + s * eps
    target = frame_target(prediction_type, x0, eps, m, s)
    eps_back, x0_back = frame_to_eps_and_x0(prediction_type, target, x_t, m, s)
    torch.testing.assert_close(eps_back, eps, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x0_back, x0, rtol=1e-9, atol=1e-9)


def test_per_sample_coefficients_broadcast_like_training_uses_them():
    """Training passes (B, 1, 1, 1) coefficients; each row converts with its own (m, s)."""
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 2, 4, 4, generator=generator, dtype=torch.float64)
    eps = torch.randn(3, 2, 4, 4, generator=generator, dtype=torch.float64)
    alpha_bar = torch.tensor([0.99, 0.5, 0.01], dtype=torch.float64)
    m = alpha_bar.sqrt().view(-1, 1, 1, 1)
    s = (1 - alpha_bar).sqrt().view(-1, 1, 1, 1)
    x_t = m * x0 + s * eps
    for prediction_type in PREDICTION_TYPES:
        target = frame_target(prediction_type, x0, eps, m, s)
        eps_back, x0_back = frame_to_eps_and_x0(prediction_type, target, x_t, m, s)
        torch.testing.assert_close(eps_back, eps)
        torch.testing.assert_close(x0_back, x0)


def test_v_target_is_the_one_of_salimans_and_ho():
    """v = alpha eps - sigma x_0 in the variance-preserving frame (Salimans & Ho 2202.00512,
    sec. 4), which is what diffusers' v_prediction trains."""
    x0, eps = torch.tensor([2.0]), torch.tensor([-1.0])
    m, s = 0.6, 0.8
    assert frame_target("v_prediction", x0, eps, m, s).item() == pytest.approx(
        0.6 * -1.0 - 0.8 * 2.0)


def test_unknown_prediction_type_is_a_clear_error():
    with pytest.raises(ConfigError, match="prediction"):
        frame_target("noise", torch.zeros(1), torch.zeros(1), 1.0, 0.0)
