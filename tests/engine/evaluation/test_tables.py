"""Comparison tables: rows from result files, CSV and Markdown exports, the FID-vs-NFE series."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from diffstudio.engine.evaluation import (
    EvaluationError,
    fid_vs_evaluations,
    load_results,
    rows_from_results,
    to_csv,
    to_markdown,
    write_table,
)


def _result(run: str, sampler: str, steps: int, fid: float, kid: float, n: int = 2048,
            comparable: bool = True) -> dict:
    return {
        "format": "diffstudio-evaluation/1",
        "n": n,
        "metrics": {"fid": {"value": fid, "n": n}, "kid": {"mean": kid, "std": kid / 10}},
        "comparable_fid": comparable,
        "source": {"kind": "run", "run": f"/runs/{run}", "sampler": sampler, "steps": steps,
                   "network_evaluations": steps, "sampling_seconds_per_100": 0.5 * steps},
        "model": {"run_name": run, "network": "unet", "prediction_type": "epsilon",
                  "schedule": "cosine" if "cos" in run else "linear",
                  "training_seconds": 8280.0},
    }


RESULTS = [
    _result("ddpm-linear", "ddpm", 1000, 99.802, 0.05),
    _result("ddpm-linear", "ddim", 50, 103.322, 0.06),
    _result("ddpm-linear", "ddim", 10, 150.0, 0.09),
    _result("ddpm-cos", "ddim", 50, 113.433, 0.07, comparable=False),
]


def test_rows_carry_the_seed_table_columns():
    rows = rows_from_results(RESULTS)
    first = rows[0]
    assert (first.run, first.model, first.schedule, first.sampler, first.steps) == (
        "ddpm-linear", "unet (epsilon)", "linear", "ddpm", 1000)
    assert (first.network_evaluations, first.n, first.fid, first.kid) == (1000, 2048, 99.802, 0.05)
    assert first.training_seconds == 8280.0 and first.sampling_seconds_per_100 == 500.0


def test_csv_round_trips_and_markdown_shows_n_and_times():
    rows = rows_from_results(RESULTS)
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [float(r["fid"]) for r in parsed] == [99.802, 103.322, 150.0, 113.433]
    assert parsed[0]["sampling_seconds_per_100"] == "500.0"
    text = to_markdown(rows)
    assert "| Run | Model | Schedule | Sampler | Steps | Network evaluations | FID@N |" in text
    assert "99.802 @2048" in text and "2 h 18 min" in text and "8.3 min" in text
    assert "113.433 @2048 *" in text and "not a comparable FID" in text


def test_fid_against_network_evaluations_is_one_sorted_series_per_run_and_sampler():
    series = {s.label: s for s in fid_vs_evaluations(rows_from_results(RESULTS))}
    assert set(series) == {"ddpm-linear · ddpm", "ddpm-linear · ddim", "ddpm-cos · ddim"}
    ddim = series["ddpm-linear · ddim"]
    assert ddim.network_evaluations == [10, 50] and ddim.values == [150.0, 103.322]
    kid = {s.label: s for s in fid_vs_evaluations(rows_from_results(RESULTS), metric="kid")}
    assert kid["ddpm-linear · ddim"].values == [0.09, 0.06]
    with pytest.raises(EvaluationError):
        fid_vs_evaluations([], metric="is")


def test_results_are_read_from_run_folders_and_tables_never_overwrite(tmp_path):
    run = tmp_path / "ddpm-linear"
    (run / "evaluations").mkdir(parents=True)
    for index, result in enumerate(RESULTS[:3]):
        (run / "evaluations" / f"r{index}.json").write_text(json.dumps(result))
    (run / "evaluations" / "other.json").write_text('{"not": "a result"}')
    rows = load_results([run])
    assert len(rows) == 3 and rows[0].result_file.endswith("r0.json")
    out = write_table(rows, tmp_path / "table.md")
    assert out.read_text().startswith("| Run |")
    with pytest.raises(EvaluationError, match="already exists"):
        write_table(rows, out)
    with pytest.raises(EvaluationError, match=r"\.csv or \.md"):
        write_table(rows, tmp_path / "table.xlsx")
    # Replacing is allowed when asked (a save dialog that already asked the user).
    rewritten = write_table(rows[:1], out, overwrite=True)
    table_lines = [line for line in rewritten.read_text().splitlines() if line.startswith("| ")]
    assert len(table_lines) == 2  # the header and the one row


def test_a_workspace_scan_skips_unreadable_results_and_says_which(tmp_path):
    run = tmp_path / "ddpm-linear"
    (run / "evaluations").mkdir(parents=True)
    (run / "evaluations" / "good.json").write_text(json.dumps(RESULTS[0]))
    (run / "evaluations" / "torn.json").write_text('{"format": "diffstudio-eval')  # cut short
    with pytest.raises(EvaluationError, match=r"torn\.json"):
        load_results([run])
    problems: list[str] = []
    rows = load_results([run, tmp_path / "gone"], problems=problems)
    assert [Path(row.result_file).name for row in rows] == ["good.json"]
    assert len(problems) == 2
    assert any("torn.json" in text for text in problems)
    assert any("no evaluation result or run folder" in text and "gone" in text for text in problems)
