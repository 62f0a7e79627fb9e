"""Training: the loss goes down, a stopped run resumes exactly, a saved run samples the same."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import UNet2DModel

from diffstudio.engine.runs import Run
from diffstudio.engine.sampling import generate, load_model
from diffstudio.engine.training import TrainConfig, Trainer, lr_at
from diffstudio.errors import ConfigError, RunError, TrainingError
from diffstudio.plugin_manager import load_plugins

REGISTRY = load_plugins(safe_mode=True)


def tiny_config(**overrides) -> TrainConfig:
    values = dict(
        dataset="digits", network="unet", schedule="linear", num_timesteps=100, steps=30,
        batch_size=16, learning_rate=2e-3, warmup_steps=5, log_every=5, checkpoint_every=10,
        preview_every=0, device="cpu", seed=3,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_tiny_run_lowers_the_loss(tmp_path):
    events = []
    result = Trainer(
        tiny_config(steps=120, batch_size=32, log_every=10, checkpoint_every=120,
                    preview_every=60, preview_samples=4, preview_steps=3),
        tmp_path / "run", registry=REGISTRY, callback=events.append,
    ).train()
    assert result.status == "completed" and result.step == 120
    losses = [e.loss for e in events if e.kind == "step"]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:2]) / 2, losses
    previews = [e for e in events if e.kind == "preview"]
    assert [p.step for p in previews] == [60, 120]
    assert previews[0].images.shape == (4, 1, 8, 8)
    assert (tmp_path / "run" / "previews" / "step-00000060.png").is_file()
    step_events = [e for e in events if e.kind == "step"]
    assert all(e.images_per_second > 0 and e.lr > 0 for e in step_events)


def test_stopped_run_resumes_exactly_where_it_stopped(tmp_path):
    full = Trainer(tiny_config(), tmp_path / "full", registry=REGISTRY).train()
    assert full.status == "completed"

    calls = {"n": 0}

    def stop_after_17_steps() -> bool:
        calls["n"] += 1
        return calls["n"] > 17

    stopped = Trainer(tiny_config(), tmp_path / "split", registry=REGISTRY,
                      should_stop=stop_after_17_steps).train()
    assert stopped.status == "stopped" and stopped.step == 17
    # The stop wrote a checkpoint at step 17; the run resumes from it.
    assert Run(tmp_path / "split").latest_checkpoint().name == "step-00000017"
    resumed = Trainer(tiny_config(), tmp_path / "split", resume=True, registry=REGISTRY).train()
    assert resumed.status == "completed" and resumed.step == 30

    full_metrics = Run(tmp_path / "full").metrics()
    split_metrics = Run(tmp_path / "split").metrics()
    assert [m["step"] for m in split_metrics] == [m["step"] for m in full_metrics]
    for a, b in zip(full_metrics, split_metrics, strict=True):
        if a["step"] <= 15 or a["step"] >= 25:  # windows that straddle the stop average apart
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6), (a, b)
    full_weights = Run(tmp_path / "full").latest_checkpoint() / "network_ema"
    split_weights = Run(tmp_path / "split").latest_checkpoint() / "network_ema"
    a = UNet2DModel.from_pretrained(full_weights).state_dict()
    b = UNet2DModel.from_pretrained(split_weights).state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_run_layout_loads_with_diffusers_and_samples_reproducibly(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(tiny_config(steps=10), run_dir, registry=REGISTRY).train()
    run = Run(run_dir)
    config = run.read_config()
    assert config["train"]["dataset"] == "digits" and config["dataset_info"]["size"] == 1797
    checkpoint = run.latest_checkpoint()
    for folder in ("network", "network_ema"):
        assert (checkpoint / folder / "diffusion_pytorch_model.safetensors").is_file()
        network = UNet2DModel.from_pretrained(checkpoint / folder)
        assert network.config.sample_size == 8
    assert (checkpoint / "training_state.safetensors").is_file()
    assert json.loads((run_dir / "latest.json").read_text())["step"] == 10

    first = load_model(run_dir, device="cpu", registry=REGISTRY)
    second = load_model(run_dir, device="cpu", registry=REGISTRY)
    assert first.network_sha256 == second.network_sha256
    kwargs = dict(sample_shape=(1, 8, 8), num_samples=3, seed=11, registry=REGISTRY)
    a = generate(first.model, "ddim", {"steps": 5, "eta": 0.5}, **kwargs)
    b = generate(second.model, "ddim", {"steps": 5, "eta": 0.5}, batch_size=2, **kwargs)
    assert torch.allclose(a.samples, b.samples, atol=1e-5)
    assert a.network_evaluations == 5
    # Sample 2 alone, from its own seed, is the same image.
    single = generate(first.model, "ddim", {"steps": 5, "eta": 0.5}, sample_shape=(1, 8, 8),
                      num_samples=1, seed=13, registry=REGISTRY)
    assert torch.allclose(single.samples[0], a.samples[2], atol=1e-5)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(
    tmp_path, monkeypatch
):
    run_dir = tmp_path / "run"
    Trainer(tiny_config(steps=10), run_dir, registry=REGISTRY).train()
    original_forward = UNet2DModel.forward

    def diverged_forward(self, *args, **kwargs):
        out = original_forward(self, *args, **kwargs)
        out.sample.fill_(float("nan"))  # what a diverged network returns
        return out

    monkeypatch.setattr(UNet2DModel, "forward", diverged_forward)
    with pytest.raises(TrainingError, match="loss became nan at step 15"):
        Trainer(tiny_config(steps=40), run_dir, resume=True, registry=REGISTRY).train()
    assert Run(run_dir).latest_checkpoint().name == "step-00000010"


def test_new_run_refuses_an_existing_run_folder(tmp_path):
    Trainer(tiny_config(steps=5), tmp_path / "run", registry=REGISTRY).train()
    with pytest.raises(RunError, match="already holds a run"):
        Trainer(tiny_config(steps=5), tmp_path / "run", registry=REGISTRY).train()


def test_config_validation_and_learning_rate_schedule():
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0).validate()
    with pytest.raises(ConfigError, match="unknown training setting"):
        TrainConfig.from_dict({"lerning_rate": 1.0})
    config = TrainConfig(learning_rate=1.0, warmup_steps=10, lr_schedule="cosine")
    assert lr_at(0, config, 110) == pytest.approx(0.1)
    assert lr_at(9, config, 110) == pytest.approx(1.0)
    assert lr_at(60, config, 110) == pytest.approx(0.5)
    assert lr_at(110, config, 110) == pytest.approx(0.0, abs=1e-12)


def test_run_config_records_every_plugin_parameter_and_old_runs_still_resume(tmp_path):
    """network_params {} is written as what was built (the default preset and the rest), so
    the run says how to rebuild itself even if a default changes; a run written before, with
    the bare {}, resumes as the same settings."""
    run_dir = tmp_path / "run"
    Trainer(tiny_config(steps=10), run_dir, registry=REGISTRY).train()
    train = Run(run_dir).read_config()["train"]
    assert train["network_params"] == {"preset": "digits-8", "class_conditional": False,
                                       "dropout": 0.0, "learned_variance": False}
    assert train["dataset_params"]["size"] == 8 and "beta_start" in train["schedule_params"]
    # A run from before: its config kept only what was given.
    config_file = run_dir / "config.json"
    payload = json.loads(config_file.read_text())
    payload["train"]["network_params"] = {}
    config_file.write_text(json.dumps(payload))
    resumed = Trainer(tiny_config(steps=20), run_dir, resume=True, registry=REGISTRY).train()
    assert resumed.status == "completed" and resumed.step == 20
    # A real change of settings is still refused.
    with pytest.raises(RunError, match="network_params"):
        Trainer(tiny_config(steps=30, network_params={"dropout": 0.1}), run_dir, resume=True,
                registry=REGISTRY).train()
