"""``diffstudio --version`` and ``diffstudio --selftest``.

The self-test checks, in order, that this installation works end to end and says what it found:

1. ``torch``: torch and diffusers import; their versions and those of the other key libraries.
2. ``device``: the devices torch sees; on each CUDA GPU a small matrix product is computed and
   checked, so a broken driver or a CPU-only torch on a GPU machine is named here.
3. ``entry points``: the ``diffstudio`` entry-point group lists the four built-in plugins (they
   are metadata of the installed distribution, so a bundle or a wheel that lost them fails
   here), and each loads with its contributions.
4. ``network step``: one training step of the default network on the embedded digits, on the
   CPU, through the same application layer as ``diffstudio train``, then one DDIM step of
   sampling from that run; the loss and the samples must be finite.
5. ``window``: the main window opens offscreen, the engine loads in it, and it closes.

It writes only into a temporary folder (the run, the window's settings). Exit status 0 when every
check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.metadata as importlib_metadata
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import diffstudio
from diffstudio.frozen import installation

__all__ = ["BUILTIN_ENTRY_POINTS", "PrintVersion", "run_selftest", "version_line"]

BUILTIN_ENTRY_POINTS = (
    "builtin-datasets", "builtin-schedules", "builtin-networks", "builtin-samplers",
)
_LIBRARIES = (
    ("diffusers", "diffusers"), ("numpy", "numpy"), ("PySide6", "PySide6_Essentials"),
    ("pluggy", "pluggy"), ("accelerate", "accelerate"),
)


def version_line() -> str:
    """What ``diffstudio --version`` prints."""
    return (f"diffstudio {diffstudio.__version__} (Python {platform.python_version()}, "
            f"{installation()})")


class PrintVersion(argparse.Action):
    """``--version``: prints :func:`version_line` as it is (argparse's own action wraps it at
    the terminal's width, which splits the path) and exits 0."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(version_line())
        parser.exit(0)


def _distribution_version(module: str, distribution: str) -> str:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:  # a bundle without that metadata
        return str(getattr(sys.modules.get(module), "__version__", "not installed"))


def check_torch() -> str:
    import diffusers  # noqa: F401 (the import is the check)
    import torch

    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    others = ", ".join(f"{name} {_distribution_version(name, dist)}" for name, dist in _LIBRARIES)
    return f"torch {torch.__version__} ({build}), {others}"


def check_device() -> str:
    import torch

    found = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            device = torch.device("cuda", index)
            a = torch.randn(64, 64, device=device)
            product = (a @ a.T).cpu()
            expected = a.cpu().double() @ a.cpu().double().T
            if not torch.allclose(product.double(), expected, rtol=1e-2, atol=1e-2):
                raise RuntimeError(f"a matrix product on cuda:{index} came out wrong")
            found.append(f"cuda:{index} {torch.cuda.get_device_name(index)}")
    if torch.backends.mps.is_available():
        found.append("mps")
    if found:
        return "CPU, " + ", ".join(found) + " (each computed a matrix product correctly)"
    hint = ""
    if shutil.which("nvidia-smi") and not torch.version.cuda:
        hint = ("; nvidia-smi is present but this torch is a CPU build: reinstall torch from "
                "https://download.pytorch.org/whl/cu126 (see packaging/README.md)")
    elif shutil.which("nvidia-smi"):
        hint = "; nvidia-smi is present but torch sees no GPU: check the driver version"
    return f"CPU only (no CUDA GPU or Apple MPS found{hint})"


def check_entry_points(registry: Any) -> str:
    points = importlib_metadata.entry_points(group="diffstudio")
    found = {point.name: point for point in points}
    missing = [name for name in BUILTIN_ENTRY_POINTS if name not in found]
    if missing:
        raise RuntimeError(
            f"the built-in plugins {', '.join(missing)} are missing from the 'diffstudio' "
            "entry-point group: this installation lost diffstudio's metadata (reinstall it; a "
            "frozen bundle must be built with packaging/diffstudio.spec, which collects it)"
        )
    builtins = [plugin for plugin in registry.plugins if plugin.builtin]
    broken = [f"{plugin.name} ({plugin.error_stage}: {plugin.error})"
              for plugin in builtins if not plugin.ok]
    if broken:
        raise RuntimeError("built-in plugins failed to load: " + "; ".join(broken))
    counts = ", ".join(f"{len(registry.ids(kind))} {kind}s"
                       for kind in ("dataset", "schedule", "network", "sampler"))
    others = [plugin for plugin in registry.plugins if not plugin.builtin]
    note = ""
    if others:
        failed = [plugin.name for plugin in others if plugin.error]
        note = f"; {len(others)} third-party plugin(s)" + (
            f", failed to load (isolated, see 'diffstudio plugins'): {', '.join(failed)}"
            if failed else "")
    return f"{len(builtins)} built-in plugins ({counts}){note}"


def check_network_step(registry: Any, folder: Path) -> str:
    import numpy as np

    from diffstudio.app import ModelSource, SampleRequest, TrainRequest, run_job, sample, train

    started = time.perf_counter()
    request = TrainRequest(out=str(folder / "run"),
                           settings={"steps": 1, "device": "cpu", "batch_size": 8})
    result = run_job(train(request, registry=registry))
    loss = result.last_loss
    if result.status != "completed" or loss is None or not np.isfinite(loss):
        raise RuntimeError(f"training one step ended {result.status!r} with loss {loss}")
    outcome = run_job(sample(SampleRequest(source=ModelSource(run=str(folder / "run")),
                                           sampler="ddim", params={"steps": 1},
                                           num_samples=2, device="cpu"), registry=registry))
    if not np.isfinite(outcome.samples).all():
        raise RuntimeError("sampling one DDIM step gave non-finite values")
    shape = "x".join(str(n) for n in outcome.samples.shape[1:])
    return (f"trained 1 step on the CPU (loss {loss:.3f}) and sampled 2 images ({shape}) with "
            f"one DDIM step in {time.perf_counter() - started:.1f} s")


def check_window(registry: Any, folder: Path) -> str:
    from diffstudio.gui.selftest import open_and_close_window

    return open_and_close_window(folder / "settings.ini", folder, registry=registry)


def _locations() -> list[str]:
    from diffstudio.engine.evaluation.cache import default_cache_dir
    from diffstudio.engine.evaluation.fid_weights import torch_hub_dir

    try:
        from diffstudio.gui.selftest import settings_location

        settings = settings_location()
    except ImportError as exc:
        settings = f"unknown (Qt does not import: {exc})"
    return [
        f"settings   {settings}",
        f"runs       {Path.home() / 'diffstudio-runs'} (until another workspace is chosen)",
        f"FID cache  {default_cache_dir()}",
        f"torch hub  {torch_hub_dir()} (FID Inception weights)",
    ]


def run_selftest(*, safe_mode: bool = False, window: bool = True,
                 stream: TextIO | None = None) -> int:
    """Run the checks, print one line each, and return 0 when all passed, else 1."""
    out = stream or sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    say(f"{version_line()} self-test on {platform.platform()}")
    for line in _locations():
        say(f"  {line}")
    started = time.perf_counter()
    from diffstudio.plugin_manager import load_plugins

    registry = load_plugins(safe_mode=safe_mode)
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="diffstudio-selftest-") as temporary:
        folder = Path(temporary)
        checks: list[tuple[str, Callable[[], str]]] = [
            ("torch", check_torch),
            ("device", check_device),
            ("entry points", lambda: check_entry_points(registry)),
            ("network step", lambda: check_network_step(registry, folder)),
        ]
        if window:
            checks.append(("window", lambda: check_window(registry, folder)))
        for name, check in checks:
            try:
                detail = check()
            except Exception as exc:  # a failed check is reported; the others still run
                failed.append(name)
                say(f"  FAILED  {name}: {type(exc).__name__}: {exc}")
            else:
                say(f"  ok      {name}: {detail}")
    seconds = time.perf_counter() - started
    if failed:
        say(f"self-test FAILED ({', '.join(failed)}) in {seconds:.1f} s")
        return 1
    say(f"self-test passed: {len(checks)} checks in {seconds:.1f} s")
    return 0
