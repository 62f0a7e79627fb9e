"""Classifier-free guidance (Ho & Salimans, arXiv 2207.12598): the wrapper's algebra, exactness at
gamma = 0 and 1 through DDIM and DDPM, network-evaluation counting, and the real experiment:
guidance puts more samples of a class-conditional digits model into the requested class."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from diffstudio.engine.guidance import GuidedNetwork, guided_model
from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.networks.unet import build_unet
from diffstudio.engine.samplers import per_sample_generators
from diffstudio.engine.samplers.ddim import ddim_sample
from diffstudio.engine.samplers.ddpm import ddpm_sample
from diffstudio.engine.samplers.dpm_solver import dpm_solver_sample
from diffstudio.engine.schedules.linear import linear_schedule
from diffstudio.errors import ConfigError

NUM_CLASSES = 10
NULL = NUM_CLASSES


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two threads contending with other jobs
    make these small networks several times slower (0.8 s against 0.13 s a training step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def conditional_unet() -> nn.Module:
    """A randomly initialised class-conditional digits-8 U-Net (11 class embeddings)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    network = build_unet((1, 8, 8), NUM_CLASSES, class_conditional=True).eval()
    torch.random.set_rng_state(state)
    return network


@pytest.fixture(scope="module")
def noise() -> torch.Tensor:
    return torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _model(network: nn.Module, labels: torch.Tensor | None = None) -> DiffusionModel:
    return DiffusionModel(network, linear_schedule(num_timesteps=100), x0_clip=1.0,
                          class_labels=labels)


def _sample(sampler, model: DiffusionModel, x: torch.Tensor, **params) -> torch.Tensor:
    return sampler(model, x.clone(), generator=per_sample_generators(range(5, 5 + x.shape[0])),
                   callback=None, should_stop=None, **params)


# --- the wrapper -----------------------------------------------------------------------------


@torch.no_grad()
def test_guided_output_is_the_seed_combination(conditional_unet, noise) -> None:
    t = torch.tensor([90, 40, 3])
    labels = torch.tensor([1, 7, 7])
    cond = conditional_unet(noise, t, class_labels=labels).sample
    uncond = conditional_unet(noise, t, class_labels=torch.full((3,), NULL)).sample
    for scale in (0.5, 3.0, -1.0):
        guided = GuidedNetwork(conditional_unet, labels, NULL, scale)(noise, t)
        # One batch of 2B rounds slightly differently from two batches of B.
        torch.testing.assert_close(guided, uncond + scale * (cond - uncond), rtol=0, atol=1e-5)
    # gamma = 0 and 1: one call of B, bit for bit.
    assert torch.equal(GuidedNetwork(conditional_unet, labels, NULL, 0.0)(noise, t), uncond)
    assert torch.equal(GuidedNetwork(conditional_unet, labels, NULL, 1.0)(noise, t), cond)


def test_evaluations_per_call() -> None:
    network = nn.Identity()
    assert GuidedNetwork(network, 1, NULL, 0.0).evaluations_per_call == 1
    assert GuidedNetwork(network, 1, NULL, 1.0).evaluations_per_call == 1
    assert GuidedNetwork(network, 1, NULL, 3.0).evaluations_per_call == 2


class _Recording(nn.Module):
    """out[:, :C] = x * (1 + label) and out[:, C:] = label (a 'learned variance' channel);
    records every call's batch size and keyword arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, dict]] = []
        self.conditions_on_marginal = True

    def forward(self, x, timesteps, class_labels=None, **kwargs):
        self.calls.append((x.shape[0], kwargs))
        label = class_labels.to(x.dtype).view(-1, 1)
        return torch.cat([x * (1 + label), label.expand_as(x)], dim=1)


def test_learned_variance_and_extra_arguments() -> None:
    network = _Recording()
    guided = GuidedNetwork(network, torch.tensor([2, 3]), null_label=9, scale=2.0)
    assert guided.conditions_on_marginal
    x = torch.ones(2, 4)
    marginal = (torch.tensor([0.5, 0.6]), torch.tensor([0.8, 0.7]))
    out = guided(x, torch.tensor([5, 5]), marginal=marginal)
    assert len(network.calls) == 1 and network.calls[0][0] == 4  # one batched call
    passed = network.calls[0][1]["marginal"]
    assert torch.equal(passed[0], torch.tensor([0.5, 0.6, 0.5, 0.6]))
    # mean: uncond (1 + 9) + 2 * ((1 + c) - 10); variance channels from the conditional half.
    expected_mean = torch.tensor([[10.0 + 2 * (3 - 10)] * 4, [10.0 + 2 * (4 - 10)] * 4])
    assert torch.equal(out[:, :4], expected_mean)
    assert torch.equal(out[:, 4:], torch.tensor([[2.0] * 4, [3.0] * 4]))


def test_labels_passed_at_call_time_take_precedence(conditional_unet, noise) -> None:
    """generate(class_label=...) sets model.class_labels, which reaches the wrapper."""
    model = guided_model(_model(conditional_unet), 1, 1.0, NUM_CLASSES)
    model.class_labels = torch.full((3,), 4)
    reference = _model(conditional_unet, torch.full((3,), 4))
    assert torch.equal(_sample(ddim_sample, model, noise, steps=4),
                       _sample(ddim_sample, reference, noise, steps=4))


def test_guided_model_validation(conditional_unet) -> None:
    model = _model(conditional_unet)
    with pytest.raises(ConfigError, match="out of range"):
        guided_model(model, 10, 2.0, NUM_CLASSES)
    with pytest.raises(ConfigError, match="out of range"):
        guided_model(model, torch.tensor([0, -1]), 2.0, NUM_CLASSES)
    with pytest.raises(ConfigError, match="finite"):
        guided_model(model, 1, float("nan"), NUM_CLASSES)
    with pytest.raises(ConfigError, match="12 classes"):
        guided_model(model, 1, 2.0, 12)
    unconditional = build_unet((1, 8, 8), preset="digits-8")
    with pytest.raises(ConfigError, match="class_conditional=True"):
        guided_model(_model(unconditional), 1, 2.0, NUM_CLASSES)
    with pytest.raises(ConfigError, match="one per sample"):
        guided = guided_model(model, torch.tensor([1, 2]), 2.0, NUM_CLASSES)
        guided.predict(torch.zeros(3, 1, 8, 8), 5)


# --- exactness through the samplers, and the evaluation count --------------------------------


@pytest.mark.parametrize(
    ("sampler", "params"),
    [(ddim_sample, {"steps": 10}), (ddim_sample, {"steps": 10, "eta": 1.0}),
     (ddpm_sample, {"steps": 25})],
    ids=["ddim", "ddim-eta1", "ddpm"],
)
def test_scale_zero_and_one_are_exact(conditional_unet, noise, sampler, params) -> None:
    labels = torch.tensor([3, 3, 8])
    unconditional = _sample(sampler, _model(conditional_unet, torch.full((3,), NULL)), noise,
                            **params)
    conditional = _sample(sampler, _model(conditional_unet, labels), noise, **params)
    at_zero = guided_model(_model(conditional_unet), labels, 0.0, NUM_CLASSES)
    at_one = guided_model(_model(conditional_unet), labels, 1.0, NUM_CLASSES)
    assert torch.equal(_sample(sampler, at_zero, noise, **params), unconditional)
    assert torch.equal(_sample(sampler, at_one, noise, **params), conditional)
    assert at_zero.network_evaluations == at_one.network_evaluations == params["steps"]
    guided = guided_model(_model(conditional_unet), labels, 3.0, NUM_CLASSES)
    out = _sample(sampler, guided, noise, **params)
    assert torch.isfinite(out).all() and not torch.equal(out, conditional)
    assert guided.network_evaluations == 2 * params["steps"]  # CFG costs 2 NFE per step


def test_guided_model_keeps_schedule_and_parameterisation(conditional_unet) -> None:
    base = DiffusionModel(conditional_unet, linear_schedule(num_timesteps=50),
                          prediction_type="v_prediction", x0_clip=2.0)
    guided = guided_model(base, 2, 1.5, NUM_CLASSES)
    assert guided.prediction_type == "v_prediction" and guided.x0_clip == 2.0
    assert guided.num_timesteps == 50
    assert torch.equal(guided.schedule.betas, base.schedule.betas)
    assert guided.network_evaluations == 0 and base.network_evaluations == 0


# --- the experiment --------------------------------------------------------------------------


@pytest.mark.slow
def test_guidance_puts_more_samples_in_the_requested_class(tmp_path) -> None:
    """Train a class-conditional digits U-Net briefly (label dropout 0.1), then sample 10 digits
    of each class with DDIM (20 steps) at gamma = 0, 1 and 3, and classify them with a
    logistic regression trained on scikit-learn's digits. Observed (150 steps): about 0.12
    (chance) at gamma = 0, 0.5 at gamma = 1, 0.8 at gamma = 3."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from diffstudio.engine.sampling import load_model
    from diffstudio.engine.training import TrainConfig, Trainer
    from diffstudio.plugin_manager import load_plugins

    registry = load_plugins(safe_mode=True)
    config = TrainConfig(
        dataset="digits", network="unet", network_params={"class_conditional": True},
        schedule="linear", num_timesteps=100, steps=150, batch_size=64, learning_rate=2e-3,
        warmup_steps=20, lr_schedule="constant", label_dropout=0.1, log_every=50,
        checkpoint_every=150, preview_every=0, device="cpu", seed=0,
    )
    started = time.perf_counter()
    Trainer(config, tmp_path / "run", registry=registry).train()
    trained_in = time.perf_counter() - started
    loaded = load_model(tmp_path / "run", ema=False, device="cpu", registry=registry)
    assert loaded.num_classes == NUM_CLASSES

    digits = load_digits()
    classifier = LogisticRegression(max_iter=2000).fit(digits.data / 16.0, digits.target)
    requested = torch.arange(100) % NUM_CLASSES
    x_t = torch.randn(100, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    accuracy = {}
    for scale in (0.0, 1.0, 3.0):
        model = guided_model(loaded.model, requested, scale, NUM_CLASSES)
        samples = ddim_sample(model, x_t, generator=None, callback=None, should_stop=None,
                              steps=20)
        assert torch.isfinite(samples).all()
        features = ((samples.clamp(-1, 1) + 1) / 2).reshape(100, -1).numpy()  # (x + 1) / 2
        accuracy[scale] = float((classifier.predict(features) == requested.numpy()).mean())
    print(f"trained in {trained_in:.0f} s; fraction in the requested class: {accuracy}")
    assert accuracy[3.0] >= accuracy[0.0] + 0.3, accuracy
    assert accuracy[3.0] >= 0.5, accuracy
    # The same through another sampler: DPM-Solver++ at 15 steps, 2 NFE per step.
    model = guided_model(loaded.model, requested, 3.0, NUM_CLASSES)
    samples = dpm_solver_sample(model, x_t, generator=None, callback=None, should_stop=None,
                                steps=15)
    assert model.network_evaluations == 30
    features = ((samples.clamp(-1, 1) + 1) / 2).reshape(100, -1).numpy()
    assert float((classifier.predict(features) == requested.numpy()).mean()) >= 0.5
