"""The built distributions, not the source tree: an sdist is built, a wheel is built from the
unpacked sdist (so the sdist is complete), and the wheel is installed with a real pip into a
fresh virtual environment, where ``diffstudio --selftest`` and ``diffstudio plugins --json`` run.

Nothing large is downloaded: the fresh environment is made from the base interpreter (not from
this virtual environment, whose editable diffstudio would shadow the wheel), the wheel is
installed with ``--no-deps``, and the dependencies (torch, diffusers, PySide6...) are reached
through a ``.pth`` file pointing at a folder of links to this environment's packages, diffstudio's
own entries left out. Every check asserts that the code it ran came from the fresh environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from diffstudio.cli.selftest import BUILTIN_ENTRY_POINTS
from diffstudio.resources import APP_ID, ICON_SIZES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = [
    "diffstudio.svg", "diffstudio.ico", "diffstudio.icns", f"{APP_ID}.desktop",
    f"{APP_ID}.metainfo.xml", *(f"icons/diffstudio-{size}.png" for size in ICON_SIZES),
]
BUILTIN_MODULES = ["__init__", "datasets", "schedules", "networks", "samplers"]


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _clean_environment() -> dict[str, str]:
    """This environment without the variables that put the source tree on the import path."""
    return {key: value for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "PYTHONHOME", "DIFFSTUDIO_SAFE_MODE", "VIRTUAL_ENV")}


def _source_copy(folder: Path) -> Path:
    """The files git would commit (tracked, or new and not ignored), copied: the build writes
    its egg-info next to them, and a stray file of the working tree cannot sneak in."""
    listed = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                  cwd=ROOT).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return folder


@pytest.fixture(scope="module")
def distributions(tmp_path_factory) -> dict[str, Path]:
    """The sdist, built from the working tree, and the wheel, built from the unpacked sdist."""
    out = tmp_path_factory.mktemp("dist")
    tree = _source_copy(tmp_path_factory.mktemp("tree"))
    _run([sys.executable, "-c",
          f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"],
         cwd=tree, env=_clean_environment())
    (sdist,) = out.glob("diffstudio-*.tar.gz")
    unpacked = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(sdist) as archive:
        archive.extractall(unpacked, filter="data")
    (source,) = unpacked.iterdir()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "--quiet", "--wheel-dir", str(out), str(source)],
         env=_clean_environment())
    (wheel,) = out.glob("diffstudio-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_the_sdist_holds_the_package_the_builtins_and_the_resources(distributions):
    with tarfile.open(distributions["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert "pyproject.toml" in names and "README.md" in names
    assert {f"diffstudio/resources/{name}" for name in RESOURCES} <= names
    assert {f"plugins/diffstudio_builtins/{m}.py" for m in BUILTIN_MODULES} <= names


def test_the_wheel_holds_the_resources_and_the_entry_points(distributions):
    with zipfile.ZipFile(distributions["wheel"]) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        declared = archive.read(entry_points).decode()
    assert {f"diffstudio/resources/{name}" for name in RESOURCES} <= names
    assert {f"diffstudio_builtins/{m}.py" for m in BUILTIN_MODULES} <= names
    assert "diffstudio/cli/selftest.py" in names and "diffstudio/gui/selftest.py" in names
    assert "[console_scripts]\ndiffstudio = diffstudio.cli:main" in declared
    assert "[diffstudio]" in declared
    for name in BUILTIN_ENTRY_POINTS:
        assert f"{name} = diffstudio_builtins." in declared


def _dependencies_view(folder: Path) -> Path:
    """Links to every package of this environment except diffstudio's own (its editable finder
    and metadata would otherwise answer instead of the wheel)."""
    folder.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        lowered = entry.name.lower()
        if lowered.startswith(("diffstudio", "__editable__", "_diffstudio")) or \
                lowered.endswith(".pth"):
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


@pytest.fixture(scope="module")
def installed(distributions, tmp_path_factory) -> dict[str, Path]:
    """A fresh virtual environment with the wheel pip-installed in it."""
    where = tmp_path_factory.mktemp("installed")
    venv = where / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run([base_python, "-m", "venv", "--without-pip", str(venv)])
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "--quiet", str(distributions["wheel"])], env=_clean_environment())
    venv_site = Path(_run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    deps = _dependencies_view(where / "deps")
    (venv_site / "zz-diffstudio-test-dependencies.pth").write_text(f"{deps}\n", encoding="utf-8")
    scripts = python.parent
    command = scripts / ("diffstudio.exe" if os.name == "nt" else "diffstudio")
    return {"venv": venv, "python": python, "command": command, "site": venv_site,
            "home": where}


def _environment(installed) -> dict[str, str]:
    env = _clean_environment()
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PATH"] = f"{installed['python'].parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_installed_wheel_is_what_runs(installed):
    code = (
        "import json, importlib.metadata as m, diffstudio, diffstudio_builtins\n"
        "from diffstudio.resources import resource\n"
        "points = {p.name: p.dist.name for p in m.entry_points(group='diffstudio')}\n"
        "print(json.dumps({'diffstudio': diffstudio.__file__,\n"
        "  'builtins': diffstudio_builtins.__file__,\n"
        "  'metadata': str(m.distribution('diffstudio').locate_file('')),\n"
        "  'icon': str(resource('icons/diffstudio-48.png')),\n"
        "  'points': points}))\n"
    )
    found = json.loads(_run([str(installed["python"]), "-c", code], cwd=installed["home"],
                            env=_environment(installed)).stdout)
    site = installed["site"].resolve()
    for key in ("diffstudio", "builtins", "metadata", "icon"):
        assert Path(found[key]).resolve().is_relative_to(site), (key, found[key])
    assert Path(found["icon"]).is_file()
    assert {name: found["points"].get(name) for name in BUILTIN_ENTRY_POINTS} == {
        name: "diffstudio" for name in BUILTIN_ENTRY_POINTS
    }


def test_version_and_selftest_pass_in_the_installed_environment(installed):
    env = _environment(installed)
    version = _run([str(installed["command"]), "--version"], cwd=installed["home"], env=env)
    assert version.stdout.startswith("diffstudio 0.1.0 ")
    assert str(installed["venv"]) in version.stdout
    result = _run([str(installed["command"]), "--selftest"], cwd=installed["home"], env=env)
    lines = result.stdout.splitlines()
    for check in ("torch", "device", "entry points", "network step", "window"):
        assert any(line.strip().startswith(f"ok      {check}:") for line in lines), result.stdout
    assert "4 built-in plugins" in result.stdout
    assert lines[-1].startswith("self-test passed: 5 checks")


def test_plugins_lists_the_builtins_from_the_installed_environment(installed):
    result = _run([str(installed["command"]), "plugins", "--json"], cwd=installed["home"],
                  env=_environment(installed))
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    for name in BUILTIN_ENTRY_POINTS:
        assert plugins[name]["builtin"] is True and plugins[name]["status"] == "ok", plugins[name]
        assert plugins[name]["distribution"] == "diffstudio"
    samplers = {c["id"] for c in plugins["builtin-samplers"]["contributions"]}
    assert {"ddpm", "ddim"} <= samplers


def test_install_sh_installs_the_wheel_with_a_menu_entry_and_uninstalls(distributions,
                                                                         tmp_path):
    """packaging/install.sh for real, from the built wheel, into a HOME of its own. Offline and
    without torch's download: --torch default skips the torch step and PIP_NO_DEPS/PIP_NO_INDEX
    make pip install the wheel alone; the dependencies (pluggy for the menu entry, torch...)
    come from the folder of links above, on PYTHONPATH."""
    home = tmp_path / "home"
    home.mkdir()
    env = _clean_environment()
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"), PIP_NO_DEPS="1",
               PIP_NO_INDEX="1", QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=str(_dependencies_view(tmp_path / "deps")))
    env.pop("DIFFSTUDIO_HOME", None)
    base_python = getattr(sys, "_base_executable", sys.executable)
    script = ROOT / "packaging" / "install.sh"
    result = _run(["bash", str(script), "--from", str(distributions["wheel"]), "--torch",
                   "default", "--python", base_python, "--no-selftest"], env=env, cwd=tmp_path)
    venv = home / ".local" / "share" / "diffstudio" / "venv"
    command = venv / "bin" / "diffstudio"
    assert f"environment: {venv}" in result.stdout and command.is_file()
    link = home / ".local" / "bin" / "diffstudio"
    assert link.is_symlink() and link.resolve() == command.resolve()
    desktop = home / ".local" / "share" / "applications" / f"{APP_ID}.desktop"
    assert f"Exec={command}\n" in desktop.read_text(encoding="utf-8")
    icon = home / ".local" / "share" / "icons" / "hicolor" / "256x256" / "apps" / f"{APP_ID}.png"
    assert icon.is_file()
    version = _run([str(link), "--version"], env=env, cwd=tmp_path)
    assert f"Python environment {venv})" in version.stdout
    # --uninstall takes away the environment, the link and the menu entry.
    _run(["bash", str(script), "--uninstall"], env=env, cwd=tmp_path)
    assert not venv.exists() and not link.exists() and not desktop.exists() \
        and not icon.exists()
