"""``diffstudio eval``: FID@N, KID, precision/recall, retrieval and memorisation from the shell.

::

    diffstudio eval RUN [--sampler ddim --steps 50 ...] [--num 2048] [--reference digits]
    diffstudio eval SAMPLES_FOLDER [--reference digits --reference.size 8]
    diffstudio eval ... --metrics fid,kid --weights PATH/pt_inception-2015-12-05-6726825d.pth

A run is sampled in memory (nothing written, nothing re-read); a samples folder is read from its
``samples.npz`` (written by ``diffstudio sample``) or its PNGs. The reference dataset defaults to
the run's training set (for a folder: the run named in its PNGs). Results go, as JSON, to
``RUN/evaluations/`` or into the samples folder (``--out`` to choose). FID is printed as FID@N
with N, a warning under 2048 samples and a note under 10 000, and KID (mean ± std) beside it.

:func:`cmd_eval` drives the application layer's evaluate job (the Evaluate page runs the
same one); errors are raised as :class:`~diffstudio.errors.DiffstudioError` for the dispatcher
to print as one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diffstudio.app.evaluate import EvalRequest, evaluate
from diffstudio.cli.options import ArgumentParser, add_contribution_options, collect, drive
from diffstudio.errors import ConfigError
from diffstudio.plugin_manager import PluginRegistry

__all__ = ["cmd_eval", "eval_argv", "parse_eval_args"]

# Options of `eval` itself; a sampler parameter may not take one of these names.
RESERVED = {
    "sampler", "num", "seed", "out", "batch_size", "sample_batch_size", "device", "checkpoint",
    "no_ema", "class_label", "quiet", "help", "safe_mode", "debug", "weights", "metrics",
    "reference", "reference_limit", "offline", "json", "cache_dir", "no_cache",
    "allow_unverified_weights", "kid_subsets", "kid_subset_size", "memorization_threshold",
    "blas_threads",
}


def _parser(
    registry: PluginRegistry, sampler_id: str | None, reference_id: str | None
) -> argparse.ArgumentParser:
    from diffstudio.engine.evaluation import DEFAULT_METRICS, DEFAULT_NUM_SAMPLES, METRICS

    parser = ArgumentParser(
        prog="diffstudio eval",
        description="Evaluate samples against a reference dataset: FID@N (with N), KID, "
                    "precision/recall, density/coverage, the nearest training images and a "
                    "memorisation check. Results are written as JSON.",
        epilog="'diffstudio eval RUN --sampler ddpm --help' lists that sampler's options. "
               "Without network access put the FID weights at the path the error names, or "
               "pass --weights.",
    )
    parser.add_argument("source", metavar="RUN_OR_SAMPLES",
                        help="a run folder (samples are generated in memory with --sampler) or "
                             "a samples folder (samples.npz or PNGs)")
    parser.add_argument("--reference", default=None, metavar="DATASET",
                        help="reference dataset id (default: the run's training dataset); its "
                             "parameters as --reference.NAME VALUE")
    parser.add_argument("--reference-limit", type=int, default=0, metavar="N",
                        help="use a random subset of N reference images (0: all)")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help=f"comma-separated, from {', '.join(METRICS)}, or 'all' "
                             "(default %(default)s)")
    parser.add_argument("--weights", default=None, metavar="PATH",
                        help="Inception FID weights (pytorch-fid's pt_inception-2015-12-05-"
                             "6726825d.pth); default: $DIFFSTUDIO_FID_WEIGHTS, then the torch "
                             "hub cache, then a download. 'random' = random weights, to test "
                             "the pipeline only (not FID)")
    parser.add_argument("--allow-unverified-weights", action="store_true",
                        help="use a weights file whose SHA-256 is not pytorch-fid's")
    parser.add_argument("--offline", action="store_true",
                        help="never download the weights (also DIFFSTUDIO_OFFLINE=1)")
    parser.add_argument("--num", type=int, default=None,
                        help=f"samples to generate from a run (default "
                             f"{DEFAULT_NUM_SAMPLES}); for a folder, use its first N")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the first generated sample; also KID subsets and subsets")
    parser.add_argument("--sampler", default="ddim",
                        help=f"sampler for a run: {', '.join(registry.ids('sampler'))} "
                             "(default ddim)")
    parser.add_argument("--checkpoint", default="latest", help="checkpoint name or step")
    parser.add_argument("--no-ema", action="store_true", help="use the raw (non-EMA) weights")
    parser.add_argument("--class-label", type=int, default=None,
                        help="class to condition on (class-conditional runs)")
    parser.add_argument("--batch-size", type=int, default=50, help="Inception batch size")
    parser.add_argument("--sample-batch-size", type=int, default=64,
                        help="sampling batch size (runs)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="reference statistics cache (default ~/.cache/diffstudio/"
                             "fid-reference or $DIFFSTUDIO_CACHE_DIR/fid-reference)")
    parser.add_argument("--no-cache", action="store_true",
                        help="recompute the reference statistics and do not store them")
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--kid-subset-size", type=int, default=1000,
                        help="capped at the smaller of the two sets (default %(default)s)")
    parser.add_argument("--blas-threads", type=int, default=0,
                        help="BLAS threads for the metrics (0: the library's default; 1 is "
                             "faster on a busy machine with few cores)")
    parser.add_argument("--memorization-threshold", type=float, default=1.0,
                        help="flag a sample when nearest / (0.5 x mean of 50 nearest) <= this")
    parser.add_argument("--step-sweep", default="", metavar="N,N,...",
                        help="evaluate the sampler at each of these step counts (a run only), "
                             "one result file each, as the Evaluate page's step sweep")
    parser.add_argument("--out", metavar="FILE.json",
                        help="results file (default RUN/evaluations/... or FOLDER/evaluation-...)")
    parser.add_argument("--json", action="store_true", help="print the results JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    if sampler_id and sampler_id in registry.ids("sampler"):
        contribution = registry.get("sampler", sampler_id)
        clash = {p.name for p in contribution.params} & RESERVED
        add_contribution_options(parser, contribution, "sampler." if clash else "", "sampler")
    if reference_id and reference_id in registry.ids("dataset"):
        add_contribution_options(parser, registry.get("dataset", reference_id), "reference.",
                                  "reference")
    return parser


def _sweep(text: str) -> tuple[int, ...]:
    try:
        return tuple(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError as exc:
        raise ConfigError(f"--step-sweep {text!r}: give whole numbers separated by commas, "
                          "e.g. 10,20,50") from exc


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def eval_argv(request: EvalRequest, registry: PluginRegistry) -> list[str]:
    """The ``diffstudio eval`` arguments that make ``request``: the inverse of
    :func:`parse_eval_args`, how the window queues an evaluation. A request to download the
    FID weights is the command's default (no flag); one that must not is ``--offline``."""
    argv = [request.location, "--sampler", request.sampler, "--seed", str(request.seed),
            "--sample-batch-size", str(request.sample_batch_size), "--device", request.device,
            "--reference-limit", str(request.reference_limit),
            "--batch-size", str(request.inception_batch_size),
            "--kid-subsets", str(request.kid_subsets),
            "--kid-subset-size", str(request.kid_subset_size),
            "--memorization-threshold", repr(float(request.memorization_threshold)),
            "--blas-threads", str(request.blas_threads)]
    options = {"--num": request.num_samples, "--checkpoint": request.checkpoint,
               "--class-label": request.class_label, "--reference": request.reference,
               "--weights": request.weights or None, "--cache-dir": request.cache_dir,
               "--out": request.out,
               "--metrics": ",".join(request.metrics) if request.metrics else None,
               "--step-sweep": ",".join(map(str, request.step_sweep)) or None}
    for option, value in options.items():
        if value is not None:
            argv += [option, str(value)]
    argv += [flag for flag, on in (("--no-ema", not request.ema),
                                   ("--offline", request.download is False),
                                   ("--allow-unverified-weights",
                                    request.allow_unverified_weights),
                                   ("--no-cache", not request.use_cache)) if on]
    if request.sampler_params:
        contribution = registry.get("sampler", request.sampler)
        prefix = "sampler." if {p.name for p in contribution.params} & RESERVED else ""
        for name, value in request.sampler_params.items():
            argv += [f"--{prefix}{name.replace('_', '-')}", _text(value)]
    for name, value in request.reference_params.items():
        argv += [f"--reference.{name.replace('_', '-')}", _text(value)]
    return argv


def parse_eval_args(argv: list[str], registry: PluginRegistry
                    ) -> tuple[EvalRequest, argparse.Namespace]:
    """``diffstudio eval``'s arguments as the request they make, and the parsed options;
    ConfigError / SystemExit (argparse) on bad ones."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("source", nargs="?")
    pre.add_argument("--sampler", default="ddim")
    pre.add_argument("--reference", default=None)
    known, _ = pre.parse_known_args(argv)
    from diffstudio.engine.evaluation.sources import is_run_folder, training_reference

    source = Path(known.source).expanduser() if known.source else None
    run_reference, _, _ = training_reference(source)
    reference_id = known.reference or run_reference
    is_run = source is not None and is_run_folder(source)
    parser = _parser(registry, known.sampler if is_run or source is None else None, reference_id)
    args = parser.parse_args(argv)

    from diffstudio.engine.evaluation import METRICS

    if source is None or not source.exists():
        raise ConfigError(f"no run or samples folder at {args.source}")
    if not source.is_dir():
        raise ConfigError(
            f"{args.source} is a file; give a run folder or a samples folder (PNGs or the "
            "samples.npz that 'diffstudio sample' writes)"
        )
    if reference_id is None:
        raise ConfigError(
            f"no reference dataset: {source} names no run to take it from; pass --reference ID "
            f"({', '.join(registry.ids('dataset'))})"
        )
    metrics = tuple(METRICS) if args.metrics.strip() == "all" else tuple(
        m.strip() for m in args.metrics.split(",") if m.strip())
    request = EvalRequest(
        location=str(source), sampler=args.sampler, sampler_params=collect(args, "sampler"),
        num_samples=args.num, seed=args.seed, sample_batch_size=args.sample_batch_size,
        checkpoint=args.checkpoint, ema=not args.no_ema, class_label=args.class_label,
        device=args.device, reference=reference_id,
        reference_params=collect(args, "reference"), reference_limit=args.reference_limit,
        metrics=metrics, weights=args.weights or "", download=False if args.offline else None,
        allow_unverified_weights=args.allow_unverified_weights,
        inception_batch_size=args.batch_size, cache_dir=args.cache_dir,
        use_cache=not args.no_cache, kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size, memorization_threshold=args.memorization_threshold,
        blas_threads=args.blas_threads, out=args.out, step_sweep=_sweep(args.step_sweep),
    )
    return request, args


def cmd_eval(argv: list[str], registry: PluginRegistry) -> int:
    """``diffstudio eval``; returns the exit status, raises DiffstudioError on bad input."""
    request, args = parse_eval_args(argv, registry)
    outcome: Any = drive(evaluate(request, registry=registry), quiet=args.quiet)
    if args.json:  # one result, or a list of them (one per step count of a sweep)
        documents = [result.to_dict() for result in outcome.results]
        print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2,
                         default=str))
    else:
        for number, result in enumerate(outcome.results):
            if len(outcome.results) > 1:
                print(f"{request.sampler} with {request.step_sweep[number]} steps:")
            for line in result.summary_lines():
                print(line)
    if outcome.write_error:
        print(f"diffstudio eval: error: {outcome.write_error}", file=sys.stderr)
        return 1
    print(f"results: {', '.join(map(str, outcome.paths))}")
    return 0
