"""``diffstudio queue``: the workspace's persistent job queue (see :mod:`diffstudio.app.job_queue`).

::

    diffstudio queue add [--again] VERB ARGS...    e.g. queue add train --out runs/a --steps 500
    diffstudio queue list [--json]                 every job, its status, progress and ETA
    diffstudio queue run [--once] [--wait]         run the pending jobs (Ctrl+C stops; resumable)
    diffstudio queue resume                        the same as run, after a kill or a reboot
    diffstudio queue cancel ID | retry ID | remove ID | move ID --to N | log ID
    diffstudio queue clear [--failed]

The queue lives in the workspace (``--workspace DIR``, default the window's workspace, else
``~/diffstudio-runs``): ``WORKSPACE/.diffstudio/queue.sqlite``, each job's output in
``queue-logs/ID.log``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from diffstudio.app.events import format_duration
from diffstudio.app.job_queue import JOB_VERBS, JobQueue, QueueUpdate, run_queue
from diffstudio.cli.options import ArgumentParser, drive
from diffstudio.plugin_manager import PluginRegistry
from diffstudio.plugin_settings import workspace_setting

__all__ = ["cmd_queue"]


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="diffstudio queue",
        description="The workspace's job queue: trainings, samplings, evaluations, exports and "
                    "experiments run one after another in worker processes, and continue "
                    "after a kill or a reboot ('diffstudio queue resume').")
    parser.add_argument("--workspace", metavar="DIR", default=None,
                        help="the workspace whose queue to use (default: the window's, else "
                             "~/diffstudio-runs)")
    verbs = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                  parser_class=ArgumentParser)
    add = verbs.add_parser("add", help="queue a diffstudio command (run later by 'queue run')")
    add.add_argument("--again", action="store_true",
                     help="queue it even when the same job already ran")
    add.add_argument("verb", choices=JOB_VERBS, metavar="VERB",
                     help=f"one of {', '.join(JOB_VERBS)}")
    add.add_argument("args", nargs="...", metavar="ARGS", help="the command's own arguments")
    listing = verbs.add_parser("list", help="the jobs, their status, progress and ETA")
    listing.add_argument("--json", action="store_true", help="print JSON")
    for name, text in (("run", "run the pending jobs in order"),
                       ("resume", "continue after a kill or a reboot (the same as run)")):
        verb = verbs.add_parser(name, help=text)
        verb.add_argument("--once", action="store_true", help="run one job, then stop")
        verb.add_argument("--wait", action="store_true",
                          help="when the queue is empty, wait for new jobs (Ctrl+C stops)")
        verb.add_argument("--quiet", action="store_true", help="no progress bars")
    for name, text in (("cancel", "cancel a pending job, or interrupt a running one"),
                       ("retry", "queue a finished, failed or cancelled job again"),
                       ("remove", "forget a job that is not running"),
                       ("log", "print a job's output")):
        verbs.add_parser(name, help=text).add_argument("id", type=int, metavar="ID")
    move = verbs.add_parser("move", help="reorder a pending job")
    move.add_argument("id", type=int, metavar="ID")
    move.add_argument("--to", type=int, required=True, metavar="N",
                      help="its new place among the pending jobs (1 = next to run)")
    clear = verbs.add_parser("clear", help="forget the done and cancelled jobs")
    clear.add_argument("--failed", action="store_true", help="the failed ones too")
    return parser


def _as_json(job: Any) -> dict[str, Any]:
    progress = job.progress
    return {"id": job.id, "verb": job.verb, "args": list(job.argv), "cwd": job.cwd,
            "status": job.status, "attempts": job.attempts, "created": job.created,
            "started": job.started, "finished": job.finished, "exit_code": job.exit_code,
            "error": job.error, "log": str(job.log), "command": job.command(),
            "progress": None if progress is None else {
                "stage": progress.stage, "done": progress.done, "total": progress.total,
                "unit": progress.unit, "rate": progress.rate, "eta": progress.eta,
                "text": progress.describe()}}


def _took(job: Any) -> str:
    if job.started and job.finished and job.status in ("done", "failed", "cancelled"):
        return f" ({format_duration(job.finished - job.started)})"
    return ""


def cmd_queue(argv: list[str], registry: PluginRegistry) -> int:
    """``diffstudio queue``; raises DiffstudioError on bad input (one line, status 2)."""
    args = _parser().parse_args(argv)
    workspace = args.workspace or workspace_setting()
    if args.action in ("run", "resume"):
        def show(event: Any, write: Any) -> None:
            if isinstance(event, QueueUpdate) and event.status != "running":
                # a failure's reason follows as a warning
                write(f"job #{event.id} {event.status}" + (
                    f": {event.error}" if event.error and event.status != "failed" else ""))
            elif isinstance(event, QueueUpdate):
                write(f"job #{event.id} running: {queue.get(event.id).command()}")

        queue = JobQueue(workspace)
        outcome = drive(run_queue(workspace, once=args.once, wait=args.wait),
                        quiet=args.quiet, on_event=show)
        print(f"queue {outcome.status}: {outcome.done} done, {outcome.failed} failed, "
              f"{outcome.cancelled} cancelled")
        return 1 if outcome.failed else 0
    queue = JobQueue(workspace)
    if args.action == "add":
        extra = list(args.args)
        if extra[:1] == ["--"]:
            extra = extra[1:]
        job = queue.add(args.verb, extra, again=args.again)
        pending = len(queue.jobs(("pending",)))
        print(f"queued #{job.id}: {job.command()} ({pending} pending; 'diffstudio queue run' "
              "runs them)")
        return 0
    if args.action == "list":
        jobs = queue.jobs()
        if args.json:
            print(json.dumps({"queue": str(queue.path), "jobs": [_as_json(j) for j in jobs]},
                             indent=2))
            return 0
        if not jobs:
            print(f"the queue is empty ({queue.path})")
        for job in jobs:
            print(job.describe() + _took(job))
        return 0
    if args.action == "clear":
        statuses = ("done", "cancelled", "failed") if args.failed else ("done", "cancelled")
        print(f"cleared {queue.clear(statuses)} job(s)")
        return 0
    if args.action == "log":
        job = queue.get(args.id)
        if not job.log.is_file():
            print(f"job #{job.id} has no output yet", file=sys.stderr)
            return 1
        sys.stdout.write(job.log.read_text(encoding="utf-8", errors="replace"))
        return 0
    if args.action == "cancel":
        job = queue.cancel(args.id)
        print(f"job #{job.id}: " + ("cancelled" if job.status == "cancelled" else
                                    "its runner interrupts it (a training checkpoints)"))
        return 0
    if args.action == "retry":
        print(f"job #{queue.retry(args.id).id} queued again")
        return 0
    if args.action == "remove":
        queue.remove(args.id)
        print(f"job #{args.id} removed")
        return 0
    job = queue.move(args.id, args.to - 1)
    place = [j.id for j in queue.jobs(("pending",))].index(job.id) + 1
    print(f"job #{job.id} is now number {place} of the pending jobs")
    return 0
