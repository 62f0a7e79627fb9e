"""One declaration of the training settings: every TrainConfig field is declared once, with
the dataclass default; validation, the CLI flags and the form all come from it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from diffstudio.cli import main
from diffstudio.engine.train_config import (
    COMPONENT_FIELDS,
    PREDICTION_TYPES,
    TRAIN_SETTINGS,
    TrainConfig,
)
from diffstudio.errors import ConfigError


def test_every_field_is_declared_once_with_its_default():
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    declared = [param.name for param in TRAIN_SETTINGS]
    assert len(declared) == len(set(declared))
    assert set(declared) | set(COMPONENT_FIELDS) == set(fields)
    defaults = TrainConfig()
    for param in TRAIN_SETTINGS:
        assert getattr(defaults, param.name) == param.default, param.name
        param.check_spec()


def test_prediction_types_match_the_engine():
    from diffstudio.engine.parameterization import PREDICTION_TYPES as ENGINE

    assert PREDICTION_TYPES == ENGINE


def test_the_declaration_imports_without_torch():
    code = "import sys, diffstudio.engine.train_config; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(("values", "message"), [
    ({"checkpoint_every": 0}, "'checkpoint_every' must be >= 1"),
    ({"batch_size": "many"}, "'batch_size' must be int"),
    ({"lr_schedule": "step"}, "must be one of"),
    ({"device": "gpu"}, "device must be auto, cpu, cuda, cuda:N or mps"),
    ({"steps": 0}, "set steps or epochs"),
    ({"colour": 1}, "unknown training setting(s) colour"),
])
def test_bad_settings_name_the_setting_and_the_range(values, message):
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict(values)
    assert message in str(caught.value)


def test_cuda_n_is_a_valid_device():
    assert TrainConfig.from_dict({"device": "cuda:1"}).device == "cuda:1"


def test_every_setting_is_a_cli_flag(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for param in TRAIN_SETTINGS:
        assert f"--{param.name.replace('_', '-')}" in text, param.name


def test_a_checkpoint_or_preview_only_at_the_end_is_a_valid_setting():
    """bench_engine asks for checkpoint_every=10**9: "never, except the last step"."""
    config = TrainConfig(checkpoint_every=10**9, preview_every=10**9, log_every=10**9)
    assert config.validate().checkpoint_every == 10**9


def test_strings_from_flags_and_forms_are_coerced_to_the_declared_types():
    config = TrainConfig.from_dict({"batch_size": "64", "learning_rate": "2e-4",
                                    "ema_decay": 0.99, "prediction_type": "v_prediction"})
    assert config.batch_size == 64 and isinstance(config.batch_size, int)
    assert config.learning_rate == 2e-4 and isinstance(config.learning_rate, float)
    with pytest.raises(ConfigError, match=r"'batch_size' must be int, got 2\.5"):
        TrainConfig.from_dict({"batch_size": 2.5})

