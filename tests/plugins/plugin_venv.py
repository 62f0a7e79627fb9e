"""A throw-away virtual environment for real pip installs in tests.

``python -m venv`` from a virtual environment's python bases the new one on the *base*
interpreter, so ``--system-site-packages`` would not see the test environment's torch. The new
environment gets a ``.pth`` file instead that adds this interpreter's site-packages (with their
own ``.pth`` files: an editable diffstudio works), so torch is not downloaded and pip installs
into the new environment only. Creating one takes a fraction of a second (no pip of its own:
the test environment's pip is used, running as the new interpreter).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

__all__ = ["make_venv", "run_in", "venv_python", "venv_site"]


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def venv_site(venv: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    return Path(subprocess.run([str(venv_python(venv)), "-c", code], check=True,
                               capture_output=True, text=True).stdout.strip())


def make_venv(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True,
                   timeout=120)
    parents = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in sorted(parents))
    (venv_site(folder) / "_diffstudio_test_parent.pth").write_text(lines, encoding="utf-8")
    return folder


def run_in(venv: Path, *args: str, settings: Path | None = None,
           env: dict[str, str] | None = None, timeout: int = 300
           ) -> subprocess.CompletedProcess[str]:
    """``venv/bin/python -m diffstudio ARGS`` with private settings."""
    environment = {**os.environ, **(env or {})}
    environment.pop("DIFFSTUDIO_SAFE_MODE", None)
    if settings is not None:
        environment["DIFFSTUDIO_SETTINGS_FILE"] = str(settings)
    return subprocess.run([str(venv_python(venv)), "-m", "diffstudio", *args],
                          capture_output=True, text=True, env=environment, timeout=timeout)
