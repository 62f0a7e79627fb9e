"""What every verb of the command line shares: options generated from a parameter schema,
argument errors in one line, and a terminal front end for the application layer's jobs.

A schema parameter ``class_conditional`` of a contribution of kind ``network`` becomes
``--network.class-conditional`` (``--network.class_conditional`` is accepted too); its value is
collected under ``param:network:class_conditional`` and validated by the contribution. A
training setting ``batch_size`` becomes ``--batch-size``.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

from diffstudio.app.events import Done, Note, Progress, format_duration
from diffstudio.specs import Contribution, Param

__all__ = [
    "ArgumentParser",
    "add_contribution_options",
    "add_param_option",
    "collect",
    "drive",
    "param_help",
]


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors that suggest the nearest valid option."""

    def error(self, message: str) -> NoReturn:
        if "unrecognized arguments:" in message:
            unknown = message.split("unrecognized arguments:", 1)[1].split()
            hints = []
            flags = [flag for action in self._actions for flag in action.option_strings]
            for token in unknown:
                if token.startswith("-"):
                    close = difflib.get_close_matches(token.split("=")[0], flags, n=1)
                    if close:
                        hints.append(f"{token}: did you mean {close[0]}?")
            if hints:
                message += " (" + "; ".join(hints) + ")"
        elif "invalid choice:" in message:
            message = message.split(" (choose from")[0]
            choices = [a for a in self._actions if a.choices]
            if choices:
                options = [str(choice) for choice in choices[0].choices]
                given = message.split("invalid choice:", 1)[1].strip().strip("'\"")
                close = difflib.get_close_matches(given, options, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                message += f" ({hint}choose from {', '.join(options)})"
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def param_help(param: Param) -> str:
    text = param.help or param.name
    if param.type == "choice":
        text += f" (one of: {', '.join(map(str, param.choices or ()))})"
    elif param.minimum is not None or param.maximum is not None:
        low = param.minimum if param.minimum is not None else "-inf"
        high = param.maximum if param.maximum is not None else "inf"
        text += f" (range {low}..{high})"
    return text + f"; default {param.default!r}"


def add_param_option(group: Any, param: Param, prefix: str, dest: str) -> None:
    """``--PREFIXname-with-dashes`` (and the underscore spelling) for one schema parameter;
    the value is validated later by the schema, so a bad value gets the schema's message."""
    dashed = f"--{prefix}{param.name.replace('_', '-')}"
    flags = [dashed]
    if "_" in param.name:
        flags.append(f"--{prefix}{param.name}")
    group.add_argument(*flags, dest=dest, default=None, metavar=param.type.upper(),
                       help=param_help(param))


def add_contribution_options(
    parser: argparse.ArgumentParser,
    contribution: Contribution,
    prefix: str,
    dest_kind: str | None = None,
) -> None:
    """Options for each schema parameter; values land under ``param:<dest_kind>:<name>``
    (``dest_kind`` defaults to the contribution's kind; ``eval`` uses "reference")."""
    dest_kind = dest_kind or contribution.kind
    group = parser.add_argument_group(
        f"{dest_kind} {contribution.id!r} ({contribution.display_name})",
        contribution.description,
    )
    for param in contribution.params:
        add_param_option(group, param, prefix, f"param:{dest_kind}:{param.name}")


def collect(namespace: argparse.Namespace, kind: str) -> dict[str, Any]:
    """The schema values given on the command line for ``kind`` (unset ones left out)."""
    values = {}
    for key, value in vars(namespace).items():
        if key.startswith(f"param:{kind}:") and value is not None:
            values[key.split(":", 2)[2]] = value
    return values


class _Bars:
    """One tqdm bar per Progress stage, on stderr; the postfix shows the rate and ETA that the
    window shows, from the same event."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bars: dict[str, Any] = {}

    def update(self, event: Progress) -> None:
        if self.quiet or event.total <= 0:
            return  # nothing known to count against yet (a download before its size)
        from tqdm import tqdm

        bar = self.bars.get(event.stage)
        if bar is None:
            if event.done >= event.total and event.stage in ("weights",
                                                                             "reference"):
                print(f"{event.stage}: {event.detail or 'ready'}", file=sys.stderr)
                return  # found, not computed: one line, no bar
            # tqdm's own remaining-time estimate is left out of the bar: the ETA shown is the
            # event's (Progress.eta, the trainer's own for training), the one the window shows.
            bar = self.bars[event.stage] = tqdm(
                total=event.total, desc=event.stage, unit=event.unit,
                file=sys.stderr, dynamic_ncols=True, leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                           "[{elapsed}{postfix}]",
            )
        if bar.total != event.total:
            bar.total = event.total
        bar.update(event.done - bar.n)
        postfix = []
        if event.rate is not None:
            postfix.append(f"{event.rate:,.0f}/s")
        if event.detail:
            postfix.append(event.detail[:40])
        eta = event.eta
        if eta is not None and event.done < event.total:
            postfix.append(f"ETA {format_duration(eta)}")
        if postfix:
            bar.set_postfix_str(", ".join(postfix), refresh=False)

    def write(self, text: str) -> None:
        if self.bars:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def drive(events: Iterable[Any], *, quiet: bool = False,
          on_event: Any = None) -> Any:
    """Run a job in the terminal: a bar per stage, notes on stderr; returns the job's result.

    ``on_event(event, write)`` sees every other event (a logged training step, a checkpoint)
    and may print with ``write``. Ctrl+C closes the job (a training writes its checkpoint).
    """
    report = _ProgressReport.from_environment()
    # Run by the queue: the progress goes to its file, not as bars into the job's log.
    bars = _Bars(quiet or report is not None)
    iterator: Iterator[Any] = iter(events)
    try:
        for event in iterator:
            if isinstance(event, Done):
                return event.result
            if isinstance(event, Progress):
                bars.update(event)
                if report is not None:
                    report.update(event)
            elif isinstance(event, Note):
                if not quiet or event.level == "warning":
                    bars.write(f"{'warning' if event.level == 'warning' else 'note'}: "
                               f"{event.text}")
            elif on_event is not None:
                on_event(event, bars.write)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
        bars.close()
        if report is not None:
            report.flush()
    raise RuntimeError("the job ended without a result")


class _ProgressReport:
    """For a job run by the queue (``DIFFSTUDIO_PROGRESS_FILE`` set): the newest Progress,
    written to that file at most twice a second and once more at the end -- the same object
    the terminal bar shows, so the queue's figures are the log's."""

    interval = 0.5

    def __init__(self, path: str) -> None:
        self.path = path
        self.latest: Progress | None = None
        self.written = 0.0
        self.dirty = False

    @classmethod
    def from_environment(cls) -> _ProgressReport | None:
        import os

        from diffstudio.app.job_queue import PROGRESS_FILE_VARIABLE

        path = os.environ.get(PROGRESS_FILE_VARIABLE)
        return cls(path) if path else None

    def update(self, progress: Progress) -> None:
        import time

        self.latest, self.dirty = progress, True
        now = time.monotonic()
        if now - self.written >= self.interval:
            self.flush()
            self.written = now

    def flush(self) -> None:
        from diffstudio.app.job_queue import write_progress

        if self.dirty and self.latest is not None:
            write_progress(self.path, self.latest)
            self.dirty = False
