"""``diffstudio plugins new``: the package it writes, for every kind, installs (editable) and
passes its own tests as written, and shows up in ``diffstudio plugins``.

One virtual environment holds the four packages (creating one and installing into it is what
takes time); each kind's package is then listed and tested on its own, as its author would."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from plugin_venv import make_venv, run_in, venv_python

from diffstudio.app.plugin_scaffold import KIND_PAGES, KINDS
from diffstudio.cli import main


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Path]]:
    """(the venv, its settings file, {kind: the package folder}): every kind scaffolded by
    the CLI and installed with ``diffstudio plugins install --editable``."""
    root = tmp_path_factory.mktemp("plugins-new")
    venv, settings = make_venv(root / "venv"), root / "settings" / "diffstudio.ini"
    folders = {}
    for kind in KINDS:
        folder = root / f"my-{kind}"
        assert main(["plugins", "new", f"my-{kind}", "--kind", kind, "--out", str(folder)]) == 0
        assert (folder / "pyproject.toml").is_file() and (folder / "README.md").is_file()
        done = run_in(venv, "plugins", "install", "--editable", f"{folder}[test]", "--no-index",
                      "--no-build-isolation", settings=settings)  # as its README says
        assert done.returncode == 0, done.stderr
        folders[kind] = folder
    return venv, settings, folders


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_plugin_installs_and_passes_its_own_tests(installed, kind):
    venv, settings, folders = installed
    listed = json.loads(run_in(venv, "plugins", "--json", settings=settings).stdout)
    mine = next(p for p in listed["plugins"] if p["name"] == f"my-{kind}")
    assert mine["status"] == "ok", mine
    assert mine["contributions"] == [
        {"kind": kind, "id": f"my-{kind}", "display_name": f"My {kind}"}]

    tests = subprocess.run([str(venv_python(venv)), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "-W", "ignore::DeprecationWarning"],
                           cwd=folders[kind], capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "failed" not in tests.stdout
    assert f"src/my_{kind}/{kind}.py" in (folders[kind] / "README.md").read_text()


def test_the_four_new_plugins_train_and_sample_together(installed, tmp_path):
    """The skeletons run for real, in the studio: my-dataset's labelled points, my-network
    class-conditional (the "no label" class of label dropout included), my-schedule, then
    my-sampler with classifier-free guidance, all from the command line."""
    venv, settings, _ = installed
    run = tmp_path / "run"
    trained = run_in(venv, "train", "--dataset", "my-dataset", "--dataset.num-points", "256",
                     "--network", "my-network", "--network.class-conditional", "true",
                     "--network.hidden", "32", "--schedule", "my-schedule",
                     "--num-timesteps", "100", "--steps", "8", "--batch-size", "32",
                     "--warmup-steps", "1", "--checkpoint-every", "8", "--preview-every", "0",
                     "--device", "cpu", "--out", str(run), "--quiet", settings=settings)
    assert trained.returncode == 0, trained.stderr
    config = json.loads((run / "config.json").read_text())
    assert (config["train"]["dataset"], config["train"]["network"],
            config["train"]["schedule"]) == ("my-dataset", "my-network", "my-schedule")
    sampled = run_in(venv, "sample", str(run), "--sampler", "my-sampler", "--steps", "5",
                     "--num", "6", "--class-label", "2", "--guidance", "2",
                     "--out", str(tmp_path / "samples"), "--device", "cpu", "--quiet",
                     settings=settings)
    assert sampled.returncode == 0, sampled.stderr
    assert (tmp_path / "samples" / "samples.npz").is_file()


@pytest.mark.parametrize("kind", KINDS)
def test_new_says_where_the_plugin_will_show(tmp_path, capsys, kind):
    folder = tmp_path / "p"
    assert main(["plugins", "new", "p", "--kind", kind, "--out", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {folder}" in out
    assert f"the {kind} appears on the {KIND_PAGES[kind]} page" in out
    readme = (folder / "README.md").read_text()
    assert f"on the {KIND_PAGES[kind]} page" in readme


def test_new_refuses_an_existing_folder_and_a_bad_name(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert main(["plugins", "new", "taken", "--out", str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["plugins", "new", "9 lives", "--out", str(tmp_path / "x")]) == 2
    assert "not a usable distribution name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["plugins", "new", "fine", "--kind", "sampler-ish",
                 "--out", str(tmp_path / "y")]) == 2
    assert not (tmp_path / "y").exists()
