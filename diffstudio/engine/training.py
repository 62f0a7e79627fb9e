"""Training a diffusion model with Hugging Face Accelerate: Algorithm 1 of Ho et al. (arXiv
2006.11239), for every process and parameterisation.

Each step: x_0 from the data, a training time (a grid index t ~ U{0..T-1} for DDPM timesteps
and NCSN noise levels, t ~ U[t_min, 1] for score SDEs), eps ~ N(0, I), x_t = m x_0 + s eps
(eq. 4 for DDPM), one network call through :meth:`DiffusionModel.network_output` (the path
sampling uses: class labels and, for networks that condition on it, the marginal (m, s) are
passed the same way), and a gradient step on the objective of :mod:`diffstudio.engine.objectives`:
L_simple (eq. 14) in the network's parameterisation, or L_hybrid = L_simple + lambda L_vlb for
a learned-variance network (Nichol & Dhariwal, arXiv 2102.09672, eq. 16). AdamW, linear warm-up
then linear or cosine decay, gradient clipping, an EMA copy of the weights, bf16 autocast on
CUDA, everything seeded; class labels are dropped to the null class with ``label_dropout`` for
classifier-free guidance (Ho & Salimans, arXiv 2207.12598, Algorithm 1).

:meth:`Trainer.run` is a generator of :class:`TrainEvent`: a consumer drives training by
pulling. It yields a cheap ``"tick"`` before every step, so a consumer can pause (stop pulling:
the time suspended at a yield counts neither in images/s nor in the elapsed training time) or
quit (``close()``: the progress so far is written as a checkpoint first) between any two steps.
:meth:`Trainer.train` drives it with the callback / ``should_stop`` / ``should_pause`` hooks.

The same code runs on CPU, one GPU, or several with ``accelerate launch``; only the main process
writes. Batches are drawn with replacement from the in-memory dataset with a seeded generator
(an "epoch" is ceil(N / batch) steps), which makes a resumed run continue exactly where it
stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import platform
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffstudio.engine.components import build_dataset, build_network, build_schedule
from diffstudio.engine.datasets import Dataset
from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.objectives import hybrid_loss, simple_loss
from diffstudio.engine.processes import DiffusionProcess, ScheduleProcess, as_process
from diffstudio.engine.runs import Run, optimizer_state_from_tensors, optimizer_state_tensors
from diffstudio.engine.train_config import TrainConfig
from diffstudio.errors import ConfigError, RunError, TrainingError
from diffstudio.plugin_manager import PluginRegistry, load_plugins

__all__ = ["TrainConfig", "TrainEvent", "TrainResult", "Trainer", "lr_at"]


@dataclass
class TrainEvent:
    """What the trainer reports. ``kind`` is one of:

    * ``"start"``: step (the first step to run), total_steps, message (dataset size, device)
    * ``"tick"``: before every step: step (steps done), total_steps, elapsed, eta, and the
      images_per_second of the last logged window (None before the first). Cheap: a consumer
      pauses or quits here between any two steps.
    * ``"step"`` (every ``log_every`` steps and the last): step, loss (mean since the last
      one), lr, images_per_second (of the steps since the last one, previews, checkpoints and
      time suspended at a yield left out; the value written to metrics.jsonl), elapsed
      (seconds of training of the whole run, resumed sessions included, suspensions left out),
      eta (seconds to the last step at this session's pace, previews and checkpoints included)
    * ``"preview"``: step, images (N, *sample_shape) from the EMA weights, path of the grid
    * ``"checkpoint"``: step, path
    * ``"done"``: step, loss (the last logged), message ("completed" or "stopped")
    """

    kind: str
    step: int
    total_steps: int
    loss: float | None = None
    lr: float | None = None
    images_per_second: float | None = None
    elapsed: float | None = None
    images: torch.Tensor | None = None
    path: str | None = None
    message: str = ""
    eta: float | None = None


@dataclass
class TrainResult:
    status: str  # "completed" or "stopped"
    step: int
    total_steps: int
    last_loss: float | None
    run: Run


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


class _Perturbation:
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


def _raise_if_diverged(mean_loss: float, step: int) -> None:
    if not math.isfinite(mean_loss):
        raise TrainingError(
            f"the loss became {mean_loss} at step {step}; training stopped and the last good "
            "checkpoint is kept. Lower the learning rate or enable gradient clipping, then resume"
        )


def _ema_update(ema: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    # ema <- decay * ema + (1 - decay) * param, in one fused call per tensor list.
    torch._foreach_lerp_(ema, params, 1.0 - decay)


def _raise_if_diverged(mean_loss: float, step: int) -> None:
    if not math.isfinite(mean_loss):
        raise TrainingError(
            f"the loss became {mean_loss} at step {step}; training stopped and the last good "
            "checkpoint is kept. Lower the learning rate or enable gradient clipping, then resume"
        )


def _ema_update(ema: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    # ema <- decay * ema + (1 - decay) * param, in one fused call per tensor list.
    torch._foreach_lerp_(ema, params, 1.0 - decay)


class _Clock:
    """Seconds of training in one session: wall time less the time spent suspended at a yield
    (a consumer that paused or is slow), which counts nowhere. The images/s window also leaves
    out previews and checkpoints (they train nothing); the elapsed time and the ETA include
    them (they are part of the run)."""

    __slots__ = ("before", "start", "start_step", "suspended", "window_excluded",
                 "window_start", "window_step")

    def __init__(self, step: int, trained_seconds: float) -> None:
        now = time.perf_counter()
        self.before, self.start, self.start_step = trained_seconds, now, step
        self.suspended = 0.0
        self.window_start, self.window_step, self.window_excluded = now, step, 0.0

    def suspend(self, seconds: float) -> None:
        self.suspended += seconds
        self.window_excluded += seconds

    def exclude_from_rate(self, seconds: float) -> None:
        self.window_excluded += seconds

    def session_seconds(self, now: float) -> float:
        return now - self.start - self.suspended

    def elapsed(self, now: float) -> float:
        return self.before + self.session_seconds(now)

    def rate(self, step: int, batch_size: int, now: float) -> float:
        seconds = now - self.window_start - self.window_excluded
        return (step - self.window_step) * batch_size / max(seconds, 1e-9)

    def restart_window(self, step: int, now: float) -> None:
        self.window_start, self.window_step, self.window_excluded = now, step, 0.0

    def eta(self, step: int, total_steps: int, now: float) -> float | None:
        done = step - self.start_step
        if done <= 0:
            return None
        return max(0.0, self.session_seconds(now) / done * (total_steps - step))


@dataclass
class _Components:
    """What a run is built from, before any training state."""

    dataset: Dataset
    schedule: Any
    process: DiffusionProcess
    network: torch.nn.Module
    saved: dict[str, Any] | None  # the resumed run's config.json
    start_checkpoint: Path | None


@dataclass(slots=True)
class _Session:
    """Everything one training session holds; the step methods read and advance it."""

    components: _Components
    accelerator: Any
    device: torch.device
    network: torch.nn.Module  # as prepared by Accelerate (maybe wrapped)
    raw_network: torch.nn.Module
    ema_network: torch.nn.Module
    model: DiffusionModel  # the network as sampling calls it
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    params: list[torch.Tensor]
    ema_params: list[torch.Tensor]
    data: torch.Tensor
    labels: torch.Tensor | None
    null_label: int
    perturbation: _Perturbation
    expand: tuple[int, ...]
    total_steps: int
    start_step: int
    trained_seconds: float
    step: int = 0
    lr: float = 0.0
    loss_sum: torch.Tensor | None = None
    loss_count: int = 0
    last_loss: float | None = None
    rate: float | None = None
    saved_step: int = -1  # step of the newest checkpoint written
    learned_variance: bool | None = None  # decided from the network's first output
    clock: _Clock | None = None


class Trainer:
    """Trains one run. Construct, then drive :meth:`run` (a generator of :class:`TrainEvent`)
    or call :meth:`train` (blocking; run it in a worker).

    ``callback`` receives every :class:`TrainEvent` (ticks included) from :meth:`train`;
    ``should_stop`` is polled once per step; ``should_pause``, when given, holds the loop
    between steps while it returns True. :meth:`run` uses none of them.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        registry: PluginRegistry | None = None,
        callback: Callable[[TrainEvent], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        should_pause: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config.validate()
        self.run_folder = Run(run_dir)
        self.resume = resume
        self.registry = registry or load_plugins()
        self.callback = callback
        self.should_stop = should_stop
        self.should_pause = should_pause
        self.is_main = True  # set from the accelerator when training starts
        self.result: TrainResult | None = None  # set when run() finishes
        self._stop = False

    # -- driving ----------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Run to the end (or a stop) and return the result: every event goes to
        ``callback`` (main process only), ``should_pause`` and ``should_stop`` are honoured at
        each tick. An exception in the callback closes the run (its progress is saved)."""
        events = self.run()
        callback, should_pause = self.callback, self.should_pause
        try:
            for event in events:
                if event.kind == "tick":
                    if should_pause is not None:
                        while should_pause() and not self._stop_requested():
                            time.sleep(0.05)
                    if self._stop_requested():
                        self.request_stop()
                if callback is not None and self.is_main:
                    callback(event)
        except BaseException:
            events.close()
            raise
        assert self.result is not None
        return self.result

    def request_stop(self) -> None:
        """Stop before the next step: :meth:`run` then writes a checkpoint (yielding its
        event) and ends with ``done`` "stopped". To quit without more events, close the
        generator instead."""
        self._stop = True

    def run(self) -> Generator[TrainEvent, None, TrainResult]:
        """Train, yielding every event (see :class:`TrainEvent`); returns (and stores in
        ``self.result``) the :class:`TrainResult`.

        Not pulling pauses training; the time suspended at a yield is left out of images/s
        and of the elapsed training time. ``close()`` at any yield writes a checkpoint of the
        steps trained since the last one (as a stop does), then ends; an exception in a step
        writes nothing (the last good checkpoint is kept).
        """
        self._stop, self.result = False, None
        components = self._build()
        if not any(p.requires_grad for p in components.network.parameters()):
            return (yield from self._exact_network_run(components))
        session = self._prepare(components)
        clock = session.clock = _Clock(session.start_step, session.trained_seconds)
        yield from self._suspended(clock, TrainEvent(
            "start", session.start_step, session.total_steps,
            message=f"{len(components.dataset)} samples of shape "
                    f"{components.dataset.sample_shape} on {session.device}",
        ))
        session.network.train()
        try:
            status = yield from self._steps(session)
            session.network.eval()
            yield from self._finish(session, status)
        except GeneratorExit:
            # Closed at a yield: the consumer quit. Keep the steps trained since the last
            # checkpoint, as a stop does.
            session.network.eval()
            if session.step > session.saved_step:
                self._checkpoint(session)
            if self.result is None:  # (closed after "done", it stays completed)
                self.result = TrainResult("stopped", session.step, session.total_steps,
                                          session.last_loss, self.run_folder)
            raise
        finally:
            session.network.eval()
        return self.result

    def _steps(self, session: _Session) -> Generator[TrainEvent, None, str]:
        """The training loop: a tick, a step, then what is due at that step. Returns
        "completed", or "stopped" on :meth:`request_stop`."""
        clock, total_steps = session.clock, session.total_steps
        assert clock is not None
        while session.step < total_steps:
            now = time.perf_counter()
            yield TrainEvent("tick", session.step, total_steps, elapsed=clock.elapsed(now),
                             images_per_second=session.rate,
                             eta=clock.eta(session.step, total_steps, now))
            clock.suspend(time.perf_counter() - now)
            if self._stop:
                return "stopped"
            self._step(session)
            yield from self._due(session)
        return "completed"

    def _due(self, session: _Session) -> Iterator[TrainEvent]:
        """The log, preview and checkpoint due after the step just taken."""
        config, step, clock = self.config, session.step, session.clock
        assert clock is not None
        last = step == session.total_steps
        if step % config.log_every == 0 or last:
            yield from self._suspended(clock, self._log(session))
        if config.preview_every and step % config.preview_every == 0 and self.is_main:
            yield from self._suspended(clock, self._timed(session, self._preview))
        if step % config.checkpoint_every == 0 or last:
            event = self._timed(session, self._checkpoint)
            if event is not None:
                yield from self._suspended(clock, event)

    def _finish(self, session: _Session, status: str) -> Iterator[TrainEvent]:
        """A stop's checkpoint (a stop is not a loss of work), then "done"."""
        clock = session.clock
        assert clock is not None
        if status == "stopped" and session.step > session.saved_step:
            event = self._checkpoint(session)
            if event is not None:
                yield from self._suspended(clock, event)
        self.result = TrainResult(status, session.step, session.total_steps, session.last_loss,
                                  self.run_folder)
        yield from self._suspended(clock, TrainEvent(
            "done", session.step, session.total_steps, loss=session.last_loss, message=status))

    @staticmethod
    def _suspended(clock: _Clock, event: TrainEvent) -> Iterator[TrainEvent]:
        """Yield ``event``; the time until the consumer pulls again counts nowhere."""
        before = time.perf_counter()
        yield event
        clock.suspend(time.perf_counter() - before)

    @staticmethod
    def _timed(session: _Session, action: Callable[[_Session], Any]) -> Any:
        """``action(session)``, its time left out of the images/s window."""
        before = time.perf_counter()
        try:
            return action(session)
        finally:
            assert session.clock is not None
            session.clock.exclude_from_rate(time.perf_counter() - before)

    def _stop_requested(self) -> bool:
        return self.should_stop is not None and bool(self.should_stop())

    # -- prepare / restore ------------------------------------------------------------------
    def _accelerator(self) -> Any:
        from accelerate import Accelerator

        config = self.config
        if config.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available here")
        if config.device == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("device 'mps' was asked for but Apple MPS is not available here")
        cpu = config.device == "cpu"
        precision = config.mixed_precision
        if precision == "auto":
            cuda = torch.cuda.is_available() and not cpu
            precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
        return Accelerator(cpu=cpu, mixed_precision=precision)

    def _with_defaults(self, train: dict[str, Any]) -> dict[str, Any]:
        """``train`` (a TrainConfig dict) with each plugin's parameters validated and completed
        with their defaults, so a run's config says exactly what was built (the preset of
        ``network_params: {}``) and a resume compares like with like."""
        completed = dict(train)
        for kind in ("dataset", "network", "schedule"):
            key = f"{kind}_params"
            try:
                contribution = self.registry.get(kind, train.get(kind, ""))
                completed[key] = contribution.validate(train.get(key) or {})
            except ConfigError:
                pass  # reported, with the fix, when the component is built
        return completed

    def _build(self) -> _Components:
        """Complete the config, check the run folder, and build dataset, schedule, network."""
        self.config = TrainConfig.from_dict(self._with_defaults(self.config.to_dict()))
        config = self.config
        run = self.run_folder
        saved, start_checkpoint = None, None
        if self.resume:
            saved = run.read_config()
            if isinstance(saved.get("train"), dict):  # runs written before params were completed
                saved["train"] = self._with_defaults(saved["train"])
            start_checkpoint = run.latest_checkpoint()
        elif run.exists():
            raise RunError(
                f"{run.path} already holds a run; resume it with --resume or choose "
                "another output folder"
            )
        torch.manual_seed(config.seed)  # network initialisation (and dropout) are seeded
        dataset = build_dataset(self.registry, config.dataset, config.dataset_params)
        if len(dataset) == 0:
            raise TrainingError(f"dataset {config.dataset!r} is empty")
        schedule = build_schedule(
            self.registry, config.schedule, config.schedule_params, config.num_timesteps
        )
        network = build_network(
            self.registry, config.network, config.network_params, dataset.sample_shape,
            dataset.num_classes,
        )
        conditional = bool(config.network_params.get("class_conditional"))
        if conditional and dataset.labels is None:
            raise ConfigError(
                f"class-conditional training needs labels; dataset {config.dataset!r} has none"
            )
        return _Components(dataset, schedule, as_process(schedule), network, saved,
                           start_checkpoint)

    def _prepare(self, components: _Components) -> _Session:
        """The accelerator, optimizer, EMA copy and generator; the resumed state; the run's
        config written; everything on the device."""
        config = self.config
        dataset, network = components.dataset, components.network
        accelerator = self._accelerator()
        self.is_main = accelerator.is_main_process
        device = accelerator.device
        steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
        total_steps = config.epochs * steps_per_epoch if config.epochs else config.steps
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        ema_network = copy.deepcopy(network).requires_grad_(False)
        generator = torch.Generator().manual_seed(config.seed + accelerator.process_index)
        start_step, trained_seconds = self._restore(components, network, ema_network,
                                                    optimizer, generator)
        if self.is_main:
            self.run_folder.path.mkdir(parents=True, exist_ok=True)
            self.run_folder.write_config(self._run_config(dataset, total_steps))

        prepared, optimizer = accelerator.prepare(network, optimizer)
        raw_network = accelerator.unwrap_model(prepared)
        ema_network.to(device)
        conditional = bool(config.network_params.get("class_conditional"))
        labels = dataset.labels.to(device) if conditional and dataset.labels is not None else None
        data = dataset.data.to(device)
        model = DiffusionModel(prepared, components.schedule,
                               prediction_type=config.prediction_type, x0_clip=dataset.x0_clip)
        return _Session(
            components=components, accelerator=accelerator, device=device, network=prepared,
            raw_network=raw_network, ema_network=ema_network, model=model, optimizer=optimizer,
            generator=generator, params=list(raw_network.parameters()),
            ema_params=list(ema_network.parameters()), data=data, labels=labels,
            null_label=dataset.num_classes or 0,
            perturbation=_Perturbation(components.process, device),
            expand=(-1,) + (1,) * (data.dim() - 1), total_steps=total_steps,
            start_step=start_step, trained_seconds=trained_seconds, step=start_step,
            loss_sum=torch.zeros((), device=device), saved_step=start_step,
        )

    def _restore(
        self,
        components: _Components,
        network: torch.nn.Module,
        ema_network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
    ) -> tuple[int, float]:
        """Load the resumed checkpoint (weights, EMA, optimizer, generators); returns
        (start step, seconds trained before). A new run starts at (0, 0.0)."""
        run, config = self.run_folder, self.config
        saved, start_checkpoint = components.saved, components.start_checkpoint
        if start_checkpoint is None:
            if self.resume and self.is_main:  # a run killed before its first checkpoint
                run.clean_partial()
                run.truncate_metrics(0)
            return 0, 0.0
        from diffstudio.engine.runs import load_network_weights

        saved_train = (saved or {}).get("train", {})
        if saved_train != config.to_dict():
            # Only the length of the run may change on resume.
            differing = sorted(
                k for k, v in config.to_dict().items()
                if saved_train.get(k) != v and k not in ("steps", "epochs")
            )
            if differing:
                raise RunError(
                    f"resuming {run.path} with different settings ({', '.join(differing)}); "
                    "only steps/epochs may change. Start a new run for other settings."
                )
        load_network_weights(network, start_checkpoint / "network")
        load_network_weights(ema_network, start_checkpoint / "network_ema")
        tensors, metadata, state = Run.read_training_state(start_checkpoint)
        optimizer.load_state_dict(optimizer_state_from_tensors(tensors, metadata))
        generator.set_state(tensors["rng.generator"])
        if "rng.torch" in tensors:
            torch.set_rng_state(tensors["rng.torch"])
        start_step = int(state["step"])
        if self.is_main:
            run.clean_partial()
            run.truncate_metrics(start_step)
        return start_step, float(state.get("trained_seconds", 0.0))

    # -- one step ---------------------------------------------------------------------------
    def _step(self, session: _Session) -> None:
        """One optimizer step on a fresh batch (Algorithm 1 of Ho et al., generalised)."""
        config = self.config
        step, batch, device = session.step, config.batch_size, session.device
        generator = session.generator
        lr = session.lr = lr_at(step, config, session.total_steps)
        optimizer = session.optimizer
        for group in optimizer.param_groups:
            group["lr"] = lr

        index = torch.randint(len(session.data), (batch,), generator=generator)
        t, m, s, net_labels = session.perturbation.draw(batch, generator)
        noise = torch.randn((batch, *session.data.shape[1:]), generator=generator)
        index, noise = index.to(device), noise.to(device)
        x0 = session.data[index]
        m_b, s_b = m.view(session.expand), s.view(session.expand)
        x_t = m_b * x0 + s_b * noise  # m = sqrt(alpha_bar), s = sqrt(1 - alpha_bar) for DDPM
        class_labels = None
        if session.labels is not None:
            drop = torch.rand(batch, generator=generator).to(device)
            class_labels = torch.where(drop < config.label_dropout, session.null_label,
                                       session.labels[index])
        with session.accelerator.autocast():
            output = session.model.network_output(x_t, net_labels, (m, s), class_labels)
        output = output.float()
        if session.learned_variance is None:
            session.learned_variance = self._learned_variance(session, output, x0)
        if session.learned_variance:
            loss = hybrid_loss(config.prediction_type, output, session.components.schedule,
                               x0, x_t, noise, t, m_b, s_b, config.hybrid_lambda)
        else:
            loss = simple_loss(config.prediction_type, output, x0, noise, m_b, s_b)

        accelerator = session.accelerator
        accelerator.backward(loss)
        if config.grad_clip > 0:
            # Unscale (fp16's GradScaler; a no-op otherwise), then clip the cached parameter
            # list: Accelerate's clip_grad_norm_ walks every module each step (~1 % of a
            # digits step on a CPU, measured with cProfile).
            accelerator.unscale_gradients()
            torch.nn.utils.clip_grad_norm_(session.params, config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _ema_update(session.ema_params, session.params,
                    min(config.ema_decay, (1 + step) / (10 + step)))
        session.loss_sum += loss.detach()
        session.loss_count += 1
        session.step = step + 1

    def _learned_variance(self, session: _Session, output: torch.Tensor,
                          x0: torch.Tensor) -> bool:
        """Whether the network predicts a variance too (2C output channels: L_hybrid)."""
        learned = output.shape[1] == 2 * x0.shape[1]
        process = session.components.process
        if learned and not isinstance(process, ScheduleProcess):
            raise ConfigError(
                "learned variance (L_hybrid) needs a DDPM schedule; "
                f"{self.config.schedule!r} is a {process.kind} process: choose a DDPM schedule "
                "(linear, cosine) or a network without learned_variance"
            )
        return learned

    # -- log / preview / checkpoint ---------------------------------------------------------
    def _log(self, session: _Session) -> TrainEvent:
        """The mean loss since the last log, images/s and timing: written to metrics.jsonl
        and returned as the "step" event (the same numbers)."""
        step = session.step
        mean_loss = float(session.loss_sum) / session.loss_count  # waits for the device
        _raise_if_diverged(mean_loss, step)
        clock = session.clock
        assert clock is not None
        now = time.perf_counter()
        rate = clock.rate(step, self.config.batch_size, now)
        elapsed = clock.elapsed(now)
        eta = clock.eta(step, session.total_steps, now)
        if self.is_main:
            self.run_folder.append_metrics([{
                "step": step, "loss": mean_loss, "lr": session.lr,
                "images_per_second": rate, "elapsed": elapsed,
            }])
        session.last_loss, session.rate = mean_loss, rate
        session.loss_sum.zero_()
        session.loss_count = 0
        clock.restart_window(step, now)
        return TrainEvent("step", step, session.total_steps, loss=mean_loss, lr=session.lr,
                          images_per_second=rate, elapsed=elapsed, eta=eta)

    def _checkpoint(self, session: _Session) -> TrainEvent | None:
        """Save weights, EMA, optimizer and generators at the current step (main process);
        returns the "checkpoint" event, or None on other processes."""
        if session.loss_count:  # never save weights that have already diverged
            _raise_if_diverged(float(session.loss_sum) / session.loss_count, session.step)
        session.accelerator.wait_for_everyone()
        session.saved_step = session.step
        if not self.is_main:
            return None
        assert session.clock is not None
        tensors, metadata = optimizer_state_tensors(session.optimizer)
        tensors["rng.generator"] = session.generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        path = self.run_folder.save_checkpoint(
            session.step, session.raw_network, session.ema_network, tensors, metadata,
            {"loss": session.last_loss,
             "trained_seconds": session.clock.elapsed(time.perf_counter())},
            keep=self.config.keep_checkpoints,
        )
        return TrainEvent("checkpoint", session.step, session.total_steps, path=str(path))

    @torch.no_grad()
    def _preview(self, session: _Session) -> TrainEvent:
        """DDIM samples from the EMA weights, the same noise at every preview."""
        from diffstudio.engine.samplers.ddim import ddim_sample

        config, dataset = self.config, session.components.dataset
        model = DiffusionModel(session.ema_network, session.components.schedule,
                               prediction_type=config.prediction_type, x0_clip=dataset.x0_clip)
        conditional = config.network_params.get("class_conditional")
        if conditional and dataset.num_classes:
            model.class_labels = torch.arange(config.preview_samples) % dataset.num_classes
        generator = torch.Generator().manual_seed(config.seed)
        noise = torch.randn((config.preview_samples, *dataset.sample_shape), generator=generator)
        images = ddim_sample(
            model, noise.to(session.device), generator=generator, callback=None,
            should_stop=None, steps=min(config.preview_steps, model.num_timesteps),
        ).float().cpu()
        path = None
        if dataset.kind == "image":
            from diffstudio.engine.gallery import save_grid

            path = self.run_folder.path / "previews" / f"step-{session.step:08d}.png"
            save_grid(images, path, metadata={"step": session.step, "kind": "preview"})
        return TrainEvent("preview", session.step, session.total_steps, images=images,
                          path=str(path) if path else None)

    # -- a network with nothing to train ----------------------------------------------------
    def _exact_network_run(
        self, components: _Components
    ) -> Generator[TrainEvent, None, TrainResult]:
        """A network with no trainable parameters (an exact score such as
        ``analytic-mixture``): an optimizer would fail on an empty parameter list, so the run
        is written ready to sample (its network at step 0, in the prediction type the network
        returns), and the user is told so."""
        run, network, dataset = self.run_folder, components.network, components.dataset
        native = getattr(network, "prediction_type", None)
        if native and native != self.config.prediction_type:
            self.config = dataclasses.replace(self.config, prediction_type=native)
        config = self.config
        message = (
            f"network {config.network!r} has no trainable parameters (it is exact): there is "
            f"nothing to train. The run {run.path} holds it ready to sample: 'diffstudio "
            f"sample {run.path} --sampler annealed-langevin' (or any sampler)"
        )
        self.result = TrainResult("completed", 0, 0, None, run)
        if self.resume and run.latest_checkpoint() is not None:
            yield TrainEvent("done", 0, 0, message=message)
            return self.result
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(self._run_config(dataset, 0))
        path = run.save_checkpoint(0, network, network, {}, {"param_groups": [], "scalars": {}},
                                   {"loss": None, "trained_seconds": 0.0, "exact": True},
                                   keep=config.keep_checkpoints)
        yield TrainEvent("start", 0, 0, message=message)
        yield TrainEvent("checkpoint", 0, 0, path=str(path))
        yield TrainEvent("done", 0, 0, message="completed")
        return self.result

    def _run_config(self, dataset: Dataset, total_steps: int) -> dict[str, Any]:
        import diffusers

        import diffstudio

        return {
            "format": 1,
            "train": self.config.to_dict(),
            "total_steps": total_steps,
            "dataset_info": {
                "name": dataset.name,
                "size": len(dataset),
                "sample_shape": list(dataset.sample_shape),
                "kind": dataset.kind,
                "num_classes": dataset.num_classes,
                "class_names": dataset.class_names,
                "skipped": [[s.path, s.reason] for s in dataset.skipped],
                "x0_clip": dataset.x0_clip,
            },
            "versions": {
                "diffstudio": diffstudio.__version__,
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "python": platform.python_version(),
            },
        }
