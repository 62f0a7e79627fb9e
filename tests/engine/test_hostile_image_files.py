"""Hostile entries named like images: each is skipped with its reason, in the dataset loader and
in evaluation's samples folders, and none hangs, leaks a warning or raises "unexpected"."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffstudio.engine.datasets.image_folder import load_image_folder
from diffstudio.engine.evaluation import load_samples_folder
from diffstudio.engine.image_files import MAX_IMAGE_PIXELS, open_image
from diffstudio.errors import EvaluationError


def _png(path: Path, value: int = 128, size: int = 8) -> None:
    Image.fromarray(np.full((size, size), value, np.uint8), "L").save(path)


def _bomb(path: Path) -> None:
    """A 12,000 x 12,000 grey PNG (144 megapixels) in about 150 kB."""
    Image.new("L", (12_000, 12_000)).save(path, optimize=False, compress_level=9)


def _hostile(root: Path) -> dict[str, str]:
    """Entries every reader must refuse, with a fragment of the reason each must give."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "0-folder.png").mkdir()  # sorted first
    (root / "1-text.png").write_text("not an image")
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise, "L").save(buffer, format="PNG")
    (root / "2-truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (root / "3-empty.png").write_bytes(b"")
    os.symlink(root / "gone.png", root / "4-dangling.png")
    os.mkfifo(root / "5-fifo.png")
    os.symlink("/dev/zero", root / "6-zero.png")
    _bomb(root / "7-bomb.png")
    return {"0-folder.png": "directory", "1-text.png": "not an image",
            "2-truncated.png": "truncated", "3-empty.png": "empty",
            "4-dangling.png": "dangling", "5-fifo.png": "FIFO", "6-zero.png": "device",
            "7-bomb.png": "pixel limit"}


def test_open_image_refuses_a_bomb_from_its_header_without_a_warning(tmp_path):
    _bomb(tmp_path / "bomb.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image, reason = open_image(tmp_path / "bomb.png")
    assert image is None and "12000 x 12000" in reason and f"{MAX_IMAGE_PIXELS:,}" in reason
    _png(tmp_path / "fine.png")
    image, reason = open_image(tmp_path / "fine.png")
    assert reason == "" and image is not None and image.size == (8, 8)
    assert int(np.asarray(image).mean()) == 128  # usable after its file is closed


def test_the_dataset_loader_lists_every_hostile_entry(tmp_path):
    root = tmp_path / "pictures"
    expected = _hostile(root)
    _png(root / "8-good.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = load_image_folder(str(root), size=8, channels="grayscale")
    assert len(dataset) == 1
    reasons = {Path(item.path).name: item.reason for item in dataset.skipped}
    assert sorted(reasons) == sorted(expected)
    for name, fragment in expected.items():
        assert fragment in reasons[name], (name, reasons[name])


def test_a_samples_folder_skips_and_lists_unreadable_pngs(tmp_path):
    folder = tmp_path / "samples"
    expected = _hostile(folder)
    _png(folder / "8-good.png", 0)
    _png(folder / "9-good.png", 255)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_samples_folder(folder)
    assert tuple(loaded.samples.shape) == (2, 1, 8, 8)
    assert float(loaded.samples.min()) == -1.0 and float(loaded.samples.max()) == 1.0
    reasons = {Path(item.path).name: item.reason for item in loaded.skipped}
    assert sorted(reasons) == sorted(expected)
    for name, fragment in expected.items():
        assert fragment in reasons[name], (name, reasons[name])
    note = loaded.skipped_note()
    assert note.startswith("note: skipped 8 unreadable file(s)") and "0-folder.png" in note


def test_a_folder_of_only_unreadable_pngs_is_one_clear_error(tmp_path):
    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "a.png").write_text("text")
    with pytest.raises(EvaluationError, match=r"no readable PNG .* a\.png: not an image"):
        load_samples_folder(folder)
