"""Training calls the network the way sampling does (DiffusionModel.network_output): a network
that conditions on the marginal gets (m, s) in training too -- it never did before."""

from __future__ import annotations

import torch
from torch import nn

import diffstudio.engine.training as training
from diffstudio.engine.training import TrainConfig, Trainer


class RecordingNetwork(nn.Module):
    """A tiny trainable network that conditions on the marginal and records what it got."""

    conditions_on_marginal = True

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.marginals: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, labels, class_labels=None, marginal=None):
        assert marginal is not None, "training did not pass the marginal"
        self.marginals.append((marginal[0].detach().clone(), marginal[1].detach().clone()))
        return self.linear(x) * marginal[1].view(-1, 1)


def test_training_passes_the_marginal_of_each_sample(tmp_path, monkeypatch):
    built: list[RecordingNetwork] = []

    def build(registry, network_id, params, sample_shape, num_classes):
        built.append(RecordingNetwork())
        return built[-1]

    monkeypatch.setattr(training, "build_network", build)
    config = TrainConfig(dataset="toy2d", dataset_params={"num_points": 64}, network="mlp",
                         schedule="vp-sde", steps=3, batch_size=8, warmup_steps=0,
                         preview_every=0, checkpoint_every=3, device="cpu", log_every=1)
    result = Trainer(config, tmp_path / "run").train()
    assert result.step == 3
    network = built[0]
    # The 3 steps (batch 8), then the checkpoint's finiteness probe (a forward pass of 4).
    assert [m.shape[0] for m, _ in network.marginals] == [8, 8, 8, 4]
    m, s = network.marginals[0]
    assert m.shape == s.shape == (8,)
    # VP: m^2 + s^2 = 1 for every sample, each with its own time.
    torch.testing.assert_close(m**2 + s**2, torch.ones(8), rtol=1e-5, atol=1e-5)
    assert s.unique().numel() > 1


def test_images_per_second_is_not_inflated_by_a_pause_hook(tmp_path):
    """The window always sets a pause hook; the rate window used to restart before every step,
    so it showed about log_every times the true images/s."""
    config = TrainConfig(dataset="toy2d", dataset_params={"num_points": 256}, network="mlp",
                         steps=40, batch_size=32, warmup_steps=0, preview_every=0,
                         checkpoint_every=1000, device="cpu", log_every=10)
    events = []
    Trainer(config, tmp_path / "run", callback=events.append,
            should_pause=lambda: False).train()
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == [10, 20, 30, 40]
    # The time each window's rate implies adds up to (nearly) the time trained.
    implied = sum(10 * 32 / e.images_per_second for e in steps)
    assert implied > 0.5 * steps[-1].elapsed, (implied, steps[-1].elapsed)
    import json

    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["images_per_second"] for r in logged] == [e.images_per_second for e in steps]
