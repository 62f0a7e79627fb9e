"""Broken sampler plugins, installed next to good ones: one that raises mid-run, one that
returns NaN, one whose import sleeps 5 s. Each is named, the others keep working, and the
window still appears on time (plugins load in the background)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from diffstudio.cli import main

PLUGINS = {
    "acme_midrun": '''
        from diffstudio import Contribution, Param, hookimpl

        @hookimpl
        def diffstudio_samplers():
            return [Contribution(kind="sampler", id="acme-midrun", display_name="Mid-run",
                                 description="Raises at step 2.", factory="acme_midrun:sample",
                                 params=(Param("steps", "int", 4, minimum=1, maximum=10),))]

        def sample(model, x, *, generator, callback, should_stop, steps=4):
            for index in range(steps):
                if index == 2:
                    raise RuntimeError("acme exploded at step 2")
                x = model.predict(x, 10).x0
            return x
    ''',
    "acme_nan": '''
        import torch
        from diffstudio import Contribution, hookimpl

        @hookimpl
        def diffstudio_samplers():
            return [Contribution(kind="sampler", id="acme-nan", display_name="NaN",
                                 description="Returns NaN.", factory="acme_nan:sample")]

        def sample(model, x, *, generator, callback, should_stop):
            return torch.full_like(x, float("nan"))
    ''',
    "acme_sleepy": '''
        import time
        time.sleep(5)
        from diffstudio import Contribution, hookimpl

        @hookimpl
        def diffstudio_samplers():
            return [Contribution(kind="sampler", id="acme-sleepy", display_name="Sleepy",
                                 description="Slow to import.",
                                 factory="diffstudio.engine.samplers.ddim:ddim_sample")]
    ''',
}


def _site(folder: Path, names: list[str]) -> Path:
    """The plugins as installed distributions (a module and a .dist-info each)."""
    folder.mkdir(parents=True, exist_ok=True)
    for module in names:
        distribution = module.replace("_", "-")
        (folder / f"{module}.py").write_text(textwrap.dedent(PLUGINS[module]), encoding="utf-8")
        info = folder / f"{module}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n", encoding="utf-8")
        (info / "entry_points.txt").write_text(f"[diffstudio]\n{distribution} = {module}\n",
                                               encoding="utf-8")
    return folder


@pytest.fixture
def broken_site(tmp_path, monkeypatch, settings):
    site = _site(tmp_path / "site", ["acme_midrun", "acme_nan"])
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("DIFFSTUDIO_LOAD_PLUGINS", raising=False)
    yield site
    for module in ("acme_midrun", "acme_nan"):
        sys.modules.pop(module, None)


def test_a_sampler_that_raises_or_returns_nan_is_named_and_the_others_work(
    broken_site, tmp_path, capsys
):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "2", "--batch-size", "4",
                 "--num-timesteps", "20", "--warmup-steps", "1", "--checkpoint-every", "2",
                 "--preview-every", "0", "--device", "cpu", "--quiet"]) == 0
    common = ["--num", "2", "--device", "cpu", "--quiet"]
    capsys.readouterr()
    assert main(["sample", str(run), "--sampler", "acme-midrun", "--out",
                 str(tmp_path / "a"), *common]) != 0
    err = capsys.readouterr().err
    assert "acme-midrun" in err and "acme exploded at step 2" in err, err
    assert main(["sample", str(run), "--sampler", "acme-nan", "--out", str(tmp_path / "b"),
                 *common]) != 0
    assert "'acme-nan' (plugin acme-nan) produced NaN" in capsys.readouterr().err
    # Nothing of theirs is left behind, and the built-ins still sample in this process.
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").glob("sample-*.png"))
    assert main(["sample", str(run), "--sampler", "ddim", "--steps", "3", "--out",
                 str(tmp_path / "c"), *common]) == 0
    assert len(list((tmp_path / "c").glob("sample-*.png"))) == 2


def test_a_plugin_whose_import_sleeps_does_not_hold_the_window(tmp_path, settings):
    site = _site(tmp_path / "site", ["acme_sleepy", "acme_nan"])
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", DIFFSTUDIO_LAUNCH_PROBE="quit",
               PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    env.pop("DIFFSTUDIO_LOAD_PLUGINS", None)
    result = subprocess.run([sys.executable, "-m", "diffstudio"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    shown = float(re.search(r"window_shown_s=([\d.]+)", result.stderr).group(1))
    ready = float(re.search(r"engine_ready_s=([\d.]+)", result.stderr).group(1))
    assert ready >= 5.0  # the sleeping import held the background loader ...
    assert shown < 3.0 and shown < ready - 4.0  # ... and not the window
    listed = subprocess.run([sys.executable, "-m", "diffstudio", "plugins", "--json"], env=env,
                            capture_output=True, text=True, timeout=300)
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert plugins["acme-sleepy"]["load_seconds"] >= 5.0 and plugins["acme-nan"]["status"] == "ok"
    assert "slow plugin(s) delay every start: acme-sleepy" in listed.stderr
