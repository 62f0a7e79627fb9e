"""FID benchmark: feature-extraction throughput against pytorch-fid, and a repeated FID.

1. Images/s of Inception pool3 features on the same images and batch size:
   * ``diffstudio``: :class:`InceptionFeatures` on the images in memory (how ``diffstudio eval``
     runs: quantised to 8 bits, channels_last, ``inference_mode``);
   * ``pytorch-fid get_activations``: pytorch-fid's own function on the same images saved as
     PNG files (how ``python -m pytorch_fid`` runs), with its model built with the same weights;
     the faster of ``num_workers`` 0 and 1 is kept;
   * ``pytorch-fid model, in memory``: pytorch-fid's ``InceptionV3`` called on the same tensors
     in a bare ``no_grad`` loop (what is left once file reading is taken away).
   Runs alternate between the three, ``--repeats`` times; the median is reported.
2. A FID with an empty reference cache, then the same FID again: the second pays only for the
   generated side.

Random Inception weights by default (speed does not depend on them); ``--weights PATH`` uses a
real file. Digits (8 x 8, grey) are the images, as the default preset evaluates them.

    python bench/bench_fid.py [--images 64] [--batch-size 16] [--threads 0] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diffstudio.engine.datasets import Dataset
from diffstudio.engine.evaluation import (
    EvalSettings,
    FidWeights,
    InceptionFeatures,
    ReferenceCache,
    evaluate_samples,
    verify_fid_weights,
)
from diffstudio.engine.evaluation.features import fid_inception_architecture, randomize_inception
from diffstudio.engine.pngmeta import write_png


def _digits(count: int, offset: int = 0) -> torch.Tensor:
    from sklearn.datasets import load_digits

    images = load_digits().images[offset : offset + count]
    if len(images) < count:
        raise SystemExit(f"only {len(images)} digits from offset {offset}; ask for fewer")
    return torch.as_tensor(images, dtype=torch.float32)[:, None] / 8 - 1  # (N, 1, 8, 8)


def _pytorch_fid_model(weights: FidWeights) -> torch.nn.Module:
    """pytorch-fid's own InceptionV3 (its resize and normalisation) with ``weights``."""
    from pytorch_fid import inception as pfi

    if weights.is_random:
        inception = fid_inception_architecture()
        randomize_inception(inception, weights.random_seed or 0)
        state = inception.state_dict()
    else:
        state = torch.load(weights.path, map_location="cpu", weights_only=True)
        state.setdefault("fc.weight", torch.zeros(1008, 2048))
        state.setdefault("fc.bias", torch.zeros(1008))
    original = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *args, **kwargs: state
    try:
        return pfi.InceptionV3([3]).eval()
    finally:
        pfi.load_state_dict_from_url = original


def _time(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def bench_throughput(args: argparse.Namespace, weights: FidWeights) -> dict:
    from pytorch_fid.fid_score import get_activations

    images = _digits(args.images)
    ours = InceptionFeatures(weights, device="cpu", batch_size=args.batch_size)
    theirs = _pytorch_fid_model(weights)
    folder = Path(tempfile.mkdtemp(prefix="bench-fid-"))
    files = []
    for index, image in enumerate(images):
        files.append(folder / f"sample-{index:06d}.png")
        write_png(files[-1], image.numpy(), {})

    def pytorch_fid_files(workers: int) -> np.ndarray:
        return get_activations(files, theirs, batch_size=args.batch_size, device="cpu",
                               num_workers=workers)

    def pytorch_fid_memory() -> None:
        # The tensors pytorch-fid's ToTensor would give: 8-bit levels / 255, grey -> RGB.
        x = torch.floor(torch.clamp((images + 1) * 127.5 + 0.5, 0, 255)) / 255
        x = x.expand(-1, 3, -1, -1)
        with torch.no_grad():
            for first in range(0, len(x), args.batch_size):
                theirs(x[first : first + args.batch_size].contiguous())

    # Warm-up (oneDNN primitives for each batch shape), and the check that features agree.
    reference = pytorch_fid_files(0)
    difference = float(np.abs(ours(images) - reference).max() / np.abs(reference).max())
    pytorch_fid_memory()
    times: dict[str, list[float]] = {"diffstudio": [], "pytorch-fid get_activations": [],
                                     "pytorch-fid model, in memory": []}
    workers_times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(args.repeats):
        times["diffstudio"].append(_time(lambda: ours(images)))
        for workers in (0, 1):
            workers_times[workers].append(_time(lambda w=workers: pytorch_fid_files(w)))
        times["pytorch-fid model, in memory"].append(_time(pytorch_fid_memory))
    best_workers = min(workers_times, key=lambda w: statistics.median(workers_times[w]))
    times["pytorch-fid get_activations"] = workers_times[best_workers]
    rates = {name: args.images / statistics.median(values) for name, values in times.items()}
    return {
        "images": args.images,
        "batch_size": args.batch_size,
        "images_per_second": {k: round(v, 2) for k, v in rates.items()},
        "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "get_activations_num_workers": best_workers,
        "ratio_vs_get_activations": round(rates["diffstudio"]
                                          / rates["pytorch-fid get_activations"], 3),
        "ratio_vs_model_in_memory": round(rates["diffstudio"]
                                          / rates["pytorch-fid model, in memory"], 3),
        "max_relative_feature_difference": difference,
    }


def bench_repeated_fid(args: argparse.Namespace, weights: FidWeights) -> dict:
    reference = Dataset(name="digits-bench", data=_digits(args.reference), kind="image")
    samples = _digits(args.generated, offset=args.reference)
    extractor = InceptionFeatures(weights, device="cpu", batch_size=args.batch_size)
    extractor(samples[: args.batch_size])  # warm-up
    settings = EvalSettings(metrics=("fid", "kid"))
    with tempfile.TemporaryDirectory() as folder:
        cache = ReferenceCache(folder)
        runs = []
        for _ in range(2):
            started = time.perf_counter()
            result = evaluate_samples(samples, reference, extractor, settings=settings,
                                      cache=cache)
            runs.append((time.perf_counter() - started, result))
    (first, first_result), (second, second_result) = runs
    assert second_result.reference["from_cache"] and not first_result.reference["from_cache"]
    return {
        "reference_images": args.reference,
        "generated_images": args.generated,
        "first_seconds": round(first, 3),
        "repeat_seconds": round(second, 3),
        "speedup": round(first / second, 2),
        "first_timings": {k: round(v, 3) for k, v in first_result.timings.items()},
        "repeat_timings": {k: round(v, 3) for k, v in second_result.timings.items()},
        "fid_first": first_result.fid,
        "fid_repeat": second_result.fid,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="images for the throughput test")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference", type=int, default=128, help="reference images (FID)")
    parser.add_argument("--generated", type=int, default=64, help="generated images (FID)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch and BLAS threads (0: their defaults)")
    parser.add_argument("--weights", default=None, help="real FID weights (default: random)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(limits=args.threads, user_api="blas")
    import pytorch_fid.fid_score

    pytorch_fid.fid_score.tqdm = lambda iterable: iterable  # keep the report readable
    weights = verify_fid_weights(args.weights) if args.weights else FidWeights.random(0)
    report = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu": platform.processor() or "?",
                    "weights": weights.source},
        "throughput": bench_throughput(args, weights),
        "repeated_fid": bench_repeated_fid(args, weights),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    throughput, repeated = report["throughput"], report["repeated_fid"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), weights: "
          f"{weights.source}")
    print(f"feature extraction, {throughput['images']} digits, batch {throughput['batch_size']}:")
    for name, rate in throughput["images_per_second"].items():
        print(f"  {name:<30} {rate:8.2f} images/s")
    print(f"  ratio vs get_activations (num_workers={throughput['get_activations_num_workers']}):"
          f" {throughput['ratio_vs_get_activations']:.3f}x; vs the bare model loop: "
          f"{throughput['ratio_vs_model_in_memory']:.3f}x; features agree to "
          f"{throughput['max_relative_feature_difference']:.1e} (relative)")
    print(f"FID@{repeated['generated_images']} against {repeated['reference_images']} reference "
          f"images: first {repeated['first_seconds']:.2f} s, repeated "
          f"{repeated['repeat_seconds']:.2f} s ({repeated['speedup']:.1f}x; reference from the "
          "cache)")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
