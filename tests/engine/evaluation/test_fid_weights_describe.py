"""The FID weights search order has one owner (engine/evaluation/fid_weights.py): loading
(:func:`locate_fid_weights`) and describing (:func:`describe_fid_weights`, what the Evaluate page
shows) follow it, and describing imports no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diffstudio.engine.evaluation.fid_weights import (
    FID_WEIGHTS_BYTES,
    FID_WEIGHTS_FILENAME,
    RANDOM_WEIGHTS,
    WEIGHTS_ENV,
    describe_fid_weights,
    locate_fid_weights,
    search_places,
)
from diffstudio.errors import FidWeightsError


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in (WEIGHTS_ENV, "DIFFSTUDIO_OFFLINE", "DIFFSTUDIO_FID_WEIGHTS_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _hub_file(root: Path, size: int) -> Path:
    path = root / "torch" / "hub" / "checkpoints" / FID_WEIGHTS_FILENAME
    path.parent.mkdir(parents=True)
    with open(path, "wb") as handle:
        handle.truncate(size)  # sparse: the right size costs no disk
    return path


def test_the_search_order_is_setting_then_environment_then_hub(isolated, monkeypatch):
    assert [p.origin for p in search_places()] == ["hub"]
    monkeypatch.setenv(WEIGHTS_ENV, str(isolated / "env.pth"))
    assert [p.origin for p in search_places(isolated / "given.pth")] == [
        "setting", "environment", "hub"]
    status = describe_fid_weights(str(isolated / "given.pth"))
    assert status.origin == "missing" and "given.pth" in status.message
    assert "the given path" in status.message and not status.usable
    status = describe_fid_weights("")  # no setting: the environment variable decides
    assert "env.pth" in status.message and f"${WEIGHTS_ENV}" in status.message
    # Loading agrees: a missing file where the first place points is the error, no fallback.
    with pytest.raises(FidWeightsError, match=r"env\.pth"):
        locate_fid_weights(None, download=False)


def test_hub_cache_download_and_offline_are_described(isolated):
    status = describe_fid_weights("", download=True)
    assert status.origin == "download" and status.usable
    assert "will be downloaded" in status.message and str(isolated / "torch") in status.message
    status = describe_fid_weights("", download=False)
    assert status.origin == "missing" and not status.usable
    assert "downloads are off" in status.message and FID_WEIGHTS_FILENAME in status.message
    with pytest.raises(FidWeightsError, match="downloads are off"):
        locate_fid_weights(None, download=False)


def test_a_file_of_the_wrong_size_is_named_without_hashing(isolated):
    _hub_file(isolated, 1234)
    status = describe_fid_weights("")
    assert status.origin == "hub" and status.verified is False and not status.usable
    assert "1,234 bytes" in status.message
    path = _hub_file(isolated / "right", FID_WEIGHTS_BYTES)
    status = describe_fid_weights(str(path))
    assert status.usable and status.found == path
    assert "checked when an evaluation starts" in status.message
    status = describe_fid_weights(str(path), check_hash=True)  # zeros: not pytorch-fid's file
    assert status.verified is False and not status.usable


def test_random_weights_are_described_as_not_fid(isolated):
    status = describe_fid_weights(RANDOM_WEIGHTS)
    assert status.origin == "random" and status.found is None and "not FIDs" in status.message


def test_describing_imports_no_torch(isolated):
    code = ("import sys; from diffstudio.engine.evaluation import describe_fid_weights; "
            "print(describe_fid_weights('').origin); "
            "from diffstudio.engine.evaluation import METRICS, DEFAULT_METRICS; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, env={"TORCH_HOME": str(isolated / "torch"),
                                           "PATH": "/usr/bin:/bin",
                                           "PYTHONPATH": ":".join(sys.path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "download"
