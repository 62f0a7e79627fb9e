"""PyTorch eager against onnxruntime: one network evaluation and a full DDIM-50 sampling.

    .venv/bin/python bench/bench_onnx.py                      # digits-8 and small-32, batch 1, 64
    .venv/bin/python bench/bench_onnx.py --presets digits-8 --rounds 5 --threads 2
    .venv/bin/python bench/bench_onnx.py --device cuda        # adds the GPU comparison

Each preset's U-Net (random weights: the cost does not depend on them) is exported once with
``diffstudio.engine.onnx_export`` (dynamo, opset 18, verified). Then, in one process and
alternating round by round, the same calls run on PyTorch eager and on onnxruntime through
``OnnxNetwork`` (what ``sample --backend onnx`` uses, numpy conversion included); ratios are
medians over rounds (> 1: onnxruntime faster). Both use ``--threads`` CPU threads. The
evaluation at each of onnxruntime's graph optimisation levels is measured too.

On CUDA (when torch sees a GPU and onnxruntime grants the CUDA provider): PyTorch eager fp32,
bf16 autocast and torch.compile against onnxruntime with IO binding (tensors stay on the GPU)
and without it (through host numpy arrays).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.networks.unet import PRESETS, build_unet
from diffstudio.engine.onnx_export import export_network
from diffstudio.engine.onnx_network import GRAPH_OPTIMIZATION_LEVELS, OnnxNetwork
from diffstudio.engine.sampling import generate
from diffstudio.engine.schedules.ddpm import NoiseSchedule
from diffstudio.plugin_manager import load_plugins

REGISTRY = load_plugins(safe_mode=True)
T = 1000


def seconds(call: Callable[[], Any], repeat: int, device: str = "cpu") -> float:
    """Median seconds of one call over ``repeat`` calls (after one warm-up call)."""
    call()
    times = []
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        call()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def export(preset: str, folder: Path) -> tuple[torch.nn.Module, Path, tuple[int, ...]]:
    size = PRESETS[preset]["size"]
    shape = (1, size, size)
    torch.manual_seed(0)
    network = build_unet(shape, preset=preset).eval()
    path = folder / f"{preset}.onnx"
    started = time.perf_counter()
    meta = export_network(network, path, sample_shape=shape, num_classes=None,
                          labels=torch.arange(T, dtype=torch.float32),
                          source={"weights_sha256": "bench"})
    parameters = sum(p.numel() for p in network.parameters())
    print(f"{preset}: {parameters / 1e6:.2f} M parameters, exported in "
          f"{time.perf_counter() - started:.1f} s, max error "
          f"{meta['verification']['max_abs_error']:.1e}")
    return network, path, shape


def ddim(network: torch.nn.Module, shape: tuple[int, ...], batch: int) -> Callable[[], Any]:
    model = DiffusionModel(network, NoiseSchedule(torch.linspace(1e-4, 0.02, T,
                                                                 dtype=torch.float64)))
    noise = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(0))

    def run() -> Any:
        with torch.inference_mode():
            return generate(model, "ddim", {"steps": 50}, sample_shape=shape, init_noise=noise,
                            batch_size=batch, registry=REGISTRY)

    return run


def cpu_comparison(preset: str, network: torch.nn.Module, path: Path, shape: tuple[int, ...],
                   batches: list[int], rounds: int, threads: int) -> None:
    torch.set_num_threads(threads)
    session = OnnxNetwork(path, device="cpu", threads=threads)
    for batch in batches:
        x = torch.randn((batch, *shape))
        t = torch.full((batch,), 500.0)

        def eager(x: torch.Tensor = x, t: torch.Tensor = t) -> Any:
            with torch.inference_mode():
                return network(x, t, return_dict=False)[0]

        def onnx(x: torch.Tensor = x, t: torch.Tensor = t) -> Any:
            return session(x, t)

        repeat = 50 if batch == 1 else 10
        eval_ratios, ddim_ratios = [], []
        eval_pairs, ddim_pairs = [], []
        for _ in range(rounds):
            a, b = seconds(eager, repeat), seconds(onnx, repeat)
            eval_ratios.append(a / b)
            eval_pairs.append((a, b))
            a = seconds(ddim(network, shape, batch), 1)
            b = seconds(ddim(session, shape, batch), 1)
            ddim_ratios.append(a / b)
            ddim_pairs.append((a, b))
        print(f"| {preset} | {batch} | "
              f"{statistics.median(p[0] for p in eval_pairs) * 1e3:.2f} | "
              f"{statistics.median(p[1] for p in eval_pairs) * 1e3:.2f} | "
              f"**{statistics.median(eval_ratios):.2f}** | "
              f"{statistics.median(p[0] for p in ddim_pairs):.3f} | "
              f"{statistics.median(p[1] for p in ddim_pairs):.3f} | "
              f"**{statistics.median(ddim_ratios):.2f}** |", flush=True)
    levels = []
    x = torch.randn((batches[-1], *shape))
    t = torch.full((batches[-1],), 500.0)
    for level in GRAPH_OPTIMIZATION_LEVELS:
        tuned = OnnxNetwork(path, device="cpu", threads=threads, graph_optimization=level)
        levels.append(f"{level} {seconds(lambda s=tuned: s(x, t), 10) * 1e3:.2f} ms")
    print(f"{preset}, batch {batches[-1]}, one evaluation by graph optimisation level: "
          + ", ".join(levels))


def cuda_comparison(preset: str, network: torch.nn.Module, path: Path,
                    shape: tuple[int, ...], batches: list[int]) -> None:  # pragma: no cover
    gpu = network.to("cuda")
    bound = OnnxNetwork(path, device="cuda")
    if bound.provider != "CUDAExecutionProvider":
        print(f"{preset}: onnxruntime did not grant CUDA ({bound.notes}); no GPU comparison")
        return
    host = OnnxNetwork(path, device="cuda")
    host.io_binding = False  # through numpy arrays on the host, each call
    compiled = torch.compile(gpu)
    for batch in batches:
        _cuda_batch(preset, gpu, compiled, bound, host, shape, batch)


def _cuda_batch(preset: str, gpu: torch.nn.Module, compiled: Any, bound: OnnxNetwork,
                host: OnnxNetwork, shape: tuple[int, ...], batch: int) -> None:  # pragma: no cover
    x = torch.randn((batch, *shape), device="cuda")
    t = torch.full((batch,), 500.0, device="cuda")

    def eager() -> Any:
        with torch.inference_mode():
            return gpu(x, t, return_dict=False)[0]

    def bf16() -> Any:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            return gpu(x, t, return_dict=False)[0]

    def compiled_call() -> Any:
        with torch.inference_mode():
            return compiled(x, t, return_dict=False)[0]

    base = seconds(eager, 50, "cuda")
    cells = [f"eager {base * 1e3:.2f} ms"]
    for name, call in (("bf16 autocast", bf16), ("torch.compile", compiled_call),
                       ("onnxruntime + IO binding", lambda: bound(x, t)),
                       ("onnxruntime via host", lambda: host(x, t))):
        spent = seconds(call, 50, "cuda")
        cells.append(f"{name} {spent * 1e3:.2f} ms ({base / spent:.2f}x)")
    ddim_eager = seconds(ddim(gpu, shape, batch), 1, "cuda")
    ddim_bound = seconds(ddim(bound, shape, batch), 1, "cuda")
    cells.append(f"DDIM-50 eager {ddim_eager:.3f} s, onnxruntime + IO binding "
                 f"{ddim_bound:.3f} s ({ddim_eager / ddim_bound:.2f}x)")
    print(f"CUDA {preset} batch {batch}: " + "; ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["digits-8", "small-32"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {args.threads} CPU threads")
    with tempfile.TemporaryDirectory() as folder:
        exported = [(preset, *export(preset, Path(folder))) for preset in args.presets]
        print("\n| preset | batch | eager eval ms | onnxruntime eval ms | eval ratio | "
              "eager DDIM-50 s | onnxruntime DDIM-50 s | DDIM-50 ratio |")
        print("|---|---|---|---|---|---|---|---|")
        for preset, network, path, shape in exported:
            cpu_comparison(preset, network, path, shape, args.batches, args.rounds,
                           args.threads)
        if args.device == "cuda":
            if not torch.cuda.is_available():
                print("no CUDA GPU: the GPU comparison is skipped")
                return
            for preset, network, path, shape in exported:
                cuda_comparison(preset, network, path, shape, args.batches)


if __name__ == "__main__":
    main()
