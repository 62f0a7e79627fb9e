"""The example plugin's EDM stochastic sampler against DDIM at equal network evaluations.

    .venv/bin/python bench/bench_example_edm.py [--run RUN | --train-steps 1500] [--num 200]

One trained digits network (the default preset), the same initial noise for every row, quality
scored as in ``bench_samplers.py``: a digits classifier's mean top-class confidence, classes
covered, and the Frechet distance of its class-probability features to held-out real digits
(lower is better). The plugin is loaded from ``plugins/example-sampler/src`` through its entry
point, next to the built-ins, as an installed copy would be.
"""

from __future__ import annotations

import argparse
import importlib.metadata as importlib_metadata
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins/example-sampler/src"))

from bench_engine import digits_classifier
from bench_samplers import features, quality_table

from diffstudio.engine.datasets.digits import load_digits
from diffstudio.engine.sampling import load_model
from diffstudio.engine.training import TrainConfig, Trainer
from diffstudio.plugin_manager import load_plugins

CASES = [
    ("ddim", {"steps": 5}),
    ("example-edm", {"steps": 3}),
    ("ddim", {"steps": 10}),
    ("example-edm", {"steps": 5}),
    ("example-edm", {"steps": 5, "s_churn": 0.0}),
    ("ddim", {"steps": 20}),
    ("example-edm", {"steps": 10}),
    ("example-edm", {"steps": 10, "s_churn": 0.0}),
    ("example-heun", {"steps": 10}),
    ("ddim", {"steps": 50}),
    ("example-edm", {"steps": 25}),
    ("example-edm", {"steps": 25, "s_churn": 40.0}),
]


def registry():
    builtins = [ep for ep in importlib_metadata.entry_points(group="diffstudio")
                if ep.value.startswith("diffstudio_builtins")]
    example = importlib_metadata.EntryPoint(
        name="example-sampler", value="diffstudio_example_sampler.plugin", group="diffstudio")
    return load_plugins(safe_mode=False, entry_points=[*builtins, example], disabled=(),
                        load_only=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a trained digits run (otherwise one is trained)")
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--num", type=int, default=200)
    args = parser.parse_args()
    plugins = registry()
    assert "example-edm" in plugins.ids("sampler"), [p.error for p in plugins.errors]
    classifier = digits_classifier()
    real = load_digits().data
    real_features = features(classifier, real[-args.num:])
    with tempfile.TemporaryDirectory() as folder:
        run = args.run
        if run is None:
            run = str(Path(folder) / "run")
            started = time.perf_counter()
            Trainer(TrainConfig(steps=args.train_steps, preview_every=0, device="cpu"), run,
                    registry=plugins).train()
            print(f"trained {args.train_steps} steps in {time.perf_counter() - started:.0f} s")
        loaded = load_model(run, device="cpu", registry=plugins)
        noise = torch.randn((args.num, 1, 8, 8), generator=torch.Generator().manual_seed(0))
        quality_table(loaded.model, CASES, noise, classifier, real_features, plugins)


if __name__ == "__main__":
    main()
