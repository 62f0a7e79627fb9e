"""Training a diffusion model (DDPM, seed 002 §4.1, Algorithm 1) with Hugging Face Accelerate.

Each step: x_0 from the data, t ~ Uniform{0..T-1}, eps ~ N(0, I),
x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (eq. 6), and a gradient step on
L_simple = || target - f_theta(x_t, t) ||^2 (eq. 24), where the target is eps, x_0 or v by the
network's parameterisation. AdamW, linear warm-up then linear or cosine decay, gradient clipping,
an EMA copy of the weights, bf16 autocast on CUDA, everything seeded.

The same code runs on CPU, one GPU, or several with ``accelerate launch``; only the main process
writes. Progress goes to a callback as :class:`TrainEvent` objects; ``should_stop`` is polled
every step and a stop saves a checkpoint first, so nothing is lost.

Batches are drawn with replacement from the in-memory dataset with a seeded generator (an
"epoch" is ceil(N / batch) steps), which makes a resumed run continue exactly where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from diffstudio.engine.components import build_dataset, build_network, build_schedule
from diffstudio.engine.datasets import Dataset
from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.objectives import vlb_terms
from diffstudio.engine.parameterization import (
    PREDICTION_TYPES,
    frame_target,
    frame_to_eps_and_x0,
)
from diffstudio.engine.processes import DiffusionProcess
from diffstudio.engine.runs import Run, optimizer_state_from_tensors, optimizer_state_tensors
from diffstudio.engine.schedules.ddpm import ScheduleProcess
from diffstudio.errors import ConfigError, RunError, TrainingError
from diffstudio.plugin_manager import PluginRegistry, load_plugins

__all__ = ["TrainConfig", "TrainEvent", "TrainResult", "Trainer", "lr_at"]


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as the run's config.json."""

    dataset: str = "digits"
    dataset_params: dict[str, Any] = field(default_factory=dict)
    network: str = "unet"
    network_params: dict[str, Any] = field(default_factory=dict)
    schedule: str = "linear"
    schedule_params: dict[str, Any] = field(default_factory=dict)
    num_timesteps: int = 1000
    prediction_type: str = "epsilon"
    steps: int = 3000
    epochs: int = 0  # > 0 overrides steps: epochs * ceil(N / batch_size)
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 500
    lr_schedule: str = "cosine"  # "constant", "linear" or "cosine" decay after warm-up
    ema_decay: float = 0.999
    grad_clip: float = 1.0  # 0 disables clipping
    label_dropout: float = 0.1  # class-conditional networks only (classifier-free guidance)
    hybrid_lambda: float = 0.001  # weight of L_vlb in L_hybrid (learned-variance networks)
    mixed_precision: str = "auto"  # "auto" (bf16 on CUDA), "no", "bf16", "fp16"
    device: str = "auto"  # "auto", "cpu", "cuda", "mps"
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    preview_every: int = 500  # 0 = no previews
    preview_samples: int = 16
    preview_steps: int = 25  # DDIM steps for previews

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` on the first value that cannot work."""
        positive = ("num_timesteps", "batch_size", "log_every", "preview_samples", "preview_steps")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("steps", "epochs", "warmup_steps", "checkpoint_every", "preview_every",
                     "keep_checkpoints", "seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if self.steps == 0 and self.epochs == 0:
            raise ConfigError("set steps or epochs to more than 0")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ConfigError(f"label_dropout must be in [0, 1), got {self.label_dropout}")
        if not 0.0 <= self.hybrid_lambda < 1.0:
            raise ConfigError(f"hybrid_lambda must be in [0, 1), got {self.hybrid_lambda}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError("grad_clip and weight_decay must be >= 0")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}"
            )
        choices = {
            "lr_schedule": ("constant", "linear", "cosine"),
            "mixed_precision": ("auto", "no", "bf16", "fp16"),
            "device": ("auto", "cpu", "cuda", "mps"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        converted: dict[str, Any] = {}
        for name, value in values.items():
            default = known[name].default
            if isinstance(default, bool) or default is dataclasses.MISSING:
                converted[name] = value
            elif isinstance(default, int) and not isinstance(value, bool):
                try:
                    converted[name] = int(value)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{name} must be an integer, got {value!r}") from exc
            elif isinstance(default, float):
                try:
                    converted[name] = float(value)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{name} must be a number, got {value!r}") from exc
            else:
                converted[name] = value
        return cls(**converted).validate()


@dataclass
class TrainEvent:
    """What the trainer reports. ``kind`` is one of:

    * ``"start"``: step (the first step to run), total_steps, message (device, dataset size)
    * ``"step"``: step, loss (mean since the last event), lr, images_per_second, elapsed
    * ``"preview"``: step, images (N, *sample_shape) from the EMA weights, path of the grid
    * ``"checkpoint"``: step, path
    * ``"done"``: step, message ("completed" or "stopped")
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
            integral = bool((labels == labels.round()).all())
            self.labels = (labels.long() if integral else labels.float()).to(device)

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


class Trainer:
    """Trains one run. Construct, then call :meth:`train` (blocking; run it in a worker).

    ``callback`` receives :class:`TrainEvent`; ``should_stop`` is polled once per step;
    ``should_pause``, when given, holds the loop between steps while it returns True.
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
        self.run = Run(run_dir)
        self.resume = resume
        self.registry = registry or load_plugins()
        self.callback = callback
        self.should_stop = should_stop
        self.should_pause = should_pause
        self.is_main = True  # set from the accelerator when training starts

    # ------------------------------------------------------------------------------------
    def _emit(self, event: TrainEvent) -> None:
        if self.callback is not None and self.is_main:
            self.callback(event)

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

    def train(self) -> TrainResult:
        self.config = TrainConfig.from_dict(self._with_defaults(self.config.to_dict()))
        config = self.config
        run = self.run
        if self.resume:
            saved = run.read_config()
            if isinstance(saved.get("train"), dict):  # runs written before params were completed
                saved["train"] = self._with_defaults(saved["train"])
            start_checkpoint = run.latest_checkpoint()
        else:
            if run.exists():
                raise RunError(
                    f"{run.path} already holds a run; resume it with --resume or choose "
                    "another output folder"
                )
            start_checkpoint = None

        torch.manual_seed(config.seed)  # network initialisation (and dropout) are seeded
        dataset = build_dataset(self.registry, config.dataset, config.dataset_params)
        if len(dataset) == 0:
            raise TrainingError(f"dataset {config.dataset!r} is empty")
        process = build_schedule(
            self.registry, config.schedule, config.schedule_params, config.num_timesteps
        )
        network = build_network(
            self.registry,
            config.network,
            config.network_params,
            dataset.sample_shape,
            dataset.num_classes,
        )
        conditional = bool(config.network_params.get("class_conditional"))
        if conditional and dataset.labels is None:
            raise ConfigError(
                f"class-conditional training needs labels; dataset {config.dataset!r} has none"
            )

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
        start_step, trained_seconds = 0, 0.0

        if start_checkpoint is not None:
            from diffstudio.engine.runs import load_network_weights

            if saved.get("train") != config.to_dict():
                # Only the length of the run may change on resume.
                differing = sorted(
                    k for k, v in config.to_dict().items()
                    if saved.get("train", {}).get(k) != v and k not in ("steps", "epochs")
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
            trained_seconds = float(state.get("trained_seconds", 0.0))
            if self.is_main:
                run.clean_partial()
                run.truncate_metrics(start_step)
        elif self.resume and self.is_main:  # a run killed before its first checkpoint
            run.clean_partial()
            run.truncate_metrics(0)

        if self.is_main:
            run.path.mkdir(parents=True, exist_ok=True)
            run.write_config(self._run_config(dataset, total_steps))

        network, optimizer = accelerator.prepare(network, optimizer)
        raw_network = accelerator.unwrap_model(network)
        ema_network.to(device)
        params = [p for p in raw_network.parameters()]
        ema_params = [p for p in ema_network.parameters()]
        data = dataset.data.to(device)
        labels = dataset.labels.to(device) if conditional and dataset.labels is not None else None
        null_label = dataset.num_classes or 0
        perturbation = _Perturbation(process, device)
        expand = (-1,) + (1,) * (data.dim() - 1)
        learned_variance = None  # decided from the network's first output

        self._emit(TrainEvent(
            "start", start_step, total_steps,
            message=f"{len(dataset)} samples of shape {dataset.sample_shape} on {device}",
        ))
        status, last_loss = "completed", None
        loss_sum = torch.zeros((), device=device)
        loss_count, window_start, window_step = 0, time.perf_counter(), start_step
        session_start = time.perf_counter()
        step = start_step
        network.train()
        try:
            while step < total_steps:
                if self.should_pause is not None:
                    while self.should_pause() and not self._stop_requested():
                        time.sleep(0.05)
                    window_start = time.perf_counter()
                if self._stop_requested():
                    status = "stopped"
                    break
                lr = lr_at(step, config, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr

                index = torch.randint(len(dataset), (config.batch_size,), generator=generator)
                t, m, s, net_labels = perturbation.draw(config.batch_size, generator)
                noise = torch.randn((config.batch_size, *dataset.sample_shape), generator=generator)
                index, noise = index.to(device), noise.to(device)
                x0 = data[index]
                m, s = m.view(expand), s.view(expand)
                x_t = m * x0 + s * noise  # eq. 6 (m = sqrt(alpha_bar), s = sqrt(1 - alpha_bar))
                kwargs = {}
                if labels is not None:
                    drop = torch.rand(config.batch_size, generator=generator).to(device)
                    kwargs["class_labels"] = torch.where(
                        drop < config.label_dropout, null_label, labels[index]
                    )
                with accelerator.autocast():
                    output = network(x_t, net_labels, **kwargs)
                output = (output.sample if hasattr(output, "sample") else output).float()
                channels = x0.shape[1]
                if learned_variance is None:
                    learned_variance = output.shape[1] == 2 * channels
                    if learned_variance and not isinstance(process, ScheduleProcess):
                        raise ConfigError(
                            "learned variance (L_hybrid) needs a DDPM schedule; "
                            f"{config.schedule!r} is a {process.kind} process"
                        )
                target = frame_target(config.prediction_type, x0, noise, m, s)
                loss = F.mse_loss(output[:, :channels], target)  # eqs. 24, 33, 36
                if learned_variance:  # L_hybrid = L_simple + lambda L_vlb (eq. 25)
                    eps_pred, _ = frame_to_eps_and_x0(
                        config.prediction_type, output[:, :channels].detach(), x_t, m, s
                    )
                    vlb = vlb_terms(process.schedule, x0, x_t, t, eps_pred,
                                    output[:, channels:])
                    loss = loss + config.hybrid_lambda * process.num_timesteps * vlb.mean()
                accelerator.backward(loss)
                if config.grad_clip > 0:
                    # Unscale (fp16's GradScaler; a no-op otherwise), then clip the cached
                    # parameter list: Accelerate's clip_grad_norm_ walks every module each step
                    # (~1 % of a digits step on a CPU, measured with cProfile).
                    accelerator.unscale_gradients()
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                decay = min(config.ema_decay, (1 + step) / (10 + step))
                _ema_update(ema_params, params, decay)
                loss_sum += loss.detach()
                loss_count += 1
                step += 1

                if step % config.log_every == 0 or step == total_steps:
                    mean_loss = float(loss_sum) / loss_count
                    _raise_if_diverged(mean_loss, step)
                    now = time.perf_counter()
                    rate = (step - window_step) * config.batch_size / max(now - window_start, 1e-9)
                    elapsed = trained_seconds + now - session_start
                    if self.is_main:
                        run.append_metrics([{
                            "step": step, "loss": mean_loss, "lr": lr,
                            "images_per_second": rate, "elapsed": elapsed,
                        }])
                    self._emit(TrainEvent("step", step, total_steps, loss=mean_loss, lr=lr,
                                          images_per_second=rate, elapsed=elapsed))
                    last_loss = mean_loss
                    loss_sum.zero_()
                    loss_count, window_start, window_step = 0, now, step
                if config.preview_every and step % config.preview_every == 0:
                    self._preview(ema_network, process, dataset, step, total_steps, device)
                    window_start = time.perf_counter()
                if step % config.checkpoint_every == 0 or step == total_steps:
                    if loss_count:  # never save weights that have already diverged
                        _raise_if_diverged(float(loss_sum) / loss_count, step)
                    self._checkpoint(accelerator, raw_network, ema_network, optimizer, generator,
                                     step, last_loss, trained_seconds + time.perf_counter()
                                     - session_start)
                    window_start = time.perf_counter()
        finally:
            network.eval()
        if status == "stopped" and step > start_step:
            # Keep everything trained so far: a stop is not a loss of work.
            if loss_count:
                _raise_if_diverged(float(loss_sum) / loss_count, step)
            self._checkpoint(accelerator, raw_network, ema_network, optimizer, generator, step,
                             last_loss, trained_seconds + time.perf_counter() - session_start)
        self._emit(TrainEvent("done", step, total_steps, loss=last_loss, message=status))
        return TrainResult(status, step, total_steps, last_loss, run)

    def _stop_requested(self) -> bool:
        return self.should_stop is not None and bool(self.should_stop())

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

    def _checkpoint(
        self,
        accelerator: Any,
        network: torch.nn.Module,
        ema_network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        step: int,
        last_loss: float | None,
        trained_seconds: float,
    ) -> None:
        accelerator.wait_for_everyone()
        if not self.is_main:
            return
        tensors, metadata = optimizer_state_tensors(optimizer)
        tensors["rng.generator"] = generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        path = self.run.save_checkpoint(
            step, network, ema_network, tensors, metadata,
            {"loss": last_loss, "trained_seconds": trained_seconds},
            keep=self.config.keep_checkpoints,
        )
        self._emit(TrainEvent("checkpoint", step, 0, path=str(path)))

    @torch.no_grad()
    def _preview(
        self,
        ema_network: torch.nn.Module,
        process: DiffusionProcess,
        dataset: Dataset,
        step: int,
        total_steps: int,
        device: torch.device,
    ) -> None:
        if not self.is_main:
            return
        from diffstudio.engine.samplers.ddim import ddim_sample

        config = self.config
        model = DiffusionModel(
            ema_network, process, prediction_type=config.prediction_type, x0_clip=dataset.x0_clip
        )
        conditional = config.network_params.get("class_conditional")
        if conditional and dataset.num_classes:
            model.class_labels = torch.arange(config.preview_samples) % dataset.num_classes
        generator = torch.Generator().manual_seed(config.seed)  # same noise at every preview
        noise = torch.randn((config.preview_samples, *dataset.sample_shape), generator=generator)
        images = ddim_sample(
            model, noise.to(device), generator=generator, callback=None, should_stop=None,
            steps=min(config.preview_steps, model.num_timesteps),
        ).float().cpu()
        path = None
        if dataset.kind == "image":
            from diffstudio.engine.gallery import save_grid

            path = self.run.path / "previews" / f"step-{step:08d}.png"
            save_grid(images, path, metadata={"step": step, "kind": "preview"})
        self._emit(TrainEvent("preview", step, total_steps, images=images,
                              path=str(path) if path else None))
