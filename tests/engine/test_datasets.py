"""The built-in datasets: digits, image folders (with broken files), 2-D toy sets, torchvision.

Everything runs offline: the torchvision tests use an empty folder or a tiny fake MNIST written in
its raw idx format, and fail if anything tries to open a URL.
"""

from __future__ import annotations

import io
import math
import socket
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from diffstudio.engine.datasets import Dataset
from diffstudio.engine.datasets.digits import load_digits
from diffstudio.engine.datasets.image_folder import load_image_folder
from diffstudio.engine.datasets.torchvision_sets import load_mnist, load_torchvision
from diffstudio.engine.datasets.toy2d import (
    TOY2D_NAMES,
    load_toy2d,
    mixture_log_density,
    mixture_score,
)
from diffstudio.errors import ConfigError, DatasetError

# --- digits ---------------------------------------------------------------------------------


def test_digits_shape_range_and_labels() -> None:
    dataset = load_digits()
    assert isinstance(dataset, Dataset)
    assert dataset.data.shape == (1797, 1, 8, 8)
    assert dataset.data.dtype == torch.float32
    assert dataset.data.min().item() == -1.0
    assert dataset.data.max().item() == 1.0
    assert dataset.kind == "image" and dataset.name == "digits"
    assert dataset.labels is not None and dataset.labels.dtype == torch.int64
    assert dataset.labels.shape == (1797,)
    assert set(dataset.labels.tolist()) == set(range(10))
    assert dataset.num_classes == 10
    assert dataset.class_names == [str(digit) for digit in range(10)]
    # pixels 0..16 map to x / 8 - 1: every value is a multiple of 1/8
    assert torch.equal(dataset.data * 8, (dataset.data * 8).round())


def test_digits_resized_bilinearly() -> None:
    dataset = load_digits(size=16)
    assert dataset.data.shape == (1797, 1, 16, 16)
    assert dataset.data.min() >= -1.0 and dataset.data.max() <= 1.0
    native = load_digits().data
    pooled = torch.nn.functional.avg_pool2d(dataset.data, 2)  # back to 8x8
    correlation = torch.corrcoef(torch.stack([pooled.flatten(), native.flatten()]))[0, 1]
    assert correlation > 0.95  # a smoothed copy of the same digits, in the same order
    assert (pooled - native).abs().mean() < 0.2
    with pytest.raises(ConfigError):
        load_digits(size=0)


# --- image folder ---------------------------------------------------------------------------


def _noise_image(rng: np.random.Generator, width: int, height: int, mode: str) -> Image.Image:
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)


def _make_folder(root: Path) -> tuple[int, dict[str, str]]:
    """Good images of several sizes and modes, nested, plus three broken files.

    Returns the number of good images and {broken file name: expected word in its reason}.
    """
    rng = np.random.default_rng(0)
    (root / "sub" / "deeper").mkdir(parents=True)
    _noise_image(rng, 40, 30, "RGB").save(root / "a.png")
    _noise_image(rng, 64, 64, "RGB").save(root / "b.jpg", quality=90)
    _noise_image(rng, 20, 50, "L").save(root / "sub" / "c.png")
    _noise_image(rng, 33, 17, "RGBA").save(root / "sub" / "deeper" / "d.PNG")
    _noise_image(rng, 100, 80, "L").save(root / "sub" / "deeper" / "e.JPEG")
    Image.new("RGB", (12, 12), (255, 0, 0)).save(root / "f.bmp")
    (root / "notes.txt").write_text("not an image and not an image extension: ignored")

    buffer = io.BytesIO()
    _noise_image(rng, 64, 64, "RGB").save(buffer, "PNG")
    whole = buffer.getvalue()
    (root / "sub" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "bad.jpg").write_text("this is a text file, not a JPEG")
    (root / "empty.png").write_bytes(b"")
    return 6, {"truncated.png": "truncated", "bad.jpg": "not an image", "empty.png": "empty"}


def test_image_folder_loads_good_images_and_lists_bad_ones(tmp_path: Path) -> None:
    root = tmp_path / "pictures"
    root.mkdir()
    good, broken = _make_folder(root)
    dataset = load_image_folder(str(root), size=16)

    assert len(dataset) == good
    assert dataset.data.shape == (good, 3, 16, 16)
    assert dataset.data.dtype == torch.float32
    assert dataset.data.min() >= -1.0 and dataset.data.max() <= 1.0
    assert dataset.data.min() < -0.9 and dataset.data.max() > 0.9
    assert dataset.kind == "image"
    assert dataset.name == "pictures"
    assert dataset.source == str(root.resolve())
    assert dataset.labels is None and dataset.num_classes is None

    assert sorted(Path(item.path).name for item in dataset.skipped) == sorted(broken)
    for item in dataset.skipped:
        assert Path(item.path).is_absolute()
        assert broken[Path(item.path).name] in item.reason, item.reason
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False

    # the solid red 12x12 BMP is enlarged to a solid red square (files are visited sorted:
    # a.png, b.jpg, f.bmp, sub/c.png, sub/deeper/d.PNG, sub/deeper/e.JPEG)
    red = dataset.data[2]
    assert torch.allclose(red[0], torch.ones(16, 16), atol=0.01)
    assert torch.allclose(red[1:], -torch.ones(2, 16, 16), atol=0.01)


def test_image_folder_is_deterministic_and_respects_max_images(tmp_path: Path) -> None:
    _make_folder(tmp_path)
    first = load_image_folder(str(tmp_path), size=8)
    again = load_image_folder(str(tmp_path), size=8)
    assert torch.equal(first.data, again.data)
    limited = load_image_folder(str(tmp_path), size=8, max_images=2)
    assert torch.equal(limited.data, first.data[:2])


def test_image_folder_channels(tmp_path: Path) -> None:
    good, _ = _make_folder(tmp_path)
    gray = load_image_folder(str(tmp_path), size=12, channels="grayscale")
    rgb = load_image_folder(str(tmp_path), size=12, channels="rgb")
    assert gray.data.shape == (good, 1, 12, 12)
    assert rgb.data.shape == (good, 3, 12, 12)
    with pytest.raises(ConfigError, match="channels"):
        load_image_folder(str(tmp_path), channels="cmyk")


def test_image_folder_centre_crop_of_a_wide_image(tmp_path: Path) -> None:
    # 30x10: left third black, middle third white, right third black -> centre crop is white
    pixels = np.zeros((10, 30), dtype=np.uint8)
    pixels[:, 10:20] = 255
    Image.fromarray(pixels, "L").save(tmp_path / "wide.png")
    dataset = load_image_folder(str(tmp_path), size=10, channels="grayscale")
    assert dataset.data.shape == (1, 1, 10, 10)
    assert torch.all(dataset.data == 1.0)


def test_image_folder_labels_from_subfolders(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for name, count in (("dog", 2), ("cat", 3), ("bird", 1)):
        folder = tmp_path / name / "nested" if name == "dog" else tmp_path / name
        folder.mkdir(parents=True)
        for index in range(count):
            _noise_image(rng, 16, 16, "RGB").save(folder / f"{index}.png")
    _noise_image(rng, 16, 16, "RGB").save(tmp_path / "loose.png")

    dataset = load_image_folder(str(tmp_path), size=8, labels_from_subfolders=True)
    assert dataset.class_names == ["bird", "cat", "dog"]
    assert dataset.num_classes == 3
    assert dataset.labels is not None
    assert dataset.labels.tolist() == [0, 1, 1, 1, 2, 2]
    assert [Path(item.path).name for item in dataset.skipped] == ["loose.png"]

    balanced = load_image_folder(
        str(tmp_path), size=8, labels_from_subfolders=True, max_images=3
    )
    assert balanced.labels is not None and sorted(balanced.labels.tolist()) == [0, 1, 2]


def test_image_folder_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="does not exist") as caught:
        load_image_folder(str(missing))
    assert str(missing) in str(caught.value)
    with pytest.raises(ConfigError, match="root"):
        load_image_folder(None)


def test_image_folder_with_only_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_text("text")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DatasetError) as caught:
        load_image_folder(str(tmp_path))
    message = str(caught.value)
    assert "2 files were skipped" in message
    assert "bad.jpg" in message and "empty.png" in message and "empty file" in message



def test_image_folder_without_image_files(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="no image files"):
        load_image_folder(str(tmp_path))
    with pytest.raises(DatasetError, match="not a folder"):
        load_image_folder(str(tmp_path / "readme.txt"))


# --- toy 2-D sets ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_toy2d_shapes_and_determinism(name: str) -> None:
    dataset = load_toy2d(name, num_points=2000, seed=3)
    assert dataset.data.shape == (2000, 2)
    assert dataset.data.dtype == torch.float32
    assert dataset.kind == "points"
    assert torch.isfinite(dataset.data).all()
    assert torch.equal(dataset.data, load_toy2d(name, num_points=2000, seed=3).data)
    assert not torch.equal(dataset.data, load_toy2d(name, num_points=2000, seed=4).data)
    if dataset.labels is not None:
        assert dataset.labels.shape == (2000,)
        assert set(dataset.labels.tolist()) == set(range(dataset.num_classes or 0))
        assert len(dataset.class_names or []) == dataset.num_classes
    if name != "mixture":
        assert 0.4 < dataset.data.std().item() < 1.6  # roughly unit spread


def test_toy2d_unknown_name() -> None:
    with pytest.raises(ConfigError, match="two-moons"):
        load_toy2d("spiral")


def test_mixture_weights_and_means() -> None:
    dataset = load_toy2d("mixture", num_points=20000, seed=0)
    assert dataset.labels is not None and dataset.num_classes == 2
    fraction = (dataset.labels == 0).double().mean().item()
    assert abs(fraction - 0.8) < 0.015
    assert torch.equal(dataset.labels == 0, dataset.data.sum(dim=1) > 0)  # components apart
    for label, mean in ((0, 5.0), (1, -5.0)):
        points = dataset.data[dataset.labels == label].double()
        assert torch.allclose(points.mean(0), torch.tensor([mean, mean]).double(), atol=0.06)
        assert torch.allclose(points.std(0), torch.ones(2).double(), atol=0.05)


def test_mixture_score_is_the_gradient_of_the_log_density() -> None:
    generator = torch.Generator().manual_seed(0)
    x = 8.0 * torch.randn(500, 2, generator=generator, dtype=torch.float64)
    x = torch.cat([x, torch.tensor([[0.0, 0.0], [300.0, -300.0], [-1e3, -1e3]]).double()])
    x.requires_grad_(True)
    log_density = mixture_log_density(x)
    (gradient,) = torch.autograd.grad(log_density.sum(), x)
    score = mixture_score(x.detach())
    assert torch.isfinite(log_density).all() and torch.isfinite(score).all()
    assert torch.allclose(score, gradient, rtol=1e-10, atol=1e-10)
    # at a mean the score points mostly nowhere: its own component dominates
    assert torch.allclose(mixture_score(torch.tensor([[5.0, 5.0]]).double()),
                          torch.zeros(1, 2).double(), atol=1e-12)


def test_mixture_log_density_values() -> None:
    at_mean = mixture_log_density(torch.tensor([5.0, 5.0], dtype=torch.float64))
    expected = math.log(0.8 / (2 * math.pi) + 0.2 / (2 * math.pi) * math.exp(-100.0))
    assert at_mean.item() == pytest.approx(expected, rel=1e-12)
    step = 0.05
    axis = torch.arange(-12.0, 12.0, step, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1)
    total = mixture_log_density(grid).exp().sum().item() * step * step
    assert total == pytest.approx(1.0, abs=1e-4)


# --- torchvision ----------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_torchvision_missing_files_give_a_clear_error(
    tmp_path: Path, name: str, no_network: None
) -> None:
    with pytest.raises(DatasetError) as caught:
        load_torchvision(name, root=str(tmp_path), download=False)
    message = str(caught.value)
    assert name in message
    assert str(tmp_path) in message
    assert "download=True" in message


def test_torchvision_failed_download_gives_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    import torchvision.datasets

    timeouts: list[float | None] = []

    def offline_download(self: object) -> None:
        timeouts.append(socket.getdefaulttimeout())
        raise URLError("no network")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline_download)
    before = socket.getdefaulttimeout()
    with pytest.raises(DatasetError, match="could not download mnist") as caught:
        load_mnist(root=str(tmp_path), download=True)
    assert str(tmp_path) in str(caught.value)
    assert timeouts == [20.0]  # a bounded timeout while downloading ...
    assert socket.getdefaulttimeout() == before  # ... restored afterwards


def _write_idx(path: Path, array: np.ndarray) -> None:
    type_code = 0x08  # unsigned byte
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_fake_mnist_on_disk(tmp_path: Path, no_network: None) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, count in (("train", 5), ("t10k", 3)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", np.arange(count, dtype=np.uint8))

    dataset = load_mnist(root=str(tmp_path))
    assert dataset.data.shape == (5, 1, 28, 28)
    assert dataset.data.dtype == torch.float32
    assert dataset.data.min().item() == -1.0 and dataset.data.max().item() == 1.0
    assert dataset.labels is not None and dataset.labels.tolist() == [0, 1, 2, 3, 4]
    assert dataset.num_classes == 10 and dataset.class_names is not None
    assert dataset.class_names[0].startswith("0")
    assert dataset.name == "mnist" and dataset.kind == "image"

    test_split = load_mnist(root=str(tmp_path), train=False, size=14, max_images=2)
    assert test_split.data.shape == (2, 1, 14, 14)
    assert test_split.data.min() >= -1.0 and test_split.data.max() <= 1.0


# --- the plugin -----------------------------------------------------------------------------


def test_builtin_dataset_plugin_specs_and_build() -> None:
    from diffstudio.engine.components import build_dataset
    from diffstudio.plugin_manager import load_plugins

    registry = load_plugins(safe_mode=True)
    plugin = next(p for p in registry.plugins if p.name == "builtin-datasets")
    assert plugin.error is None, plugin.traceback
    assert {c.id for c in plugin.contributions} == {
        "digits", "image-folder", "toy2d", "mnist", "fashion-mnist", "cifar10"
    }
    for contribution in plugin.contributions:
        contribution.check_spec()
        assert callable(contribution.load())

    rings = build_dataset(registry, "toy2d", {"name": "rings", "num_points": "300"})
    assert rings.data.shape == (300, 2) and rings.num_classes == 3
    with pytest.raises(ConfigError, match="root"):
        build_dataset(registry, "image-folder", {})


def test_plugin_module_does_not_import_torch() -> None:
    code = (
        "import sys, diffstudio_builtins.datasets as m; "
        "m.diffstudio_datasets(); print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"
