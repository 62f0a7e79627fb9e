"""U-Net presets on diffusers' ``UNet2DModel``: sinusoidal time embedding, GroupNorm residual
blocks, self-attention at low resolution (Ho et al., arXiv 2006.11239, sec. 4 and app. B;
Dhariwal & Nichol, arXiv 2105.05233).

Presets are sized for the image size they name; ``digits-8`` is small enough to train on a
2-core CPU in minutes (about 0.3 M parameters). Class conditioning adds a learned class embedding
to the time embedding (``num_class_embeds``); one extra index is reserved as the "no label" class
used by classifier-free guidance.
"""

from __future__ import annotations

from typing import Any

from diffusers import UNet2DModel

from diffstudio.errors import ConfigError

# name: (sample size, block channels, layers per block, attention on levels, norm groups)
PRESETS: dict[str, dict[str, Any]] = {
    "digits-8": {
        "size": 8,
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "attention": (False, True),
        "norm_num_groups": 8,
    },
    "small-32": {
        "size": 32,
        "block_out_channels": (64, 128, 128),
        "layers_per_block": 2,
        "attention": (False, True, False),
        "norm_num_groups": 32,
    },
    "medium-64": {
        "size": 64,
        "block_out_channels": (64, 128, 256, 256),
        "layers_per_block": 2,
        "attention": (False, False, True, False),
        "norm_num_groups": 32,
    },
    "large-128": {
        "size": 128,
        "block_out_channels": (128, 128, 256, 256, 512),
        "layers_per_block": 2,
        "attention": (False, False, False, True, False),
        "norm_num_groups": 32,
    },
}


def build_unet(
    sample_shape: tuple[int, ...],
    num_classes: int | None = None,
    *,
    preset: str = "digits-8",
    class_conditional: bool = False,
    dropout: float = 0.0,
    learned_variance: bool = False,
) -> UNet2DModel:
    """A ``UNet2DModel`` for images of ``sample_shape`` = (C, H, W).

    The preset fixes the widths; the image size comes from the data (a preset may be used at
    another size as long as H and W divide by 2^(levels - 1)).
    """
    if len(sample_shape) != 3:
        raise ConfigError(
            f"the U-Net needs image data shaped (C, H, W); this dataset gives {sample_shape}. "
            "Use the 'mlp' network for 2-D points."
        )
    if preset not in PRESETS:
        raise ConfigError(f"U-Net preset {preset!r} is not one of {sorted(PRESETS)}")
    spec = PRESETS[preset]
    channels, height, width = sample_shape
    levels = len(spec["block_out_channels"])
    factor = 2 ** (levels - 1)
    if height != width or height % factor:
        raise ConfigError(
            f"preset {preset!r} needs square images whose side divides by {factor}; "
            f"got {height}x{width}. Set the dataset's size to a multiple of {factor}."
        )
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in spec["attention"])
    up = tuple(
        "AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(spec["attention"])
    )
    num_class_embeds = None
    if class_conditional:
        if not num_classes:
            raise ConfigError("class-conditional training needs a dataset with labels")
        num_class_embeds = num_classes + 1  # the extra index means "no label"
    return UNet2DModel(
        sample_size=height,
        in_channels=channels,
        out_channels=channels * (2 if learned_variance else 1),
        block_out_channels=spec["block_out_channels"],
        layers_per_block=spec["layers_per_block"],
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=spec["norm_num_groups"],
        attention_head_dim=32,
        dropout=dropout,
        num_class_embeds=num_class_embeds,
    )
