"""An experiment's report: where its queue stands, and its tables and plots.

:func:`report_rows` reads the result file of every finished cell into a :class:`ReportRow`
(the comparison table's :class:`~diffstudio.engine.evaluation.tables.ComparisonRow` plus the
cell: training, sampler label, seed, and the published FID to print beside ours).
:func:`write_report` writes, atomically, into ``FOLDER/report/``::

    report.md                       the table of every cell, a training x sampler grid of
                                    FID@N (mean over seeds), the published numbers beside ours
    results.csv                     one line per cell, raw numbers (seconds)
    fid-vs-network-evaluations.png  FID@N against network evaluations, one line per
    kid-vs-network-evaluations.png  training and sampler, N in the legend (and KID)

The plots are drawn with Pillow (no matplotlib, no Qt). Nothing here imports torch.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from diffstudio.app.experiment import PlannedJob, experiment_folder, plan
from diffstudio.app.experiment_file import Experiment, load_experiment
from diffstudio.engine.evaluation.tables import (
    ComparisonRow,
    dataclass_csv,
    fid_text,
    format_duration,
    kid_text,
    row_from_result,
)
from diffstudio.errors import ConfigError

__all__ = [
    "ReportRow",
    "open_experiment",
    "plot_png",
    "report_rows",
    "status_lines",
    "write_report",
]

# FID at N below this is strongly biased upwards (Chong & Forsyth 2020); KID is not.
FID_UNBIASED_N = 2048


def open_experiment(location: str | Path, registry: Any, out: str | Path | None = None
                    ) -> tuple[Experiment, Path]:
    """An experiment and its folder from a FILE (its folder: ``out`` or
    ``./experiments/NAME``) or from an experiment FOLDER (it keeps the file it last ran)."""
    path = Path(location).expanduser()
    if path.is_dir():
        file = path / "experiment.toml"
        if not file.is_file():
            raise ConfigError(f"{path} is not an experiment folder (no experiment.toml); give "
                              "the experiment file, or the folder 'diffstudio experiment run' "
                              "made")
        return load_experiment(file, registry), Path(out).expanduser() if out else path
    if not path.is_file():
        raise ConfigError(f"no experiment file or folder at {location}")
    experiment = load_experiment(path, registry)
    return experiment, experiment_folder(experiment, out)


def status_lines(jobs: Sequence[PlannedJob]) -> list[str]:
    """One line per job ("done", "pending", ...) and a count line."""
    lines = [f"{job.status:<8} {job.describe()}" + (f": {job.error}" if job.error and
                                                     job.status == "failed" else "")
             for job in jobs]
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    lines.append(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) +
                 f" of {len(jobs)} jobs")
    return lines


@dataclass
class ReportRow(ComparisonRow):
    """A finished cell: its comparison row and where it sits in the grid."""

    training: str = ""
    sampler_label: str = ""
    sampler_setting: str = ""
    seed: int = 0
    published_fid: float | None = None


def report_rows(experiment: Experiment, folder: str | Path) -> list[ReportRow]:
    """A row per finished cell, in the grid's order."""
    folder = Path(folder)
    rows = []
    for job in plan(experiment, folder):
        if job.cell is None or job.status != "done" or not job.result:
            continue
        data = json.loads((folder / job.result).read_text(encoding="utf-8"))
        base = row_from_result(data, str(folder / job.result))
        rows.append(ReportRow(
            **asdict(base), training=job.training, sampler_label=job.cell.sampler.label,
            sampler_setting=job.cell.sampler.name, seed=job.cell.seed,
            published_fid=experiment.published_for(job.training, job.cell.sampler)))
    return rows


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _markdown(experiment: Experiment, rows: Sequence[ReportRow], jobs: Sequence[PlannedJob]
              ) -> str:
    lines = [f"# Experiment {experiment.name}", ""]
    if experiment.description:
        lines += [experiment.description, ""]
    done = sum(job.status == "done" for job in jobs)
    lines += [f"{done} of {len(jobs)} jobs done.", ""]
    published = any(row.published_fid is not None for row in rows)
    header = ["Training", "Schedule", "Sampler", "Steps", "Network evaluations", "Seed",
              "FID@N", "KID", "Training time", "Sampling time / 100 samples"]
    if published:
        header.insert(7, "Published FID")
    lines += ["## Every cell", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = [row.training, row.schedule or "-", row.sampler_label,
                  "-" if row.steps is None else row.steps,
                  "-" if row.network_evaluations is None else row.network_evaluations,
                  row.seed, fid_text(row), kid_text(row), format_duration(row.training_seconds),
                  format_duration(row.sampling_seconds_per_100)]
        if published:
            values.insert(7, "-" if row.published_fid is None else f"{row.published_fid:g}")
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |")
    # The grid: trainings x sampler settings, FID@N averaged over the seeds.
    settings = list(dict.fromkeys(s.name for s in experiment.samplers))
    lines += ["", "## FID@N by training and sampler (mean over seeds)", "",
              "| Training | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for training in experiment.trainings:
        cells = []
        for name in settings:
            found = [r for r in rows if r.training == training.name and r.sampler_setting ==
                     name and r.fid is not None]
            mean = _mean([r.fid for r in found if r.fid is not None])
            cells.append("-" if mean is None else f"{mean:.3f} @{found[0].n}")
        lines.append(f"| {training.name} | " + " | ".join(cells) + " |")
    notes = []
    sizes = sorted({row.n for row in rows})
    if sizes and sizes[0] < FID_UNBIASED_N:
        notes.append(f"FID is computed at N = {', '.join(map(str, sizes))} samples; below "
                     f"N = {FID_UNBIASED_N} it is biased upwards and only comparable at equal "
                     "N. KID is unbiased at any N.")
    if any(row.fid is not None and not row.comparable_fid for row in rows):
        notes.append("\\* not a comparable FID (random or unverified Inception weights).")
    if published:
        notes.append("Published FID: " + (experiment.published_note or
                                           "numbers given in the experiment file") +
                     "; they were measured at their own N and data, so compare trends, not "
                     "values.")
    failed = [job for job in jobs if job.status == "failed"]
    if failed:
        notes += [f"failed: {job.describe()}: {job.error}" for job in failed]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _csv(rows: Sequence[ReportRow]) -> str:
    return dataclass_csv(rows, ReportRow)  # the Comparison table's writer


def _series(rows: Sequence[ReportRow], metric: str) -> list[tuple[str, list[tuple[float, float]]]]:
    """(label with N, [(network evaluations, mean value over seeds)]) per training+sampler."""
    grouped: dict[str, dict[int, list[float]]] = {}
    sizes: dict[str, set[int]] = {}
    for row in rows:
        value = getattr(row, metric)
        if value is None or row.network_evaluations is None:
            continue
        label = f"{row.training} · {row.sampler_label}"
        grouped.setdefault(label, {}).setdefault(int(row.network_evaluations), []).append(value)
        sizes.setdefault(label, set()).add(row.n)
    series = []
    for label, points in grouped.items():
        n = "/".join(str(v) for v in sorted(sizes[label]))
        series.append((f"{label}  ({metric.upper()}@{n})",
                       [(float(x), sum(v) / len(v)) for x, v in sorted(points.items())]))
    return series


_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def plot_png(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, title: str,
             y_label: str, size: tuple[int, int] = (900, 560)) -> bytes:
    """A line plot as PNG bytes: x (network evaluations) on a log scale when it spans more
    than a decade, one coloured line with markers per series, a legend."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    left, right, top = 80, 30, 40
    legend_height = 16 * max(1, len(series)) + 10
    bottom = 50 + legend_height
    xs = [x for _, points in series for x, _ in points] or [1.0]
    ys = [y for _, points in series for _, y in points] or [0.0]
    log_x = min(xs) > 0 and max(xs) / min(xs) > 10
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    x_low, x_high = fx(min(xs)), fx(max(xs))
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    x_pad = (x_high - x_low) * 0.04  # markers at the ends stay inside the frame
    x_low, x_high = x_low - x_pad, x_high + x_pad
    y_low, y_high = min(ys), max(ys)
    pad = (y_high - y_low) * 0.08 or abs(y_high) * 0.1 or 1.0
    y_low, y_high = y_low - pad, y_high + pad
    plot_w, plot_h = width - left - right, height - top - bottom

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (fx(x) - x_low) / (x_high - x_low) * plot_w,
                top + (1 - (y - y_low) / (y_high - y_low)) * plot_h)

    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=(0, 0, 0))
    draw.text((left, 12), title, fill=(0, 0, 0), font=font)
    for tick in _ticks(y_low, y_high):
        _, py = to_px(min(xs), tick)
        draw.line([left, py, left + plot_w, py], fill=(225, 225, 225))
        draw.text((6, py - 6), f"{tick:.4g}", fill=(0, 0, 0), font=font)
    x_ticks = sorted(set(xs)) if len(set(xs)) <= 12 else [
        10 ** t if log_x else t for t in _ticks(x_low, x_high)]
    for tick in x_ticks:
        px, _ = to_px(tick, y_low)
        draw.line([px, top + plot_h, px, top + plot_h + 4], fill=(0, 0, 0))
        draw.text((px - 10, top + plot_h + 8), f"{tick:.4g}", fill=(0, 0, 0), font=font)
    draw.text((left + plot_w // 2 - 120, top + plot_h + 24),
              "network evaluations" + (" (log scale)" if log_x else ""), fill=(0, 0, 0),
              font=font)
    draw.text((6, top - 16), y_label, fill=(0, 0, 0), font=font)
    for index, (label, points) in enumerate(series):
        colour = _COLOURS[index % len(_COLOURS)]
        pixels = [to_px(x, y) for x, y in points]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        for px, py in pixels:
            draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=colour)
        ly = top + plot_h + 44 + 16 * index
        draw.line([left, ly + 6, left + 24, ly + 6], fill=colour, width=3)
        draw.text((left + 32, ly), label, fill=(0, 0, 0), font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_report(experiment: Experiment, folder: str | Path) -> list[Path]:
    """Write the report (Markdown, CSV, a PNG per metric present); returns the files."""
    from diffstudio.engine.io import atomic_write_bytes, atomic_write_text

    folder = Path(folder)
    if not (folder / "state.json").is_file():
        raise ConfigError(f"the experiment {experiment.name} has not run in {folder} yet; "
                          "run it with 'diffstudio experiment run FILE' (or give --out)")
    jobs = plan(experiment, folder)
    rows = report_rows(experiment, folder)
    out = folder / "report"
    written = [out / "report.md", out / "results.csv"]
    atomic_write_text(written[0], _markdown(experiment, rows, jobs))
    atomic_write_text(written[1], _csv(rows))
    for metric, name in (("fid", "FID"), ("kid", "KID")):
        series = _series(rows, metric)
        if not series:
            continue
        sizes = sorted({row.n for row in rows if getattr(row, metric) is not None})
        label = f"{name}@N (N = {', '.join(map(str, sizes))})"
        png = plot_png(series, title=f"{experiment.name}: {name} against network evaluations",
                       y_label=label)
        path = out / f"{metric}-vs-network-evaluations.png"
        atomic_write_bytes(path, png)
        written.append(path)
    return written
