"""Inception-V3 pool3 features (2048-d): the space FID, KID, precision/recall and retrieval use.

The network is pytorch-fid's ``InceptionV3`` with the FID weights: the TF "inception-2015-12-05"
graph of the original FID code (Heusel et al. 2017, arXiv:1706.08500), ported to PyTorch by
pytorch-fid as ``pt_inception-2015-12-05-6726825d.pth``; :mod:`.fid_weights` finds and checks
that file. Features are the output of the final average pool (block 3).

Preprocessing reproduces ``pytorch-fid``'s ``get_activations`` on PNG files exactly, while taking
images from memory: ``[-1, 1]`` -> 8-bit levels (what a PNG stores; ``quantize=True``) -> ``[0, 1]``
-> grey repeated to 3 channels -> bilinear resize to 299 x 299 (``align_corners=False``) ->
``2x - 1`` -> the network. Batched, under ``torch.inference_mode``, channels_last, with TF32
convolutions off on CUDA so features do not depend on the GPU generation.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from diffstudio.engine.evaluation.fid_weights import (
    FID_WEIGHTS_FILENAME,
    FID_WEIGHTS_URL,
    FidWeights,
)
from diffstudio.errors import Cancelled, EvaluationError, FidWeightsError

__all__ = [
    "FEATURE_DIM",
    "INCEPTION_SIZE",
    "InceptionFeatures",
    "build_fid_inception",
    "fid_inception_architecture",
    "preprocess_images",
    "randomize_inception",
]

FEATURE_DIM = 2048
INCEPTION_SIZE = 299


# -- the network ----------------------------------------------------------------------------
def fid_inception_architecture() -> torch.nn.Module:
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


def randomize_inception(inception: torch.nn.Module, seed: int) -> None:
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
        with warnings.catch_warnings():  # torch's multi-line advice is not for our users
            warnings.simplefilter("ignore")
            state = torch.load(weights.path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's text suggests weights_only=False: that would run the file's code. Never.
        raise FidWeightsError(
            f"{weights.path} is not the FID weights: it holds pickled Python objects, not a "
            "state_dict of tensors, and is not loaded (unpickling an unknown file can run code); "
            f"get pytorch-fid's {FID_WEIGHTS_FILENAME} from {FID_WEIGHTS_URL}"
        ) from exc
    except Exception as exc:
        raise FidWeightsError(
            f"cannot load the FID weights {weights.path} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}); replace the file with "
            f"pytorch-fid's {FID_WEIGHTS_FILENAME} from {FID_WEIGHTS_URL}"
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

    inception = fid_inception_architecture()
    if weights.is_random:
        randomize_inception(inception, weights.random_seed or 0)
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
