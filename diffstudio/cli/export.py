"""``diffstudio export``: samples (runs, samples folders, PNG files) as PNG copies, a contact
sheet, a self-contained HTML gallery or a zip, with a progress bar (the application layer's
export job)."""

from __future__ import annotations

from typing import Any

from diffstudio.app.export import ExportRequest, export
from diffstudio.cli.options import ArgumentParser, drive
from diffstudio.engine.export import FORMATS
from diffstudio.plugin_manager import PluginRegistry

__all__ = ["cmd_export"]


def _parser() -> ArgumentParser:
    from diffstudio.engine.sample_index import SampleFilter

    parser = ArgumentParser(
        prog="diffstudio export",
        description="Export samples as PNGs that keep their metadata, a contact sheet, a "
                    "self-contained HTML gallery (one file, images embedded), or a zip of all "
                    "three. Refuses to replace files unless --overwrite.",
    )
    parser.add_argument("sources", metavar="SOURCE", nargs="+",
                        help="a run (its samples/), a samples folder, or PNG files")
    parser.add_argument("--format", choices=FORMATS, default="png",
                        help="png: copies; sheet: contact-sheet.png; html: gallery.html; "
                             "zip: gallery.zip with all of them (default png)")
    parser.add_argument("--out", metavar="DIR", required=True, help="folder to write into")
    parser.add_argument("--filter", metavar="KEY=VALUE", action="append", default=[],
                        dest="filters",
                        help="keep matching samples only; repeatable; keys: "
                             + ", ".join(SampleFilter.keys()))
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.add_argument("--no-captions", action="store_true",
                        help="contact sheet without the sampler/steps/seed line")
    parser.add_argument("--columns", type=int, default=None, help="contact sheet columns")
    parser.add_argument("--title", default="diffstudio gallery", help="HTML page title")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def cmd_export(argv: list[str], registry: PluginRegistry) -> int:
    del registry  # exporting needs no plugin
    args = _parser().parse_args(argv)
    request = ExportRequest(sources=args.sources, out=args.out, format=args.format,
                            filters=args.filters, overwrite=args.overwrite,
                            captions=not args.no_captions, columns=args.columns,
                            title=args.title)
    outcome: Any = drive(export(request), quiet=args.quiet)
    where = outcome.files[0] if len(outcome.files) == 1 else outcome.out
    print(f"{outcome.count} samples exported as {outcome.format} -> {where}")
    return 0
