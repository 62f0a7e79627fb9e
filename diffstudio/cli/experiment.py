"""``diffstudio experiment``: run a grid of trainings x samplers from a TOML file, see where it
stands, and write its report.

::

    diffstudio experiment run FILE [--out DIR] [--dry-run] [--max-jobs N]
                                   [--executor local|slurm|submitit-local]
    diffstudio experiment status FILE_OR_FOLDER [--out DIR] [--json]
    diffstudio experiment report FILE_OR_FOLDER [--out DIR]

The whole file is validated before anything starts (an error names its line). ``run`` keeps
its queue in the experiment's folder (``--out``, default ``./experiments/NAME``): run it again
after a kill or a reboot and finished jobs are skipped, an unfinished training resumes from its
last checkpoint. ``run`` ends by writing the report (``report/report.md``, ``results.csv`` and
the FID/KID against network evaluations plots). The file format: ``docs/experiments.md``;
presets: ``diffstudio experiment presets``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from diffstudio.app.experiment import ExperimentRequest, current_status, run_experiment
from diffstudio.app.experiment_file import EXECUTORS, preset_path, presets
from diffstudio.app.experiment_report import open_experiment, status_lines, write_report
from diffstudio.cli.options import ArgumentParser, drive
from diffstudio.plugin_manager import PluginRegistry

__all__ = ["cmd_experiment"]


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="diffstudio experiment",
        description="Experiments: trainings x samplers x seeds evaluated with FID@N and KID, "
                    "from one TOML file (see docs/experiments.md), with a queue that survives "
                    "a kill or a reboot.",
    )
    verbs = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                  parser_class=ArgumentParser)
    run = verbs.add_parser("run", help="run (or continue) an experiment file")
    run.add_argument("file", metavar="FILE", help="experiment TOML file, or a preset name")
    run.add_argument("--dry-run", action="store_true",
                     help="validate and list the jobs (and which are done); run nothing")
    run.add_argument("--max-jobs", type=int, default=None, metavar="N",
                     help="stop after running N jobs (the rest stay queued)")
    run.add_argument("--no-retry", action="store_true", help="do not run failed jobs again")
    run.add_argument("--executor", choices=EXECUTORS, default=None,
                     help="where the jobs run: in this process (local, the default), one "
                          "Slurm job each through submitit (slurm), or one process each "
                          "through submitit's local executor (submitit-local); overrides "
                          "the file's [executor] kind")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    for name, text in (("status", "where each job of the experiment stands"),
                       ("report", "write the Markdown + CSV tables and the PNG plots")):
        verb = verbs.add_parser(name, help=text)
        verb.add_argument("file", metavar="FILE_OR_FOLDER",
                          help="the experiment file (or preset name), or its folder")
        if name == "status":
            verb.add_argument("--json", action="store_true", help="print JSON")
    for verb in (run, verbs.choices["status"], verbs.choices["report"]):
        verb.add_argument("--out", default=None, metavar="DIR",
                          help="the experiment's folder (default ./experiments/NAME)")
    verbs.add_parser("presets", help="list the experiment files shipped with diffstudio")
    return parser


def _file(name: str) -> str:
    """A path, or the name of a shipped preset (``seed-table1-digits``)."""
    found = preset_path(name)
    return str(found) if found is not None else name


def cmd_experiment(argv: list[str], registry: PluginRegistry) -> int:
    """``diffstudio experiment``; raises DiffstudioError on bad input (one line, status 2)."""
    args = _parser().parse_args(argv)
    if args.action == "presets":
        for path in presets():
            print(f"{path.stem:<28} {path}")
        return 0
    if args.action == "run":
        def show(event: Any, write: Any) -> None:
            if type(event).__name__ == "JobUpdate" and event.status in ("done", "failed"):
                write(f"{event.status}: {event.key}" + (f": {event.error}" if event.error
                                                         else ""))

        request = ExperimentRequest(file=_file(args.file), out=args.out, dry_run=args.dry_run,
                                    max_jobs=args.max_jobs, retry_failed=not args.no_retry,
                                    executor=args.executor)
        outcome = drive(run_experiment(request, registry=registry), quiet=args.quiet,
                        on_event=show)
        if args.dry_run:
            for line in status_lines(outcome.jobs):
                print(line)
            print(f"folder: {outcome.folder}")
            return 0
        experiment, folder = open_experiment(outcome.folder, registry)
        paths = write_report(experiment, folder)
        print(f"{outcome.status}: ran {outcome.ran} job(s), skipped {outcome.skipped} "
              f"finished one(s); {len(outcome.failed)} failed")
        print(f"report: {paths[0]}")
        if outcome.failed:
            print(f"diffstudio experiment: {len(outcome.failed)} job(s) failed "
                  f"({', '.join(outcome.failed)}); see 'diffstudio experiment status "
                  f"{folder}'", file=sys.stderr)
            return 1
        return 0
    experiment, folder = open_experiment(_file(args.file), registry, args.out)
    if args.action == "status":
        jobs = current_status(experiment, folder)
        if args.json:
            print(json.dumps({"folder": str(folder), "jobs": [
                {"key": j.key, "kind": j.kind, "status": j.status, "result": j.result,
                 "error": j.error} for j in jobs]}, indent=2))
            return 0
        print(f"experiment {experiment.name} in {folder}")
        for line in status_lines(jobs):
            print(line)
        return 0
    for path in write_report(experiment, folder):
        print(path)
    return 0
