"""Training: the loss goes down, a stopped run resumes exactly, a saved run samples the same."""

from __future__ import annotations

import json
import time

import pytest
import torch
from diffusers import UNet2DModel

from diffstudio.engine.runs import Run
from diffstudio.engine.sampling import generate, load_model
from diffstudio.engine.schedules.linear import linear_schedule
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


# -- the event generator, timing and the rate --------------------------------------------------
def _points_config(**overrides) -> TrainConfig:
    values = dict(
        dataset="toy2d", dataset_params={"num_points": 256}, network="mlp",
        network_params={"hidden": 16, "depth": 1}, num_timesteps=50, steps=20, batch_size=8,
        warmup_steps=2, log_every=4, checkpoint_every=20, preview_every=0, device="cpu", seed=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def _step_events(events):
    return [e for e in events if e.kind == "step"]


@pytest.mark.parametrize("pause_hook", [False, True])
def test_logged_rate_is_the_one_in_metrics_and_is_not_inflated_by_a_pause_hook(
    tmp_path, pause_hook
):
    """The rate window used to restart before every step when should_pause was given (the
    window's case), so images/s came out ~log_every times too high. Over a window without
    previews or checkpoints, images/s must be the steps' images over the elapsed training time
    between the two events: the same clock measures both."""
    events = []
    Trainer(_points_config(), tmp_path / "run", registry=REGISTRY, callback=events.append,
            should_pause=(lambda: False) if pause_hook else None).train()
    steps = _step_events(events)
    metrics = Run(tmp_path / "run").metrics()
    assert [e.step for e in steps] == [m["step"] for m in metrics] == [4, 8, 12, 16, 20]
    for event, record in zip(steps, metrics, strict=True):
        assert event.images_per_second == record["images_per_second"]
        assert event.elapsed == record["elapsed"]
    previous_step, previous_elapsed = 0, 0.0
    for event in steps:
        images = (event.step - previous_step) * 8
        assert event.images_per_second == pytest.approx(
            images / (event.elapsed - previous_elapsed), rel=1e-6)
        previous_step, previous_elapsed = event.step, event.elapsed


def test_run_yields_a_tick_before_every_step_and_step_events_carry_an_eta(tmp_path):
    trainer = Trainer(_points_config(), tmp_path / "run", registry=REGISTRY)
    events = list(trainer.run())
    assert events[0].kind == "start" and events[-1].kind == "done"
    ticks = [e for e in events if e.kind == "tick"]
    assert [t.step for t in ticks] == list(range(20))
    assert all(t.total_steps == 20 for t in ticks)
    # Each tick comes before its step: ticks and step events interleave in order.
    order = [(e.step, e.kind) for e in events if e.kind in ("tick", "step")]
    assert order.index((4, "step")) < order.index((4, "tick"))
    assert order.index((3, "tick")) < order.index((4, "step"))
    steps = _step_events(events)
    assert all(e.eta is not None and e.eta >= 0 for e in steps)
    assert steps[-1].eta == 0.0
    assert ticks[0].eta is None and ticks[-1].eta > 0
    assert trainer.result is not None and trainer.result.status == "completed"
    assert trainer.result.step == 20


def test_time_suspended_at_a_yield_counts_neither_in_elapsed_nor_in_the_rate(tmp_path):
    """A consumer that stops pulling pauses training; that time is not training time."""
    pause, paused_steps = 0.05, (3, 6, 9)
    started = time.perf_counter()
    events = []
    for event in Trainer(_points_config(steps=12), tmp_path / "run", registry=REGISTRY).run():
        events.append(event)
        if event.kind == "tick" and event.step in paused_steps:
            time.sleep(pause)
    wall = time.perf_counter() - started
    steps = _step_events(events)
    assert steps[-1].elapsed <= wall - len(paused_steps) * pause
    for event in steps:  # the rate stays that of the elapsed training time
        assert event.images_per_second >= 4 * 8 / (event.elapsed + 1e-9) * (1 - 1e-6)


def test_should_pause_holds_training_and_the_pause_is_not_training_time(tmp_path):
    state = {"until": None}

    def should_pause() -> bool:
        if state["until"] is None:
            state["until"] = time.perf_counter() + 0.3
        return time.perf_counter() < state["until"]

    started = time.perf_counter()
    events = []
    result = Trainer(_points_config(steps=8), tmp_path / "run", registry=REGISTRY,
                     callback=events.append, should_pause=should_pause).train()
    wall = time.perf_counter() - started
    assert result.status == "completed" and result.step == 8
    assert _step_events(events)[-1].elapsed <= wall - 0.3


def test_closing_the_generator_writes_the_progress_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    trainer = Trainer(_points_config(checkpoint_every=5), run_dir, registry=REGISTRY)
    events = trainer.run()
    for event in events:
        if event.kind == "tick" and event.step == 7:
            break
    events.close()  # a consumer quitting between two steps
    run = Run(run_dir)
    assert [step for step, _ in run.checkpoints()][-1] == 7
    assert trainer.result.status == "stopped" and trainer.result.step == 7
    assert [m["step"] for m in run.metrics()] == [4]
    resumed = Trainer(_points_config(checkpoint_every=5), run_dir, resume=True,
                      registry=REGISTRY).train()
    assert resumed.status == "completed" and resumed.step == 20
    assert [m["step"] for m in run.metrics()] == [4, 8, 12, 16, 20]


def test_closing_right_after_a_checkpoint_writes_no_second_one(tmp_path):
    run_dir = tmp_path / "run"
    events = Trainer(_points_config(checkpoint_every=5), run_dir, registry=REGISTRY).run()
    for event in events:
        if event.kind == "checkpoint":
            break
    events.close()
    assert [step for step, _ in Run(run_dir).checkpoints()] == [5]


def test_a_stop_yields_its_checkpoint_then_done_stopped(tmp_path):
    trainer = Trainer(_points_config(), tmp_path / "run", registry=REGISTRY)
    kinds = []
    for event in trainer.run():
        kinds.append((event.kind, event.step))
        if event.kind == "tick" and event.step == 6:
            trainer.request_stop()
    assert kinds[-2:] == [("checkpoint", 6), ("done", 6)]
    assert trainer.result.status == "stopped"


def test_an_error_in_the_callback_keeps_the_progress(tmp_path):
    def callback(event):
        if event.kind == "step" and event.step == 8:
            raise RuntimeError("the consumer broke")

    with pytest.raises(RuntimeError, match="consumer broke"):
        Trainer(_points_config(), tmp_path / "run", registry=REGISTRY,
                callback=callback).train()
    assert [step for step, _ in Run(tmp_path / "run").checkpoints()] == [8]


# -- the network is called as sampling calls it ------------------------------------------------
class _MarginalRecorder(torch.nn.Module):
    """A trainable network that conditions on the marginal and records what it was given."""

    conditions_on_marginal = True

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, x, labels, class_labels=None, marginal=None):
        assert marginal is not None, "training must pass marginal=(m, s) like sampling does"
        self.calls.append((labels.detach().clone(), marginal[0].detach().clone(),
                           marginal[1].detach().clone()))
        return self.linear(x)


def test_training_passes_the_marginal_to_networks_that_condition_on_it(tmp_path, monkeypatch):
    import diffstudio.engine.training as training

    built = []

    def build(*args, **kwargs):
        built.append(_MarginalRecorder())
        return built[-1]

    monkeypatch.setattr(training, "build_network", build)
    Trainer(_points_config(steps=3, log_every=1, checkpoint_every=3, schedule="linear"),
            tmp_path / "run",
            registry=REGISTRY).train()
    # The 3 steps (batch 8), then the checkpoint's finiteness probe (a forward pass of 4).
    assert [c[0].shape[0] for c in built[0].calls] == [8, 8, 8, 4]
    calls = built[0].calls[:3]
    alpha_bars = linear_schedule(50).alpha_bars
    for labels, m, s in calls:
        assert labels.dtype == torch.long and m.shape == s.shape == labels.shape == (8,)
        expected = alpha_bars[labels].float()
        assert torch.allclose(m**2, expected, atol=1e-6)
        assert torch.allclose(s**2, 1 - expected, atol=1e-6)


def test_an_exact_network_is_written_ready_to_sample_not_trained(tmp_path):
    """'train --network analytic-mixture' ended in 'optimizer got an empty parameter list'."""
    events = []
    result = Trainer(_points_config(network="analytic-mixture", network_params={},
                                    num_timesteps=1000),
                     tmp_path / "run", registry=REGISTRY, callback=events.append).train()
    assert result.status == "completed" and result.total_steps == 0
    assert [e.kind for e in events] == ["start", "checkpoint", "done"]
    assert "nothing to train" in events[0].message and "diffstudio sample" in events[0].message
    run = Run(tmp_path / "run")
    assert run.read_config()["train"]["prediction_type"] == "score"
    loaded = load_model(tmp_path / "run", device="cpu", registry=REGISTRY)
    samples = generate(loaded.model, "ddim", {"steps": 10}, sample_shape=(2,), num_samples=64,
                       seed=0, registry=REGISTRY).samples
    near_big_mode = (samples - 5.0).norm(dim=1) < 3.0
    assert 0.5 < near_big_mode.float().mean() < 1.0
