"""The workspace's sample index: incremental rescans by (mtime, size), stars that survive a
rescan and a move, filters and sorting, PNGs without metadata, thumbnails keyed by file state."""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffstudio.engine.pngmeta import write_png
from diffstudio.engine.sample_index import (
    SampleFilter,
    SampleIndex,
    group_records,
    period_bounds,
    read_record,
    sort_records,
)
from diffstudio.engine.thumbnails import ThumbnailCache, fit_nearest
from diffstudio.errors import ConfigError


def make_sample(path, *, seed, sampler="ddim", steps=10, run="/ws/run-a", class_label=None,
                guidance=None, value=None):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, (1, 8, 8)) if value is None else np.full((1, 8, 8), value)
    meta = {"run": run, "checkpoint": "step-00000008", "ema": True, "network_sha256": "ab" * 32,
            "sampler": sampler, "sampler_params": {"steps": steps, "eta": 0.0},
            "steps": steps, "network_evaluations": steps, "seed": seed, "index": 0,
            "backend": "torch-cpu", "guidance": guidance, "init_noise": False}
    if class_label is not None:
        meta["class_label"] = class_label
    write_png(path, image, meta)
    return path


@pytest.fixture
def workspace(tmp_path):
    samples = tmp_path / "ws" / "run-a" / "samples" / "ddim-1"
    for seed in range(3):
        make_sample(samples / f"sample-{seed:06d}.png", seed=seed)
    other = tmp_path / "ws" / "run-b" / "samples" / "ddpm-1"
    for seed in range(10, 12):
        make_sample(other / f"sample-{seed:06d}.png", seed=seed, sampler="ddpm", steps=50,
                    run="/ws/run-b", class_label=3, guidance=2.0)
    # Not samples: a grid, a training preview, a checkpoint folder's files, the state folder.
    write_png(samples / "grid.png", np.zeros((1, 8, 8)), {"kind": "grid"})
    write_png(tmp_path / "ws" / "run-a" / "previews" / "step-1.png", np.zeros((1, 8, 8)),
              {"kind": "preview"})
    write_png(tmp_path / "ws" / "run-a" / "odd-grid.png", np.zeros((1, 8, 8)), {"kind": "grid"})
    return tmp_path / "ws"


def test_a_first_scan_indexes_every_sample_and_nothing_else(workspace):
    index = SampleIndex(workspace)
    report = index.scan()
    assert (report.added, report.updated, report.removed) == (5, 0, 0)
    records = index.records(sort="seed", descending=False)
    assert [r.seed for r in records] == [0, 1, 2, 10, 11]
    first = records[0]
    assert (first.run, first.sampler, first.steps, first.folder) == ("run-a", "ddim", 10, "ddim-1")
    assert first.params == {"steps": 10, "eta": 0.0} and first.has_metadata
    assert (first.width, first.height) == (8, 8)
    ddpm = records[-1]
    assert (ddpm.class_label, ddpm.guidance, ddpm.backend) == (3, 2.0, "torch-cpu")
    assert index.database == workspace / ".diffstudio" / "gallery.sqlite"
    assert index.distinct("sampler") == ["ddim", "ddpm"]


def test_rescan_reads_only_what_changed_and_follows_adds_deletes_and_moves(workspace):
    index = SampleIndex(workspace)
    index.scan()
    a = workspace / "run-a" / "samples" / "ddim-1"
    index.set_starred([a / "sample-000001.png"], True)
    again = index.scan()
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 5)

    make_sample(a / "sample-000005.png", seed=5)                      # added
    (a / "sample-000000.png").unlink()                                # deleted
    moved = workspace / "elsewhere" / "kept.png"
    moved.parent.mkdir()
    os.replace(a / "sample-000001.png", moved)                        # moved (starred)
    changed = a / "sample-000002.png"
    make_sample(changed, seed=2, steps=99)                            # rewritten in place
    os.utime(changed, ns=(1, 1))
    report = index.scan()
    assert (report.added, report.updated, report.removed, report.moved) == (2, 1, 2, 1)
    by_path = {r.path: r for r in index.records()}
    assert str(a / "sample-000000.png") not in by_path
    assert by_path[str(moved)].starred and by_path[str(moved)].seed == 1
    assert by_path[str(changed)].steps == 99
    assert len(by_path) == 5


def test_a_copied_workspace_lists_its_own_samples_only(workspace, tmp_path):
    """The index travels with the workspace (.diffstudio/): a copy's first scan must not keep
    the original's rows beside its own."""
    SampleIndex(workspace).scan()
    copy = tmp_path / "copy"
    shutil.copytree(workspace, copy)
    index = SampleIndex(copy)
    report = index.scan()
    paths = [Path(r.path) for r in index.records()]
    assert len(paths) == 5 and all(p.is_relative_to(copy.resolve()) for p in paths)
    assert report.removed == 5  # the original's rows


def test_a_png_without_metadata_is_listed_with_unknown_parameters(workspace):
    Image.new("RGB", (20, 10), (200, 10, 10)).save(workspace / "photo.png")
    (workspace / "broken.png").write_bytes(b"not a png at all")
    (workspace / "empty.png").write_bytes(b"")
    index = SampleIndex(workspace)
    index.scan()
    plain = index.get(workspace / "photo.png")
    assert plain is not None and not plain.has_metadata
    assert plain.caption() == "unknown parameters" and plain.sampler == ""
    assert index.get(workspace / "broken.png") is None
    assert len(index.records()) == 6


def test_filters_and_sorting(workspace):
    index = SampleIndex(workspace)
    index.scan()
    index.set_starred([r.path for r in index.records() if r.seed == 11], True)

    def seeds(*pairs):
        return sorted(r.seed for r in index.records(SampleFilter.from_pairs(pairs)))

    assert seeds("sampler=ddpm") == [10, 11]
    assert seeds("run=run-a") == [0, 1, 2]
    assert seeds("run=/ws/run-b", "seed=10") == [10]
    assert seeds("steps=10") == [0, 1, 2]
    assert seeds("class=3", "guidance=2") == [10, 11]
    assert seeds("starred=yes") == [11]
    assert seeds("starred=no", "sampler=ddpm") == [10]
    assert seeds("since=2000-01-01") == [0, 1, 2, 10, 11]
    assert seeds("until=2000-01-01") == []
    assert seeds("text=ddpm-1") == [10, 11]
    records = index.records(sort="sampler", descending=True)
    assert [r.sampler for r in records][:2] == ["ddpm", "ddpm"]
    for bad in (["seed=abc"], ["colour=red"], ["nokey"]):
        with pytest.raises(ConfigError, match="--filter"):
            SampleFilter.from_pairs(bad)
    with pytest.raises(ConfigError, match="cannot sort"):
        sort_records([], "colour")


DAY = 86400.0


def test_a_date_range_is_the_index_query_and_periods_count_back_from_now(workspace,
                                                                         monkeypatch):
    """The date bounds are in the SQL query (through the date index), not only a filter over
    every row afterwards; today / 7d / 30d are periods ending now."""
    now = 1_750_000_000.0
    a = workspace / "run-a" / "samples" / "ddim-1"
    b = workspace / "run-b" / "samples" / "ddpm-1"
    ages = {a / "sample-000000.png": 0.1, a / "sample-000001.png": 3, a / "sample-000002.png": 10,
            b / "sample-000010.png": 40, b / "sample-000011.png": 400}
    for path, days in ages.items():
        stamp = int((now - days * DAY) * 1e9)
        os.utime(path, ns=(stamp, stamp))
    index = SampleIndex(workspace)
    index.scan()

    def seeds(since, until=None):
        return sorted(r.seed for r in index.records(SampleFilter(since=since, until=until)))

    assert seeds(*period_bounds("7d", now)) == [0, 1]
    assert seeds(*period_bounds("30d", now)) == [0, 1, 2]
    assert seeds(*period_bounds("all", now)) == [0, 1, 2, 10, 11]
    assert seeds(now - 50 * DAY, now - 5 * DAY) == [2, 10]  # a from-to range, until exclusive
    since, until = period_bounds("today", now)
    midnight = time.localtime(since)
    assert until is None and (midnight.tm_hour, midnight.tm_min, midnight.tm_sec) == (0, 0, 0)
    assert 0 <= now - since < DAY
    assert SampleFilter.from_pairs(["date=7d"]).since == pytest.approx(time.time() - 7 * DAY,
                                                                        abs=60)
    with pytest.raises(ConfigError, match="date period"):
        SampleFilter.from_pairs(["date=fortnight"])
    # The rows outside the range are not read: the query itself is bounded, by the index.
    statements = []
    connect = sqlite3.connect

    def traced(*args, **kwargs):
        connection = connect(*args, **kwargs)
        connection.set_trace_callback(statements.append)
        return connection

    monkeypatch.setattr("diffstudio.engine.sample_index.sqlite3.connect", traced)
    assert seeds(now - 5 * DAY) == [0, 1]
    query = next(sql for sql in statements if sql.startswith("SELECT") and "mtime_ns >= " in sql
                 and "LIMIT" not in sql and "mtime_ns < " not in sql and "FROM samples" in sql
                 and str(math.ceil((now - 5 * DAY) * 1e9)) in sql)
    with connect(index.database) as connection:
        plan = " ".join(str(row) for row in connection.execute(f"EXPLAIN QUERY PLAN {query}"))
    assert "samples_date" in plan
    assert index.count() == 5


def test_groups_by_run_or_sampler_in_name_order_keeping_the_sort(workspace):
    Image.new("RGB", (4, 4)).save(workspace / "photo.png")
    index = SampleIndex(workspace)
    index.scan()
    records = index.records(sort="seed", descending=True)
    groups = group_records(records, "sampler")
    assert [(name, [r.seed for r in members]) for name, members in groups] == [
        ("ddim", [2, 1, 0]), ("ddpm", [11, 10]), ("(unknown parameters)", [None])]
    assert [name for name, _ in group_records(records, "run")] == ["run-a", "run-b",
                                                                     "(no run)"]
    with pytest.raises(ConfigError, match="cannot group"):
        group_records(records, "colour")


def test_forget_drops_rows_and_the_index_is_one_sqlite_file(workspace):
    index = SampleIndex(workspace)
    index.scan()
    gone = index.records()[0]
    index.forget([gone.path])
    assert index.get(gone.path) is None and len(index.records()) == 4
    with sqlite3.connect(index.database) as connection:
        assert connection.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 4


def test_thumbnails_enlarge_small_images_with_nearest_and_follow_file_changes(tmp_path):
    sample = make_sample(tmp_path / "s.png", seed=3)
    cache = ThumbnailCache(tmp_path / "thumbs", box=128)
    first = cache.thumbnail(sample)
    with Image.open(first) as thumb, Image.open(sample) as original:
        assert thumb.size == (128, 128)
        pixels, source = np.asarray(thumb), np.asarray(original)
        # Every 16x16 block is one source pixel: nearest-neighbour, never blurred.
        np.testing.assert_array_equal(pixels[::16, ::16], source)
        np.testing.assert_array_equal(pixels, np.kron(source, np.ones((16, 16), np.uint8)))
    assert cache.thumbnail(sample) == first  # cached
    make_sample(sample, seed=4)
    os.utime(sample, ns=(5, 5))
    second = cache.thumbnail(sample)
    assert second != first
    big = Image.new("RGB", (400, 200))
    assert fit_nearest(big, 128).size == (128, 64)
    odd = Image.new("L", (48, 48))
    assert fit_nearest(odd, 128).size == (96, 96)  # whole factors only


def test_read_record_of_a_moved_tree_keeps_fields(tmp_path, workspace):
    copy = tmp_path / "copy"
    shutil.copytree(workspace / "run-b", copy)
    record = read_record(copy / "samples" / "ddpm-1" / "sample-000010.png")
    assert record is not None and record.run == "run-b" and record.seed == 10


def test_a_damaged_index_is_set_aside_and_rebuilt(workspace):
    index = SampleIndex(workspace)
    index.database.parent.mkdir(parents=True)
    index.database.write_bytes(b"this is not an sqlite database" * 100)
    report = index.scan()
    assert report.added == 5 and len(index.records()) == 5
    assert list(index.database.parent.glob("gallery.sqlite.damaged-*"))


def _cache_bytes(folder):
    return sum(p.stat().st_size for p in folder.rglob("*.png"))


def test_a_rescan_prunes_thumbnails_of_files_gone_or_changed(workspace, tmp_path):
    index = SampleIndex(workspace)
    index.scan()
    cache = ThumbnailCache(tmp_path / "thumbs")
    records = {r.seed: r for r in index.records()}
    made = {seed: cache.thumbnail(r.path, r.mtime_ns, r.size) for seed, r in records.items()}
    a = workspace / "run-a" / "samples" / "ddim-1"
    (a / "sample-000000.png").unlink()                      # gone
    make_sample(a / "sample-000001.png", seed=1, value=0.5)  # changed: a new key
    os.utime(a / "sample-000001.png", ns=(7, 7))
    stale = made[2].parent / ".x.png.abc.tmp"               # a killed writer's temporary file
    stale.write_bytes(b"partial")
    os.utime(stale, (1, 1))
    index.scan()
    report = cache.prune(index.file_states())
    assert report.orphans == 3 and report.kept == 3 and report.evicted == 0
    assert not made[0].exists() and not made[1].exists() and not stale.exists()
    assert all(made[seed].is_file() for seed in (2, 10, 11))
    assert report.bytes == _cache_bytes(tmp_path / "thumbs")


def test_the_thumbnail_cache_is_capped_least_recently_used_first(tmp_path):
    sources = [make_sample(tmp_path / f"s{i}.png", seed=i) for i in range(6)]
    probe = ThumbnailCache(tmp_path / "probe")
    one = max(probe.thumbnail(source).stat().st_size for source in sources)
    cache = ThumbnailCache(tmp_path / "thumbs")
    made = [cache.thumbnail(source) for source in sources[:4]]
    cache.max_bytes = _cache_bytes(tmp_path / "thumbs") - 1  # one too many now
    for age, path in enumerate(made):  # made[0] the oldest use, made[3] the newest
        os.utime(path, (1000 + age, 1000 + age))
    assert cache.thumbnail(sources[0]) == made[0]  # served again: now the most recent
    report = cache.trim()
    assert report.evicted == 1 and not made[1].exists()  # the least recently used went
    assert made[0].is_file() and made[2].is_file() and made[3].is_file()
    assert _cache_bytes(tmp_path / "thumbs") <= cache.max_bytes
    # Writing more trims by itself: the cache stays within its cap (plus the eighth written
    # between two trims).
    small = ThumbnailCache(tmp_path / "small", max_bytes=one * 2)
    for source in sources:
        small.thumbnail(source)
    assert _cache_bytes(tmp_path / "small") <= small.max_bytes * 9 // 8 + one
    assert len(list((tmp_path / "small").rglob("*.png"))) < len(sources)
