"""The ``diffstudio`` command.

Bare ``diffstudio`` opens the desktop studio. Headless verbs::

    diffstudio train   --out RUN [--dataset digits --network unet --schedule linear ...]
    diffstudio train   --resume RUN [--steps N]
    diffstudio sample  RUN [--sampler ddim --steps 50 --eta 0 ...] [--num 16 --seed 0]
    diffstudio eval    RUN [--sampler ddim --steps 50] | SAMPLES_DIR [--metrics all]
    diffstudio plugins [list] [--json]

A contribution's parameters become options generated from its schema: ``--dataset.size 16``,
``--network.preset small-32`` for ``train``; the sampler's own (``--steps``, ``--eta``) for
``sample``. ``diffstudio sample RUN --sampler ddpm --help`` lists DDPM's options.
Exit status 0 on success; on bad input one line on stderr and status 2 (1 for other failures).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from diffstudio.errors import Cancelled, DiffstudioError
from diffstudio.plugin_manager import PluginRegistry, load_plugins, safe_mode_env
from diffstudio.specs import Contribution, Param

__all__ = ["main"]

# Options of `sample` itself; a sampler parameter may not take one of these names.
_SAMPLE_RESERVED = {
    "sampler", "num", "seed", "out", "init_noise", "batch_size", "device", "checkpoint",
    "no_ema", "class_label", "overwrite", "quiet", "help", "safe_mode", "debug",
}


def _param_kwargs(param: Param) -> dict[str, Any]:
    """argparse keyword arguments for one schema parameter (values are validated later)."""
    text = param.help or param.name
    if param.type == "choice":
        text += f" (one of: {', '.join(map(str, param.choices or ()))})"
    elif param.minimum is not None or param.maximum is not None:
        text += f" (range {param.minimum if param.minimum is not None else '-inf'}.."
        text += f"{param.maximum if param.maximum is not None else 'inf'})"
    text += f"; default {param.default!r}"
    return {"default": None, "metavar": param.type.upper(), "help": text}


def _add_contribution_options(
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
        flag = f"--{prefix}{param.name}" if prefix else f"--{param.name.replace('_', '-')}"
        group.add_argument(flag, dest=f"param:{dest_kind}:{param.name}", **_param_kwargs(param))


def _collect(namespace: argparse.Namespace, kind: str) -> dict[str, Any]:
    values = {}
    for key, value in vars(namespace).items():
        if key.startswith(f"param:{kind}:") and value is not None:
            values[key.split(":", 2)[2]] = value
    return values


def _progress(total: int, description: str, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="step", disable=quiet, dynamic_ncols=True,
                file=sys.stderr)


# -- train -------------------------------------------------------------------------------------
def _train_parser(registry: PluginRegistry, chosen: dict[str, str]) -> argparse.ArgumentParser:
    from diffstudio.engine.training import TrainConfig

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="diffstudio train",
        description="Train a diffusion model into a run folder (resumable).",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--out", metavar="RUN", help="new run folder to create")
    target.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
    parser.add_argument("--config", metavar="FILE.json", help="training settings from a JSON file")
    parser.add_argument("--dataset", default=None, help=f"dataset id (default {defaults.dataset})")
    parser.add_argument("--network", default=None,
                        help="network id (default: unet for images, mlp for points)")
    parser.add_argument("--schedule", default=None,
                        help=f"noise schedule id (default {defaults.schedule})")
    settings = parser.add_argument_group("training settings")
    for flag, name, kind in (
        ("--steps", "steps", int), ("--epochs", "epochs", int),
        ("--batch-size", "batch_size", int), ("--lr", "learning_rate", float),
        ("--weight-decay", "weight_decay", float), ("--warmup-steps", "warmup_steps", int),
        ("--lr-schedule", "lr_schedule", str), ("--ema-decay", "ema_decay", float),
        ("--grad-clip", "grad_clip", float), ("--num-timesteps", "num_timesteps", int),
        ("--prediction-type", "prediction_type", str), ("--label-dropout", "label_dropout", float),
        ("--mixed-precision", "mixed_precision", str), ("--device", "device", str),
        ("--seed", "seed", int), ("--log-every", "log_every", int),
        ("--checkpoint-every", "checkpoint_every", int),
        ("--keep-checkpoints", "keep_checkpoints", int),
        ("--preview-every", "preview_every", int), ("--preview-samples", "preview_samples", int),
    ):
        settings.add_argument(flag, dest=f"setting:{name}", type=kind, default=None,
                              help=f"default {getattr(defaults, name)!r}")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for kind, prefix in (("dataset", "dataset."), ("network", "network."),
                         ("schedule", "schedule.")):
        contribution_id = chosen.get(kind)
        if contribution_id and contribution_id in registry.ids(kind):
            _add_contribution_options(parser, registry.get(kind, contribution_id), prefix)
    return parser


def _default_network(registry: PluginRegistry, dataset_id: str) -> str:
    if dataset_id in registry.ids("dataset") and "points" in registry.get(
        "dataset", dataset_id
    ).tags:
        return "mlp"
    return "unet"


def _cmd_train(argv: list[str], registry: PluginRegistry) -> int:
    from diffstudio.engine.runs import Run
    from diffstudio.engine.training import TrainConfig, Trainer

    pre = argparse.ArgumentParser(add_help=False)
    for name in ("--dataset", "--network", "--schedule", "--config", "--resume"):
        pre.add_argument(name)
    known, _ = pre.parse_known_args(argv)
    base: dict[str, Any] = {}
    if known.resume:
        base = Run(known.resume).read_config()["train"]
    elif known.config:
        base = _read_json(known.config)
    dataset_id = known.dataset or base.get("dataset") or "digits"
    chosen = {
        "dataset": dataset_id,
        "network": known.network or base.get("network") or _default_network(registry, dataset_id),
        "schedule": known.schedule or base.get("schedule") or "linear",
    }
    parser = _train_parser(registry, chosen)
    args = parser.parse_args(argv)
    if not args.out and not args.resume:
        parser.error("give --out RUN for a new run or --resume RUN to continue one")
    values = dict(base)
    values.update({k: chosen[k] for k in ("dataset", "network", "schedule")})
    for kind in ("dataset", "network", "schedule"):
        params = dict(base.get(f"{kind}_params", {})) if base.get(kind) == chosen[kind] else {}
        params.update(_collect(args, kind))
        values[f"{kind}_params"] = registry.get(kind, chosen[kind]).validate(params)
    given = {key.split(":", 1)[1]: value for key, value in vars(args).items()
             if key.startswith("setting:") and value is not None}
    values.update(given)
    if "steps" in given and "epochs" not in given:
        values["epochs"] = 0  # an explicit --steps sets the length of the run
    config = TrainConfig.from_dict(values)

    run_dir = args.resume or args.out
    bar = None
    quiet = args.quiet

    def on_event(event: Any) -> None:
        nonlocal bar
        if event.kind == "start":
            bar = _progress(event.total_steps, "train", quiet)
            bar.update(event.step)
            if not quiet:
                bar.write(f"training {config.dataset}/{config.network}/{config.schedule}: "
                          f"{event.message}")
        elif event.kind == "step" and bar is not None:
            bar.update(event.step - bar.n)
            bar.set_postfix(loss=f"{event.loss:.4f}", img_s=f"{event.images_per_second:.0f}")
        elif event.kind == "checkpoint" and bar is not None and not quiet:
            bar.write(f"checkpoint: {event.path}")

    trainer = Trainer(config, run_dir, resume=bool(args.resume), registry=registry,
                      callback=on_event)
    try:
        result = trainer.train()
    except KeyboardInterrupt:
        print("\ninterrupted: the last checkpoint is kept; continue with "
              f"'diffstudio train --resume {run_dir}'", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    print(f"{result.status} at step {result.step}/{result.total_steps}, loss "
          f"{result.last_loss if result.last_loss is not None else float('nan'):.4f}; "
          f"run: {result.run.path}")
    return 0


def _read_json(path: str) -> dict[str, Any]:
    from diffstudio.errors import ConfigError

    try:
        payload = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(payload, dict):
        raise ConfigError(f"config {path} must hold a JSON object of training settings")
    return payload.get("train", payload)


# -- sample ------------------------------------------------------------------------------------
def _cmd_sample(argv: list[str], registry: PluginRegistry) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--sampler", default="ddim")
    known, _ = pre.parse_known_args(argv)
    parser = argparse.ArgumentParser(
        prog="diffstudio sample",
        description="Draw samples from a trained run; PNGs carry the parameters that made them.",
    )
    parser.add_argument("run", metavar="RUN", nargs="?", help="run folder")
    parser.add_argument("--pretrained", metavar="SOURCE",
                        help="sample a pretrained diffusers model instead of a run: a local "
                             "folder, or a hub id already in the local Hugging Face cache")
    parser.add_argument("--download", action="store_true",
                        help="with --pretrained: download a hub id (needs internet)")
    parser.add_argument("--sampler", default="ddim",
                        help=f"sampler id: {', '.join(registry.ids('sampler'))} (default ddim)")
    parser.add_argument("--num", type=int, default=None, help="number of samples (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first sample")
    parser.add_argument("--init-noise", metavar="FILE.npy",
                        help="start from this noise, shaped (N, *sample_shape)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default RUN/samples/...)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--checkpoint", default="latest", help="checkpoint name or step")
    parser.add_argument("--no-ema", action="store_true", help="use the raw (non-EMA) weights")
    parser.add_argument("--class-label", type=int, default=None,
                        help="class to condition on (class-conditional runs)")
    parser.add_argument("--guidance", type=float, default=None, metavar="GAMMA",
                        help="classifier-free guidance scale with --class-label: 0 = "
                             "unconditional, 1 = conditional, > 1 stronger; costs 2 network "
                             "evaluations per step")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    if known.sampler in registry.ids("sampler"):
        contribution = registry.get("sampler", known.sampler)
        clash = {p.name for p in contribution.params} & _SAMPLE_RESERVED
        _add_contribution_options(parser, contribution, "sampler." if clash else "")
    args = parser.parse_args(argv)

    from diffstudio.engine.gallery import save_grid
    from diffstudio.engine.model import network_device_dtype
    from diffstudio.engine.sampling import (
        generate,
        load_init_noise,
        load_model,
        save_samples,
    )

    if bool(args.run) == bool(args.pretrained):
        parser.error("give a RUN folder or --pretrained SOURCE (one of them)")
    if args.pretrained:
        loaded, metadata = _load_pretrained(args)
        out_default = Path("samples") / f"{args.sampler}-{time.strftime('%Y%m%d-%H%M%S')}"
    else:
        loaded = load_model(args.run, checkpoint=args.checkpoint, ema=not args.no_ema,
                            device=args.device, registry=registry)
        metadata = {
            "run": str(loaded.run.path),
            "checkpoint": loaded.checkpoint.name,
            "ema": loaded.ema,
            "network_sha256": loaded.network_sha256,
        }
        out_default = (
            loaded.run.path / "samples" / f"{args.sampler}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
    init_noise = load_init_noise(args.init_noise, loaded.sample_shape) if args.init_noise else None
    num = args.num if args.num is not None or init_noise is not None else 16
    params = _collect(args, "sampler")
    bar = None
    last = {"index": -1}

    def on_step(step: Any, batch: int) -> None:
        nonlocal bar
        if bar is None:
            batches = -(-(num or init_noise.shape[0]) // args.batch_size)  # type: ignore[union-attr]
            bar = _progress(step.num_steps * batches, f"sample ({args.sampler})", args.quiet)
        bar.update(1)
        last["index"] = step.index

    try:
        result = generate(
            loaded.model, args.sampler, params, sample_shape=loaded.sample_shape,
            num_samples=num, seed=args.seed, batch_size=args.batch_size, init_noise=init_noise,
            class_label=args.class_label, guidance=args.guidance,
            num_classes=loaded.num_classes, registry=registry, callback=on_step,
        )
    finally:
        if bar is not None:
            bar.close()
    out = Path(args.out) if args.out else out_default
    metadata.update({
        "steps": result.params.get("steps"),
        "backend": f"torch-{network_device_dtype(loaded.model.network)[0].type}",
        "init_noise_file": str(Path(args.init_noise).resolve()) if args.init_noise else None,
    })
    paths = save_samples(result, out, metadata=metadata, overwrite=args.overwrite)
    if result.samples.dim() == 4:
        save_grid(result.samples, out / "grid.png", metadata={**metadata, "kind": "grid"})
    print(f"{len(result.seeds)} samples with {args.sampler} ({result.network_evaluations} "
          f"network evaluations each, {result.seconds:.2f} s) -> {out}"
          + (f" ({len(paths)} PNGs + samples.npz)" if paths else " (samples.npz)"))
    return 0


def _load_pretrained(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """A pretrained diffusers model, shaped like a loaded run for the sampling code."""
    from types import SimpleNamespace

    from diffstudio.engine.networks.pretrained import load_pretrained
    from diffstudio.engine.sampling import resolve_device

    pretrained = load_pretrained(args.pretrained, device=str(resolve_device(args.device)),
                                 download=args.download)
    for note in pretrained.notes:
        print(f"note: {note}", file=sys.stderr)
    # The scheduler config's sampler settings (a VE SDE's snr...) unless given on the command line.
    for name, value in pretrained.sampler_defaults.get(args.sampler, {}).items():
        if getattr(args, f"param:sampler:{name}", None) is None:
            setattr(args, f"param:sampler:{name}", value)
    loaded = SimpleNamespace(
        model=pretrained.require_model(), sample_shape=pretrained.sample_shape,
        num_classes=(pretrained.num_class_embeds - 1) if pretrained.num_class_embeds else None,
    )
    metadata = {
        "pretrained": pretrained.source,
        "network_sha256": pretrained.weights_sha256,
        "scheduler": pretrained.scheduler_class,
    }
    return loaded, metadata


# -- plugins -----------------------------------------------------------------------------------
def _cmd_plugins(argv: list[str], registry: PluginRegistry) -> int:
    parser = argparse.ArgumentParser(
        prog="diffstudio plugins",
        description="List installed plugins, what each contributes, and any load error.",
    )
    parser.add_argument("action", nargs="?", default="list", choices=["list"],
                        help="what to do (default: list)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks")
    args = parser.parse_args(argv)
    if args.json:
        payload = {
            "safe_mode": registry.safe_mode,
            "plugins": [plugin.to_dict() for plugin in registry.plugins],
        }
        print(json.dumps(payload, indent=2))
        return 0
    if registry.safe_mode:
        print("safe mode: only the built-in plugins are loaded")
    for plugin in registry.plugins:
        origin = "built-in" if plugin.builtin else plugin.distribution
        status = "skipped (safe mode)" if plugin.skipped else ("ERROR" if plugin.error else "ok")
        print(f"{plugin.name}  [{origin} {plugin.version}]  {status}")
        for contribution in plugin.contributions:
            print(f"    {contribution.kind:<8} {contribution.id:<14} {contribution.display_name}")
        if plugin.error:
            print(f"    error while {plugin.error_stage}: {plugin.error}")
            if args.traceback and plugin.traceback:
                print("    " + plugin.traceback.replace("\n", "\n    "))
    errors = registry.errors
    if errors:
        print(f"{len(errors)} plugin(s) failed to load; the others work. "
              "Run with --traceback for details, or start with --safe-mode.")
    return 0


# -- entry point -------------------------------------------------------------------------------
def _cmd_eval(argv: list[str], registry: PluginRegistry) -> int:
    from diffstudio.cli_eval import cmd_eval

    return cmd_eval(argv, registry)


_COMMANDS = {
    "train": _cmd_train, "sample": _cmd_sample, "eval": _cmd_eval, "plugins": _cmd_plugins,
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffstudio",
        description="A studio for diffusion models. With no command, opens the desktop window.",
        epilog="Run 'diffstudio COMMAND --help' for a command's options.",
    )
    parser.add_argument("--safe-mode", action="store_true",
                        help="load only the built-in plugins (also DIFFSTUDIO_SAFE_MODE=1)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
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
        args = top.parse_args(globals_ + rest)  # handles --help and unknown commands
        return _open_gui(safe_mode=args.safe_mode)
    command, command_args = rest[0], rest[1:]
    debug = "--debug" in globals_ or "--debug" in command_args
    safe_mode = "--safe-mode" in globals_ or "--safe-mode" in command_args or safe_mode_env()
    command_args = [a for a in command_args if a not in ("--debug", "--safe-mode")]
    try:
        registry = load_plugins(safe_mode=safe_mode)
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
        print(f"diffstudio {command}: unexpected {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return 1


def _open_gui(safe_mode: bool) -> int:
    try:
        from diffstudio.gui.app import run_app  # type: ignore[import-not-found]
    except ImportError:
        print("diffstudio: the desktop window is not part of this version yet; use the "
              "headless commands: diffstudio train | sample | plugins (see --help)",
              file=sys.stderr)
        return 2
    return int(run_app(safe_mode=safe_mode))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
