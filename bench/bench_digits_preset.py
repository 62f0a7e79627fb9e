"""The digits preset's tuning sweep: which defaults give the most convincing digits in a fixed
wall-clock budget of training (issue 17: 5 minutes on an idle 2-core CPU).

    .venv/bin/python bench/bench_digits_preset.py --budget 300 [--only NAME ...] [--ddpm NAME ...]
    .venv/bin/python bench/bench_digits_preset.py --real        # the real digits' own scores

Each setting is a set of training-setting overrides on top of the shipped defaults (and, for
network widths, a U-Net preset). Its step rate is measured first (a short run of the same
network and batch), its step count is set to fill the budget, and it is trained from scratch
with the shipped ``Trainer``; then its EMA network draws samples from one fixed seed:

- DDIM-50 (eta 0), ``--num`` samples, for every setting; DDPM-1000 (``--ddpm-num`` samples) for
  the settings named by ``--ddpm``.
- Scores, both independent of the diffusion model: an MLP digits classifier (128 hidden units,
  scikit-learn) trained on a random half of the real digits gives the *mean top-class
  confidence* and the classes covered (the other half, never seen by the classifier, scores
  0.974 and 10); a *PCA Frechet distance*: the Frechet distance (Heusel et al. 2017, eq. 6,
  the formula of FID) between Gaussians fitted to 20 principal components (fitted on all 1797
  digits, pixel values 0-16) of the samples and of all real digits. A random real subset of
  the same size is the floor (7.3 for 500 images, 20.5 for 200; it shrinks with N).

Trainings are deterministic in their step count (seeded), so machine load changes only how
long they take, not what they produce; the rate measurement is the part that wants an idle
machine. Results go to stdout and, with ``--out FILE``, to a JSON file (one entry per setting).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import linalg

from diffstudio.engine.networks import unet
from diffstudio.engine.sampling import generate, load_model
from diffstudio.engine.training import TrainConfig, Trainer
from diffstudio.plugin_manager import load_plugins

REGISTRY = load_plugins(safe_mode=True)

# name -> (training overrides, digits-8 U-Net widths or None for the shipped ones)
SETTINGS: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "shipped": ({}, None),
    "lr2e-3": ({"learning_rate": 2e-3}, None),
    "lr3e-3": ({"learning_rate": 3e-3}, None),
    "lr2e-3-warm100": ({"learning_rate": 2e-3, "warmup_steps": 100}, None),
    "lr2e-3-b64": ({"learning_rate": 2e-3, "batch_size": 64}, None),
    "lr2e-3-b256": ({"learning_rate": 2e-3, "batch_size": 256}, None),
    "lr2e-3-ema995": ({"learning_rate": 2e-3, "ema_decay": 0.995}, None),
    "lr2e-3-cosine": ({"learning_rate": 2e-3, "schedule": "cosine"}, None),
    "lr2e-3-w48": ({"learning_rate": 2e-3}, {"block_out_channels": (48, 96)}),
    "lr2e-3-deep": ({"learning_rate": 2e-3}, {"layers_per_block": 2}),
    # second round: the first round's gains together
    "cos-lr3e-3-warm100": ({"schedule": "cosine", "learning_rate": 3e-3, "warmup_steps": 100},
                           None),
    "cos-lr3e-3-warm100-b64": ({"schedule": "cosine", "learning_rate": 3e-3,
                                "warmup_steps": 100, "batch_size": 64}, None),
    "cos-lr5e-3-warm100-b64": ({"schedule": "cosine", "learning_rate": 5e-3,
                                "warmup_steps": 100, "batch_size": 64}, None),
    # the defaults chosen (steps = the shipped default: about 5 minutes on 2 idle cores)
    "chosen": ({}, None),
}


# -- scores -------------------------------------------------------------------------------------
class DigitsJudge:
    """The two independent scores of 8x8 digit images (values 0..16 after conversion)."""

    def __init__(self, seed: int = 0) -> None:
        from sklearn.datasets import load_digits
        from sklearn.decomposition import PCA
        from sklearn.neural_network import MLPClassifier

        bunch = load_digits()
        self.pixels = bunch.data.astype(np.float64)  # (1797, 64), 0..16
        order = np.random.default_rng(seed).permutation(len(self.pixels))
        self.train_half, self.held_out = order[: len(order) // 2], order[len(order) // 2:]
        self.classifier = MLPClassifier((128,), max_iter=2000, random_state=seed)
        self.classifier.fit(self.pixels[self.train_half] / 16.0, bunch.target[self.train_half])
        self.pca = PCA(20, random_state=seed).fit(self.pixels)
        features = self.pca.transform(self.pixels)
        self.real_mean, self.real_cov = features.mean(0), np.cov(features, rowvar=False)

    @staticmethod
    def to_pixels(images: torch.Tensor) -> np.ndarray:
        """(N, 1, 8, 8) in [-1, 1] -> (N, 64) in 0..16, the inverse of the dataset's scaling."""
        return ((images.clamp(-1, 1).double() + 1.0) * 8.0).reshape(len(images), -1).numpy()

    def confidence(self, pixels: np.ndarray) -> tuple[float, int]:
        probabilities = self.classifier.predict_proba(pixels / 16.0)
        return float(probabilities.max(axis=1).mean()), len(set(probabilities.argmax(axis=1)))

    def frechet(self, pixels: np.ndarray) -> float:
        features = self.pca.transform(pixels)
        mean, cov = features.mean(0), np.cov(features, rowvar=False)
        root = linalg.sqrtm(cov @ self.real_cov).real
        return float(((mean - self.real_mean) ** 2).sum()
                     + np.trace(cov + self.real_cov - 2.0 * root))

    def score(self, pixels: np.ndarray) -> dict[str, float]:
        confidence, classes = self.confidence(pixels)
        return {"confidence": confidence, "classes": classes, "frechet": self.frechet(pixels)}


def real_scores(judge: DigitsJudge, num: int, held_out: bool = True) -> None:
    if held_out:
        held = judge.score(judge.pixels[judge.held_out])
        print(f"real digits, held-out half ({len(judge.held_out)}): confidence "
              f"{held['confidence']:.3f}, classes {held['classes']}, PCA Frechet "
              f"{held['frechet']:.2f}")
    num = min(num, len(judge.pixels))  # a real subset is at most the 1797 digits
    rng = np.random.default_rng(1)
    subsets = [judge.score(judge.pixels[rng.choice(len(judge.pixels), num, replace=False)])
               for _ in range(5)]
    print(f"real subsets of {num} (5 draws): confidence "
          f"{np.mean([s['confidence'] for s in subsets]):.3f}, PCA Frechet "
          f"{np.mean([s['frechet'] for s in subsets]):.2f} "
          "(" + ", ".join(f"{s['frechet']:.2f}" for s in subsets) + ")")


# -- training -----------------------------------------------------------------------------------
def configure(overrides: dict[str, Any], steps: int, **extra: Any) -> TrainConfig:
    values = {"device": "cpu", "preview_every": 0, "log_every": 10, **overrides, **extra}
    values["steps"] = steps
    values.setdefault("checkpoint_every", max(steps, 1))
    return TrainConfig(**values)


def steps_per_second(overrides: dict[str, Any], probe_steps: int = 60) -> float:
    """The setting's training rate: the time between the 20th and the last step of a short run."""
    marks: dict[int, float] = {}

    def on_event(event) -> None:
        if event.kind == "step":
            marks[event.step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as folder:
        config = configure({**overrides, "log_every": 10}, probe_steps, checkpoint_every=10_000)
        Trainer(config, Path(folder) / "probe", registry=REGISTRY, callback=on_event).train()
    first, last = 20, max(marks)
    return (last - first) / (marks[last] - marks[first])


def train_and_score(name: str, judge: DigitsJudge, budget: float, num: int, ddpm_num: int,
                    with_ddpm: bool, fixed_steps: int | None = None) -> dict[str, Any]:
    overrides, widths = SETTINGS[name]
    shipped = dict(unet.PRESETS["digits-8"])
    if widths:
        unet.PRESETS["digits-8"] = {**shipped, **widths}
    try:
        rate = steps_per_second(overrides)
        steps = fixed_steps or int(budget * rate)
        with tempfile.TemporaryDirectory() as folder:
            run_dir = Path(folder) / "run"
            started = time.perf_counter()
            Trainer(configure(overrides, steps), run_dir, registry=REGISTRY).train()
            trained = time.perf_counter() - started
            loaded = load_model(run_dir, device="cpu", registry=REGISTRY)
            parameters = sum(p.numel() for p in loaded.model.network.parameters())
            entry: dict[str, Any] = {
                "name": name, "overrides": overrides, "widths": widths, "parameters": parameters,
                "steps_per_second": rate, "steps": steps, "train_seconds": trained,
            }
            started = time.perf_counter()
            result = generate(loaded.model, "ddim", {"steps": 50, "eta": 0.0},
                              sample_shape=(1, 8, 8), num_samples=num, batch_size=num, seed=0,
                              registry=REGISTRY)
            entry["ddim50"] = {**judge.score(judge.to_pixels(result.samples)),
                               "seconds": time.perf_counter() - started}
            if with_ddpm:
                started = time.perf_counter()
                result = generate(loaded.model, "ddpm", {"steps": 1000},
                                  sample_shape=(1, 8, 8), num_samples=ddpm_num,
                                  batch_size=ddpm_num, seed=0, registry=REGISTRY)
                entry["ddpm1000"] = {**judge.score(judge.to_pixels(result.samples)),
                                     "seconds": time.perf_counter() - started}
    finally:
        unet.PRESETS["digits-8"] = shipped
    return entry


def describe(entry: dict[str, Any]) -> str:
    parts = [f"{entry['name']:18s} {entry['parameters'] / 1e6:.2f} M  "
             f"{entry['steps_per_second']:5.1f} steps/s  {entry['steps']:5d} steps "
             f"({entry['train_seconds']:.0f} s)"]
    for key in ("ddim50", "ddpm1000"):
        if key in entry:
            s = entry[key]
            parts.append(f"{key} conf {s['confidence']:.3f} cls {s['classes']} "
                         f"PCA-FD {s['frechet']:.2f}")
    return "  |  ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds per setting")
    parser.add_argument("--only", nargs="*", default=None, choices=sorted(SETTINGS))
    parser.add_argument("--ddpm", nargs="*", default=("shipped",), choices=sorted(SETTINGS),
                        help="settings also scored with DDPM-1000")
    parser.add_argument("--num", type=int, default=500, help="DDIM-50 samples per setting")
    parser.add_argument("--ddpm-num", type=int, default=200, help="DDPM-1000 samples")
    parser.add_argument("--real", action="store_true", help="print the real digits' scores")
    parser.add_argument("--out", type=Path, default=None, help="append results to this JSON")
    parser.add_argument("--steps", type=int, default=None,
                        help="train this many steps instead of filling --budget")
    args = parser.parse_args()
    judge = DigitsJudge()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    real_scores(judge, args.num)
    if args.ddpm_num != args.num:
        real_scores(judge, args.ddpm_num, held_out=False)
    if args.real:
        return
    results = json.loads(args.out.read_text()) if args.out and args.out.exists() else []
    for name in args.only or list(SETTINGS):
        entry = train_and_score(name, judge, args.budget, args.num, args.ddpm_num,
                                name in args.ddpm, args.steps)
        print(describe(entry), flush=True)
        results.append(entry)
        if args.out:
            temporary = args.out.with_suffix(".tmp")
            temporary.write_text(json.dumps(results, indent=1))
            temporary.replace(args.out)


if __name__ == "__main__":
    main()
