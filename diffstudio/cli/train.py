"""``diffstudio train``: train a run (or continue one) with a progress bar; the options come
from the one declaration of the training settings and from each plugin's schema."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from diffstudio.app.train import COMPONENTS, TrainRequest, launch_rank, read_settings_file, train
from diffstudio.cli.options import (
    ArgumentParser,
    add_contribution_options,
    add_param_option,
    collect,
    drive,
)
from diffstudio.plugin_manager import PluginRegistry

__all__ = ["cmd_train"]

# Short spellings kept for the settings people type most.
ALIASES = {"learning_rate": ["--lr"]}


def _parser(registry: PluginRegistry, chosen: dict[str, str]) -> argparse.ArgumentParser:
    from diffstudio.engine.train_config import TRAIN_SETTINGS

    parser = ArgumentParser(
        prog="diffstudio train",
        description="Train a diffusion model into a run folder (resumable).",
        epilog="A plugin's parameters are --dataset.NAME, --network.NAME, --schedule.NAME "
               "(listed for the chosen ones).",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--out", metavar="RUN", help="new run folder to create")
    target.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
    parser.add_argument("--config", metavar="FILE.json", help="training settings from a JSON file")
    parser.add_argument("--dataset", default=None, help=f"dataset id (default {chosen['dataset']})")
    parser.add_argument("--network", default=None,
                        help="network id (default: unet for images, mlp for points)")
    parser.add_argument("--schedule", default=None,
                        help=f"noise schedule id (default {chosen['schedule']})")
    settings = parser.add_argument_group("training settings")
    for param in TRAIN_SETTINGS:
        add_param_option(settings, param, "", f"setting:{param.name}")
        for alias in ALIASES.get(param.name, []):
            settings.add_argument(alias, dest=f"setting:{param.name}", default=None,
                                  metavar=param.type.upper(), help=f"same as --"
                                  f"{param.name.replace('_', '-')}")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for kind in COMPONENTS:
        contribution_id = chosen.get(kind)
        if contribution_id and contribution_id in registry.ids(kind):
            add_contribution_options(parser, registry.get(kind, contribution_id), f"{kind}.")
    return parser


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[Callable[[], bool]]:
    """SIGTERM (the job queue's cancel, Slurm's notice before a time limit) stops the training
    the way the window's Stop does: it writes a checkpoint at the next step and ends
    "stopped". Yields the ``should_stop`` to pass on; only the main thread can set a handler
    (elsewhere SIGTERM keeps its default)."""
    stopped = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopped.is_set
        return
    previous = signal.signal(signal.SIGTERM, lambda number, frame: stopped.set())
    try:
        yield stopped.is_set
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_train(argv: list[str], registry: PluginRegistry) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    for name in ("--dataset", "--network", "--schedule", "--config", "--resume", "--out"):
        pre.add_argument(name)
    known, _ = pre.parse_known_args(argv)
    base = read_settings_file(known.config) if known.config else None
    ids = {kind: getattr(known, kind) for kind in COMPONENTS if getattr(known, kind)}
    probe = TrainRequest(out=known.out or (None if known.resume else "?"),
                         resume=known.resume, settings=ids, base=base)
    chosen = probe.chosen_ids(registry)
    parser = _parser(registry, chosen)
    args = parser.parse_args(argv)
    if not args.out and not args.resume:
        parser.error("give --out RUN for a new run or --resume RUN to continue one")
    settings: dict[str, Any] = dict(ids)
    settings.update({key.split(":", 1)[1]: value for key, value in vars(args).items()
                     if key.startswith("setting:") and value is not None})
    for kind in COMPONENTS:
        given = collect(args, kind)
        if given:
            settings[f"{kind}_params"] = given
    request = TrainRequest(out=args.out, resume=args.resume, settings=settings, base=base)
    config = request.resolve(registry)
    follower = launch_rank() != 0  # data-parallel: rank 0 speaks for all processes
    quiet = args.quiet or follower

    def on_event(event: Any, write: Any) -> None:
        kind = getattr(event, "kind", None)
        if kind == "start" and not quiet:
            write(f"training {config.dataset}/{config.network}/{config.schedule}: "
                  f"{event.message}")
        if kind == "start" and getattr(event, "skipped", 0):  # also when quiet: data was left out
            print(f"diffstudio train: note: skipped {event.skipped} unreadable file(s) of the "
                  f"dataset (listed with their reasons in {request.run_dir}/config.json)",
                  file=sys.stderr)
        elif kind == "checkpoint" and not quiet:
            write(f"checkpoint: {event.path}")

    try:
        with stop_on_sigterm() as stop:
            result = drive(train(request, registry=registry, should_stop=stop), quiet=quiet,
                           on_event=on_event)
    except KeyboardInterrupt:
        print("\ninterrupted: the last checkpoint is kept; continue with "
              f"'diffstudio train --resume {request.run_dir}'", file=sys.stderr)
        return 130
    if follower:
        return 0
    if result.status == "stopped":
        print(f"stopped at step {result.step}/{result.total_steps} (checkpoint written); "
              f"continue with 'diffstudio train --resume {result.run.path}'")
        return 0
    if result.total_steps == 0:
        print(f"nothing to train: the network is exact; ready to sample: {result.run.path}")
        return 0
    loss = result.last_loss if result.last_loss is not None else float("nan")
    print(f"{result.status} at step {result.step}/{result.total_steps}, loss {loss:.4f}; "
          f"run: {result.run.path}")
    return 0
