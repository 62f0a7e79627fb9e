"""The ``diffstudio`` command.

Bare ``diffstudio`` opens the desktop studio. Headless verbs::

    diffstudio train   --out RUN [--dataset digits --network unet --schedule linear ...]
    diffstudio train   --resume RUN [--steps N]
    diffstudio sample  RUN [--sampler ddim --steps 50 --eta 0 ...] [--num 16 --seed 0]
    diffstudio eval    RUN [--sampler ddim --steps 50] | SAMPLES_DIR [--metrics all]
    diffstudio plugins [list] [--json] | install TARGET | uninstall NAME | enable NAME
                       | disable NAME | new NAME [--kind sampler|schedule]
    diffstudio export  SOURCE... --format png|sheet|html|zip --out DIR [--filter KEY=VALUE]
    diffstudio onnx    export RUN [--opset 18 --fp16] | verify FILE RUN | info
    diffstudio --version | --selftest
    diffstudio experiment run FILE [--dry-run] | status FILE | report FILE
    diffstudio queue   add VERB ARGS... | list | run | resume | cancel ID | retry ID | move ID

A contribution's parameters become options generated from its schema: ``--dataset.size 16``,
``--network.preset small-32`` for ``train``; the sampler's own (``--steps``, ``--eta``) for
``sample``. ``diffstudio sample RUN --sampler ddpm --help`` lists DDPM's options.
Exit status 0 on success; on bad input one line on stderr and status 2 (1 for other failures).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from diffstudio.cli.evaluate import cmd_eval
from diffstudio.cli.experiment import cmd_experiment
from diffstudio.cli.export import cmd_export
from diffstudio.cli.onnx import cmd_onnx
from diffstudio.cli.options import ArgumentParser
from diffstudio.cli.plugins import cmd_plugins
from diffstudio.cli.queue import cmd_queue
from diffstudio.cli.sample import cmd_sample
from diffstudio.cli.selftest import PrintVersion, run_selftest
from diffstudio.cli.train import cmd_train
from diffstudio.engine.io import storage_problem
from diffstudio.errors import Cancelled, DiffstudioError
from diffstudio.plugin_manager import load_plugins, safe_mode_env

__all__ = ["main"]

_COMMANDS = {
    "train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "plugins": cmd_plugins,
    "export": cmd_export,
    "onnx": cmd_onnx,
    "experiment": cmd_experiment,
    "queue": cmd_queue,
}


def _top_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="diffstudio",
        description="A studio for diffusion models. With no command, opens the desktop window.",
        epilog="Run 'diffstudio COMMAND --help' for a command's options.",
    )
    parser.add_argument("--safe-mode", action="store_true",
                        help="load only the built-in plugins (also DIFFSTUDIO_SAFE_MODE=1)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action=PrintVersion,
                        help="print the version, the Python and where it is installed")
    parser.add_argument("--selftest", action="store_true",
                        help="check this installation end to end (torch, devices, plugins, one "
                             "training step, the window offscreen); exit 0 when all pass")
    parser.add_argument("command", nargs="?", choices=sorted(_COMMANDS), help="what to do")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Global flags may come before the command.
    globals_, rest = [], []
    for position, token in enumerate(arguments):
        if token in ("--safe-mode", "--debug"):
            globals_.append(token)
        elif token in _COMMANDS:
            rest = arguments[position:]
            break
        else:
            rest = arguments[position:]
            break
    top = _top_parser()
    if not rest or rest[0] not in _COMMANDS:
        try:
            args = top.parse_args(globals_ + rest)  # handles --help and unknown commands
        except SystemExit as exc:  # --help (0) or an unknown command (2), already printed
            return exc.code if isinstance(exc.code, int) else 0
        if args.selftest:
            return run_selftest(safe_mode=args.safe_mode or safe_mode_env())
        return _open_gui(safe_mode=args.safe_mode)
    command, command_args = rest[0], rest[1:]
    debug = "--debug" in globals_ or "--debug" in command_args
    safe_mode = "--safe-mode" in globals_ or "--safe-mode" in command_args or safe_mode_env()
    command_args = [a for a in command_args if a not in ("--debug", "--safe-mode")]
    try:
        registry = load_plugins(safe_mode=safe_mode)
        if registry.slow:
            print(f"diffstudio: note: {registry.slow_message()}", file=sys.stderr)
        return _COMMANDS[command](command_args, registry)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except Cancelled as exc:
        print(f"diffstudio {command}: stopped: {exc}", file=sys.stderr)
        return 130
    except DiffstudioError as exc:
        if debug:
            raise
        print(f"diffstudio {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffstudio {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        problem = storage_problem(exc)
        if problem is not None:  # a write failed where no step named it: still one clear line
            where = getattr(exc, "filename", None)
            print(f"diffstudio {command}: error: could not write"
                  f"{f' {where}' if where else ''}: {problem}; free space or choose a folder "
                  "you can write to", file=sys.stderr)
            return 2
        print(f"diffstudio {command}: unexpected {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return 1


def display_problem() -> str | None:
    """Why no window can open here, or None. On Linux a window needs $DISPLAY (X11) or
    $WAYLAND_DISPLAY, unless QT_QPA_PLATFORM names a platform that needs none (offscreen)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if sys.platform.startswith("linux") and platform not in ("offscreen", "minimal", "vnc") \
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return ("no display: $DISPLAY and $WAYLAND_DISPLAY are not set. Run diffstudio in a "
                "desktop session (or over 'ssh -X'), or use the headless commands: "
                "diffstudio train | sample | eval | export | experiment | onnx | plugins "
                "(see --help)")
    return None


def _open_gui(safe_mode: bool) -> int:
    problem = display_problem()
    if problem is not None:
        print(f"diffstudio: {problem}", file=sys.stderr)
        return 2
    try:
        from diffstudio.gui.app import run_app
    except ImportError as exc:
        print(f"diffstudio: the desktop window cannot start: {exc}. Reinstall with "
              "'pip install diffstudio' (it brings PySide6 and pyqtgraph); on Linux the Qt "
              "platform plugin also needs the system's xcb libraries (libxcb-cursor0, "
              "libxkbcommon-x11-0). The headless commands work without them.",
              file=sys.stderr)
        return 2
    return int(run_app(safe_mode=safe_mode))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
