"""``diffstudio sample``: draw samples from a run or a pretrained model into PNGs that carry the
parameters that made them (the application layer's sample job, with a progress bar)."""

from __future__ import annotations

import argparse
from typing import Any

from diffstudio.app.sample import SampleRequest, sample
from diffstudio.app.sources import ModelSource
from diffstudio.cli.options import ArgumentParser, add_contribution_options, collect, drive
from diffstudio.errors import ConfigError
from diffstudio.plugin_manager import PluginRegistry

__all__ = ["cmd_sample", "parse_sample_args", "sample_argv"]

# Options of `sample` itself; a sampler parameter may not take one of these names.
RESERVED = {
    "sampler", "num", "seed", "out", "init_noise", "batch_size", "device", "checkpoint",
    "no_ema", "class_label", "overwrite", "quiet", "help", "safe_mode", "debug", "pretrained",
    "download", "guidance", "preset", "backend", "onnx",
}


def _parser(registry: PluginRegistry, sampler_id: str, run: str | None = None,
            argv: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="diffstudio sample",
        description="Draw samples from a trained run; PNGs carry the parameters that made them.",
        epilog="'diffstudio sample RUN --sampler ddpm --help' lists that sampler's options.",
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
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                        help="torch, or onnx: the run's network exported with 'diffstudio onnx "
                             "export' on onnxruntime (CUDA provider with --device cuda/auto "
                             "when granted, else CPU)")
    parser.add_argument("--onnx", metavar="FILE.onnx", default=None,
                        help="with --backend onnx: the exported file (default: the "
                             "checkpoint's file under RUN/onnx/)")
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
    parser.add_argument("--preset", default=None,
                        help="a named parameter set under the explicit options: seed-images "
                             "(Song & Ermon 2019's image settings: sigma 1 -> 0.01, 100 steps "
                             "per level, eps 2e-5)")
    if sampler_id in registry.ids("sampler"):
        contribution = registry.get("sampler", sampler_id)
        clash = {p.name for p in contribution.params} & RESERVED
        add_contribution_options(parser, contribution, "sampler." if clash else "")
        if run and ("-h" in argv or "--help" in argv):
            _explain_suggestions(parser, registry, sampler_id, run)
    return parser


def _explain_suggestions(parser: argparse.ArgumentParser, registry: PluginRegistry,
                         sampler_id: str, run: str) -> None:
    """With a RUN, ``--help`` shows the value each unset parameter will take and why."""
    from diffstudio.app.sample import sampler_suggestions
    from diffstudio.app.sources import load_source

    try:
        loaded = load_source(ModelSource(run=run), device="cpu", registry=registry)
        suggested = sampler_suggestions(loaded, sampler_id, registry)
    except Exception as exc:  # help must still print
        parser.epilog = f"(no suggested defaults for {run}: {exc})"
        return
    lines = [s.describe(name) for name, s in suggested.values.items()] + suggested.notes
    for action in parser._actions:
        name = action.dest.rsplit(":", 1)[-1]
        if action.dest.startswith("param:sampler:") and name in suggested.values:
            action.help = f"{action.help}; for this run: {suggested.values[name].describe(name)}"
    if lines:
        parser.epilog = (f"Values used for {run} where not set (--preset or an option "
                         "overrides them): " + "; ".join(lines))


def sample_argv(request: SampleRequest, registry: PluginRegistry) -> list[str]:
    """The ``diffstudio sample`` arguments that make ``request`` (saved: a command draws to a
    folder): the inverse of :func:`parse_sample_args`, how the window queues a sampling."""
    source = request.source
    argv = [source.run] if source.run else ["--pretrained", str(source.pretrained)]
    if source.download:
        argv.append("--download")
    argv += ["--sampler", request.sampler, "--seed", str(request.seed),
             "--batch-size", str(request.batch_size), "--device", request.device]
    options = {"--num": request.num_samples, "--checkpoint": source.checkpoint,
               "--onnx": source.onnx_file, "--init-noise": request.init_noise,
               "--class-label": request.class_label, "--guidance": request.guidance,
               "--preset": request.preset, "--out": request.out}
    if source.backend != "torch":
        options["--backend"] = source.backend
    for option, value in options.items():
        if value is not None:
            argv += [option, str(value)]
    argv += [flag for flag, on in (("--no-ema", not source.ema),
                                   ("--overwrite", request.overwrite)) if on]
    contribution = registry.get("sampler", request.sampler)
    prefix = "sampler." if {p.name for p in contribution.params} & RESERVED else ""
    for name, value in request.params.items():
        text = ("true" if value else "false") if isinstance(value, bool) else repr(value) \
            if isinstance(value, float) else str(value)
        argv += [f"--{prefix}{name.replace('_', '-')}", text]
    return argv


def parse_sample_args(argv: list[str], registry: PluginRegistry
                      ) -> tuple[SampleRequest, argparse.Namespace]:
    """``diffstudio sample``'s arguments as the request they make (saved), and the parsed
    options; ConfigError / SystemExit (argparse) on bad ones."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--sampler", default="ddim")
    pre.add_argument("run", nargs="?")
    known, _ = pre.parse_known_args(argv)
    parser = _parser(registry, known.sampler, known.run, tuple(argv))
    args = parser.parse_args(argv)
    if bool(args.run) == bool(args.pretrained):
        raise ConfigError("give a RUN folder or --pretrained SOURCE (one of them)")
    source = ModelSource(run=args.run, pretrained=args.pretrained, checkpoint=args.checkpoint,
                         ema=not args.no_ema, download=args.download, backend=args.backend,
                         onnx_file=args.onnx)
    request = SampleRequest(
        source=source, sampler=args.sampler, params=collect(args, "sampler"),
        num_samples=args.num, seed=args.seed, batch_size=args.batch_size, device=args.device,
        init_noise=args.init_noise, class_label=args.class_label, guidance=args.guidance,
        preset=args.preset, save=True, out=args.out, overwrite=args.overwrite,
    )
    return request, args


def cmd_sample(argv: list[str], registry: PluginRegistry) -> int:
    request, args = parse_sample_args(argv, registry)
    outcome: Any = drive(sample(request, registry=registry), quiet=args.quiet)
    result = outcome.result
    files = f" ({len(outcome.paths)} PNGs + samples.npz)" if outcome.paths else " (samples.npz)"
    print(f"{len(result.seeds)} samples with {args.sampler} ({result.network_evaluations} "
          f"network evaluations each, {result.seconds:.2f} s) -> {outcome.out}{files}")
    return 0
