"""The schedule and network conformance kits: every built-in passes, and a schedule with a
wrong derivative or a network with a wrong output shape fails with the reason."""

from __future__ import annotations

import pytest
import torch

from diffstudio.engine.schedules import NoiseSchedule, ScheduleProcess
from diffstudio.plugin_manager import load_plugins
from diffstudio.specs import Contribution
from diffstudio.testing import NetworkConformance, ScheduleConformance

REGISTRY = load_plugins(safe_mode=True)

for _schedule in REGISTRY.contributions("schedule"):
    _name = "TestBuiltinSchedule_" + _schedule.id.replace("-", "_")
    globals()[_name] = type(_name, (ScheduleConformance,), {"contribution": _schedule})


class TestBuiltinMLP(NetworkConformance):
    contribution = REGISTRY.get("network", "mlp")
    sample_shape = (2,)
    params = {"hidden": 16, "depth": 1}


class TestBuiltinConditionalUNet(NetworkConformance):
    contribution = REGISTRY.get("network", "unet")
    params = {"preset": "digits-8", "class_conditional": True}
    num_classes = 10


class _WrongDrift(ScheduleProcess):
    def drift_rate(self, t):
        return -super().drift_rate(t)


def wrong_drift(num_timesteps=1000):
    return _WrongDrift(NoiseSchedule(torch.linspace(1e-4, 0.02, num_timesteps,
                                                    dtype=torch.float64), name="wrong"))


class _OneOutput(torch.nn.Module):
    def forward(self, x, timesteps, class_labels=None):
        return x[:, :1]


def wrong_shape(sample_shape, num_classes=None):
    return _OneOutput()


def _spec(kind: str, factory: str) -> Contribution:
    return Contribution(kind=kind, id="broken", display_name="Broken", description="broken",
                        factory=factory)


def test_a_schedule_whose_drift_is_not_its_derivative_fails():
    class Check(ScheduleConformance):
        contribution = _spec("schedule", f"{__name__}:wrong_drift")

    Check().test_grid(100)
    with pytest.raises(AssertionError, match="drift_rate"):
        Check().test_derivatives_agree_with_the_marginals(100)


def test_a_network_with_the_wrong_output_shape_fails():
    class Check(NetworkConformance):
        contribution = _spec("network", f"{__name__}:wrong_shape")
        sample_shape = (2,)

    with pytest.raises(AssertionError, match=r"output \(3, 1\) for x \(3, 2\)"):
        Check().test_output_shape_dtype_and_finite()
