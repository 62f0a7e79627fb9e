"""Engine overhead and digits training speed, measured side by side in one process.

    .venv/bin/python bench/bench_engine.py [--device cpu|cuda] [--quick] [--quality-steps N]

1. Training loop: diffstudio's Trainer against a bare PyTorch loop doing the same work (same
   network, batch, AdamW, gradient clipping and EMA), alternated A/B/A/B so machine noise hits
   both. Reported as images/s and their ratio (target >= 0.97).
2. Sampler: DDIM through ``diffstudio.engine.sampling.generate`` against a bare loop of the same
   network calls and the same update (target <= 1.05x the time).
3. Precision (CUDA only): fp32 against bf16 autocast, and channels_last.
4. Time to recognisable digits: the default digits preset trained for ``--quality-steps``; at
   each checkpoint 200 DDIM-50 samples are scored by a logistic-regression digits classifier
   (trained on the real digits): mean top-class confidence and how many of the 10 classes
   appear. Real digits score about 0.95 confidence with 10 classes.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffstudio.engine.datasets.digits import load_digits
from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.networks.unet import build_unet
from diffstudio.engine.samplers import timestep_sequence
from diffstudio.engine.sampling import generate, load_model
from diffstudio.engine.schedules.linear import linear_schedule
from diffstudio.engine.training import TrainConfig, Trainer
from diffstudio.plugin_manager import load_plugins

REGISTRY = load_plugins(safe_mode=True)


# -- 1. training loop ----------------------------------------------------------------------------
def bare_training(steps: int, batch: int, device: str, seed: int = 0,
                  ema_and_clip: bool = True, autocast: torch.dtype | None = None,
                  channels_last: bool = False) -> float:
    """images/s of a plain loop: the same network, data, optimiser, clipping and EMA."""
    torch.manual_seed(seed)
    data = load_digits().data.to(device)
    schedule = linear_schedule()
    network = build_unet((1, 8, 8)).to(device)
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(network).requires_grad_(False)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    alpha_bars = schedule.alpha_bars.to(device=device, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    params, ema_params = list(network.parameters()), list(ema.parameters())

    def step() -> torch.Tensor:
        index = torch.randint(len(data), (batch,), generator=generator).to(device)
        t = torch.randint(1000, (batch,), generator=generator).to(device)
        noise = torch.randn((batch, 1, 8, 8), generator=generator).to(device)
        alpha_bar = alpha_bars[t].view(-1, 1, 1, 1)
        x_t = alpha_bar.sqrt() * data[index] + (1 - alpha_bar).sqrt() * noise
        with torch.autocast(device_type=device.split(":")[0], dtype=autocast,
                            enabled=autocast is not None):
            out = network(x_t, t).sample
        loss = F.mse_loss(out.float(), noise)
        loss.backward()
        if ema_and_clip:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema_and_clip:
            torch._foreach_lerp_(ema_params, params, 0.001)
        return loss.detach()

    for _ in range(5):  # warm-up
        step()
    _sync(device)
    started = time.perf_counter()
    total = torch.zeros((), device=device)
    for i in range(steps):
        total += step()
        if (i + 1) % 10 == 0:
            float(total)  # the engine reads the loss every 10 steps; so does this loop
    _sync(device)
    return steps * batch / (time.perf_counter() - started)


def engine_training(steps: int, batch: int, device: str, seed: int = 0,
                    precision: str = "no") -> float:
    """images/s of diffstudio's Trainer, timed between its first and last step events."""
    stamps: list[tuple[int, float]] = []

    def on_event(event) -> None:
        if event.kind == "step":
            stamps.append((event.step, time.perf_counter()))

    config = TrainConfig(steps=steps + 10, batch_size=batch, seed=seed, device=device,
                         warmup_steps=100, preview_every=0, checkpoint_every=10**9,
                         log_every=10, mixed_precision=precision)
    with tempfile.TemporaryDirectory() as folder:
        Trainer(config, Path(folder) / "run", registry=REGISTRY, callback=on_event).train()
    (first_step, first_time), (last_step, last_time) = stamps[0], stamps[-2]
    return (last_step - first_step) * batch / (last_time - first_time)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# -- 2. sampler ----------------------------------------------------------------------------------
def sampler_times(
    steps: int, num: int, device: str, repeats: int
) -> tuple[float, float, float]:
    torch.manual_seed(0)
    network = build_unet((1, 8, 8)).to(device).eval()
    schedule = linear_schedule()
    model = DiffusionModel(network, schedule)
    alpha_bars = [float(a) for a in schedule.alpha_bars]
    timesteps = timestep_sequence(1000, steps)

    @torch.no_grad()
    def bare() -> float:
        x = torch.randn((num, 1, 8, 8), generator=torch.Generator().manual_seed(0)).to(device)
        started = time.perf_counter()
        for index, t in enumerate(timesteps):
            prev = timesteps[index + 1] if index + 1 < len(timesteps) else -1
            a, a_prev = alpha_bars[t], alpha_bars[prev] if prev >= 0 else 1.0
            eps = network(x, torch.full((num,), t, device=device)).sample
            x0 = ((x - (1 - a) ** 0.5 * eps) / a**0.5).clamp(-1, 1)
            x = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps
        _sync(device)
        return time.perf_counter() - started

    def engine() -> float:
        started = time.perf_counter()
        generate(model, "ddim", {"steps": steps}, sample_shape=(1, 8, 8), num_samples=num,
                 batch_size=num, registry=REGISTRY)
        _sync(device)
        return time.perf_counter() - started

    bare(), engine()  # warm-up
    bare_times, engine_times = [], []
    for _ in range(repeats):
        bare_times.append(bare())
        engine_times.append(engine())
    ratios = [e / b for e, b in zip(engine_times, bare_times, strict=True)]
    return statistics.median(bare_times), statistics.median(engine_times), statistics.median(ratios)


# -- 4. time to recognisable digits --------------------------------------------------------------
def digits_classifier():
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.linear_model import LogisticRegression

    bunch = sk_digits()
    classifier = LogisticRegression(max_iter=2000)
    classifier.fit(bunch.data / 16.0, bunch.target)
    return classifier


def digits_quality(classifier, images: torch.Tensor) -> tuple[float, int]:
    """(mean top-class probability, number of classes present) of images (N, 1, 8, 8)."""
    pixels = ((images.clamp(-1, 1) + 1) / 2).reshape(len(images), -1).numpy()
    probabilities = classifier.predict_proba(pixels)
    return float(probabilities.max(axis=1).mean()), len(set(probabilities.argmax(axis=1)))


def time_to_digits(steps: int, device: str) -> list[tuple[int, float, float, int]]:
    classifier = digits_classifier()
    real = load_digits().data[:200]
    print(f"  real digits: confidence {digits_quality(classifier, real)[0]:.3f}, "
          f"classes {digits_quality(classifier, real)[1]}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        checkpoint_every = max(steps // 6, 1)
        trained = {"seconds": 0.0}
        started = time.perf_counter()

        def on_event(event) -> None:
            if event.kind == "checkpoint":
                trained["seconds"] = time.perf_counter() - started
                loaded = load_model(run_dir, device=device, registry=REGISTRY)
                result = generate(loaded.model, "ddim", {"steps": 50}, sample_shape=(1, 8, 8),
                                  num_samples=200, batch_size=200, registry=REGISTRY)
                confidence, classes = digits_quality(classifier, result.samples)
                rows.append((event.step, trained["seconds"], confidence, classes))
                print(f"  step {event.step:5d}  {trained['seconds']:6.1f} s  "
                      f"confidence {confidence:.3f}  classes {classes}", flush=True)

        config = TrainConfig(steps=steps, device=device, checkpoint_every=checkpoint_every,
                             preview_every=0)
        Trainer(config, run_dir, registry=REGISTRY, callback=on_event).train()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    parser.add_argument("--quality-steps", type=int, default=3000,
                        help="training steps for the time-to-digits part (0 skips it)")
    args = parser.parse_args()
    device = args.device
    steps = 30 if args.quick else 150
    batch = 128
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")

    print("1. training loop, images/s (digits-8 U-Net, batch 128), alternating runs:")
    bare_rates, engine_rates, plain_rates = [], [], []
    for _ in range(2 if args.quick else 3):
        bare_rates.append(bare_training(steps, batch, device))
        engine_rates.append(engine_training(steps, batch, device))
        plain_rates.append(bare_training(steps, batch, device, ema_and_clip=False))
    bare, engine = statistics.median(bare_rates), statistics.median(engine_rates)
    print(f"  bare loop (clip + EMA)  {bare:8.1f}   runs {[round(r) for r in bare_rates]}")
    print(f"  diffstudio Trainer      {engine:8.1f}   runs {[round(r) for r in engine_rates]}")
    print(f"  bare loop (no clip/EMA) {statistics.median(plain_rates):8.1f}")
    pair_ratios = [e / b for e, b in zip(engine_rates, bare_rates, strict=True)]
    print(f"  ratio engine / bare = {statistics.median(pair_ratios):.3f} (median of back-to-back "
          f"pairs {[round(r, 3) for r in pair_ratios]}; target >= 0.97)")

    print("2. DDIM-50 sampling, 64 samples, seconds (median):")
    bare_time, engine_time, ratio = sampler_times(50, 64, device, 3 if args.quick else 9)
    print(f"  bare loop {bare_time:.3f}   diffstudio {engine_time:.3f}   "
          f"ratio {ratio:.3f} (median of back-to-back pairs; target <= 1.05)")

    if device.startswith("cuda"):
        print("3. precision on CUDA, bare loop images/s:")
        fp32 = bare_training(steps, batch, device)
        bf16 = bare_training(steps, batch, device, autocast=torch.bfloat16)
        cl = bare_training(steps, batch, device, autocast=torch.bfloat16, channels_last=True)
        trainer_bf16 = engine_training(steps, batch, device, precision="bf16")
        print(f"  fp32 {fp32:.0f}   bf16 {bf16:.0f}   bf16+channels_last {cl:.0f}   "
              f"Trainer bf16 {trainer_bf16:.0f}")

    if args.quality_steps:
        print(f"4. time to recognisable digits (default preset, {args.quality_steps} steps):")
        time_to_digits(args.quality_steps, device)
    np.set_printoptions(precision=3)


if __name__ == "__main__":
    main()
