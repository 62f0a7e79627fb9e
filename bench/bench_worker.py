"""Preview streaming across processes: the same tiny digits training in this process and in a
worker process (``diffstudio.app.worker``, the Train page's default), side by side.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_worker.py                 # 3 alternations
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_worker.py --steps 100 --repeats 2

Each run trains a new digits run (U-Net, 8x8) for ``--steps`` steps with a preview of
``--preview-samples`` samples every ``--preview-every`` steps and a logged step every 10, and
its consumer does what the Train page does with every event (previews to float32 arrays).
Throughput is measured between the "start" and the last "step" event seen by the consumer, two
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
from diffstudio.app.worker import WORKER_PIDS, encode, train_in_process

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


def consume(events: Any, began: float) -> dict[str, Any]:
    """Drive a training's events as the window does; the figures of the run."""
    start = last = None
    cpu_start = cpu_last = 0.0
    previews = steps = 0
    wire_bytes = 0
    trainer_rate = None
    for event in events:
        kind = getattr(event, "kind", None)
        if kind == "start":
            start, cpu_start = time.perf_counter(), cpu_seconds()
        elif kind == "step":
            last, steps, cpu_last = time.perf_counter(), event.step, cpu_seconds()
            trainer_rate = event.images_per_second
        elif kind == "preview" and event.images is not None:
            images = np.asarray(event.images, dtype=np.float32)  # what TrainJob does
            previews += 1
            wire_bytes = len(json.dumps(encode(images)))
    assert start is not None and last is not None
    return {"startup": start - began, "seconds": last - start, "steps": steps,
            "cpu": cpu_last - cpu_start,
            "previews": previews, "trainer_rate": trainer_rate, "preview_bytes": wire_bytes}


def one(kind: str, args: argparse.Namespace, folder: Path, index: int) -> dict[str, Any]:
    request = TrainRequest(out=str(folder / f"{kind}-{index}"), settings=settings(args))
    began = time.perf_counter()
    if kind == "in-process":
        events = train(request)
    else:
        events = train_in_process(request, log=folder / f"{kind}-{index}.log")
    figures = consume(events, began)
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
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"{args.steps} steps of batch {args.batch_size}, a preview of {args.preview_samples} "
          f"samples ({args.preview_steps} DDIM steps) every {args.preview_every} steps", flush=True)
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
