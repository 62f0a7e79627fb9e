"""``diffstudio --version`` and ``diffstudio --selftest``: what they print, and that a broken
installation fails the self-test with the broken part named."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import diffstudio
import diffstudio_builtins
from diffstudio.cli import main
from diffstudio.cli.selftest import check_entry_points, check_network_step, run_selftest
from diffstudio.plugin_manager import load_plugins


def test_version_prints_the_version_the_python_and_the_environment(capsys):
    assert main(["--version"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"diffstudio {diffstudio.__version__} (Python ")
    assert f"Python environment {sys.prefix})" in line
    assert "\n" not in line  # never wrapped, whatever the terminal width


def test_selftest_is_in_the_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--selftest" in out and "--version" in out


def test_the_checks_pass_here_without_the_window(tmp_path):
    stream = io.StringIO()
    assert run_selftest(window=False, stream=stream) == 0, stream.getvalue()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith(f"diffstudio {diffstudio.__version__}")
    assert any(line.strip().startswith("settings ") for line in lines)
    for name in ("torch", "device", "entry points", "network step"):
        assert any(line.strip().startswith(f"ok      {name}:") for line in lines), lines
    assert lines[-1].startswith("self-test passed: 4 checks")


def test_entry_point_check_counts_contributions():
    detail = check_entry_points(load_plugins())
    assert detail.startswith("4 built-in plugins (")
    assert "samplers" in detail


def test_network_step_trains_and_samples_on_the_cpu(tmp_path):
    detail = check_network_step(load_plugins(), tmp_path)
    assert "trained 1 step on the CPU" in detail and "(1x8x8)" in detail
    assert (tmp_path / "run" / "config.json").is_file()


BROKEN_SAMPLERS = "raise ImportError('a half-installed diffstudio lost its samplers')\n"


@pytest.fixture
def broken_builtins(tmp_path: Path) -> Path:
    """A diffstudio_builtins whose samplers module fails to import, the rest being the real one
    (the shadowing package extends its __path__ with the real package's folder)."""
    package = tmp_path / "shadow" / "diffstudio_builtins"
    package.mkdir(parents=True)
    real = Path(diffstudio_builtins.__file__).parent
    (package / "__init__.py").write_text(textwrap.dedent(f"""
        __path__.append({str(real)!r})
    """), encoding="utf-8")
    (package / "samplers.py").write_text(BROKEN_SAMPLERS, encoding="utf-8")
    return tmp_path / "shadow"


def test_a_broken_builtin_fails_the_selftest_and_is_named(broken_builtins):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(broken_builtins), *sys.path])
    code = ("import sys; from diffstudio.cli.selftest import run_selftest; "
            "sys.exit(run_selftest(window=False))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    failed = [line for line in lines if line.strip().startswith("FAILED")]
    assert any("entry points" in line and "builtin-samplers" in line
               and "lost its samplers" in line for line in failed), lines
    # The other checks still ran and said so.
    assert any(line.strip().startswith("ok      torch:") for line in lines)
    assert lines[-1].startswith("self-test FAILED (entry points")
