"""Reliability of a run folder: a diverged run keeps a checkpoint that samples, resume takes
the settings that are safe to change, one writer per run, nothing left half-done."""

from __future__ import annotations

import json

import pytest
import torch

from diffstudio.engine.runs import Run
from diffstudio.engine.sampling import generate, load_model
from diffstudio.engine.training import TrainConfig, Trainer
from diffstudio.errors import RunError, TrainingError
from diffstudio.plugin_manager import load_plugins

REGISTRY = load_plugins(safe_mode=True)


def points_config(**overrides) -> TrainConfig:
    values = dict(
        dataset="toy2d", dataset_params={"num_points": 256}, network="mlp",
        network_params={"hidden": 16, "depth": 1}, num_timesteps=50, steps=6, batch_size=8,
        warmup_steps=0, log_every=1, checkpoint_every=1, keep_checkpoints=0, preview_every=0,
        device="cpu", seed=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def blow_up_weights_at(monkeypatch, update: int) -> None:
    """From the ``update``-th optimizer step on, the weights become infinite: what a far too
    large learning rate does (the loss of that step was still computed with finite weights)."""
    original = torch.optim.AdamW.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= update:
            with torch.no_grad():
                for group in self.param_groups:
                    for param in group["params"]:
                        param.fill_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", step)


# -- divergence ---------------------------------------------------------------------------------
def test_diverged_weights_are_never_kept_and_the_kept_checkpoint_samples(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    blow_up_weights_at(monkeypatch, 2)
    with pytest.raises(TrainingError, match=r"became NaN or infinite at step 2.*last good"):
        Trainer(points_config(), run_dir, registry=REGISTRY).train()
    monkeypatch.undo()
    run = Run(run_dir)
    assert run.latest_checkpoint().name == "step-00000001"
    assert [step for step, _ in run.checkpoints()] == [1]
    loaded = load_model(run_dir, device="cpu", registry=REGISTRY)
    result = generate(loaded.model, "ddim", {"steps": 5}, sample_shape=(2,), num_samples=8,
                      seed=0, registry=REGISTRY)
    assert torch.isfinite(result.samples).all()


def test_weights_diverged_before_any_checkpoint_says_none_was_written(tmp_path, monkeypatch):
    blow_up_weights_at(monkeypatch, 1)
    with pytest.raises(TrainingError, match="no checkpoint was written"):
        Trainer(points_config(), tmp_path / "run", registry=REGISTRY).train()
    assert Run(tmp_path / "run").latest_checkpoint() is None
