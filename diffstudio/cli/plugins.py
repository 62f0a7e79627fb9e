"""``diffstudio plugins``: what is installed, what each plugin contributes, and any load error."""

from __future__ import annotations

import json

from diffstudio.cli.options import ArgumentParser
from diffstudio.plugin_manager import PluginRegistry

__all__ = ["cmd_plugins"]


def cmd_plugins(argv: list[str], registry: PluginRegistry) -> int:
    parser = ArgumentParser(
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
