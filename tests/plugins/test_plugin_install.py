"""Real pip installs into a throw-away virtual environment: the example plugin's wheel installs,
lists, samples and uninstalls; packages that would change a pinned version are refused before
anything changes; environments that cannot be installed into are refused in one line."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

import pytest
from plugin_venv import run_in, venv_site

from diffstudio.app import plugin_install
from diffstudio.app.plugin_install import (
    InstallRequest,
    constraints_text,
    install,
    installed_versions,
    pinned_versions,
)
from diffstudio.cli import main
from diffstudio.errors import PluginInstallError

OFFLINE = ["--no-index", "--no-build-isolation"]


def _versions(venv: Path) -> dict[str, str]:
    code = ("import json; from diffstudio.app.plugin_install import installed_versions as v; "
            "print(json.dumps(v()))")
    import subprocess

    from plugin_venv import venv_python
    out = subprocess.run([str(venv_python(venv)), "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


def _plugins(venv: Path, settings: Path, **env: str) -> dict[str, dict]:
    result = run_in(venv, "plugins", "--json", settings=settings, env=env)
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["plugins"]}


def test_constraints_pin_the_installed_distributions_exactly():
    pins = pinned_versions(installed_versions())
    assert {"torch", "numpy", "pluggy", "diffstudio", "diffusers"} <= set(pins)
    lines = constraints_text(pins).splitlines()
    # The version pip sees (a local tag such as "+cu130" when the metadata carries one).
    assert f"torch=={importlib.metadata.version('torch')}" in lines
    assert f"numpy=={importlib.metadata.version('numpy')}" in lines


def test_the_example_wheel_installs_lists_samples_and_uninstalls(
    venv, settings, example_wheel, tmp_path
):
    site = venv_site(venv)
    before = _versions(venv)
    result = run_in(venv, "plugins", "install", str(example_wheel), *OFFLINE, "--json",
                    settings=settings)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["restart_needed"] is True
    assert outcome["changes"] == [
        {"name": "diffstudio-example-sampler", "before": None, "after": "0.1.0"}]
    assert "pinned: " in result.stderr and "torch==" in result.stderr
    assert list(site.glob("diffstudio_example_sampler-0.1.0.dist-info"))  # in the venv only
    after = _versions(venv)
    assert pinned_versions(after) == pinned_versions(before)

    example = _plugins(venv, settings)["example-heun"]
    assert example["status"] == "ok" and example["distribution"] == "diffstudio-example-sampler"

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "4", "--batch-size", "4",
                 "--num-timesteps", "20", "--warmup-steps", "1", "--checkpoint-every", "4",
                 "--preview-every", "0", "--device", "cpu", "--quiet"]) == 0
    samples = tmp_path / "samples"
    sampled = run_in(venv, "sample", str(run), "--sampler", "example-heun", "--steps", "2",
                     "--num", "2", "--out", str(samples), "--device", "cpu", "--quiet",
                     settings=settings)
    assert sampled.returncode == 0, sampled.stderr
    assert len(list(samples.glob("*.png"))) >= 2

    removed = run_in(venv, "plugins", "uninstall", "example-heun", settings=settings)
    assert removed.returncode == 0, removed.stderr
    assert "- diffstudio-example-sampler 0.1.0" in removed.stdout
    assert "Restart diffstudio" in removed.stdout
    assert "example-heun" not in _plugins(venv, settings)
    assert _versions(venv) == before


@pytest.mark.parametrize(("requirement", "pinned"), [("torch==1.13.1", "torch"),
                                                     ("numpy==1.0", "numpy")])
def test_a_package_that_would_change_a_pinned_version_is_refused_before_anything_changes(
    venv, settings, local_package, requirement, pinned
):
    package = local_package("greedy-plugin", [requirement])
    site = venv_site(venv)
    before, files_before = _versions(venv), sorted(p.name for p in site.iterdir())
    result = run_in(venv, "plugins", "install", str(package), *OFFLINE, settings=settings)
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "error:" in line]
    assert line.startswith("diffstudio plugins: error: refused: installing")
    assert f"would change {pinned} {before[pinned]}" in line
    assert f"greedy-plugin 0.1 depends on {requirement}" in line  # pip's reason, who asked
    assert "Nothing was changed" in line
    assert _versions(venv) == before
    assert sorted(p.name for p in site.iterdir()) == files_before


def test_a_compatible_local_package_installs_and_a_missing_one_is_one_line(
    venv, settings, local_package
):
    package = local_package("polite-plugin", ["numpy"])
    result = run_in(venv, "plugins", "install", str(package), *OFFLINE, settings=settings)
    assert result.returncode == 0, result.stderr
    assert "+ polite-plugin 0.1" in result.stdout
    missing = run_in(venv, "plugins", "install", "no-such-plugin-xyz", *OFFLINE,
                     settings=settings)
    assert missing.returncode == 2
    assert "pip cannot install no-such-plugin-xyz" in missing.stderr
    option = run_in(venv, "plugins", "install", "--", "--index-url=http://example.invalid",
                    settings=settings)
    assert option.returncode == 2 and "is not a package" in option.stderr
    gone = run_in(venv, "plugins", "uninstall", "torch", settings=settings)
    assert gone.returncode == 2 and "which diffstudio needs" in gone.stderr


def _refusal(monkeypatch: pytest.MonkeyPatch) -> str:
    with pytest.raises(PluginInstallError) as error:
        next(install(InstallRequest("anything")))
    return str(error.value)


def test_a_frozen_bundle_is_refused(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert "self-contained application bundle" in _refusal(monkeypatch)


def test_a_conda_environment_is_refused_with_what_to_do(monkeypatch, tmp_path):
    (tmp_path / "conda-meta").mkdir()
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    message = _refusal(monkeypatch)
    assert "conda environment" in message and "-m pip install" in message


def test_an_externally_managed_interpreter_is_refused(monkeypatch, tmp_path):
    (tmp_path / "EXTERNALLY-MANAGED").write_text("[externally-managed]\n")
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)
    real = plugin_install.sysconfig.get_path
    monkeypatch.setattr(plugin_install.sysconfig, "get_path",
                        lambda name: str(tmp_path) if name == "stdlib" else real(name))
    assert "PEP 668" in _refusal(monkeypatch)


def test_a_read_only_site_packages_is_refused(monkeypatch, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    site.chmod(0o500)
    real = plugin_install.sysconfig.get_path
    monkeypatch.setattr(plugin_install.sysconfig, "get_path",
                        lambda name: str(site) if name == "purelib" else real(name))
    try:
        if plugin_install.os.access(site, plugin_install.os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        assert "not writable" in _refusal(monkeypatch)
    finally:
        site.chmod(0o700)
