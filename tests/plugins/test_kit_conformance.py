"""The schedule, network and dataset conformance kits: every built-in passes, and a schedule
with a wrong derivative, a network with a wrong output shape or one that ignores its class
labels, and a dataset out of range or drawn anew at each call fail with the reason."""

from __future__ import annotations

import pytest
import torch

from diffstudio.engine.datasets import Dataset
from diffstudio.engine.schedules import NoiseSchedule, ScheduleProcess
from diffstudio.plugin_manager import load_plugins
from diffstudio.specs import Contribution
from diffstudio.testing import DatasetConformance, NetworkConformance, ScheduleConformance

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


class TestBuiltinDigits(DatasetConformance):
    contribution = REGISTRY.get("dataset", "digits")
    expected_len = 1797


class TestBuiltinToyMixture(DatasetConformance):
    contribution = REGISTRY.get("dataset", "toy2d")
    params = {"num_points": 500}
    expected_len = 500


class TestBuiltinToyRings(DatasetConformance):
    contribution = REGISTRY.get("dataset", "toy2d")
    params = {"name": "rings", "num_points": 300, "seed": 3}
    expected_len = 300


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


class _Unconditional(torch.nn.Module):
    def forward(self, x, timesteps, class_labels=None):
        return x * 0.5


def unconditional(sample_shape, num_classes=None):
    return _Unconditional()


def test_a_network_that_ignores_its_class_labels_fails():
    class Check(NetworkConformance):
        contribution = _spec("network", f"{__name__}:unconditional")
        sample_shape = (2,)
        num_classes = 4

    Check().test_output_shape_dtype_and_finite()
    with pytest.raises(AssertionError, match="does not depend on class_labels"):
        Check().test_class_labels_change_the_output()


def bright_images():
    data = torch.linspace(0, 255, 2 * 64).reshape(2, 1, 8, 8)  # 8-bit pixels, not [-1, 1]
    return Dataset(name="bright", data=data, kind="image")


def fresh_points(num_points=50):
    return Dataset(name="fresh", data=torch.randn(num_points, 2), kind="points")


def labelled_points():
    return Dataset(name="labelled", data=torch.randn(4, 2, generator=torch.Generator()),
                   kind="points", labels=torch.tensor([0, 1, 2, 3]), num_classes=3)


def test_a_dataset_out_of_range_fails():
    class Check(DatasetConformance):
        contribution = _spec("dataset", f"{__name__}:bright_images")

    Check().test_kind_and_shapes()
    with pytest.raises(AssertionError, match=r"images must be in \[-1, 1\]"):
        Check().test_dtype_and_value_range()


def test_a_dataset_drawn_anew_at_each_call_fails():
    class Check(DatasetConformance):
        contribution = _spec("dataset", f"{__name__}:fresh_points")
        expected_len = 50

    Check().test_length_and_labels()
    with pytest.raises(AssertionError, match=r"seeded torch\.Generator"):
        Check().test_deterministic()


def test_labels_beyond_num_classes_fail():
    class Check(DatasetConformance):
        contribution = _spec("dataset", f"{__name__}:labelled_points")

    with pytest.raises(AssertionError, match=r"labels must be in \[0, 3\)"):
        Check().test_length_and_labels()


def test_a_tag_that_contradicts_the_kind_fails():
    class Check(DatasetConformance):
        contribution = Contribution(kind="dataset", id="broken", display_name="Broken",
                                    description="broken", factory=f"{__name__}:fresh_points",
                                    tags=("image",))

    with pytest.raises(AssertionError, match="tagged 'image'"):
        Check().test_kind_and_shapes()


class _NoNullClass(torch.nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.classes = torch.nn.Embedding(num_classes, 2)  # no "no label" class

    def forward(self, x, timesteps, class_labels=None):
        return x + (self.classes(class_labels) if class_labels is not None else 0)


def no_null_class(sample_shape, num_classes=None):
    return _NoNullClass(num_classes)


def test_a_network_without_the_no_label_class_fails():
    class Check(NetworkConformance):
        contribution = _spec("network", f"{__name__}:no_null_class")
        sample_shape = (2,)
        num_classes = 4

    with pytest.raises(AssertionError, match="'no label' class"):
        Check().test_class_labels_change_the_output()
