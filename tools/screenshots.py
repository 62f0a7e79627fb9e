"""Launch the real diffstudio window on a display, exercise each place and save screenshots.

Needs an X display; on a headless machine use Xvfb (apt-get install xvfb and the xcb
libraries: libxcb-cursor0 libxkbcommon-x11-0 ...)::

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 .venv/bin/python tools/screenshots.py            # -> docs/screenshots/*.png

It trains the default digits U-Net for a few hundred steps (so the loss curve and the
previews have something to show), samples from it with the live view, compares samplers,
evaluates it (FID@N, KID, nearest training images, the comparison table; a folder with a few
training images planted among the samples shows the memorisation check), trains the 2-D
mixture and samples particles, runs the 2-D lab, and shows the Gallery, Experiments, Runs and
Plugins pages. Settings
and runs go to a temporary folder: the user's own are not touched. ``--broken-plugin-demo``
(on by default) adds a plugin entry point that cannot be imported, to show how a plugin
failure is reported.
"""

from __future__ import annotations

import argparse
import importlib.metadata as importlib_metadata
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--steps", type=int, default=400, help="digits training steps")
    parser.add_argument("--size", default="1440x900", help="window size WIDTHxHEIGHT")
    parser.add_argument("--no-broken-plugin-demo", dest="broken", action="store_false")
    parser.add_argument("--eval-weights", default=os.environ.get("DIFFSTUDIO_FID_WEIGHTS", ""),
                        help="Inception FID weights for the Evaluate page: a file, 'random', "
                             "or empty to search as the app does (default $DIFFSTUDIO_FID_WEIGHTS)")
    parser.add_argument("--eval-samples", type=int, default=256,
                        help="samples per evaluation on the Evaluate page")
    parser.add_argument("--no-quantize", dest="quantize", action="store_false",
                        help="keep full colour (larger files)")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        print("no DISPLAY: start Xvfb :99 and run with DISPLAY=:99", file=sys.stderr)
        return 2

    scratch = Path(tempfile.mkdtemp(prefix="diffstudio-shots-"))
    from diffstudio.gui.settings import SETTINGS_FILE_VARIABLE

    os.environ[SETTINGS_FILE_VARIABLE] = str(scratch / "settings.ini")

    from PySide6.QtCore import QEventLoop

    from diffstudio.gui.app import create_application
    from diffstudio.gui.main_window import MainWindow
    from diffstudio.gui.settings import Preferences, open_settings
    from diffstudio.plugin_manager import ENTRY_POINT_GROUP, load_plugins

    app = create_application()
    # QEventLoop().processEvents: QCoreApplication.processEvents loses a reference to None per
    # call in PySide6 6.12.0 (see diffstudio/gui/refcount_guard.py).
    events = QEventLoop()
    print(f"Qt platform: {app.platformName()}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def pump(seconds: float = 0.0) -> None:
        end = time.monotonic() + seconds
        while True:
            events.processEvents()
            if time.monotonic() >= end:
                return
            time.sleep(0.01)

    def wait(condition: Callable[[], bool], what: str, timeout: float = 900.0) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError(f"timed out waiting for {what}")
            events.processEvents()
            time.sleep(0.02)

    def shoot(name: str) -> None:
        pump(0.4)  # let the plots repaint
        path = out / f"{name}.png"
        window.grab().save(str(path), "PNG")
        if args.quantize:
            from PIL import Image

            with Image.open(path) as image:  # 256 colours: a third of the size, same look
                small = image.convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
            small.save(path, optimize=True)
        print(f"saved {path} ({path.stat().st_size // 1024} KiB)")

    entry_points = list(importlib_metadata.entry_points(group=ENTRY_POINT_GROUP))
    if args.broken:
        entry_points.append(importlib_metadata.EntryPoint(
            name="acme-broken-demo", value="acme_broken_demo_plugin", group=ENTRY_POINT_GROUP))
    registry = load_plugins(safe_mode=False, entry_points=entry_points)

    preferences = Preferences(open_settings())
    preferences.workspace = scratch / "runs"
    window = MainWindow(preferences, registry=registry, ask=lambda title, text: True)
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.show()
    wait(lambda: window._painted, "the first paint")
    shoot("01-launch-loading")

    wait(lambda: window.studio.ready, "the engine")
    wait(lambda: window.data_view.preview is not None, "the digits preview")
    window.show_page("Data")
    shoot("02-data-digits")

    window.show_page("Model & schedule")
    window.model_view.t_slider.setValue(300)
    shoot("03-model-schedule-explorer")

    # -- train the default -------------------------------------------------------------------
    train = window.train_view
    window.show_page("Train")
    train.form.set_values({"steps": args.steps, "batch_size": 64, "learning_rate": 2e-3,
                           "warmup_steps": 50, "log_every": 5,
                           "preview_every": max(args.steps // 4, 1),
                           "checkpoint_every": args.steps, "preview_steps": 25})
    train.train_button.click()
    wait(lambda: len(train.previews) >= 2, "two previews")
    shoot("04-train-running")
    wait(lambda: train.job is None, "training to finish")
    train.loss_plot.log_scale.setChecked(True)
    shoot("05-train-done-log-scale")
    run_dir = str(next((scratch / "runs").iterdir()))

    # -- sample with the live view -----------------------------------------------------------
    sample = window.sample_view
    window.show_page("Sample")
    sample.select_run(run_dir)
    sample.sampler_picker.select("ddpm", {"steps": 1000})
    sample.options.set_values({"num_samples": 36, "seed": 0, "strip_steps": 10})
    sample.start()
    wait(lambda: sample.last_frame is not None and sample.last_frame.index >= 700,
         "the sampler to pass step 700")
    shoot("06-sample-live-ddpm")
    wait(lambda: sample.job is None, "sampling to finish")
    shoot("07-sample-done")
    sample.save()
    wait(lambda: "save" not in window.studio.jobs, "saving")

    sample.tabs.setCurrentIndex(1)
    sample.sampler_picker.form("ddim").set_values({"steps": 50})
    sample.sampler_picker.form("ddpm").set_values({"steps": 1000})
    sample.options.set_values({"num_samples": 16, "seed": 0})
    sample.compare.start()
    wait(lambda: sample.compare.job is None, "the comparison")
    shoot("08-compare-samplers")

    sample.tabs.setCurrentIndex(2)
    sample.interpolation.form.set_values({"seed_a": 0, "seed_b": 1, "frames": 12, "steps": 50})
    sample.interpolation.start()
    wait(lambda: sample.interpolation.job is None, "the interpolation")
    shoot("09-ddim-interpolation")

    # -- evaluate: metrics, nearest training images, the comparison ----------------------------
    evaluate = window.evaluate_view
    window.show_page("Evaluate")
    evaluate.select_run(run_dir)
    if args.eval_weights == "random":
        evaluate.random_box.setChecked(True)
    elif args.eval_weights:
        evaluate.weights_edit.setText(args.eval_weights)
    evaluate.options.set_values({"num_samples": args.eval_samples, "reference_limit": 0})
    evaluate.sampler_picker.select("ddim", {"steps": 50})
    evaluate.start()
    wait(lambda: evaluate.job is not None and evaluate.last_progress is not None
         and evaluate.last_progress.stage in ("samples", "metrics"), "the Inception features")
    shoot("16-evaluate-running")
    wait(lambda: evaluate.job is None, "the evaluation")
    shoot("17-evaluate-metrics")
    # A step sweep fills the FID-against-evaluations plot in one job.
    evaluate.options.set_values({"num_samples": args.eval_samples, "reference_limit": 0,
                                 "step_sweep": "10, 20, 100"})
    evaluate.start()
    wait(lambda: evaluate.job is None, "the step sweep")
    evaluate.tabs.setCurrentIndex(2)
    wait(lambda: len(evaluate.comparison.rows) >= 4 and evaluate.comparison.job is None,
         "the comparison table")
    shoot("18-evaluate-comparison")
    evaluate.options.set_values({"num_samples": args.eval_samples, "reference_limit": 0})
    # A memorisation demo: the saved samples plus six training images copied in, which the
    # ratio test must flag (and the grid highlight).
    import numpy as np

    from diffstudio.engine.components import build_dataset

    saved = max((Path(run_dir) / "samples").iterdir(), key=lambda p: p.stat().st_mtime)
    with np.load(saved / "samples.npz") as data:
        generated = data["samples"][:18]
    training = build_dataset(registry, "digits", {}).data.numpy()
    demo = scratch / "memorisation-demo"
    demo.mkdir()
    planted = np.concatenate([generated[:4], training[[3, 50, 400]], generated[4:12],
                              training[[777, 1200, 1500]], generated[12:]])
    np.savez(demo / "samples.npz", samples=planted, seeds=np.arange(len(planted)))
    evaluate.from_folder.setChecked(True)
    evaluate.folder_edit.setText(str(demo))
    evaluate.training_reference.setChecked(False)
    evaluate.reference_picker.select("digits")
    evaluate.options.set_values({"num_samples": len(planted)})
    evaluate.start()
    wait(lambda: evaluate.job is None, "the memorisation demo")
    evaluate.tabs.setCurrentIndex(1)
    evaluate.space_combo.setCurrentIndex(evaluate.space_combo.findData("pixel"))
    evaluate.sort_combo.setCurrentIndex(evaluate.sort_combo.findData("index"))
    shoot("19-evaluate-nearest-training-images")

    # -- 2-D: the mixture, particles over the exact density ------------------------------------
    window.show_page("Data")
    window.data_view.picker.select("toy2d", {"name": "mixture", "num_points": 10000})
    window.data_view.load()
    wait(lambda: window.data_view.preview is not None
         and window.data_view.preview.dataset.kind == "points", "the mixture")
    shoot("10-data-mixture")
    window.show_page("Train")
    train.new_run()
    train.form.set_values({"steps": 1500, "batch_size": 512, "learning_rate": 3e-3,
                           "warmup_steps": 100, "log_every": 10, "preview_every": 500,
                           "preview_samples": 1000, "checkpoint_every": 1500})
    window.model_view.diffusion_form.set_values({"num_timesteps": 1000})
    train.train_button.click()
    wait(lambda: train.job is None, "the mixture training")
    shoot("11-train-mixture")
    mixture_run = max((scratch / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    window.show_page("Sample")
    sample.tabs.setCurrentIndex(0)
    sample.select_run(str(mixture_run))
    sample.sampler_picker.select("ddpm", {"steps": 1000})
    sample.options.set_values({"num_samples": 2000, "batch_size": 2000})
    sample.start()
    wait(lambda: sample.last_frame is not None and sample.last_frame.index >= 900,
         "the particles to move")
    shoot("12-sample-particles-mixture")
    wait(lambda: sample.job is None, "particle sampling")
    # The seed's 2-D experiment in one click: annealed vs plain Langevin on the exact score.
    sample.tabs.setCurrentWidget(sample.lab)
    sample.lab.start()
    wait(lambda: sample.lab.job is None, "the 2-D lab")
    shoot("21-sample-2d-lab")

    # -- the gallery of every saved sample, an experiment file ----------------------------------
    gallery = window.gallery_view
    window.show_page("Gallery")
    gallery.refresh()
    wait(lambda: gallery.scan_job is None and gallery.model.rowCount() > 0, "the gallery index")
    gallery.list.setCurrentIndex(gallery.model.index(min(1, gallery.model.rowCount() - 1), 0))
    pump(1.0)  # the thumbnails are made in a thread pool
    shoot("20-gallery")
    experiments = window.experiments_view
    window.show_page("Experiments")
    experiments.open_file(ROOT / "diffstudio" / "presets" / "experiments" /
                          "seed-table1-digits.toml")
    wait(lambda: experiments.experiment is not None, "the experiment file")
    shoot("22-experiments")
    experiments.add_to_queue()
    from diffstudio.app.job_queue import JobQueue

    queue = JobQueue(window.studio.workspace)
    runs = sorted(p for p in window.studio.workspace.iterdir() if (p / "config.json").is_file())
    if runs:
        queue.add("sample", [str(runs[0]), "--sampler", "ddim", "--steps", "50", "--num", "64"],
                  cwd=window.studio.workspace)
        queue.add("eval", [str(runs[0]), "--sampler", "ddim", "--steps", "50", "--num", "500"],
                  cwd=window.studio.workspace)
    window.show_page("Queue")
    wait(lambda: len(window.queue_view.jobs) >= 1, "the queue")
    window.queue_view.table.selectRow(0)
    shoot("23-queue")

    # -- runs, plugins, notifications -------------------------------------------------------------
    window.show_page("Runs")
    window.runs_view.refresh()
    wait(lambda: len(window.runs_view.runs) >= 2, "the runs list")
    window.runs_view.table.selectRow(1)
    shoot("13-runs")
    window.show_page("Plugins")
    shoot("14-plugins")
    window.notification_area.show_details(0)
    window.notification_area.list.setCurrentRow(window.notification_area.list.count() - 1)
    shoot("15-notifications")

    window.close()
    wait(lambda: not window.isVisible(), "the window to close", timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
