"""PNG files that carry what made them.

Each sample is written with text chunks: ``diffstudio`` holds a JSON object (run, network hash,
sampler and its parameters, steps, network evaluations, seed, guidance, backend, version), and
``parameters`` a one-line human summary, as the tools users know ("PNG info") do. Reading gives
the JSON back so a sample can be recalled or regenerated.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from diffstudio.engine.io import atomic_write_bytes

__all__ = ["METADATA_KEY", "parameters_line", "read_png_metadata", "to_uint8_image", "write_png"]

METADATA_KEY = "diffstudio"


def to_uint8_image(x: np.ndarray) -> np.ndarray:
    """(C, H, W) float in [-1, 1] -> (H, W) or (H, W, 3) uint8, rounding to nearest."""
    x = np.asarray(x, dtype=np.float32)
    pixels = np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    if pixels.ndim == 3:
        pixels = pixels[0] if pixels.shape[0] == 1 else np.transpose(pixels, (1, 2, 0))
    return pixels


def parameters_line(metadata: dict[str, Any]) -> str:
    """The one-line ``parameters`` text chunk: "sampler: ddim; steps: 50; seed: 3; ..."."""
    parts = []
    for key in ("sampler", "steps", "network_evaluations", "seed", "guidance", "run"):
        if metadata.get(key) is not None:
            parts.append(f"{key}: {metadata[key]}")
    params = metadata.get("sampler_params")
    if params:
        parts.append("params: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())))
    return "; ".join(parts)


def write_png(
    path: str | os.PathLike[str], image: np.ndarray, metadata: dict[str, Any], *, scale: int = 1
) -> None:
    """Write ``image`` ((C, H, W) in [-1, 1]) as a PNG with ``metadata`` in its text chunks.

    ``scale`` enlarges small images with nearest-neighbour so 8x8 digits are visible.
    """
    pixels = to_uint8_image(image)
    picture = Image.fromarray(pixels)
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
        )
    info = PngImagePlugin.PngInfo()
    info.add_text(METADATA_KEY, json.dumps(metadata, sort_keys=True, default=str))
    info.add_text("parameters", parameters_line(metadata))
    info.add_text("Software", f"diffstudio {metadata.get('version', '')}".strip())
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", pnginfo=info)
    atomic_write_bytes(path, buffer.getvalue())


def read_png_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``diffstudio`` JSON of a PNG written by :func:`write_png` ({} if absent)."""
    with Image.open(path) as picture:
        text = getattr(picture, "text", {}) or {}
        raw = text.get(METADATA_KEY)
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return {}
