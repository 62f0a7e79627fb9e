"""Installing and removing plugins with pip, without ever changing the packages diffstudio
stands on (the ComfyUI-Manager failure: a custom node's ``torch>=x`` replacing the CUDA build).

::

    install(InstallRequest("diffstudio-edm"))  -> Note, PipLine ..., Done(InstallOutcome)
    uninstall(UninstallRequest("edm"))         -> Note, PipLine ..., Done(InstallOutcome)

How an install goes:

1. :func:`environment_problem` refuses an environment pip cannot or must not install into: a
   frozen bundle (``sys.frozen``), a conda environment (conda and pip would disagree about who
   owns the files; napari issues 5623, 3223), an externally managed interpreter (PEP 668) or a
   site-packages folder this user cannot write.
2. The versions installed now are read (:func:`installed_versions`) and a constraints file pins
   the exact versions, local tags included (``torch==2.5.1+cu124``), of :data:`PINNED`.
3. ``python -m pip install --dry-run --report`` resolves under ``-c constraints``; when pip
   cannot (a plugin asks for ``torch<2``) the install is refused with pip's own "X depends on Y"
   lines and the pinned package named; when the plan would install any pinned package it is
   refused too. Nothing has changed at this point.
4. The real ``pip install`` runs under the same constraints, its output streamed line by line
   (:class:`PipLine`); the constraints also reach isolated builds: ``--build-constraint`` on a
   pip that has it (25.3+), ``PIP_CONSTRAINT`` in the environment of older ones.
5. The versions are read again; the outcome lists what was added, removed and changed, and a
   restart is needed to load it (nothing is imported into the running process).

pip always runs as a subprocess of this interpreter (``sys.executable -m pip``), never in
process: modules already imported would go stale. No Qt, no torch.
"""

from __future__ import annotations

import importlib
import importlib.metadata as importlib_metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffstudio.app.events import Done, Note
from diffstudio.errors import Cancelled, PluginInstallError
from diffstudio.frozen import plugin_install_refusal

__all__ = [
    "PINNED",
    "InstallOutcome",
    "InstallRequest",
    "PipLine",
    "UninstallRequest",
    "VersionChange",
    "canonical_name",
    "constraints_text",
    "distribution_of_plugin",
    "environment_problem",
    "install",
    "installed_versions",
    "pinned_versions",
    "uninstall",
    "version_changes",
]

# What a plugin install may never change (canonical names, PEP 503).
PINNED = (
    "torch", "torchvision", "diffusers", "pyside6", "pyside6-essentials", "pyside6-addons",
    "shiboken6", "numpy", "pluggy", "diffstudio",
)
BUILD_CONSTRAINT_PIP = (25, 3)  # the first pip with --build-constraint


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: ``PySide6_Essentials`` -> ``pyside6-essentials``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class PipLine:
    """One line of pip's output, as it came, from the ``stage`` "resolve" (the dry run) or
    "install"/"uninstall"."""

    text: str
    stage: str = "install"

    @property
    def routine(self) -> bool:
        """A line a front end may leave out (what is already installed, unchanged)."""
        return self.text.lstrip().startswith("Requirement already satisfied")


@dataclass(frozen=True)
class VersionChange:
    """A distribution whose installed version differs between two snapshots (None: absent)."""

    name: str
    before: str | None
    after: str | None

    def describe(self) -> str:
        if self.before is None:
            return f"+ {self.name} {self.after}"
        if self.after is None:
            return f"- {self.name} {self.before}"
        return f"~ {self.name} {self.before} -> {self.after}"


@dataclass
class InstallOutcome:
    """What an install or uninstall changed; ``restart_needed`` when anything did."""

    action: str  # "install" or "uninstall"
    target: str
    changes: list[VersionChange] = field(default_factory=list)
    pinned: dict[str, str] = field(default_factory=dict)

    @property
    def restart_needed(self) -> bool:
        return bool(self.changes)

    def summary(self) -> str:
        if not self.changes:
            return f"{self.action} {self.target}: nothing changed"
        return (f"{self.action} {self.target}: " + ", ".join(c.describe() for c in self.changes)
                + ". Restart diffstudio to load the plugins as they are now.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action, "target": self.target,
            "changes": [{"name": c.name, "before": c.before, "after": c.after}
                        for c in self.changes],
            "pinned": dict(self.pinned), "restart_needed": self.restart_needed,
        }


@dataclass(frozen=True)
class InstallRequest:
    """Install ``target``: a name with an optional specifier (``diffstudio-edm>=0.2``), a source
    folder, a wheel or sdist file, or a URL. ``no_index``/``find_links``/``no_build_isolation``
    are pip's options of the same names (offline installs of local packages); ``editable``
    installs a source folder with ``-e``."""

    target: str
    no_index: bool = False
    find_links: tuple[str, ...] = ()
    no_build_isolation: bool = False
    editable: bool = False
    upgrade: bool = False


@dataclass(frozen=True)
class UninstallRequest:
    """Uninstall the distribution that provides plugin ``name`` (or distribution ``name``)."""

    name: str


# -- the environment ------------------------------------------------------------------------------
def installed_versions() -> dict[str, str]:
    """Canonical name -> version of every distribution this interpreter sees (first on
    ``sys.path`` wins, as imports do), read afresh."""
    importlib.invalidate_caches()
    versions: dict[str, str] = {}
    for dist in importlib_metadata.distributions():
        name = dist.metadata["Name"]
        if name and canonical_name(name) not in versions:
            versions[canonical_name(name)] = dist.version
    return versions


def pinned_versions(versions: dict[str, str]) -> dict[str, str]:
    """The installed versions of :data:`PINNED` (those not installed are not pinned)."""
    return {name: versions[name] for name in PINNED if name in versions}


def constraints_text(pins: dict[str, str]) -> str:
    """A pip constraints file pinning ``pins`` exactly (``==`` keeps a local tag exact)."""
    lines = ["# Written by diffstudio: a plugin install may not change these packages."]
    lines += [f"{name}=={version}" for name, version in sorted(pins.items())]
    return "\n".join(lines) + "\n"


def version_changes(before: dict[str, str], after: dict[str, str]) -> list[VersionChange]:
    """Every distribution added, removed or changed between two snapshots, by name."""
    return [
        VersionChange(name, before.get(name), after.get(name))
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]


def _is_conda() -> bool:
    return (Path(sys.prefix) / "conda-meta").is_dir()


def environment_problem() -> str | None:
    """Why plugins cannot be installed into this interpreter's environment, or None."""
    frozen = plugin_install_refusal()  # one sentence for the bundle, in diffstudio/frozen.py
    if frozen is not None:
        return frozen
    if _is_conda():
        return (f"{sys.prefix} is a conda environment: installing with pip behind conda's "
                "back breaks it. Install the plugin with conda, or run pip yourself: "
                f"'{sys.executable} -m pip install PLUGIN'")
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    marker = Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED"
    if not in_venv and marker.exists():
        return (f"this Python ({sys.executable}) is managed by the system's package manager "
                "(PEP 668). Install diffstudio in a virtual environment "
                "('python -m venv ~/.venvs/diffstudio') and run it from there")
    site = Path(sysconfig.get_path("purelib"))
    if not os.access(site if site.exists() else site.parent, os.W_OK):
        return (f"{site} is not writable by this user, so pip cannot install there. Use a "
                "virtual environment you own")
    return None


def _pip_version(env: dict[str, str]) -> tuple[int, ...]:
    result = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                            text=True, env=env, timeout=120)
    if result.returncode != 0:
        raise PluginInstallError(
            f"pip is not available to {sys.executable}: {result.stderr.strip() or result.stdout}"
            f". Install it with '{sys.executable} -m ensurepip'")
    match = re.match(r"pip (\d+)\.(\d+)", result.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _pip_environment(constraints: Path, pip_version: tuple[int, ...]) -> dict[str, str]:
    env = dict(os.environ)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if pip_version < BUILD_CONSTRAINT_PIP:
        # Older pips pass PIP_CONSTRAINT on to the pip that fills an isolated build
        # environment, where -c does not reach; keep any constraint the user had set.
        env["PIP_CONSTRAINT"] = " ".join(filter(None, [env.get("PIP_CONSTRAINT"),
                                                       str(constraints)]))
    return env


def _install_args(request: InstallRequest, constraints: Path,
                  pip_version: tuple[int, ...]) -> list[str]:
    args = ["install", "-c", str(constraints)]
    if pip_version >= BUILD_CONSTRAINT_PIP:
        args += ["--build-constraint", str(constraints)]
    if request.no_index:
        args.append("--no-index")
    for link in request.find_links:
        args += ["--find-links", link]
    if request.no_build_isolation:
        args.append("--no-build-isolation")
    if request.upgrade:
        args.append("--upgrade")
    args += ["-e", request.target] if request.editable else [request.target]
    return args


def _stream(args: list[str], env: dict[str, str], lines: list[str],
            stage: str) -> Iterator[PipLine]:
    """Run ``python -m pip ARGS``, yielding each output line; returns its exit status."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pip", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env, bufsize=1,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            yield PipLine(line, stage)
        return process.wait()
    finally:
        if process.poll() is None:  # the consumer closed the job: leave nothing running
            process.terminate()
            process.wait(30)


def _conflict_reason(output: list[str], pins: dict[str, str]) -> tuple[str, list[str]]:
    """pip's "X depends on Y" lines after "The conflict is caused by:", and the pinned
    packages they name."""
    reason: list[str] = []
    collecting = False
    for line in output:
        text = line.strip()
        if text.startswith("The conflict is caused by"):
            collecting = True
            continue
        if collecting:
            if not text or text.startswith("To fix this"):
                if reason:
                    break
                continue
            reason.append(text)
    if not reason:
        reason = [line.strip() for line in output if line.strip().startswith("ERROR:")][-3:]
    named = sorted({
        name for name in pins
        for line in reason
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", canonical_name(line))
    })
    return "; ".join(reason), named


def _check_plan(report: dict[str, Any], pins: dict[str, str]) -> None:
    """Refuse a resolved plan that would install (change or reinstall) a pinned package,
    naming the packages of the plan that require it."""
    items = report.get("install", [])
    for item in items:
        metadata = item.get("metadata", {})
        name = canonical_name(metadata.get("name", ""))
        if name not in pins:
            continue
        askers = [
            f"{other['metadata']['name']} {other['metadata']['version']}"
            for other in items if other is not item and any(
                canonical_name(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0]) == name
                for requirement in other.get("metadata", {}).get("requires_dist") or [])
        ] or (["the request itself"] if item.get("requested") else ["an unknown package"])
        raise PluginInstallError(
            f"refused: the install would put {metadata.get('name')} "
            f"{metadata.get('version')} in place of the installed {pins[name]} (asked for by "
            f"{', '.join(askers)}); diffstudio never lets a plugin change {name}. Nothing "
            "was changed")


# -- the jobs -------------------------------------------------------------------------------------
def install(
    request: InstallRequest, *, should_stop: Callable[[], bool] | None = None
) -> Iterator[Any]:
    """Install a plugin (see the module docstring); yields Note, PipLine and last
    Done(InstallOutcome). Raises :class:`PluginInstallError` when refused or when pip fails."""
    if not request.target.strip():
        raise PluginInstallError("nothing to install: give a name, a folder, a wheel or a URL")
    if request.target.lstrip().startswith("-"):
        raise PluginInstallError(
            f"{request.target!r} is not a package: give a name, a folder, a wheel or a URL "
            "(pip options are not accepted here)")
    problem = environment_problem()
    if problem:
        raise PluginInstallError(f"cannot install plugins here: {problem}")
    before = installed_versions()
    pins = pinned_versions(before)
    yield Note("pinned: " + ", ".join(f"{n}=={v}" for n, v in sorted(pins.items())))
    with tempfile.TemporaryDirectory(prefix="diffstudio-install-") as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text(constraints_text(pins), encoding="utf-8")
        env = _pip_environment(constraints, (0, 0))
        pip_version = _pip_version(env)
        env = _pip_environment(constraints, pip_version)
        args = _install_args(request, constraints, pip_version)

        yield Note(f"resolving {request.target} (pip install --dry-run) under the constraints")
        report_path = Path(folder) / "report.json"
        output: list[str] = []
        status = yield from _stream([*args[:1], "--dry-run", "--report", str(report_path),
                                     *args[1:]], env, output, "resolve")
        if status != 0:
            reason, named = _conflict_reason(output, pins)
            if named:
                raise PluginInstallError(
                    f"refused: installing {request.target} would change "
                    f"{', '.join(f'{n} {pins[n]}' for n in named)}, which plugins may not "
                    f"change. pip says: {reason}. Nothing was changed")
            raise PluginInstallError(
                f"pip cannot install {request.target}: {reason or 'see its output above'}. "
                "Nothing was changed")
        report = json.loads(report_path.read_text(encoding="utf-8"))
        _check_plan(report, pins)
        planned = [f"{i['metadata']['name']} {i['metadata']['version']}"
                   for i in report.get("install", [])]
        yield Note("would install: " + (", ".join(planned) or "nothing (already installed)"))
        if should_stop is not None and should_stop():
            raise Cancelled("install stopped before anything changed")

        yield Note(f"installing {request.target}")
        output = []
        status = yield from _stream(args, env, output, "install")
    after = installed_versions()
    outcome = InstallOutcome("install", request.target, version_changes(before, after), pins)
    moved = [c for c in outcome.changes if c.name in pins]
    if moved:  # cannot happen under -c; said loudly if pip ever lets it through
        raise PluginInstallError(
            "pip changed pinned packages despite the constraints: "
            + ", ".join(c.describe() for c in moved)
            + f". Restore them with '{sys.executable} -m pip install "
            + " ".join(f"{c.name}=={c.before}" for c in moved if c.before) + "'")
    if status != 0:
        changed = (", ".join(c.describe() for c in outcome.changes)
                   if outcome.changes else "nothing was changed")
        last = [line.strip() for line in output if line.strip().startswith("ERROR:")][-2:]
        raise PluginInstallError(
            f"pip failed to install {request.target} ({'; '.join(last) or f'exit {status}'});"
            f" {changed}")
    yield Done(outcome)


def distribution_of_plugin(name: str) -> str | None:
    """The distribution that provides plugin (entry point) ``name``, or that is named
    ``name``; None when neither is installed."""
    importlib.invalidate_caches()
    for entry_point in importlib_metadata.entry_points(group="diffstudio"):
        dist = getattr(entry_point, "dist", None)
        if entry_point.name == name and dist is not None:
            return str(dist.metadata["Name"])
    try:
        return str(importlib_metadata.distribution(name).metadata["Name"])
    except importlib_metadata.PackageNotFoundError:
        return None


def uninstall(
    request: UninstallRequest, *, should_stop: Callable[[], bool] | None = None
) -> Iterator[Any]:
    """Uninstall the distribution of plugin ``request.name``; yields Note, PipLine, Done."""
    problem = environment_problem()
    if problem:
        raise PluginInstallError(f"cannot uninstall plugins here: {problem}")
    distribution = distribution_of_plugin(request.name)
    if distribution is None:
        raise PluginInstallError(
            f"no installed plugin or distribution {request.name!r}; "
            "'diffstudio plugins list' shows what is installed")
    if canonical_name(distribution) in PINNED:
        raise PluginInstallError(
            f"{request.name!r} belongs to {distribution}, which diffstudio needs; built-in "
            "plugins can be disabled, not uninstalled ('diffstudio plugins disable NAME')")
    before = installed_versions()
    yield Note(f"uninstalling {distribution} (provides {request.name})")
    if should_stop is not None and should_stop():
        raise Cancelled("uninstall stopped before anything changed")
    output: list[str] = []
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONUNBUFFERED": "1"}
    status = yield from _stream(["uninstall", "--yes", distribution], env, output, "uninstall")
    if status != 0:
        raise PluginInstallError(f"pip could not uninstall {distribution}: "
                                 + ("; ".join(output[-2:]) or f"exit {status}"))
    after = installed_versions()
    yield Done(InstallOutcome("uninstall", distribution, version_changes(before, after),
                              pinned_versions(before)))
