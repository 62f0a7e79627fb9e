"""Renaming a run and moving it to the trash: refused while it is trained, clear otherwise."""

from __future__ import annotations

import os

import pytest

from diffstudio.engine.run_admin import rename_run, trash_run
from diffstudio.engine.runs import Run
from diffstudio.errors import RunError


@pytest.fixture
def run(tmp_path):
    path = tmp_path / "workspace" / "digits-a"
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"train": {}, "dataset_info": {}}')
    return path


def test_rename_moves_the_folder_and_refuses_bad_names(run):
    for bad in ("", "a/b", ".hidden", ".."):
        with pytest.raises(RunError, match="cannot name a run folder"):
            rename_run(run, bad)
    (run.parent / "taken").mkdir()
    with pytest.raises(RunError, match="already exists"):
        rename_run(run, "taken")
    target = rename_run(run, "digits-best")
    assert target == run.parent / "digits-best" and Run(target).exists() and not run.exists()


def test_a_run_being_trained_is_neither_renamed_nor_trashed(run):
    with Run(run).writer_lock():
        with pytest.raises(RunError, match=r"being trained .*pid"):
            rename_run(run, "other")
        with pytest.raises(RunError, match="being trained"):
            trash_run(run)
    assert run.exists()


def test_trash_moves_the_run_to_the_system_trash(run, tmp_path, private_trash):
    trash_run(run)
    assert not run.exists()
    assert (private_trash / "files" / run.name / "config.json").is_file()  # recoverable
    assert os.listdir(private_trash / "info")
    with pytest.raises(RunError, match="is not a run"):
        trash_run(tmp_path / "nothing")


def test_a_note_is_written_atomically_and_refused_clearly(run):
    runs = Run(run)
    assert runs.read_note() == ""
    runs.write_note("cosine schedule\nloss plateaus at 0.03")
    assert runs.note_path.read_text(encoding="utf-8") == "cosine schedule\nloss plateaus at 0.03"
    assert runs.read_note().startswith("cosine schedule")
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*tmp*"))
    with pytest.raises(RunError, match="NUL"):
        runs.write_note("a\x00b")
    with pytest.raises(RunError, match="more than a run's note holds"):
        runs.write_note("x" * (Run.NOTE_LIMIT + 1))
    assert runs.read_note().startswith("cosine schedule")  # a refused note changes nothing
    runs.write_note("  \n")
    assert not runs.note_path.exists() and runs.read_note() == ""
    with pytest.raises(RunError, match="not a diffstudio run"):
        Run(run.parent / "nothing-here").write_note("hello")
