"""What a training session keeps between steps, so that :mod:`diffstudio.engine.training`
reads as the steps of Algorithm 1: the learning-rate schedule, the sampler of training times
for any process, the EMA update, the loss window and the clock behind images/s.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from diffstudio.engine.datasets import Dataset
from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.processes import DiffusionProcess
from diffstudio.engine.train_config import TrainConfig
from diffstudio.errors import TrainingError

__all__ = [
    "LossWindow",
    "Perturbation",
    "Session",
    "TrainClock",
    "ema_update",
    "lr_at",
    "raise_diverged_weights",
    "raise_if_diverged",
]


def lr_at(step: int, config: TrainConfig, total_steps: int) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then constant/linear/cosine decay."""
    base = config.learning_rate
    if config.warmup_steps and step < config.warmup_steps:
        return base * (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return base
    span = max(total_steps - config.warmup_steps, 1)
    progress = min(max(step - config.warmup_steps, 0) / span, 1.0)
    if config.lr_schedule == "linear":
        return base * (1.0 - progress)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))



class Perturbation:
    """Draws training times for a process: a grid index for discrete processes (DDPM timesteps,
    NCSN levels), t ~ U[t_min, 1] for SDEs. Returns (t, m, s, network labels), each (B,)."""

    def __init__(self, process: DiffusionProcess, device: torch.device) -> None:
        self.process, self.device = process, device
        if process.discrete_training:
            m, s = process.marginal(process.grid)
            labels = process.label(process.grid)
            self.m, self.s = m.float().to(device), s.float().to(device)
            # DDPM timesteps are integers, up to the round-off of the grid's t * T - 1.
            integral = bool(((labels - labels.round()).abs() < 1e-6).all())
            self.labels = (labels.round().long() if integral else labels.float()).to(device)

    def draw(
        self, batch: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        process = self.process
        if process.discrete_training:
            index = torch.randint(len(self.m), (batch,), generator=generator).to(self.device)
            return index, self.m[index], self.s[index], self.labels[index]
        u = torch.rand(batch, generator=generator, dtype=torch.float64)
        t = process.t_min + (1.0 - process.t_min) * u
        m, s = process.marginal(t)
        return (t.float().to(self.device), m.float().to(self.device), s.float().to(self.device),
                process.label(t).float().to(self.device))



def raise_if_diverged(mean_loss: float, step: int) -> None:
    if not math.isfinite(mean_loss):
        raise TrainingError(
            f"the loss became {mean_loss} at step {step}; training stopped and the last good "
            "checkpoint is kept. Lower the learning rate or enable gradient clipping, then resume "
            "('diffstudio train --resume RUN --lr ...')"
        )


def raise_diverged_weights(what: str, step: int, has_checkpoint: bool) -> None:
    """Training stops: the ``what`` (weights, EMA weights, network output) of ``step`` are not
    finite, so they are not checkpointed."""
    kept = ("the last good checkpoint is kept" if has_checkpoint
            else "no checkpoint was written, the run restarts from step 0")
    raise TrainingError(
        f"the {what} became NaN or infinite at step {step}; training stopped and {kept}. "
        "Lower the learning rate (--lr) or enable gradient clipping (--grad-clip), then resume "
        "('diffstudio train --resume RUN --lr ...')"
    )



def ema_update(ema: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    # ema <- decay * ema + (1 - decay) * param, in one fused call per tensor list.
    torch._foreach_lerp_(ema, params, 1.0 - decay)



@dataclass
class Session:
    """What one training session holds between steps."""

    dataset: Dataset
    process: DiffusionProcess
    accelerator: Any
    device: torch.device
    network: torch.nn.Module  # as prepared by Accelerate (maybe wrapped)
    raw_network: torch.nn.Module
    ema_network: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    total_steps: int
    start_step: int = 0
    trained_seconds: float = 0.0
    learned_variance: bool | None = None
    params: list[torch.Tensor] = field(default_factory=list)
    ema_params: list[torch.Tensor] = field(default_factory=list)
    data: Any = None
    labels: torch.Tensor | None = None
    null_label: int = 0
    perturbation: Any = None
    model: Any = None
    expand: tuple[int, ...] = (-1,)

    @torch.no_grad()
    def nonfinite_weights(self, config: TrainConfig) -> str | None:
        """What is not finite in the weights a checkpoint would keep, or None when all is.

        The loss logged at step N was computed with the weights of step N - 1, so a finite loss
        does not vouch for the weights an update has just written: check the parameters of the
        network and of its EMA copy, and one forward pass of each on a few training samples
        (a fixed probe: its own generator, no dropout, so training's random draws and a resumed
        run's exactness are untouched)."""
        for name, params in (("weights", self.params), ("EMA weights", self.ema_params)):
            if params and not all(bool(torch.isfinite(p).all()) for p in params):
                return name
        probe = torch.Generator().manual_seed(0)
        count = min(4, len(self.dataset))
        _t, m, s, labels = self.perturbation.draw(count, probe)
        noise = torch.randn((count, *self.dataset.sample_shape), generator=probe).to(self.device)
        x0 = self.data[:count]
        m, s = m.view(self.expand), s.view(self.expand)
        x_t = m * x0 + s * noise
        class_labels = self.labels[:count] if self.labels is not None else None
        for name, network in (("network output", self.raw_network),
                              ("EMA network output", self.ema_network)):
            was_training = network.training
            network.eval()
            try:
                model = DiffusionModel(network, self.process,
                                       prediction_type=config.prediction_type,
                                       x0_clip=self.dataset.x0_clip)
                with self.accelerator.autocast():
                    output = model.network_output(x_t, labels, (m, s), class_labels=class_labels)
            finally:
                network.train(was_training)
            if not bool(torch.isfinite(output).all()):
                return name
        return None

    def attach(self, config: TrainConfig) -> None:
        """Cache what every step reads: parameter lists, data and labels on the device, the
        time sampler, and the model the network is called through (as samplers call it)."""
        self.params = list(self.raw_network.parameters())
        self.ema_params = list(self.ema_network.parameters())
        self.data = self.dataset.data.to(self.device)
        conditional = bool(config.network_params.get("class_conditional"))
        self.labels = (self.dataset.labels.to(self.device)
                       if conditional and self.dataset.labels is not None else None)
        self.null_label = self.dataset.num_classes or 0
        self.perturbation = Perturbation(self.process, self.device)
        self.model = DiffusionModel(self.network, self.process,
                                    prediction_type=config.prediction_type,
                                    x0_clip=self.dataset.x0_clip)
        self.expand = (-1,) + (1,) * (self.data.dim() - 1)



class LossWindow:
    """The mean loss since the last log point, summed on the device (no sync per step)."""

    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros((), device=device)
        self.count = 0

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss
        self.count += 1

    def raise_if_diverged(self, step: int) -> None:
        if self.count:
            raise_if_diverged(float(self.total) / self.count, step)

    def take(self, step: int) -> float:
        mean = float(self.total) / max(self.count, 1)
        raise_if_diverged(mean, step)
        self.total.zero_()
        self.count = 0
        return mean



class TrainClock:
    """images/s over each log window, the time trained and the ETA. Paused time (a consumer
    suspended at a yield) counts in none; preview and checkpoint time counts in the time
    trained and the ETA but not in images/s."""

    def __init__(self, step: int, trained_seconds: float) -> None:
        now = time.perf_counter()
        self.window_start, self.window_step = now, step
        self.session_start, self.trained_before = now, trained_seconds
        self.start_step = step

    def eta(self, step: int, total_steps: int, now: float) -> float | None:
        """Seconds to ``total_steps`` at this session's pace so far; None before a step."""
        done = step - self.start_step
        if done <= 0:
            return None
        return max(0.0, (now - self.session_start) / done * (total_steps - step))

    def pause(self, seconds: float) -> None:
        self.window_start += seconds
        self.session_start += seconds

    def exclude(self, seconds: float) -> None:
        self.window_start += seconds

    def trained(self, now: float) -> float:
        return self.trained_before + now - self.session_start

    def lap(self, step: int, batch_size: int) -> tuple[float, float]:
        """(images/s since the last lap, seconds trained) at ``step``; starts a new window."""
        now = time.perf_counter()
        rate = (step - self.window_step) * batch_size / max(now - self.window_start, 1e-9)
        self.window_start, self.window_step = now, step
        return rate, self.trained(now)
