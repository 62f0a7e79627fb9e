"""``diffstudio plugins``: list, install, uninstall, enable, disable and scaffold plugins.

::

    diffstudio plugins [list] [--json] [--traceback]
    diffstudio plugins install NAME|PATH|WHEEL|URL [--no-index] [--find-links DIR]
                               [--no-build-isolation] [--editable] [--upgrade]
    diffstudio plugins uninstall NAME
    diffstudio plugins enable NAME | disable NAME
    diffstudio plugins new NAME [--kind sampler|schedule] [--out DIR]

Installs run pip under constraints that pin torch, diffusers, PySide6, numpy, pluggy and
diffstudio (see :mod:`diffstudio.app.plugin_install`).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from diffstudio.app.plugin_install import (
    InstallRequest,
    PipLine,
    UninstallRequest,
    install,
    uninstall,
)
from diffstudio.app.plugin_scaffold import KIND_PAGES, scaffold_plugin
from diffstudio.app.plugin_scaffold import KINDS as SCAFFOLD_KINDS
from diffstudio.cli.options import ArgumentParser, drive
from diffstudio.errors import ConfigError
from diffstudio.plugin_manager import PluginRegistry
from diffstudio.plugin_settings import disabled_plugins, set_plugin_disabled, settings_path

__all__ = ["cmd_plugins"]

ACTIONS = ("list", "install", "uninstall", "enable", "disable", "new")


def cmd_plugins(argv: list[str], registry: PluginRegistry) -> int:
    action = argv[0] if argv and argv[0] in ACTIONS else "list"
    rest = argv[1:] if argv and argv[0] in ACTIONS else argv
    return {"list": _list, "install": _install, "uninstall": _uninstall, "enable": _enable,
            "disable": _disable, "new": _new}[action](rest, registry)


def _parser(action: str, description: str) -> ArgumentParser:
    return ArgumentParser(prog=f"diffstudio plugins {action}", description=description)


def _list(argv: list[str], registry: PluginRegistry) -> int:
    parser = ArgumentParser(
        prog="diffstudio plugins",
        description="List installed plugins, what each contributes, and any load error. "
                    "Other actions: install, uninstall, enable, disable, new "
                    "('diffstudio plugins ACTION --help').",
    )
    parser.add_argument("action", nargs="?", default="list", choices=list(ACTIONS),
                        help="what to do (default: list)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks")
    args = parser.parse_args(argv)
    if args.json:
        payload = {
            "safe_mode": registry.safe_mode,
            "settings": str(settings_path()),
            "plugins": [plugin.to_dict() for plugin in registry.plugins],
        }
        print(json.dumps(payload, indent=2))
        return 0
    if registry.safe_mode:
        print("safe mode: only the built-in plugins are loaded")
    for plugin in registry.plugins:
        origin = "built-in" if plugin.builtin else plugin.distribution
        status = "ERROR" if plugin.status == "error" else plugin.status
        if plugin.disabled and plugin.disabled_reason:
            status += f" ({plugin.disabled_reason})"
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
              "Run with --traceback for details, disable one with "
              "'diffstudio plugins disable NAME', or start with --safe-mode.")
    return 0


def _print_pip(event: Any, write: Any) -> None:
    if isinstance(event, PipLine) and event.stage != "resolve" and not event.routine:
        write(f"  pip: {event.text}")


def _report(outcome: Any, as_json: bool) -> int:
    if as_json:
        print(json.dumps(outcome.to_dict(), indent=2))
        return 0
    for change in outcome.changes:
        print(change.describe())
    print(outcome.summary().split(": ", 1)[0] + (
        ": done. Restart diffstudio to load the plugins as they are now."
        if outcome.restart_needed else ": nothing changed"))
    return 0


def _install(argv: list[str], registry: PluginRegistry) -> int:
    parser = _parser("install", "Install a plugin with pip, never changing torch, torchvision, "
                     "diffusers, PySide6, numpy, pluggy or diffstudio: pip resolves first "
                     "(--dry-run) under constraints pinning their installed versions, and "
                     "anything that would change one is refused.")
    parser.add_argument("target", help="a name (with an optional version specifier), a source "
                                       "folder, a wheel or sdist, or a URL")
    parser.add_argument("--no-index", action="store_true", help="pip: do not use the index")
    parser.add_argument("--find-links", action="append", default=[], metavar="DIR",
                        help="pip: look for archives here (repeatable)")
    parser.add_argument("--no-build-isolation", action="store_true",
                        help="pip: build in this environment (offline builds)")
    parser.add_argument("--editable", "-e", action="store_true",
                        help="install a source folder in editable mode (while writing one)")
    parser.add_argument("--upgrade", "-U", action="store_true", help="pip: upgrade it")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    args = parser.parse_args(argv)
    request = InstallRequest(args.target, no_index=args.no_index,
                             find_links=tuple(args.find_links),
                             no_build_isolation=args.no_build_isolation,
                             editable=args.editable, upgrade=args.upgrade)
    return _report(drive(install(request), on_event=_print_pip), args.json)


def _uninstall(argv: list[str], registry: PluginRegistry) -> int:
    parser = _parser("uninstall", "Uninstall the distribution that provides a plugin.")
    parser.add_argument("name", help="a plugin name (as 'diffstudio plugins' lists it) or a "
                                     "distribution name")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    args = parser.parse_args(argv)
    return _report(drive(uninstall(UninstallRequest(args.name)), on_event=_print_pip),
                   args.json)


def _plugin_name(name: str, registry: PluginRegistry, *, disabling: bool) -> list[str]:
    """The plugin names ``name`` stands for (itself or a distribution's plugins)."""
    matches = [p for p in registry.plugins if name in (p.name, p.distribution)]
    if any(p.builtin for p in matches):
        raise ConfigError(f"{name!r} is built in and cannot be disabled; start with --safe-mode "
                          "to load only the built-ins, or DIFFSTUDIO_LOAD_PLUGINS to choose")
    if matches:
        return [p.name for p in matches]
    if not disabling and name in disabled_plugins():
        return [name]  # no longer installed, still listed: let it be removed from the list
    known = ", ".join(p.name for p in registry.plugins if not p.builtin) or "none"
    raise ConfigError(f"no plugin {name!r}; third-party plugins found: {known}. "
                      "'diffstudio plugins list' shows them all")


def _toggle(argv: list[str], registry: PluginRegistry, disable: bool) -> int:
    verb = "disable" if disable else "enable"
    parser = _parser(verb, f"{verb.capitalize()} a plugin at the next start (saved in the "
                           "settings file the window uses)." + (
                               " A disabled plugin is never imported." if disable else ""))
    parser.add_argument("name", help="a plugin name or a distribution name")
    args = parser.parse_args(argv)
    for name in _plugin_name(args.name, registry, disabling=disable):
        set_plugin_disabled(name, disable)
        print(f"{name}: {verb}d (in {settings_path()}); restart diffstudio for it to take "
              "effect")
    return 0


def _enable(argv: list[str], registry: PluginRegistry) -> int:
    return _toggle(argv, registry, disable=False)


def _disable(argv: list[str], registry: PluginRegistry) -> int:
    return _toggle(argv, registry, disable=True)


def _new(argv: list[str], registry: PluginRegistry) -> int:
    parser = _parser("new", "Write a new plugin package that already runs: pyproject.toml "
                            "with the entry point, a skeleton, a README and a test using "
                            "diffstudio's conformance kit.")
    parser.add_argument("name", help="the distribution name, e.g. my-sampler")
    parser.add_argument("--kind", choices=list(SCAFFOLD_KINDS), default="sampler",
                        help="what the plugin contributes (default: sampler)")
    parser.add_argument("--out", help="the folder to create (default: ./NAME)")
    args = parser.parse_args(argv)
    folder = scaffold_plugin(args.name, kind=args.kind, out=args.out)
    print(f"wrote {folder}")
    print("next:\n"
          f"  {sys.executable} -m diffstudio plugins install --editable \"{folder}[test]\"\n"
          f"  cd {folder} && {sys.executable} -m pytest\n"
          f"  diffstudio   (the {args.kind} appears on the {KIND_PAGES[args.kind]} page)")
    return 0
