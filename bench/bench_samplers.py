"""Sample quality against network evaluations for one trained digits network.

    .venv/bin/python bench/bench_samplers.py [--run RUN | --train-steps 3000] [--num 300]

Quality is scored two ways on ``--num`` samples: a logistic-regression digits classifier's mean
top-class confidence and the number of classes covered (real digits: ~0.92 and 10), and the
Frechet distance between the classifier's 10-d class-probability features of the samples and
of held-out real digits (lower is better; a cheap stand-in for FID on 8x8 digits). All samplers
start from the same initial noise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import digits_classifier, digits_quality

from diffstudio.engine.datasets.digits import load_digits
from diffstudio.engine.sampling import generate, load_model
from diffstudio.engine.training import TrainConfig, Trainer
from diffstudio.plugin_manager import load_plugins

REGISTRY = load_plugins(safe_mode=True)

CASES = [
    ("ddpm", {"steps": 1000}),
    ("ddpm", {"steps": 100}),
    ("ddim", {"steps": 10}),
    ("ddim", {"steps": 20}),
    ("ddim", {"steps": 50}),
    ("ddim", {"steps": 100}),
    ("dpm-solver-pp", {"steps": 10}),
    ("dpm-solver-pp", {"steps": 20}),
    ("unipc", {"steps": 10}),
    ("unipc", {"steps": 20}),
    ("probability-flow", {"steps": 25}),
    ("probability-flow", {"method": "rk45", "rtol": 1e-3, "atol": 1e-3}),
    ("reverse-sde", {"steps": 200}),
    ("predictor-corrector", {"steps": 100}),
]


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    from diffstudio.engine.evaluation.frechet import frechet_distance

    return float(frechet_distance(a.mean(0), np.cov(a, rowvar=False),
                                  b.mean(0), np.cov(b, rowvar=False)))


def features(classifier, images: torch.Tensor) -> np.ndarray:
    pixels = ((images.clamp(-1, 1) + 1) / 2).reshape(len(images), -1).numpy()
    return classifier.predict_proba(pixels)


def quality_table(model, cases, noise, classifier, real_features, registry) -> None:
    """One Markdown row per (sampler, params) of ``cases``, all from the same ``noise``:
    network evaluations, the classifier's confidence and classes, the Frechet distance."""
    print("| sampler | params | network evaluations | confidence | classes | "
          "Frechet (classifier features) | seconds |")
    print("|---|---|---|---|---|---|---|")
    for sampler, params in cases:
        result = generate(model, sampler, params, sample_shape=tuple(noise.shape[1:]),
                          init_noise=noise, batch_size=len(noise), registry=registry)
        confidence, classes = digits_quality(classifier, result.samples)
        distance = frechet(features(classifier, result.samples), real_features)
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        print(f"| {sampler} | {shown} | {result.network_evaluations} | {confidence:.3f} | "
              f"{classes} | {distance:.4f} | {result.seconds:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a trained digits run (otherwise one is trained)")
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--num", type=int, default=300)
    args = parser.parse_args()
    classifier = digits_classifier()
    real = load_digits().data
    real_features = features(classifier, real[-args.num:])
    with tempfile.TemporaryDirectory() as folder:
        run = args.run
        if run is None:
            run = str(Path(folder) / "run")
            started = time.perf_counter()
            Trainer(TrainConfig(steps=args.train_steps, preview_every=0, device="cpu"), run,
                    registry=REGISTRY).train()
            print(f"trained {args.train_steps} steps in {time.perf_counter() - started:.0f} s")
        loaded = load_model(run, device="cpu", registry=REGISTRY)
        noise = torch.randn((args.num, 1, 8, 8), generator=torch.Generator().manual_seed(0))
        confidence, classes = digits_quality(classifier, real[: args.num])
        print(f"real digits: confidence {confidence:.3f}, classes {classes}")
        quality_table(loaded.model, CASES, noise, classifier, real_features, REGISTRY)


if __name__ == "__main__":
    main()
