"""Fixtures for real plugin installs: a fresh virtual environment per test, local packages
built here (no network: ``--no-index --no-build-isolation``), private settings."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from plugin_venv import make_venv

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "plugins" / "example-sampler"


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    return make_venv(tmp_path / "venv")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "settings" / "diffstudio.ini"
    monkeypatch.setenv("DIFFSTUDIO_SETTINGS_FILE", str(path))
    return path


@pytest.fixture(scope="session")
def example_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin package built into a wheel, as its author would publish it."""
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "-w", str(out), str(EXAMPLE)],
                   check=True, timeout=300, capture_output=True)
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture
def local_package(tmp_path: Path) -> Callable[..., Path]:
    """``local_package("greedy", ["torch<2"])``: a source folder for a plugin package with
    those requirements and a diffstudio entry point."""

    def make(name: str, requires: list[str], version: str = "0.1") -> Path:
        module = name.replace("-", "_")
        folder = tmp_path / "src-packages" / name
        (folder / module).mkdir(parents=True)
        (folder / module / "__init__.py").write_text(
            "from diffstudio import hookimpl\n\n@hookimpl\ndef diffstudio_samplers():\n"
            "    return []\n", encoding="utf-8")
        (folder / "pyproject.toml").write_text(textwrap.dedent(f"""\
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "{name}"
            version = "{version}"
            dependencies = {requires!r}
            [project.entry-points.diffstudio]
            {name} = "{module}"
            [tool.setuptools]
            packages = ["{module}"]
            """).replace("'", '"'), encoding="utf-8")
        return folder

    return make
