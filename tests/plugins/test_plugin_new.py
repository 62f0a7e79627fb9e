"""``diffstudio plugins new``: the package it writes installs (editable) and passes its own
tests as written, and shows up in ``diffstudio plugins``."""

from __future__ import annotations

import json
import subprocess

import pytest
from plugin_venv import run_in, venv_python

from diffstudio.cli import main


@pytest.mark.parametrize(("kind", "contributes"), [("sampler", "sampler"),
                                                  ("schedule", "schedule")])
def test_a_new_plugin_installs_and_passes_its_own_tests(
    venv, settings, tmp_path, capsys, kind, contributes
):
    folder = tmp_path / f"my-{kind}"
    assert main(["plugins", "new", f"my-{kind}", "--kind", kind, "--out", str(folder)]) == 0
    assert f"wrote {folder}" in capsys.readouterr().out
    assert (folder / "pyproject.toml").is_file() and (folder / "README.md").is_file()

    installed = run_in(venv, "plugins", "install", "--editable", str(folder), "--no-index",
                       "--no-build-isolation", settings=settings)
    assert installed.returncode == 0, installed.stderr
    listed = json.loads(run_in(venv, "plugins", "--json", settings=settings).stdout)
    mine = next(p for p in listed["plugins"] if p["name"] == f"my-{kind}")
    assert mine["status"] == "ok", mine
    assert mine["contributions"] == [
        {"kind": contributes, "id": f"my-{kind}", "display_name": f"My {kind}"}]

    tests = subprocess.run([str(venv_python(venv)), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "-W", "ignore::DeprecationWarning"],
                           cwd=folder, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "failed" not in tests.stdout


def test_new_refuses_an_existing_folder_and_a_bad_name(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert main(["plugins", "new", "taken", "--out", str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["plugins", "new", "9 lives", "--out", str(tmp_path / "x")]) == 2
    assert "not a usable distribution name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
