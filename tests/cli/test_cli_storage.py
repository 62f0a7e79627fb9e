"""A full disk and a read-only run: one clear line that says where, and what is intact.

The real failures, on a small tmpfs (mounted for the test: root only, skipped elsewhere):
safetensors' "No space left on device (os error 28)", numpy's and Pillow's OSError 28, and
OSError 30 from a file system remounted read-only."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_runs import train_flags

from diffstudio.cli import main
from diffstudio.engine.io import check_writable, storage_problem
from diffstudio.engine.runs import Run

TOY = train_flags(steps=None)


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 4 MiB tmpfs at a fresh folder, unmounted after the test."""
    where = tmp_path / "disk"
    where.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)):
        pytest.skip("needs to mount a tmpfs (root on Linux)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(disk: Path) -> Path:
    """Fill the disk to the last byte; returns the filler file."""
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def _one_line(capsys) -> str:
    # Progress bars (tqdm, on stderr, redrawn with \r) aside, what the user reads.
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if line.strip() and "slow plugin" not in line
           and not line.strip().startswith(("sample:", "train:"))]
    assert len(err) == 1, err
    assert "unexpected" not in err[0]
    return err[0]


def _strays(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith((".tmp-", ".trash-")))


def test_a_full_disk_during_training_keeps_the_last_checkpoint(small_disk, capsys):
    run = small_disk / "run"
    assert main(["train", "--out", str(run), "--steps", "2", *TOY]) == 0
    filler = _fill(small_disk)
    assert main(["train", "--resume", str(run), "--steps", "4"]) == 2
    line = _one_line(capsys)
    assert "the disk is full" in line and str(run) in line, line
    assert "last checkpoint (step 2) is intact" in line and "--resume" in line, line
    assert _strays(run) == []
    filler.unlink()  # the user frees space, and continues as told
    assert main(["train", "--resume", str(run), "--steps", "4"]) == 0
    assert Run(run).latest_checkpoint().name.endswith("4")
    assert [r["step"] for r in Run(run).metrics()][-1] == 4


def test_a_full_disk_while_saving_samples_leaves_the_folder_as_it_was(tmp_path, small_disk,
                                                                     capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "2", *TOY]) == 0
    capsys.readouterr()
    out = small_disk / "samples"
    _fill(small_disk)
    assert main(["sample", str(run), "--num", "4000", "--steps", "2", "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert "could not write the samples to" in line and "the disk is full" in line, line
    assert not out.exists() and _strays(small_disk) == []


def test_a_read_only_run_is_refused_before_any_work(tmp_path, small_disk, capsys):
    run = small_disk / "run"
    assert main(["train", "--out", str(run), "--steps", "2", *TOY]) == 0
    pictures = small_disk / "pictures"  # a samples folder to evaluate
    pictures.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(pictures / f"{i:03d}.png")
    assert _mount("-o", "remount,ro", str(small_disk))
    assert check_writable(run) == "the file system is read-only"
    capsys.readouterr()
    cases = [
        (["train", "--resume", str(run), "--steps", "4"], "copy the run to a writable folder"),
        (["sample", str(run), "--num", "2", "--steps", "2"], "choose a folder you can write to"),
        (["eval", str(pictures), "--reference", "digits", "--weights", "random", "--metrics",
          "precision_recall"], "give --out FILE.json in a folder you can write to"),
    ]
    for argv, fix in cases:
        assert main(argv) == 2, argv
        line = _one_line(capsys)
        assert "read-only" in line and fix in line, line
    # Elsewhere, the same run samples fine.
    assert main(["sample", str(run), "--num", "2", "--steps", "2", "--out",
                 str(tmp_path / "s")]) == 0


def test_storage_problem_reads_errno_and_library_messages():
    assert storage_problem(OSError(errno.ENOSPC, "No space left on device")) == \
        "the disk is full (no space left on device)"
    assert storage_problem(OSError(errno.EROFS, "Read-only file system")) == \
        "the file system is read-only"
    assert storage_problem(PermissionError(errno.EACCES, "Permission denied")) == \
        "permission denied"
    # safetensors raises its own type with the OS text inside.
    assert storage_problem(RuntimeError("Error while serializing: I/O error: No space left on "
                                        "device (os error 28)")).startswith("the disk is full")
    assert storage_problem(ValueError("bad shape")) is None
    assert storage_problem(FileNotFoundError(errno.ENOENT, "gone")) is None
