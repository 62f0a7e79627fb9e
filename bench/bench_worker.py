"""Preview streaming across processes: the same tiny digits training in this process and in a
worker process (``diffstudio.app.worker``, the Train page's default), side by side.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_worker.py                 # 3 alternations
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_worker.py --steps 100 --repeats 2

Each run trains a new digits run (U-Net, 8x8) for ``--steps`` steps with a preview of
``--preview-samples`` samples every ``--preview-every`` steps and a logged step every 10, and
its consumer does what the Train page does with every event (previews to float32 arrays).
Throughput is measured between the logged step at ``--warm-up`` and the last one, as the
consumer sees them (a fresh process's first steps are slower: start-up, not streaming), two
ways: wall-clock images/s, and images per CPU second of every process involved (this one, plus
the worker's, read from /proc/PID/stat): both include everything the worker adds (encoding the
per-step progress and previews, the pipe, decoding), which the trainer's own images/s leaves out
(it does not count the time suspended at a yield). On a shared machine the wall clock follows
the other users' load; the CPU seconds much less so. Start-up (the child importing torch) is
reported apart: it is paid once per training. The overhead is 1 - worker / in-process, the
median over back-to-back pairs; target <= 5 %.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from diffstudio.app.train import TrainRequest, train
from diffstudio.app.worker import WORKER_PIDS, display_array, encode, train_in_process

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"steps": args.steps, "batch_size": args.batch_size, "warmup_steps": 10,
            "log_every": 10, "checkpoint_every": 100_000, "preview_every": args.preview_every,
            "preview_samples": args.preview_samples, "preview_steps": args.preview_steps,
            "device": "cpu"}


def cpu_seconds() -> float:
    """CPU time of this process and of the worker processes it has running (Linux)."""
    total = time.process_time()
    for pid in list(WORKER_PIDS):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return total


def consume(events: Any, began: float, warm_up: int) -> dict[str, Any]:
    """Drive a training's events as the window does; the figures of the run, timed from the
    first logged step at or after ``warm_up`` (a fresh process's first steps are slower: the
    allocator and the kernels warm up, which is start-up, not streaming)."""
    start = last = first = None
    cpu_start = cpu_last = 0.0
    previews = steps = 0
    wire_bytes = 0
    trainer_rate = None
    for event in events:
        kind = getattr(event, "kind", None)
        if kind == "start":
            start = time.perf_counter()
        elif kind == "step" and first is None and event.step >= warm_up:
            first, cpu_start, timed_from = time.perf_counter(), cpu_seconds(), event.step
        elif kind == "step" and first is not None:
            last, steps, cpu_last = time.perf_counter(), event.step - timed_from, cpu_seconds()
            trainer_rate = event.images_per_second
        elif kind == "preview" and event.images is not None:
            images = np.asarray(event.images, dtype=np.float32)  # what TrainJob does
            previews += 1
            wire_bytes = len(json.dumps(encode(display_array(images))))  # as it crosses
    assert start is not None and first is not None and last is not None
    return {"startup": start - began, "seconds": last - first, "steps": steps,
            "cpu": cpu_last - cpu_start,
            "previews": previews, "trainer_rate": trainer_rate, "preview_bytes": wire_bytes}


def wire_cost(args: argparse.Namespace) -> dict[str, float]:
    """Microseconds to encode, write as JSON, read and decode one event of each kind crossing
    (both ends' work, without the pipe): the part of the overhead the load cannot blur."""
    from diffstudio.app.events import Progress
    from diffstudio.app.worker import decode
    from diffstudio.engine.training import TrainEvent

    images = np.random.default_rng(0).uniform(-1, 1, (args.preview_samples, 1, 8, 8))
    events = {
        "preview": TrainEvent("preview", 10, 300, images=display_array(images), path="p.png"),
        "progress": Progress("train", 10, 300, 1.5, unit="step", rate=300.0, remaining=9.0),
        "step": TrainEvent("step", 10, 300, loss=0.1, lr=1e-4, images_per_second=300.0,
                           elapsed=1.5, eta=9.0),
    }
    costs = {}
    for name, event in events.items():
        count = 200
        began = time.perf_counter()
        for _ in range(count):
            decode(json.loads(json.dumps(encode(event))))
        costs[name] = (time.perf_counter() - began) / count * 1e6
    return costs


def one(kind: str, args: argparse.Namespace, folder: Path, index: int) -> dict[str, Any]:
    request = TrainRequest(out=str(folder / f"{kind}-{index}"), settings=settings(args))
    began = time.perf_counter()
    if kind == "in-process":
        events = train(request)
    else:
        events = train_in_process(request, log=folder / f"{kind}-{index}.log")
    figures = consume(events, began, warm_up=args.warm_up)
    figures["rate"] = figures["steps"] * args.batch_size / figures["seconds"]
    figures["cpu_rate"] = figures["steps"] * args.batch_size / figures["cpu"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--preview-every", type=int, default=10)
    parser.add_argument("--preview-samples", type=int, default=64)
    parser.add_argument("--preview-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warm-up", type=int, default=30,
                        help="steps left out of the timing (a fresh process warming up)")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"{args.steps} steps of batch {args.batch_size}, a preview of {args.preview_samples} "
          f"samples ({args.preview_steps} DDIM steps) every {args.preview_every} steps", flush=True)
    costs = wire_cost(args)
    print("wire cost per event (encode + JSON + decode, both ends): "
          + ", ".join(f"{name} {us:.0f} us" for name, us in costs.items()), flush=True)
    ratios, cpu_ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for index in range(args.repeats):
            order = ("in-process", "worker") if index % 2 == 0 else ("worker", "in-process")
            pair = {kind: one(kind, args, folder, index) for kind in order}
            ratio = pair["worker"]["rate"] / pair["in-process"]["rate"]
            cpu_ratio = pair["worker"]["cpu_rate"] / pair["in-process"]["cpu_rate"]
            ratios.append(ratio)
            cpu_ratios.append(cpu_ratio)
            for kind in order:
                f = pair[kind]
                print(f"  {index}: {kind:10s} {f['rate']:7.0f} images/s wall, "
                      f"{f['cpu_rate']:7.0f} per CPU second (trainer's own "
                      f"{f['trainer_rate']:.0f}), {f['previews']} previews "
                      f"({f['preview_bytes'] / 1024:.0f} KiB each on the wire), "
                      f"start-up {f['startup']:.1f} s")
            print(f"  {index}: worker / in-process = {ratio:.3f} wall, {cpu_ratio:.3f} CPU",
                  flush=True)
    for name, values in (("wall-clock", ratios), ("CPU-time", cpu_ratios)):
        median = statistics.median(values)
        print(f"{name} median ratio {median:.3f}: overhead {100 * (1 - median):+.1f} % "
              f"(target <= 5 %) over pairs {', '.join(f'{r:.3f}' for r in values)}")


if __name__ == "__main__":
    main()
