"""Discovering and loading plugins, one at a time, so that one broken plugin breaks nothing else.

Stock pluggy stops at the first entry point that fails to import and a hook call stops at the
first implementation that raises. Here each entry point of the ``diffstudio`` group is loaded on
its own: import, register, call each of its hooks, validate every spec, check ids for clashes.
A failure at any stage is recorded on that plugin (name, distribution, stage, traceback) and the
plugin is rolled back (unregistered, none of its contributions kept); the rest load as usual.

Safe mode (``safe_mode=True``, ``--safe-mode`` or ``DIFFSTUDIO_SAFE_MODE=1``) loads only the
plugins distributed with diffstudio itself. A plugin disabled in the settings
(``diffstudio plugins disable NAME``, the Plugins page's toggle) is blocked in pluggy and never
imported; ``DIFFSTUDIO_LOAD_PLUGINS=a,b`` loads only the third-party plugins named (by plugin
or distribution name), as llm and datasette do (see :mod:`diffstudio.plugin_settings`).
"""

from __future__ import annotations

import importlib.metadata as importlib_metadata
import os
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from diffstudio import hookspecs
from diffstudio.errors import ConfigError, PluginError
from diffstudio.plugin_settings import LOAD_PLUGINS_VARIABLE, disabled_plugins, load_only_env
from diffstudio.specs import KINDS, Contribution

__all__ = ["ENTRY_POINT_GROUP", "PluginInfo", "PluginRegistry", "load_plugins", "safe_mode_env"]

ENTRY_POINT_GROUP = "diffstudio"
BUILTIN_DISTRIBUTION = "diffstudio"
SAFE_MODE_VARIABLE = "DIFFSTUDIO_SAFE_MODE"
SLOW_PLUGIN_SECONDS = 1.0  # a plugin slower than this to load is reported (it delays every start)


def safe_mode_env() -> bool:
    """Whether the environment asks for safe mode (``DIFFSTUDIO_SAFE_MODE=1``)."""
    return os.environ.get(SAFE_MODE_VARIABLE, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class PluginInfo:
    """One plugin as loaded (or not): its origin, what it contributes, and any error."""

    name: str
    distribution: str
    version: str
    builtin: bool
    entry_point: str
    contributions: list[Contribution] = field(default_factory=list)
    error: str | None = None
    error_stage: str | None = None  # "import", "register", "hook", "spec"
    traceback: str | None = None
    skipped: bool = False  # not loaded because of safe mode
    disabled: bool = False  # not imported: disabled in the settings, or not load-only
    disabled_reason: str = ""
    load_seconds: float = 0.0  # import, registration and hook calls, measured at start-up
    summary: str = ""  # the distribution's one-line summary
    urls: dict[str, str] = field(default_factory=dict)  # "Homepage", "Issues", ... from metadata

    @property
    def slow(self) -> bool:
        return self.load_seconds > SLOW_PLUGIN_SECONDS

    @property
    def ok(self) -> bool:
        return self.error is None and not self.skipped and not self.disabled

    @property
    def status(self) -> str:
        """"ok", "error", "disabled" or "skipped (safe mode)"."""
        if self.skipped:
            return "skipped (safe mode)"
        if self.disabled:
            return "disabled"
        return "error" if self.error else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "entry_point": self.entry_point,
            "status": self.status,
            "disabled_reason": self.disabled_reason,
            "contributions": [
                {"kind": c.kind, "id": c.id, "display_name": c.display_name}
                for c in self.contributions
            ],
            "error": self.error,
            "error_stage": self.error_stage,
            "traceback": self.traceback,
            "load_seconds": round(self.load_seconds, 3),
            "summary": self.summary,
            "urls": dict(self.urls),
        }


class PluginRegistry:
    """The plugins that were found and the contributions of those that loaded."""

    def __init__(self, plugins: list[PluginInfo], manager: pluggy.PluginManager, safe_mode: bool):
        self.plugins = plugins
        self.manager = manager
        self.safe_mode = safe_mode
        self._by_kind: dict[str, dict[str, Contribution]] = {kind: {} for kind in KINDS}
        for plugin in plugins:
            if plugin.ok:
                for contribution in plugin.contributions:
                    self._by_kind[contribution.kind][contribution.id] = contribution

    @property
    def errors(self) -> list[PluginInfo]:
        return [plugin for plugin in self.plugins if plugin.error]

    @property
    def slow(self) -> list[PluginInfo]:
        """Plugins that took over :data:`SLOW_PLUGIN_SECONDS` to load, slowest first."""
        return sorted((p for p in self.plugins if p.slow), key=lambda p: -p.load_seconds)

    def slow_message(self) -> str:
        """One line naming the slow plugins and their times ("" when there are none)."""
        slow = self.slow
        if not slow:
            return ""
        names = ", ".join(f"{p.name} ({p.load_seconds:.1f} s)" for p in slow)
        return (f"slow plugin(s) delay every start: {names}; update or disable them, or start "
                f"with --safe-mode (or {SAFE_MODE_VARIABLE}=1) to load only the built-ins")

    def contributions(self, kind: str) -> list[Contribution]:
        """The loaded contributions of ``kind``, in load order (built-ins first)."""
        if kind not in KINDS:
            raise ConfigError(f"unknown contribution kind {kind!r}; expected one of {KINDS}")
        return list(self._by_kind[kind].values())

    def ids(self, kind: str) -> list[str]:
        return [contribution.id for contribution in self.contributions(kind)]

    def get(self, kind: str, contribution_id: str) -> Contribution:
        """The contribution ``kind``/``contribution_id``, or a :class:`ConfigError` naming the
        ones available (and the plugin that failed, when a broken plugin may have provided it)."""
        try:
            return self._by_kind[kind][contribution_id]
        except KeyError:
            pass
        hint = ""
        if self.errors:
            hint = " (plugins that failed to load: " + ", ".join(p.name for p in self.errors) + ")"
        raise ConfigError(
            f"no {kind} {contribution_id!r}; available: {', '.join(self.ids(kind)) or 'none'}"
            f"{hint}. Run 'diffstudio plugins' to see every plugin."
        )


def _distribution_of(entry_point: importlib_metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"] or "?", dist.version or "?"


def _metadata_of(entry_point: importlib_metadata.EntryPoint) -> tuple[str, dict[str, str]]:
    """The distribution's summary and its project URLs (Home-page and Project-URL lines)."""
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "", {}
    metadata = dist.metadata
    urls: dict[str, str] = {}
    if metadata.get("Home-page"):
        urls["Homepage"] = metadata["Home-page"]
    for line in metadata.get_all("Project-URL") or []:
        label, _, url = line.partition(",")
        if url.strip():
            urls[label.strip()] = url.strip()
    return metadata.get("Summary") or "", urls


def _discover() -> list[importlib_metadata.EntryPoint]:
    found = importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)
    # Built-ins first so that a third-party id clash is reported on the third-party plugin.
    seen: set[tuple[str, str]] = set()
    unique = []
    for entry_point in found:
        key = (entry_point.name, entry_point.value)
        if key not in seen:
            seen.add(key)
            unique.append(entry_point)
    return sorted(
        unique, key=lambda ep: (_distribution_of(ep)[0].lower() != BUILTIN_DISTRIBUTION, ep.name)
    )


def load_plugins(
    *,
    safe_mode: bool | None = None,
    entry_points: Iterable[importlib_metadata.EntryPoint] | None = None,
    disabled: Iterable[str] | None = None,
    load_only: Iterable[str] | None = None,
) -> PluginRegistry:
    """Find the ``diffstudio`` entry points and load each plugin in isolation.

    ``entry_points`` replaces discovery (tests); ``safe_mode=None`` reads the environment.
    ``disabled`` (default: the settings file's list) names plugins that are not imported;
    ``load_only`` (default: ``DIFFSTUDIO_LOAD_PLUGINS``, None = all) the only third-party
    plugins that are. Built-in plugins are always loaded (safe mode keeps only them).
    Never raises for a broken plugin: the error is on its :class:`PluginInfo`.
    """
    if safe_mode is None:
        safe_mode = safe_mode_env()
    blocked = set(disabled_plugins() if disabled is None else disabled)
    only = load_only_env() if load_only is None else list(load_only)
    if only is not None and not only:
        safe_mode = True  # DIFFSTUDIO_LOAD_PLUGINS set and empty: no third-party plugin
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    plugins: list[PluginInfo] = []
    taken: dict[tuple[str, str], str] = {}
    candidates = list(entry_points) if entry_points is not None else _discover()
    for entry_point in candidates:
        distribution, version = _distribution_of(entry_point)
        info = PluginInfo(
            name=entry_point.name,
            distribution=distribution,
            version=version,
            builtin=distribution.lower() == BUILTIN_DISTRIBUTION,
            entry_point=entry_point.value,
        )
        info.summary, info.urls = _metadata_of(entry_point)
        plugins.append(info)
        if safe_mode and not info.builtin:
            info.skipped = True
            continue
        if not info.builtin and (info.name in blocked or info.distribution in blocked):
            info.disabled, info.disabled_reason = True, "disabled in the settings"
        elif not info.builtin and only is not None and not ({info.name, info.distribution}
                                                            & set(only)):
            info.disabled = True
            info.disabled_reason = f"not named in {LOAD_PLUGINS_VARIABLE}"
        if info.disabled:
            manager.set_blocked(info.name)  # pluggy refuses it even if something registers it
            continue
        started = time.perf_counter()
        _load_one(manager, entry_point, info, taken)
        info.load_seconds = time.perf_counter() - started
    return PluginRegistry(plugins, manager, safe_mode)


def _fail(info: PluginInfo, stage: str, exc: BaseException) -> None:
    info.error = f"{type(exc).__name__}: {exc}"
    info.error_stage = stage
    info.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    info.contributions = []


def _load_one(
    manager: pluggy.PluginManager,
    entry_point: importlib_metadata.EntryPoint,
    info: PluginInfo,
    taken: dict[tuple[str, str], str],
) -> None:
    try:
        plugin = entry_point.load()
    except BaseException as exc:  # a plugin may raise anything at import, even SystemExit
        if isinstance(exc, KeyboardInterrupt):
            raise
        _fail(info, "import", exc)
        return
    if manager.is_registered(plugin) or manager.get_plugin(info.name) is not None:
        _fail(info, "register", PluginError(f"plugin name {info.name!r} is already registered"))
        return
    try:
        manager.register(plugin, name=info.name)
    except Exception as exc:  # pluggy.PluginValidationError and friends
        _fail(info, "register", exc)
        return

    contributions: list[Contribution] = []
    stage = "hook"
    try:
        for hook_name, kind in hookspecs.HOOK_KINDS.items():
            for impl in getattr(manager.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                stage = "hook"
                result = impl.function()
                stage = "spec"
                contributions.extend(_check_contributions(result, kind, info, hook_name))
        ids = [(c.kind, c.id) for c in contributions]
        for key in ids:
            if ids.count(key) > 1:
                raise PluginError(f"{key[0]} id {key[1]!r} is contributed twice by this plugin")
            if key in taken:
                raise PluginError(
                    f"{key[0]} id {key[1]!r} is already provided by plugin {taken[key]!r}; "
                    "choose another id"
                )
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        manager.unregister(plugin)  # roll back: nothing of a half-loaded plugin stays
        _fail(info, stage, exc)
        return
    for contribution in contributions:
        taken[(contribution.kind, contribution.id)] = info.name
    info.contributions = contributions


def _check_contributions(
    result: Any, kind: str, info: PluginInfo, hook_name: str
) -> list[Contribution]:
    if result is None:
        return []
    if not isinstance(result, (list, tuple)):
        raise PluginError(f"{hook_name} returned {type(result).__name__}; expected a list")
    checked = []
    for item in result:
        if not isinstance(item, Contribution):
            raise PluginError(
                f"{hook_name} returned a {type(item).__name__}; expected diffstudio Contribution"
            )
        if item.kind != kind:
            raise PluginError(f"{hook_name} returned a {item.kind!r} contribution {item.id!r}")
        try:
            item.check_spec()
        except ConfigError as exc:
            raise PluginError(f"invalid spec: {exc}") from exc
        # Remember which plugin provided it (for messages); Contribution is frozen.
        object.__setattr__(item, "plugin", info.name)
        checked.append(item)
    return checked
