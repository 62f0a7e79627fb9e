"""GUI benchmarks: launch time, main-thread stall while training, and what the live views cost.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui.py            # everything
    DISPLAY=:99 .venv/bin/python bench/bench_gui.py --only launch            # under Xvfb

1. **Launch**: ``python -m diffstudio`` (the real entry point) is started ``--launch-runs``
   times with ``DIFFSTUDIO_LAUNCH_PROBE=quit``; the window's first paint and the engine's
   readiness are timed from the parent's spawn (and, as a check, from the child's own start
   time in /proc).
2. **Main-thread stall**: the window trains the default digits U-Net from its Train button
   (the Train page visible: loss curve and previews painting) while a 10 ms QTimer measures how
   late each tick fires; p50/p99/max lateness, and the same with no job as a baseline.
3. **Evaluating**: the same lateness while the Evaluate page evaluates the run (DDIM 10 steps,
   ``--eval-samples`` samples, random Inception weights: the same work as the FID weights) and
   then shows the metrics, the retrieval grid and the comparison table.
4. **Live views**: sampling steps/s with the Sample page's live view attached (x_t, predicted
   x_0, trajectory strip, throttled to 10 frames/s) against the same job with the live view
   off, run alternately in one process; and training steps/s with the Train page drawing
   against the same TrainJob with nothing attached.

Settings and runs go to a temporary folder. Figures are printed as text and as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def bench_launch(runs: int) -> dict[str, Any]:
    """Spawn the real entry point and time the window's first paint and the engine load."""
    shown, ready, shown_self = [], [], []
    for index in range(runs):
        with tempfile.TemporaryDirectory() as scratch:
            env = dict(os.environ, DIFFSTUDIO_LAUNCH_PROBE="quit",
                       DIFFSTUDIO_SETTINGS_FILE=str(Path(scratch) / "settings.ini"))
            started = time.monotonic()
            process = subprocess.Popen([sys.executable, "-m", "diffstudio"], env=env, cwd=ROOT,
                                       stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                       text=True)
            assert process.stderr is not None
            for line in process.stderr:
                if line.startswith("diffstudio-launch window_shown_s="):
                    shown.append(time.monotonic() - started)
                    shown_self.append(float(line.split("=", 1)[1]))
                elif line.startswith("diffstudio-launch engine_ready_s="):
                    ready.append(time.monotonic() - started)
            process.wait(timeout=300)
        print(f"  launch {index + 1}/{runs}: window {shown[-1]:.2f} s, engine {ready[-1]:.2f} s",
              flush=True)
    return {
        "runs": runs,
        "window_shown_s": {"median": statistics.median(shown), "min": min(shown),
                           "max": max(shown)},
        "window_shown_by_proc_start_s": statistics.median(shown_self),
        "engine_ready_s": {"median": statistics.median(ready), "min": min(ready),
                           "max": max(ready)},
    }


class LatencyProbe:
    """A 10 ms timer on the main thread; records how late each tick fires (ms)."""

    def __init__(self, interval_ms: int = 10) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval = interval_ms / 1000.0
        self.lateness: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self._last: float | None = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.lateness.append(max(0.0, (now - self._last - self.interval) * 1000.0))
        self._last = now

    def start(self) -> None:
        self.lateness.clear()
        self._last = None
        self.timer.start()

    def stop(self) -> dict[str, float]:
        import numpy as np

        self.timer.stop()
        values = np.asarray(self.lateness)
        return {"ticks": int(values.size), "p50_ms": float(np.percentile(values, 50)),
                "p99_ms": float(np.percentile(values, 99)), "max_ms": float(values.max())}


def _pump(app: Any, seconds: float) -> None:
    """Run the event loop for ``seconds``, as the application does (no polling)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def _wait(app: Any, condition: Any, timeout: float = 1800.0) -> None:
    """Run the event loop until ``condition()`` holds (checked every 200 ms; a faster poll
    would itself take the GIL from the job being measured)."""
    from PySide6.QtCore import QEventLoop, QTimer

    if condition():
        return
    loop = QEventLoop()
    deadline = time.monotonic() + timeout
    timed_out: list[bool] = []

    def check() -> None:
        if condition():
            loop.quit()
        elif time.monotonic() > deadline:
            timed_out.append(True)
            loop.quit()

    timer = QTimer()
    timer.setInterval(200)
    timer.timeout.connect(check)
    timer.start()
    loop.exec()
    timer.stop()
    if timed_out:
        raise TimeoutError("the benchmark waited too long")


def bench_in_window(args: argparse.Namespace) -> dict[str, Any]:
    """Stall while training, and the live views' cost, in one process and one window."""
    scratch = Path(tempfile.mkdtemp(prefix="diffstudio-bench-gui-"))
    os.environ["DIFFSTUDIO_SETTINGS_FILE"] = str(scratch / "settings.ini")
    from diffstudio.gui.app import create_application
    from diffstudio.gui.main_window import MainWindow
    from diffstudio.gui.settings import Preferences, open_settings
    from diffstudio.gui.workers import TrainJob

    app = create_application()
    preferences = Preferences(open_settings())
    preferences.workspace = scratch / "runs"
    window = MainWindow(preferences, ask=lambda title, text: True)
    window.resize(1440, 900)
    window.show()
    _wait(app, lambda: window.studio.ready and not window.studio.running())
    results: dict[str, Any] = {"cpu_threads": window.studio.cpu_threads,
                               "platform": app.platformName()}
    probe = LatencyProbe()

    # -- stall: idle baseline, then while training from the Train button ------------------------
    window.show_page("Train")
    if not args.skip_stall:
        probe.start()
        _pump(app, 5.0)
        results["stall_idle"] = probe.stop()
    train = window.train_view
    train.form.set_values({"steps": 1_000_000, "batch_size": 128, "log_every": 10,
                           "preview_every": 100, "checkpoint_every": 1_000_000})
    train.train_button.click()
    _wait(app, lambda: train.loss_plot.point_count() >= 1)
    if not args.skip_stall:
        probe.start()
        _pump(app, args.stall_seconds)
        results["stall_training"] = probe.stop()
        results["stall_training"]["loss_points"] = train.loss_plot.point_count()
        results["stall_training"]["previews"] = len(train.previews)
        print(f"  stall: idle {results['stall_idle']}, training {results['stall_training']}",
              flush=True)
    train.stop()
    _wait(app, lambda: train.job is None)
    run_dir = str(next((scratch / "runs").iterdir()))

    # -- live sampling view on/off, alternating --------------------------------------------------
    sample = window.sample_view
    window.show_page("Sample")
    sample.select_run(run_dir)
    with_view: list[float] = []
    without_view: list[float] = []
    main_cpu_with: list[float] = []
    main_cpu_without: list[float] = []
    for repetition in range(args.sample_reps):
        for live in ((True, False) if repetition % 2 == 0 else (False, True)):
            sample.sampler_picker.select("ddpm", {"steps": args.sample_steps})
            sample.options.set_values({"num_samples": args.sample_batch,
                                       "batch_size": args.sample_batch, "live_view": live,
                                       "live_fps": args.live_fps})
            cpu_before = time.thread_time()
            sample.start()
            _wait(app, lambda: sample.job is None)
            main_cpu = time.thread_time() - cpu_before
            rate = args.sample_steps / sample.outcome.result.seconds
            (with_view if live else without_view).append(rate)
            (main_cpu_with if live else main_cpu_without).append(main_cpu)
            print(f"  sampling {'with' if live else 'without'} live view: {rate:.1f} steps/s "
                  f"({sample.outcome.frames_sent} frames, main thread CPU {main_cpu:.2f} s)",
                  flush=True)
    if with_view and without_view:
        results["sampling_steps_per_s"] = {
            "with_live_view": with_view, "without_live_view": without_view,
            "ratio_of_medians": statistics.median(with_view) / statistics.median(without_view),
            "sampler": f"ddpm, {args.sample_steps} steps, batch {args.sample_batch}",
            "live_fps": args.live_fps,
            "main_thread_cpu_s_with": main_cpu_with,
            "main_thread_cpu_s_without": main_cpu_without,
        }

    # -- stall while evaluating: Inception features, metrics, then the retrieval grid -----------
    if not args.skip_eval:
        evaluate = window.evaluate_view
        window.show_page("Evaluate")
        evaluate.select_run(run_dir)
        evaluate.random_box.setChecked(True)  # the same work as the FID weights; no file needed
        evaluate.sampler_picker.select("ddim", {"steps": 10})
        evaluate.options.set_values({"num_samples": args.eval_samples, "reference_limit": 500,
                                     "sample_batch_size": 128})
        probe.start()
        started = time.perf_counter()
        evaluate.start()
        _wait(app, lambda: evaluate.job is None)
        seconds = time.perf_counter() - started
        _pump(app, 1.0)  # the grid and the comparison table paint after the result arrives
        results["stall_evaluating"] = {**probe.stop(), "seconds": seconds,
                                       "samples": args.eval_samples,
                                       "succeeded": evaluate.outcome is not None}
        print(f"  stall while evaluating: {results['stall_evaluating']}", flush=True)

    # -- training with the Train page drawing vs the same job with nothing attached ----------
    def timed_training(attached: bool, steps: int) -> float:
        """Steps per second from the start of the job to its end (the same start-up cost,
        building the dataset and the network, is in both)."""
        from diffstudio.engine.training import TrainConfig

        settings = {"steps": steps, "batch_size": 128, "log_every": 10, "preview_every": 100,
                    "checkpoint_every": steps, "warmup_steps": 10}
        started = time.perf_counter()
        cpu_before = time.thread_time()
        if attached:
            window.show_page("Train")
            train.new_run()
            train.form.set_values(settings)
            train.train_button.click()
            job = train.job
        else:
            config = TrainConfig(**settings, device="cpu")
            run = scratch / "runs" / f"throughput-{time.monotonic_ns()}"
            job = TrainJob(config, str(run), registry=window.studio.registry)
            job.cpu_threads = window.studio.cpu_threads
            job.events_ready.connect(job.drain_events)  # consumed, nothing drawn
            job.start()
        finished: list[float] = []
        job.finished.connect(lambda: finished.append(time.perf_counter()))
        _wait(app, lambda: bool(finished))
        train_cpu.append(time.thread_time() - cpu_before)
        _pump(app, 0.2)
        return steps / (finished[0] - started)

    attached: list[float] = []
    bare: list[float] = []
    train_cpu: list[float] = []
    for repetition in range(0 if args.skip_train else args.train_reps):
        for mode in ((True, False) if repetition % 2 == 0 else (False, True)):
            rate = timed_training(mode, args.train_steps)
            (attached if mode else bare).append(rate)
            print(f"  training {'with' if mode else 'without'} the Train page: "
                  f"{rate:.2f} steps/s (main thread CPU {train_cpu[-1]:.2f} s)", flush=True)
    if attached and bare:
        results["training_steps_per_s"] = {
            "with_train_page": attached, "without_view": bare,
            "ratio_of_medians": statistics.median(attached) / statistics.median(bare),
            "config": f"digits unet digits-8, batch 128, {args.train_steps} steps, "
                      "preview every 100",
        }
    window.close()
    _wait(app, lambda: not window.isVisible())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("launch", "window"), default=None)
    parser.add_argument("--launch-runs", type=int, default=5)
    parser.add_argument("--stall-seconds", type=float, default=60.0)
    parser.add_argument("--sample-reps", type=int, default=4)
    parser.add_argument("--sample-steps", type=int, default=300)
    parser.add_argument("--sample-batch", type=int, default=64)
    parser.add_argument("--live-fps", type=int, default=10, help="live view updates per second")
    parser.add_argument("--skip-stall", action="store_true", help="no stall measurement")
    parser.add_argument("--skip-train", action="store_true", help="no training throughput")
    parser.add_argument("--skip-eval", action="store_true",
                        help="no stall measurement while evaluating")
    parser.add_argument("--eval-samples", type=int, default=512,
                        help="samples of the evaluation whose stall is measured")
    parser.add_argument("--train-reps", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=200)
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    report: dict[str, Any] = {"cpu_count": os.cpu_count(),
                              "load_average_at_start": os.getloadavg()}
    if args.only in (None, "launch"):
        print("launch:", flush=True)
        report["launch"] = bench_launch(args.launch_runs)
    if args.only in (None, "window"):
        print("window:", flush=True)
        report["window"] = bench_in_window(args)
    report["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
