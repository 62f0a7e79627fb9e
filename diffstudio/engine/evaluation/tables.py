"""Comparison tables over runs and samplers, for the user's own runs.

The classic comparison: DDPM (Ho et al. 2020, arXiv:2006.11239) and DDIM (Song et al. 2020,
arXiv:2010.02502, Table 1) trained with the linear or the cosine schedule (Nichol & Dhariwal
2021, arXiv:2102.09672) — FID, training time, sampling time for 100 samples — and sampling with
50 or 1000 steps.
Here a row is one evaluation result (a run, a checkpoint, a sampler and its steps)::

    run | model | schedule | sampler | steps | network evaluations | N | FID@N | KID (+- std)
        | training time | sampling time per 100 samples

Rows come from :class:`~.result.EvaluationResult` objects or from the JSON files evaluations
write (``run/evaluations/*.json``, ``samples/*/evaluation-*.json``). Tables export as CSV (raw
numbers, seconds) and Markdown (formatted); :func:`fid_vs_evaluations` gives the series for a plot
of FID (or KID) against network evaluations, one series per run and sampler.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from diffstudio.engine.io import atomic_write_text
from diffstudio.errors import EvaluationError

__all__ = [
    "ComparisonRow",
    "Series",
    "dataclass_csv",
    "fid_text",
    "fid_vs_evaluations",
    "format_duration",
    "kid_text",
    "load_results",
    "row_from_result",
    "rows_from_results",
    "to_csv",
    "to_markdown",
    "write_table",
]


@dataclass
class ComparisonRow:
    """One evaluation, as a table row. Times are in seconds; None when not known."""

    run: str
    model: str
    schedule: str | None
    sampler: str | None
    steps: int | None
    network_evaluations: int | None
    n: int
    fid: float | None
    kid: float | None
    kid_std: float | None
    training_seconds: float | None
    sampling_seconds_per_100: float | None
    comparable_fid: bool = False
    result_file: str | None = None


def _as_dict(result: Any) -> Mapping[str, Any]:
    return result.to_dict() if hasattr(result, "to_dict") else result


def row_from_result(result: Any, result_file: str | None = None) -> ComparisonRow:
    """A row from an :class:`~.evaluate.EvaluationResult` or its JSON dict."""
    data = _as_dict(result)
    source = data.get("source") or {}
    model = data.get("model") or {}
    metrics = data.get("metrics") or {}
    fid = (metrics.get("fid") or {}).get("value")
    kid = metrics.get("kid") or {}
    network = model.get("network")
    prediction = model.get("prediction_type")
    described = f"{network} ({prediction})" if network and prediction else (network or "-")
    run_name = model.get("run_name") or (Path(source["run"]).name if source.get("run") else
                                         Path(source.get("folder") or "-").name)
    path = result_file or (str(result.path) if getattr(result, "path", None) else None)
    return ComparisonRow(
        run=run_name,
        model=described,
        schedule=model.get("schedule"),
        sampler=source.get("sampler"),
        steps=source.get("steps"),
        network_evaluations=source.get("network_evaluations"),
        n=int(data.get("n") or 0),
        fid=fid,
        kid=kid.get("mean"),
        kid_std=kid.get("std"),
        training_seconds=model.get("training_seconds"),
        sampling_seconds_per_100=source.get("sampling_seconds_per_100"),
        comparable_fid=bool(data.get("comparable_fid")),
        result_file=path,
    )


def rows_from_results(results: Iterable[Any]) -> list[ComparisonRow]:
    return [row_from_result(result) for result in results]


def load_results(
    paths: Iterable[str | Path], *, problems: list[str] | None = None
) -> list[ComparisonRow]:
    """Rows from result files, or from every result inside run folders / samples folders.

    With ``problems`` (a list), a missing path or an unreadable file is described there and
    skipped (a workspace scan shows what it can); without it, the first one raises.
    """
    files: list[Path] = []
    for entry in paths:
        path = Path(entry).expanduser()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(sorted((path / "evaluations").glob("*.json")))
            files.extend(sorted(path.glob("evaluation-*.json")))
            files.extend(sorted(path.glob("samples/*/evaluation-*.json")))
        else:
            _problem(problems, f"no evaluation result or run folder at {path}")
    rows = []
    for file in files:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            _problem(problems, f"cannot read the evaluation result {file}: {exc}", exc)
            continue
        if isinstance(data, dict) and str(data.get("format", "")).startswith(
            "diffstudio-evaluation/"
        ):
            rows.append(row_from_result(data, str(file)))
    return rows


def _problem(problems: list[str] | None, message: str, cause: Exception | None = None) -> None:
    if problems is None:
        raise EvaluationError(message) from cause
    problems.append(message)


def to_csv(rows: Sequence[ComparisonRow]) -> str:
    """CSV with a header of the field names; numbers unformatted, times in seconds."""
    return dataclass_csv(rows, ComparisonRow)


def dataclass_csv(rows: Sequence[Any], row_type: type) -> str:
    """Rows of the dataclass ``row_type`` as CSV: a header of its field names, None as empty."""
    buffer = io.StringIO()
    names = [f.name for f in fields(row_type)]
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
    return buffer.getvalue()


def format_duration(seconds: float | None) -> str:
    """'-', '12.3 s', '8.3 min' or '2 h 18 min'."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def fid_text(row: ComparisonRow) -> str:
    """'12.345 @2048', with ' *' for random or unverified weights; '-' when not computed."""
    if row.fid is None:
        return "-"
    return f"{row.fid:.3f} @{row.n}" + ("" if row.comparable_fid else " *")


def kid_text(row: ComparisonRow) -> str:
    """'0.01234 ± 0.00056'; '-' when not computed."""
    return "-" if row.kid is None else f"{row.kid:.5f} ± {row.kid_std or 0:.5f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: Sequence[ComparisonRow]) -> str:
    """A Markdown table (run, model, sampler, steps, N, FID@N, times), FID marked with its N;
    '*' marks a FID made with unverified or random weights (not comparable)."""
    header = ["Run", "Model", "Schedule", "Sampler", "Steps", "Network evaluations", "FID@N",
              "KID", "Training time", "Sampling time / 100 samples"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        fid, kid = fid_text(row), kid_text(row)
        values = [row.run, row.model, row.schedule or "-", row.sampler or "-",
                  "-" if row.steps is None else row.steps,
                  "-" if row.network_evaluations is None else row.network_evaluations,
                  fid, kid, format_duration(row.training_seconds),
                  format_duration(row.sampling_seconds_per_100)]
        lines.append("| " + " | ".join(_cell(v) for v in values) + " |")
    if any(row.fid is not None and not row.comparable_fid for row in rows):
        lines.append("")
        lines.append("\\* not a comparable FID (random or unverified Inception weights)")
    return "\n".join(lines) + "\n"


def write_table(
    rows: Sequence[ComparisonRow], path: str | Path, *, overwrite: bool = False
) -> Path:
    """Write ``.csv`` or ``.md`` (by the suffix) atomically; an existing file is replaced only
    with ``overwrite`` (a save dialog that already asked)."""
    target = Path(path).expanduser()
    if target.suffix.lower() not in (".csv", ".md"):
        raise EvaluationError(f"export a table as .csv or .md, not {target.suffix or target.name}")
    if target.exists() and not overwrite:
        raise EvaluationError(f"{target} already exists; choose another name or delete it first")
    text = to_csv(rows) if target.suffix.lower() == ".csv" else to_markdown(rows)
    atomic_write_text(target, text)
    return target


@dataclass
class Series:
    """One line of the plot: ``values`` against ``network_evaluations``, sorted by the latter."""

    label: str
    network_evaluations: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    n: list[int] = field(default_factory=list)


def fid_vs_evaluations(rows: Sequence[ComparisonRow], metric: str = "fid") -> list[Series]:
    """Series of ``metric`` ("fid" or "kid") against network evaluations, one per run+sampler.

    Rows without network evaluations or without the metric are left out. FIDs at different N
    are not comparable, so each point keeps its N (``Series.n``).
    """
    if metric not in ("fid", "kid"):
        raise EvaluationError(f"plot fid or kid against network evaluations, not {metric!r}")
    grouped: dict[str, list[tuple[int, float, int]]] = {}
    for row in rows:
        value = getattr(row, metric)
        if value is None or row.network_evaluations is None:
            continue
        label = f"{row.run} · {row.sampler}"
        grouped.setdefault(label, []).append((int(row.network_evaluations), float(value), row.n))
    series = []
    for label, points in grouped.items():
        points.sort()
        series.append(Series(label, [p[0] for p in points], [p[1] for p in points],
                             [p[2] for p in points]))
    return series
