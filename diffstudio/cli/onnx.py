"""``diffstudio onnx``: export a run's network to ONNX (verified against PyTorch), verify an
exported file against a run, and say which onnxruntime is installed.

    diffstudio onnx export RUN [--checkpoint STEP] [--no-ema] [--opset 18] [--fp16] [--out F]
    diffstudio onnx verify FILE RUN
    diffstudio onnx info

Sampling on onnxruntime: ``diffstudio sample RUN --backend onnx``.
"""

from __future__ import annotations

from typing import Any

from diffstudio.app.onnx import OnnxExportRequest, OnnxVerifyRequest, export_onnx, verify_onnx
from diffstudio.cli.options import ArgumentParser, drive
from diffstudio.plugin_manager import PluginRegistry

__all__ = ["cmd_onnx"]


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="diffstudio onnx",
                            description="Export a run's network to ONNX and check it.",
                            epilog="Sample with onnxruntime: diffstudio sample RUN --backend onnx")
    verbs = parser.add_subparsers(dest="verb", metavar="{export,verify,info}")
    export = verbs.add_parser(
        "export", help="export a run's network (verified against PyTorch)",
        description="Export a run's network to ONNX with a dynamic batch, verify it against "
                    "PyTorch (t in {0, T/2, T-1} x batch {1, 4}) and write a JSON beside it.")
    export.add_argument("run", metavar="RUN", help="run folder")
    export.add_argument("--checkpoint", default=None, help="checkpoint name or step (latest)")
    export.add_argument("--no-ema", action="store_true", help="export the raw (non-EMA) weights")
    export.add_argument("--opset", type=int, default=18,
                        help="ONNX opset, 17..20 (21 brings GroupNormalization, which "
                             "onnxruntime does not implement); default 18")
    export.add_argument("--fp16", action="store_true",
                        help="float16 weights inside (inputs and output stay float32)")
    export.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "torchscript"],
                        help="auto: dynamo, then TorchScript when dynamo fails")
    export.add_argument("--out", metavar="FILE.onnx",
                        help="output file (default RUN/onnx/step-N.onnx)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing file")
    export.add_argument("--device", default="cpu",
                        help="onnxruntime device for the verification: cpu, cuda or auto")
    export.add_argument("--quiet", action="store_true", help="no progress output")
    verify = verbs.add_parser("verify", help="check an exported file against a run",
                              description="Check that FILE was exported from RUN's weights and "
                                          "matches PyTorch.")
    verify.add_argument("file", metavar="FILE", help="an .onnx file written by onnx export")
    verify.add_argument("run", metavar="RUN", help="run folder")
    verify.add_argument("--checkpoint", default=None,
                        help="checkpoint (default: the one the file was exported from)")
    verify.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    verify.add_argument("--quiet", action="store_true", help="no progress output")
    verbs.add_parser("info", help="which onnxruntime is installed and its providers")
    return parser


def cmd_onnx(argv: list[str], registry: PluginRegistry) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.error("choose export, verify or info")
    if args.verb == "info":
        from diffstudio.engine.onnx_network import detect_onnxruntime

        info = detect_onnxruntime()
        print(info.describe())
        for note in info.notes:
            print(f"warning: {note}")
        return 0
    outcome: Any
    if args.verb == "export":
        request = OnnxExportRequest(
            run=args.run, out=args.out, checkpoint=args.checkpoint, ema=not args.no_ema,
            opset=args.opset, fp16=args.fp16, exporter=args.exporter,
            overwrite=args.overwrite, device=args.device)
        outcome = drive(export_onnx(request, registry=registry), quiet=args.quiet)
        print(f"exported {outcome.path} ({outcome.summary})")
        for note in outcome.notes:
            print(f"note: {note}")
        return 0
    outcome = drive(verify_onnx(OnnxVerifyRequest(args.file, args.run, args.checkpoint,
                                                  device=args.device), registry=registry),
                    quiet=args.quiet)
    print(f"{outcome.path}: {outcome.summary}")
    return 0
