"""Gallery benchmark: index 10,000 sample PNGs, make thumbnails, open and scroll the page.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gallery.py [--samples 10000]

1. **Index**: ``--samples`` 8x8 digit-sized PNGs with diffstudio metadata (the same text
   chunks ``write_png`` writes) are generated under a temporary workspace (20 runs x 5 sample
   folders); the first scan, a rescan with nothing changed and a rescan after 1 % of the files
   were rewritten are timed, with the time to load every record back.
2. **Thumbnails**: cold thumbnails per second for ``--thumbs`` files, with 1 and with 2 worker
   threads (the page's pool), then warm (cached) reads.
3. **Opening the page**: a ``GalleryView`` 1440x900 is shown on the indexed workspace; the time
   from ``show()`` to the first paint of the list with every record in it (index read in its
   job, nothing changed on disk). Target under 1 s.
4. **Scrolling**: the list is scrolled one row at a time from top to bottom (repainting each
   step, thumbnails arriving from the pool meanwhile): main-thread time per step, p50/p99/max;
   first with a cold thumbnail cache, then warm. Target p99 under 50 ms.

Ratios to the targets are printed; figures as text and JSON.

``--ratios`` measures only ratios of back-to-back runs in one process (a shared machine's
load moves absolute figures, not these), on ``--samples`` PNGs (2,000 is enough): the first
(cold) scan against an incremental rescan after 1 % of the files changed, thumbnails made by a
pool of 2 threads (the page's) against one thread, serially (``--rounds`` alternations, fresh
caches each time), and pruning the thumbnail cache after a rescan against that rescan::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_gallery.py --ratios --samples 2000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_workspace(root: Path, count: int) -> Path:
    """``count`` sample PNGs with metadata, written plainly (no fsync: a fixture, not a test)."""
    rng = np.random.default_rng(0)
    for number in range(count):
        run, folder = number % 20, (number // 20) % 5
        target = root / f"run-{run:02d}" / "samples" / f"ddim-{folder}" / f"sample-{number:06d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        meta = {"run": str(root / f"run-{run:02d}"), "checkpoint": "step-00003000",
                "ema": True, "network_sha256": "ab" * 32,
                "sampler": ("ddim", "ddpm", "dpm-solver-pp")[number % 3],
                "sampler_params": {"steps": (10, 20, 50)[number % 3], "eta": 0.0},
                "steps": (10, 20, 50)[number % 3], "network_evaluations": 50,
                "seed": number, "index": number, "batch_size": 64, "num_samples": count,
                "backend": "torch-cpu", "guidance": None, "init_noise": False}
        info = PngImagePlugin.PngInfo()
        info.add_text("diffstudio", json.dumps(meta, sort_keys=True))
        info.add_text("parameters", f"sampler: {meta['sampler']}; seed: {number}")
        pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
        target.write_bytes(buffer.getvalue())
    return root


def bench_index(workspace: Path) -> dict[str, Any]:
    from diffstudio.engine.sample_index import SampleIndex

    index = SampleIndex(workspace)
    started = time.perf_counter()
    first = index.scan()
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    again = index.scan()
    rescan_s = time.perf_counter() - started
    files = sorted(workspace.rglob("sample-*.png"))[:: 100]
    for path in files:
        os.utime(path, ns=(time.time_ns(), time.time_ns()))
    started = time.perf_counter()
    touched = index.scan()
    touched_s = time.perf_counter() - started
    started = time.perf_counter()
    records = index.records()
    load_s = time.perf_counter() - started
    assert first.added == len(records) and again.unchanged == len(records)
    assert touched.updated == len(files)
    return {"files": len(records), "first_scan_s": first_s, "rescan_unchanged_s": rescan_s,
            "rescan_1pct_changed_s": touched_s, "load_records_s": load_s,
            "first_scan_files_per_s": len(records) / first_s}


def bench_thumbnails(workspace: Path, count: int) -> dict[str, Any]:
    from diffstudio.engine.thumbnails import ThumbnailCache

    files = sorted(workspace.rglob("sample-*.png"))
    results = {}
    for threads, chunk in ((1, files[:count]), (2, files[count: 2 * count])):
        cache = ThumbnailCache(workspace / ".diffstudio" / "bench-thumbs")
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(cache.thumbnail, chunk))
        results[f"cold_{threads}_thread_per_s"] = len(chunk) / (time.perf_counter() - started)
    cache = ThumbnailCache(workspace / ".diffstudio" / "bench-thumbs")
    started = time.perf_counter()
    for path in files[:count]:
        cache.thumbnail(path)
    results["warm_per_s"] = count / (time.perf_counter() - started)
    return results


def bench_ratios(workspace: Path, rounds: int) -> dict[str, Any]:
    """Cold scan / incremental rescan, serial / pooled thumbnails, prune / rescan."""
    import shutil

    from diffstudio.engine.sample_index import SampleIndex
    from diffstudio.engine.thumbnails import ThumbnailCache

    files = sorted(workspace.rglob("sample-*.png"))
    cold, incremental, serial, pooled, prune, rescan = [], [], [], [], [], []
    for round_number in range(rounds):
        database = workspace.parent / f"index-{round_number}.sqlite"
        index = SampleIndex(workspace, database=database)
        started = time.perf_counter()
        index.scan()
        cold.append(time.perf_counter() - started)
        for path in files[round_number::100]:  # 1 % changed
            os.utime(path, ns=(time.time_ns(), time.time_ns()))
        started = time.perf_counter()
        report = index.scan()
        incremental.append(time.perf_counter() - started)
        assert report.updated == len(files[round_number::100])
        for threads, times in ((1, serial), (2, pooled)):
            folder = workspace.parent / f"thumbs-{round_number}-{threads}"
            cache = ThumbnailCache(folder)
            started = time.perf_counter()
            if threads == 1:
                for path in files:
                    cache.thumbnail(path)
            else:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(cache.thumbnail, files))
            times.append(time.perf_counter() - started)
        cache = ThumbnailCache(workspace.parent / f"thumbs-{round_number}-2")
        started = time.perf_counter()
        index.scan()
        rescan.append(time.perf_counter() - started)
        started = time.perf_counter()
        pruned = cache.prune(index.file_states())
        prune.append(time.perf_counter() - started)
        assert pruned.kept == len(files), pruned
        for threads in (1, 2):
            shutil.rmtree(workspace.parent / f"thumbs-{round_number}-{threads}")
    median = statistics.median
    return {"files": len(files), "rounds": rounds,
            "cold_scan_s": median(cold), "incremental_rescan_s": median(incremental),
            "cold_over_incremental": median(c / i for c, i in zip(cold, incremental,
                                                                   strict=True)),
            "thumbnails_serial_s": median(serial), "thumbnails_pool2_s": median(pooled),
            "serial_over_pool": median(a / b for a, b in zip(serial, pooled, strict=True)),
            "prune_s": median(prune), "rescan_unchanged_s": median(rescan),
            "prune_over_rescan": median(a / b for a, b in zip(prune, rescan, strict=True))}


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            "max_ms": 1000 * ordered[-1], "steps": len(ordered)}


def bench_page(workspace: Path, scroll_steps: int) -> dict[str, Any]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["DIFFSTUDIO_SETTINGS_FILE"] = str(workspace.parent / "settings.ini")
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QApplication

    from diffstudio.gui.settings import Preferences, open_settings
    from diffstudio.gui.studio import Studio
    from diffstudio.gui.views.gallery_view import GalleryView

    app = QApplication.instance() or QApplication([])
    preferences = Preferences(open_settings())
    preferences.workspace = workspace
    studio = Studio(preferences)

    class PaintProbe(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.painted_with_rows: float | None = None

        def eventFilter(self, watched: Any, event: Any) -> bool:
            if event.type() == QEvent.Type.Paint and self.painted_with_rows is None \
                    and view.model.rowCount() > 0:
                self.painted_with_rows = time.perf_counter()
            return False

    started = time.perf_counter()
    view = GalleryView(studio)
    probe = PaintProbe()
    view.list.viewport().installEventFilter(probe)
    view.resize(1440, 900)
    view.show()
    while probe.painted_with_rows is None and time.perf_counter() - started < 60:
        app.processEvents()
        time.sleep(0.001)
    first_paint = (probe.painted_with_rows or time.perf_counter()) - started
    rows = view.model.rowCount()

    def scroll(label: str) -> dict[str, Any]:
        bar = view.list.verticalScrollBar()
        bar.setValue(0)
        app.processEvents()
        step = max(1, view.delegate.cell + 40 + 4)  # one row of cells
        times = []
        value = 0
        while value < bar.maximum() and len(times) < scroll_steps:
            value += step
            tick = time.perf_counter()
            bar.setValue(value)
            view.list.viewport().repaint()
            app.processEvents()  # thumbnails that arrived become pixmaps here
            times.append(time.perf_counter() - tick)
        view.model.pool.waitForDone()
        app.processEvents()
        return {label: _percentiles(times)}

    results: dict[str, Any] = {"rows": rows, "first_paint_s": first_paint}
    results.update(scroll("scroll_cold"))
    view.model.set_cache(view.model.cache)  # forget pixmaps; the disk cache is warm now
    results.update(scroll("scroll_warm_disk_cache"))
    view.model.wait()
    view.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--thumbs", type=int, default=500)
    parser.add_argument("--scroll-steps", type=int, default=400)
    parser.add_argument("--ratios", action="store_true",
                        help="only the ratios: cold/incremental scan, serial/pooled thumbnails, "
                             "prune/rescan")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gallery-") as folder:
        workspace = Path(folder) / "workspace"
        started = time.perf_counter()
        make_workspace(workspace, args.samples)
        print(f"generated {args.samples} PNGs in {time.perf_counter() - started:.1f} s",
              flush=True)
        if args.ratios:
            ratios = bench_ratios(workspace, args.rounds)
            print(json.dumps(ratios, indent=1))
            print(f"{ratios['files']} PNGs: cold scan {ratios['cold_over_incremental']:.1f}x an "
                  f"incremental rescan (1 % changed); thumbnails serially "
                  f"{ratios['serial_over_pool']:.2f}x the 2-thread pool; pruning the cache "
                  f"{ratios['prune_over_rescan']:.2f}x an unchanged rescan")
            return 0
        figures = {"index": bench_index(workspace)}
        print(json.dumps(figures["index"], indent=1), flush=True)
        figures["thumbnails"] = bench_thumbnails(workspace, args.thumbs)
        print(json.dumps(figures["thumbnails"], indent=1), flush=True)
        figures["page"] = bench_page(workspace, args.scroll_steps)
        page = figures["page"]
        print(json.dumps(page, indent=1))
        print(f"first paint {page['first_paint_s']:.3f} s = "
              f"{page['first_paint_s'] / 1.0:.2f}x the 1 s target; scroll p99 cold "
              f"{page['scroll_cold']['p99_ms']:.1f} ms, warm "
              f"{page['scroll_warm_disk_cache']['p99_ms']:.1f} ms "
              f"(= {page['scroll_cold']['p99_ms'] / 50:.2f}x and "
              f"{page['scroll_warm_disk_cache']['p99_ms'] / 50:.2f}x the 50 ms target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
