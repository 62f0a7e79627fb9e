"""An experiment preset end to end: wall time per job, the queue's own overhead, the time a
second run takes to skip everything, and the table it produced.

    .venv/bin/python bench/bench_experiment.py                       # the preset as shipped
    .venv/bin/python bench/bench_experiment.py --steps 300 --num-samples 128 \\
        --reference-limit 500 --weights random                      # a scaled-down run

``--weights random`` uses a randomly initialised Inception (the same work as the real weights,
no comparable FID) where pytorch-fid's weights are not on disk. The queue's overhead is the
wall time of the whole experiment minus the sum of its jobs' own times (validation, state
writes, the report), as a fraction of the whole.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from diffstudio.app.experiment import ExperimentRequest, JobUpdate, run_experiment
from diffstudio.app.experiment_file import preset_path
from diffstudio.app.experiment_report import open_experiment, write_report
from diffstudio.plugin_manager import load_plugins


def scaled(text: str, args: argparse.Namespace) -> str:
    """The preset's text with the [defaults] steps, N, reference limit and weights replaced."""
    if args.steps is not None:
        text = re.sub(r"(?m)^steps = \d+$", f"steps = {args.steps}", text, count=1)
    if args.num_samples is not None:
        text = re.sub(r"(?m)^num_samples = \d+", f"num_samples = {args.num_samples}", text)
    extra = []
    if args.weights:
        extra.append(f'weights = "{args.weights}"')
    if args.reference_limit:
        extra.append(f"reference_limit = {args.reference_limit}")
    if extra:
        text = text.replace("[evaluation]\n", "[evaluation]\n" + "\n".join(extra) + "\n", 1)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="seed-table1-digits")
    parser.add_argument("--steps", type=int, default=None, help="training steps (defaults)")
    parser.add_argument("--num-samples", type=int, default=None, help="N per cell")
    parser.add_argument("--reference-limit", type=int, default=0)
    parser.add_argument("--weights", default="", help="'random', or a weights file")
    parser.add_argument("--out", default=None, help="experiment folder (default: temporary)")
    args = parser.parse_args()
    registry = load_plugins(safe_mode=True)
    source = preset_path(args.preset) or Path(args.preset)
    work = Path(args.out or tempfile.mkdtemp(prefix="bench-experiment-"))
    work.mkdir(parents=True, exist_ok=True)
    file = work / f"{source.stem}.toml"
    file.write_text(scaled(source.read_text(encoding="utf-8"), args), encoding="utf-8")
    folder = work / "experiment"

    started = time.perf_counter()
    began: dict[str, float] = {}
    took: dict[str, float] = {}
    outcome = None
    for event in run_experiment(ExperimentRequest(str(file), out=str(folder)),
                                registry=registry):
        now = time.perf_counter()
        if isinstance(event, JobUpdate):
            if event.status == "running":
                began[event.key] = now
            elif event.status in ("done", "failed") and event.key in began:
                took[event.key] = now - began[event.key]
                print(f"{took[event.key]:8.1f} s  {event.status:<6} {event.key}", flush=True)
        elif type(event).__name__ == "Done":
            outcome = event.result
    experiment, folder = open_experiment(folder, registry)
    paths = write_report(experiment, folder)
    whole = time.perf_counter() - started
    jobs = sum(took.values())
    train = sum(v for k, v in took.items() if k.startswith("train/"))
    print(f"\nstatus {outcome.status if outcome else '?'}; wall {whole:.1f} s = training "
          f"{train:.1f} s + evaluations {jobs - train:.1f} s + queue and report "
          f"{whole - jobs:.2f} s ({(whole - jobs) / whole:.2%} of the whole)")
    again = time.perf_counter()
    rerun = None
    for event in run_experiment(ExperimentRequest(str(file), out=str(folder)),
                                registry=registry):
        if type(event).__name__ == "Done":
            rerun = event.result
    print(f"second run: skipped {rerun.skipped if rerun else '?'} finished jobs in "
          f"{time.perf_counter() - again:.2f} s")
    print(f"\n{paths[0]}:\n")
    print(paths[0].read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
