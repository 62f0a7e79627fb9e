"""docs/plugins.md's first section, followed literally: ``plugins new my-sampler`` in a folder,
``plugins install --editable "my-sampler[test]"`` into a fresh environment, the exact-score run
the guide trains into the window's workspace, then the window (offscreen): the run is in the
Sample page's list, "My sampler" is in its sampler list with a form from its schema, and it
samples there. (That the package's own tests pass is tests/plugins/test_plugin_new.py.)"""

from __future__ import annotations

import re
import shlex
import site
import sys
from pathlib import Path

import numpy as np
import pytest
from plugin_venv import run_in, venv_site

from diffstudio.cli import main

GUIDE = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text(encoding="utf-8")
WALK = GUIDE.split("## From nothing to a sampler in the window", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(autouse=True)
def refcount_guard(qapp):
    from diffstudio.gui.refcount_guard import install

    return install(qapp)


def _commands() -> list[list[str]]:
    """The guide's walk: every ``diffstudio ...`` line of its first code block, split."""
    block = re.search(r"^```\n(.*?)^```", WALK, re.S | re.M)
    assert block, "the guide's first section has no command block"
    lines = [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("diffstudio ")]


def test_the_guides_walk_ends_with_the_new_sampler_sampling_in_the_window(
    qtbot, venv, settings, tmp_path, monkeypatch
):
    from diffstudio.gui.main_window import MainWindow
    from diffstudio.gui.settings import Preferences, open_settings
    from diffstudio.plugin_manager import load_plugins

    commands = _commands()
    names = [" ".join(command[:3]) for command in commands]
    assert names[:3] == ["diffstudio plugins new", "diffstudio plugins install",
                         "diffstudio train --dataset"], names
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # ~/diffstudio-runs, the window's default workspace
    monkeypatch.chdir(tmp_path)

    new, install, train = commands[:3]
    assert main(new[1:]) == 0
    assert (tmp_path / "my-sampler" / "src" / "my_sampler" / "sampler.py").is_file()
    # Offline here (no index to fetch setuptools from), as the guide says to do without one.
    done = run_in(venv, *install[1:], "--no-index", "--no-build-isolation", settings=settings)
    assert done.returncode == 0, done.stderr
    assert "+ my-sampler 0.1.0" in done.stdout
    train = [str(Path(part).expanduser()) if part.startswith("~") else part for part in train]
    assert main([*train[1:], "--device", "cpu", "--quiet"]) == 0
    run = home / "diffstudio-runs" / "exact"
    assert (run / "config.json").is_file()

    # The window started in that environment: its plugins, with the editable install's finder.
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    site.addsitedir(str(venv_site(venv)))
    try:
        registry = load_plugins(safe_mode=False)
        mine = registry.get("sampler", "my-sampler")
        assert mine.display_name == "My sampler" and mine.plugin == "my-sampler"

        window = MainWindow(Preferences(open_settings()), registry=registry,
                            ask=lambda title, text: True)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitUntil(lambda: window.studio.ready, timeout=120_000)
        qtbot.waitUntil(lambda: not window.studio.running(), timeout=120_000)
        view = window.sample_view

        def listed() -> list[str]:
            return [str(Path(path).resolve()) for path in (
                view.runs.combo.itemData(i) for i in range(view.runs.combo.count())) if path]

        # The workspace scan is a job of its own; on a busy machine it may not have run yet.
        qtbot.waitUntil(lambda: str(run.resolve()) in listed(), timeout=120_000)
        view.select_run(str(run))
        picker = view.sampler_picker
        assert picker.combo.findText("My sampler") >= 0
        assert picker.select("my-sampler", {"steps": 20, "eta": 0.0})
        assert set(picker.form().editors) == {"steps", "eta"}
        view.options.set_values({"num_samples": 500, "batch_size": 500, "seed": 0})
        assert view.start()
        qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
        outcome = view.outcome
        assert outcome is not None and outcome.result.sampler == "my-sampler"
        samples = np.asarray(outcome.samples)
        assert samples.shape == (500, 2) and np.all(np.isfinite(samples))
        assert outcome.result.network_evaluations == 20
        # The exact score of the seed's mixture, 0.8 N((5, 5), I) + 0.2 N((-5, -5), I):
        # deterministic DDIM finds both modes.
        near = [float((np.linalg.norm(samples - mode, axis=1) < 3).mean())
                for mode in ((5, 5), (-5, -5))]
        assert near[0] > 0.5 and near[1] > 0.05 and sum(near) > 0.9, near
        assert "20 network evaluations" in view.status.text()
        assert not window.studio.running()
    finally:
        for name in [m for m in sys.modules if m == "my_sampler" or m.startswith(
                ("my_sampler.", "__editable__"))]:
            del sys.modules[name]
