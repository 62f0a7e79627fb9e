"""Training a diffusion model (Ho et al., arXiv 2006.11239, Algorithm 1) with Accelerate.

Each step: x_0 from the data, t ~ Uniform{0..T-1} (or U[t_min, 1] for score SDEs),
eps ~ N(0, I), x_t = m_t x_0 + s_t eps (for DDPM m = sqrt(alpha_bar_t), s = sqrt(1 -
alpha_bar_t), their eq. 4), and a gradient step on L_simple (their eq. 14; the objectives are in
:mod:`diffstudio.engine.objectives`), where the target is eps, x_0, v or the score by the
network's parameterisation; L_hybrid for learned-variance networks. AdamW, linear warm-up then
linear or cosine decay, gradient clipping, an EMA copy of the weights, bf16 autocast on CUDA,
everything seeded. The state a session keeps between steps is in :mod:`training_state`.

:meth:`Trainer.run` is a generator of :class:`TrainEvent`: a consumer drives training by
pulling. It yields a cheap ``"tick"`` before every step, so a consumer can pause (stop pulling:
the time suspended at a yield counts neither in images/s nor in the elapsed training time) or
quit (``close()``: the steps since the last checkpoint are written first, as a stop does)
between any two steps. :meth:`Trainer.train` drives it with a callback, ``should_stop`` (polled
every step; a stop saves a checkpoint first, so nothing is lost) and ``should_pause``.

The same code runs on CPU, one GPU, or several with ``accelerate launch``; only the main process
writes.

Batches are drawn with replacement from the in-memory dataset with a seeded generator (an
"epoch" is ceil(N / batch) steps), which makes a resumed run continue exactly where it stopped.

This module is about 650 lines, over the engine's ~500: it is one algorithm, the training loop
as a generator (``Trainer.run``) with its lock, restore, step, log, preview and checkpoint
methods, kept in one file to be read top to bottom; its state between steps is already in
:mod:`diffstudio.engine.training_state`, the lock in :mod:`diffstudio.engine.run_lock`.
"""

from __future__ import annotations

import contextlib
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
from diffstudio.engine.io import storage_problem
from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.objectives import hybrid_loss, simple_loss
from diffstudio.engine.processes import DiffusionProcess
from diffstudio.engine.run_lock import RunLock
from diffstudio.engine.runs import Run, optimizer_state_from_tensors, optimizer_state_tensors
from diffstudio.engine.schedules.ddpm import ScheduleProcess
from diffstudio.engine.train_config import TrainConfig, resume_changes
from diffstudio.engine.training_state import (
    LossWindow,
    Session,
    TrainClock,
    ema_update,
    lr_at,
    raise_diverged_weights,
)
from diffstudio.errors import ConfigError, DiffstudioError, RunError, StorageError, TrainingError
from diffstudio.plugin_manager import PluginRegistry, load_plugins

__all__ = ["TrainConfig", "TrainEvent", "TrainResult", "Trainer", "lr_at"]


@dataclass
class TrainEvent:
    """What the trainer reports. ``kind`` is one of:

    * ``"start"``: step (the first step to run), total_steps, message (device, dataset size),
      skipped (how many dataset files could not be read; listed in the run's config.json)
    * ``"tick"``: before every step: step (steps done), total_steps, elapsed, eta and the
      images_per_second of the last logged window (None before the first). Cheap: a consumer
      pauses or quits here, between any two steps.
    * ``"step"`` (every ``log_every`` steps and the last): step, loss (mean since the last
      one), lr, images_per_second (previews, checkpoints and time suspended at a yield left
      out; the value written to metrics.jsonl), elapsed (seconds trained, resumed sessions
      included, suspensions not), eta (seconds to the last step at this session's pace)
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
    skipped: int = 0
    eta: float | None = None


@dataclass
class TrainResult:
    status: str  # "completed" or "stopped"
    step: int
    total_steps: int
    last_loss: float | None
    run: Run










@dataclass
class _Built:
    dataset: Dataset
    process: DiffusionProcess
    network: torch.nn.Module








@dataclass
class _Window:
    """Where the loop is: the step, the loss window and clock, what was logged and saved."""

    losses: LossWindow
    clock: TrainClock
    step: int = 0
    lr: float = 0.0
    last_loss: float | None = None
    rate: float | None = None  # images/s of the last log point
    saved_step: int = -1  # the step of the newest checkpoint


class Trainer:
    """Trains one run. Construct, then drive :meth:`run` (a generator of :class:`TrainEvent`)
    or call :meth:`train` (blocking; run it in a worker).

    For :meth:`train`: ``callback`` receives every :class:`TrainEvent` (ticks included);
    ``should_stop`` is polled once per step; ``should_pause``, when given, holds the loop
    between steps while it returns True. :meth:`run` uses none of them. ``run_folder`` is the
    :class:`Run` written.
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
        self.processes = 1  # data-parallel processes (set from the accelerator, too)
        self._reduce_mean: Any = None
        self.result: TrainResult | None = None  # how the last run() ended
        self._stop = False
        self._made_folder = False  # this trainer created the run folder (removed on failure)

    def _accelerator(self) -> Any:
        from accelerate import Accelerator

        config = self.config
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {config.device!r} was asked for but no CUDA GPU is "
                              "available here; use --device cpu (or auto)")
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

    def train(self) -> TrainResult:
        """Train (or continue) the run; blocking. Returns how it ended.

        Drives :meth:`run`: every event goes to ``callback`` (main process only);
        ``should_pause`` and ``should_stop`` are honoured at each tick. An exception in the
        callback closes the run, which keeps the steps trained so far."""
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
        """Stop before the next step: :meth:`run` writes a checkpoint (yielding its event) and
        ends with "done" "stopped". To quit without more events, close the generator."""
        self._stop = True

    def run(self) -> Generator[TrainEvent, None, TrainResult]:
        """Train (or continue) the run, yielding every :class:`TrainEvent`; returns (and keeps
        in ``self.result``) the :class:`TrainResult`.

        Not pulling pauses training; the time suspended at a yield is left out of images/s
        and of the elapsed training time. ``close()`` at any yield writes a checkpoint of the
        steps trained since the last one (as a stop does); an exception in a step writes
        nothing (the last good checkpoint is kept)."""
        self._stop, self.result = False, None
        self.config = TrainConfig.from_dict(self._with_defaults(self.config.to_dict()))
        saved, start_checkpoint = self._target()
        changes = self._changes(saved, start_checkpoint)  # refused before building anything
        built = self._build()
        if not any(p.requires_grad for p in built.network.parameters()):
            return (yield from self._exact_network_run(built.network, built.dataset))
        session = self._prepare(built)
        lock = None
        try:
            lock = self._take_lock()
            if lock is not None:  # under the lock, look again: another writer may have been first
                saved, start_checkpoint = self._target()
                changes = self._changes(saved, start_checkpoint)
            if start_checkpoint is not None:
                self._restore(session, start_checkpoint)
            elif self.resume and self.is_main:  # a run killed before its first checkpoint
                self.run_folder.clean_partial()
                self.run_folder.truncate_metrics(0)
            if self.is_main:
                self.run_folder.path.mkdir(parents=True, exist_ok=True)
                self.run_folder.write_config(self._run_config(
                    session.dataset, session.total_steps,
                    history=self._history(saved, changes, session.start_step)))
            return (yield from self._loop(session))
        except Exception as exc:
            problem = storage_problem(exc)
            if problem is None or isinstance(exc, DiffstudioError):
                raise
            raise self._storage_error(problem) from exc
        finally:
            self._release_lock(lock)

    def _storage_error(self, problem: str) -> StorageError:
        """A write into the run failed (disk full, read-only, no permission): say where, and
        what is intact -- checkpoints are written whole or not at all."""
        run = self.run_folder
        fix = ("copy the run to a writable folder" if "read-only" in problem or
               "permission" in problem else "free space there")
        kept = run.latest_checkpoint()
        steps = {folder: step for step, folder in run.checkpoints()}
        if kept is not None:
            return StorageError(
                f"could not write to the run {run.path}: {problem}. Its last checkpoint "
                f"(step {steps.get(kept, '?')}) is intact; {fix} and continue with "
                f"'diffstudio train --resume {run.path}'")
        again = (f"continue with 'diffstudio train --resume {run.path}' (from step 0)"
                 if run.exists() else "start the run again")
        return StorageError(f"could not write to the run {run.path}: {problem}. No checkpoint "
                            f"was saved yet; {fix} and {again}")

    def _take_lock(self) -> RunLock | None:
        """The run's writer lock (main process only): a second writer of the same run is
        refused, naming the first one's pid and host."""
        if not self.is_main:
            return None
        self._made_folder = not self.run_folder.path.exists()
        return self.run_folder.writer_lock().acquire()

    def _release_lock(self, lock: RunLock | None) -> None:
        if lock is None:
            return
        lock.release()
        if self._made_folder and not self.run_folder.exists():
            with contextlib.suppress(OSError):  # a new run that failed before its config
                self.run_folder.path.rmdir()

    # -- the steps of run() ------------------------------------------------------------------
    def _target(self) -> tuple[dict[str, Any], Path | None]:
        """(the run's saved config or {}, the checkpoint to continue from or None)."""
        run = self.run_folder
        if self.resume:
            saved = run.read_config()
            if isinstance(saved.get("train"), dict):  # runs written before params were completed
                saved["train"] = self._with_defaults(saved["train"])
            return saved, run.latest_checkpoint()
        if run.exists():
            raise RunError(
                f"{run.path} already holds a run; resume it with --resume or choose "
                "another output folder"
            )
        return {}, None

    def _changes(self, saved: dict[str, Any], checkpoint: Path | None) -> dict[str, list[Any]]:
        """The settings this resume changes; with a checkpoint (a model to keep), only the
        resumable ones may."""
        if not self.resume:
            return {}
        return resume_changes(saved.get("train") or {}, self.config.to_dict(),
                              str(self.run_folder.path), strict=checkpoint is not None)

    def _build(self) -> _Built:
        """The dataset, process and network the config names (seeded initialisation)."""
        config = self.config
        torch.manual_seed(config.seed)  # network initialisation (and dropout) are seeded
        dataset = build_dataset(self.registry, config.dataset, config.dataset_params)
        if len(dataset) == 0:
            raise TrainingError(f"dataset {config.dataset!r} is empty")
        process = build_schedule(
            self.registry, config.schedule, config.schedule_params, config.num_timesteps
        )
        network = build_network(
            self.registry, config.network, config.network_params, dataset.sample_shape,
            dataset.num_classes,
        )
        if config.network_params.get("class_conditional") and dataset.labels is None:
            raise ConfigError(
                f"class-conditional training needs labels; dataset {config.dataset!r} has none"
            )
        return _Built(dataset, process, network)

    def _prepare(self, built: _Built) -> Session:
        """Optimizer, EMA copy, data on the device, the one network-call path."""
        config = self.config
        accelerator = self._accelerator()
        self.is_main = accelerator.is_main_process
        # Data-parallel (``accelerate launch``/torchrun): every process steps on its own batch
        # of ``batch_size``; the logged loss is their mean and images/s counts all of them.
        self.processes = accelerator.num_processes
        self._reduce_mean = (lambda tensor: accelerator.reduce(tensor, reduction="mean")) \
            if self.processes > 1 else None
        device = accelerator.device
        dataset, process, network = built.dataset, built.process, built.network
        steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
        total_steps = config.epochs * steps_per_epoch if config.epochs else config.steps
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        ema_network = copy.deepcopy(network).requires_grad_(False)
        generator = torch.Generator().manual_seed(config.seed + accelerator.process_index)
        session = Session(
            dataset=dataset, process=process, accelerator=accelerator, device=device,
            network=network, raw_network=network, ema_network=ema_network, optimizer=optimizer,
            generator=generator, total_steps=total_steps,
        )
        return session

    def _restore(self, session: Session, checkpoint: Path) -> None:
        """Weights, optimizer moments and RNG states of ``checkpoint``: the run continues
        exactly where it stopped."""
        from diffstudio.engine.runs import load_network_weights

        run = self.run_folder
        load_network_weights(session.network, Run.weights_dir(checkpoint, ema=False))
        load_network_weights(session.ema_network, Run.weights_dir(checkpoint, ema=True))
        tensors, metadata, state = Run.read_training_state(checkpoint)
        session.optimizer.load_state_dict(optimizer_state_from_tensors(tensors, metadata))
        session.generator.set_state(tensors["rng.generator"])
        if "rng.torch" in tensors:
            torch.set_rng_state(tensors["rng.torch"])
        session.start_step = int(state["step"])
        if session.total_steps < session.start_step:
            raise RunError(
                f"{run.path} is already at step {session.start_step}; a resume sets the new "
                f"total, and {session.total_steps} steps is fewer. Give --steps "
                f"{session.start_step} or more"
            )
        session.trained_seconds = float(state.get("trained_seconds", 0.0))
        if self.is_main:
            run.clean_partial()
            run.truncate_metrics(session.start_step)

    def _loop(self, session: Session) -> Generator[TrainEvent, None, TrainResult]:
        """Steps until the total, a stop, a close or a divergence; logs, previews and
        checkpoints."""
        config = self.config
        accelerator, device = session.accelerator, session.device
        session.network, session.optimizer = accelerator.prepare(session.network,
                                                                 session.optimizer)
        session.raw_network = accelerator.unwrap_model(session.network)
        session.ema_network.to(device)
        session.attach(config)
        total_steps, start_step = session.total_steps, session.start_step
        dataset = session.dataset
        window = _Window(LossWindow(device), TrainClock(start_step, session.trained_seconds),
                         step=start_step, saved_step=start_step)
        yield from self._suspended(window.clock, TrainEvent(
            "start", start_step, total_steps,
            message=f"{len(dataset)} samples of shape {dataset.sample_shape} on {device}"
                    + (f" x {self.processes} processes (data-parallel, effective batch "
                       f"{config.batch_size * self.processes})" if self.processes > 1 else ""),
            skipped=len(dataset.skipped),
        ))
        session.network.train()
        try:
            status = yield from self._steps(session, window)
            session.network.eval()
            if status == "stopped" and window.step > window.saved_step:
                # Keep everything trained so far: a stop is not a loss of work.
                event = self._save(session, window)
                if event is not None:
                    yield from self._suspended(window.clock, event)
            self.result = TrainResult(status, window.step, total_steps, window.last_loss,
                                      self.run_folder)
            yield from self._suspended(window.clock, TrainEvent(
                "done", window.step, total_steps, loss=window.last_loss, message=status))
        except GeneratorExit:  # closed at a yield: the consumer quit; keep what was trained
            session.network.eval()
            if window.step > window.saved_step:
                self._save(session, window)
            if self.result is None:  # (closed after "done" it stays completed)
                self.result = TrainResult("stopped", window.step, total_steps,
                                          window.last_loss, self.run_folder)
            raise
        finally:
            session.network.eval()
        return self.result

    def _steps(self, session: Session, window: _Window) -> Generator[TrainEvent, None, str]:
        """A tick, a step, then what is due at that step, until the total ("completed") or
        :meth:`request_stop` ("stopped")."""
        config, clock, total_steps = self.config, window.clock, session.total_steps
        while window.step < total_steps:
            now = time.perf_counter()
            yield TrainEvent("tick", window.step, total_steps, elapsed=clock.trained(now),
                             images_per_second=window.rate,
                             eta=clock.eta(window.step, total_steps, now))
            clock.pause(time.perf_counter() - now)
            if self._stop:
                return "stopped"
            lr = window.lr = lr_at(window.step, config, total_steps)
            window.losses.add(self._step(session, window.step, lr))
            window.step += 1
            yield from self._due(session, window)
        return "completed"

    def _due(self, session: Session, window: _Window) -> Iterator[TrainEvent]:
        """The log point, preview and checkpoint due after the step just taken."""
        config, step, clock = self.config, window.step, window.clock
        last = step == session.total_steps
        if step % config.log_every == 0 or last:
            yield from self._suspended(clock, self._log(step, session.total_steps, window))
        if config.preview_every and step % config.preview_every == 0 and self.is_main:
            began = time.perf_counter()
            event = self._preview(session.ema_network, session.process, session.dataset, step,
                                  session.total_steps, session.device)
            clock.exclude(time.perf_counter() - began)
            yield from self._suspended(clock, event)
        if step % config.checkpoint_every == 0 or last:
            began = time.perf_counter()
            event = self._save(session, window)
            clock.exclude(time.perf_counter() - began)
            if event is not None:
                yield from self._suspended(clock, event)

    def _save(self, session: Session, window: _Window) -> TrainEvent | None:
        """A checkpoint at the current step, unless the loss has diverged since the last log
        or the weights themselves are not finite (never save weights that already diverged:
        a kept checkpoint must sample)."""
        window.losses.raise_if_diverged(window.step)
        bad = session.nonfinite_weights(self.config)
        if bad is not None:
            raise_diverged_weights(bad, window.step,
                                   self.run_folder.latest_checkpoint() is not None)
        window.saved_step = window.step
        return self._checkpoint(session, window.step, window.last_loss,
                                window.clock.trained(time.perf_counter()), session.total_steps)

    @staticmethod
    def _suspended(clock: TrainClock, event: TrainEvent) -> Iterator[TrainEvent]:
        """Yield ``event``; the time until the consumer pulls again counts nowhere."""
        began = time.perf_counter()
        yield event
        clock.pause(time.perf_counter() - began)

    def _step(self, session: Session, step: int, lr: float) -> torch.Tensor:
        """One optimizer step at learning rate ``lr``; returns the (detached) loss."""
        config, accelerator = self.config, session.accelerator
        for group in session.optimizer.param_groups:
            group["lr"] = lr
        generator, device = session.generator, session.device
        batch = config.batch_size
        index = torch.randint(len(session.dataset), (batch,), generator=generator)
        t, m, s, net_labels = session.perturbation.draw(batch, generator)
        noise = torch.randn((batch, *session.dataset.sample_shape), generator=generator)
        index, noise = index.to(device), noise.to(device)
        x0 = session.data[index]
        m, s = m.view(session.expand), s.view(session.expand)
        x_t = m * x0 + s * noise  # q(x_t | x_0) (Ho et al. eq. 4 for DDPM)
        class_labels = None
        if session.labels is not None:
            drop = torch.rand(batch, generator=generator).to(device)
            class_labels = torch.where(drop < config.label_dropout, session.null_label,
                                       session.labels[index])
        with accelerator.autocast():  # the one network call path, as in sampling
            output = session.model.network_output(x_t, net_labels, (m, s),
                                                  class_labels=class_labels).float()
        if session.learned_variance is None:  # decided from the network's first output
            session.learned_variance = output.shape[1] == 2 * x0.shape[1]
            if session.learned_variance and not isinstance(session.process, ScheduleProcess):
                raise ConfigError(
                    "learned variance (L_hybrid) needs a DDPM schedule; "
                    f"{config.schedule!r} is a {session.process.kind} process"
                )
        if session.learned_variance:
            loss = hybrid_loss(session.process.schedule, config.prediction_type, output, x0,
                               noise, x_t, t, m, s, config.hybrid_lambda)
        else:
            loss = simple_loss(config.prediction_type, output, x0, noise, m, s)
        accelerator.backward(loss)
        if config.grad_clip > 0:
            # Unscale (fp16's GradScaler; a no-op otherwise), then clip the cached parameter
            # list: Accelerate's clip_grad_norm_ walks every module each step (~1 % of a
            # digits step on a CPU, measured with cProfile).
            accelerator.unscale_gradients()
            torch.nn.utils.clip_grad_norm_(session.params, config.grad_clip)
        session.optimizer.step()
        session.optimizer.zero_grad(set_to_none=True)
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        ema_update(session.ema_params, session.params, decay)
        return loss.detach()

    def _log(self, step: int, total_steps: int, window: _Window) -> TrainEvent:
        """One point of the loss curve: metrics.jsonl and the "step" event, the same numbers."""
        if self._reduce_mean is not None:  # every process logs at the same steps
            window.losses.total = self._reduce_mean(window.losses.total)
        mean_loss = window.losses.take(step)
        eta = window.clock.eta(step, total_steps, time.perf_counter())
        rate, elapsed = window.clock.lap(step, self.config.batch_size * self.processes)
        if self.is_main:
            self.run_folder.append_metrics([{
                "step": step, "loss": mean_loss, "lr": window.lr, "images_per_second": rate,
                "elapsed": elapsed,
            }])
        window.last_loss, window.rate = mean_loss, rate
        return TrainEvent("step", step, total_steps, loss=mean_loss, lr=window.lr,
                          images_per_second=rate, elapsed=elapsed, eta=eta)

    def _exact_network_run(
        self, network: torch.nn.Module, dataset: Dataset
    ) -> Generator[TrainEvent, None, TrainResult]:
        """A network with nothing to train (an exact score such as ``analytic-mixture``): an
        optimizer would fail on an empty parameter list, so the run is written ready to sample
        (its network at step 0), and the user is told so."""
        run = self.run_folder
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
        lock = self._take_lock()
        try:
            run.path.mkdir(parents=True, exist_ok=True)
            run.write_config(self._run_config(dataset, 0))
            path = run.save_checkpoint(0, network, network, {},
                                       {"param_groups": [], "scalars": {}},
                                       {"loss": None, "trained_seconds": 0.0, "exact": True},
                                       keep=config.keep_checkpoints)
        finally:
            self._release_lock(lock)
        yield TrainEvent("start", 0, 0, message=message)
        yield TrainEvent("checkpoint", 0, 0, path=str(path))
        yield TrainEvent("done", 0, 0, message="completed")
        return self.result

    def _stop_requested(self) -> bool:
        return self.should_stop is not None and bool(self.should_stop())

    @staticmethod
    def _history(saved: dict[str, Any], changes: dict[str, list[Any]],
                 step: int) -> list[dict[str, Any]]:
        """The run's config history with this resume's changes appended (when it has any):
        ``[{"step", "time", "changes": {name: [old, new]}}, ...]``."""
        history = list(saved.get("history") or [])
        if changes:
            history.append({"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "changes": changes})
        return history

    def _run_config(self, dataset: Dataset, total_steps: int,
                    history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        import diffusers

        import diffstudio

        return {
            "history": history or [],
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

    def _checkpoint(self, session: Session, step: int, last_loss: float | None,
                    trained_seconds: float, total_steps: int) -> TrainEvent | None:
        """Weights, EMA, optimizer and generators at ``step`` (main process); the event."""
        session.accelerator.wait_for_everyone()
        if not self.is_main:
            return None
        tensors, metadata = optimizer_state_tensors(session.optimizer)
        tensors["rng.generator"] = session.generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        path = self.run_folder.save_checkpoint(
            step, session.raw_network, session.ema_network, tensors, metadata,
            {"loss": last_loss, "trained_seconds": trained_seconds},
            keep=self.config.keep_checkpoints,
        )
        return TrainEvent("checkpoint", step, total_steps, path=str(path))

    @torch.no_grad()
    def _preview(
        self,
        ema_network: torch.nn.Module,
        process: DiffusionProcess,
        dataset: Dataset,
        step: int,
        total_steps: int,
        device: torch.device,
    ) -> TrainEvent:
        """DDIM samples from the EMA weights, the same noise at every preview."""
        from diffstudio.engine.samplers.ddim import ddim_sample

        config = self.config
        model = DiffusionModel(
            ema_network, process, prediction_type=config.prediction_type, x0_clip=dataset.x0_clip
        )
        conditional = config.network_params.get("class_conditional")
        if conditional and dataset.num_classes:
            model.class_labels = torch.arange(config.preview_samples) % dataset.num_classes
        from diffstudio.engine.samplers import per_sample_generators, randn_like_per_sample

        # The same noise at every preview, drawn per sample as every sampler's noise is.
        generators = per_sample_generators(range(config.seed, config.seed +
                                                 config.preview_samples))
        noise = randn_like_per_sample(
            torch.empty((config.preview_samples, *dataset.sample_shape)), generators)
        images = ddim_sample(
            model, noise.to(device), generator=generators, callback=None, should_stop=None,
            steps=min(config.preview_steps, model.num_timesteps),
        ).float().cpu()
        path = None
        if dataset.kind == "image":
            from diffstudio.engine.gallery import save_grid

            path = self.run_folder.preview_path(step)
            save_grid(images, path, metadata={"step": step, "kind": "preview"})
        return TrainEvent("preview", step, total_steps, images=images,
                          path=str(path) if path else None)
