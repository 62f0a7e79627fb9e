"""The Runs page manages runs: rename, move to the trash (after asking), and a list that
follows the workspace without Refresh."""

from __future__ import annotations

import shutil

from diffstudio.engine.runs import Run


def test_rename_trash_and_the_list_following_the_workspace(make_window, trained_run, tmp_path,
                                                           private_trash, qtbot):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    shutil.copytree(trained_run, workspace / "first")
    window = make_window(workspace=workspace)
    runs = window.runs_view
    qtbot.waitUntil(lambda: [r.name for r in runs.runs] == ["first"], timeout=60_000)
    # A run made elsewhere (the CLI, a file manager) appears by itself.
    shutil.copytree(trained_run, workspace / "second")
    qtbot.waitUntil(lambda: sorted(r.name for r in runs.runs) == ["first", "second"],
                    timeout=60_000)

    assert runs.select_path(str(workspace / "first"))
    runs.get_text = lambda title, label, value: "renamed"
    runs.rename_button.click()
    qtbot.waitUntil(lambda: sorted(r.name for r in runs.runs) == ["renamed", "second"],
                    timeout=60_000)
    assert runs.selected() is not None and runs.selected().name == "renamed"

    asked = []
    runs.ask = lambda title, text: asked.append(text) or False  # No: nothing happens
    runs.delete_button.click()
    assert asked and (workspace / "renamed").exists()
    runs.ask = lambda title, text: True
    runs.delete_button.click()
    qtbot.waitUntil(lambda: [r.name for r in runs.runs] == ["second"], timeout=60_000)
    assert (private_trash / "files" / "renamed" / "config.json").is_file()

    # A run another process trains cannot be renamed or trashed from here.
    with Run(workspace / "second").writer_lock():
        runs.refresh()
        qtbot.waitUntil(lambda: bool(runs.runs and runs.runs[0].training), timeout=60_000)
        assert runs.select_path(str(workspace / "second"))
        assert not runs.rename_button.isEnabled() and not runs.delete_button.isEnabled()
