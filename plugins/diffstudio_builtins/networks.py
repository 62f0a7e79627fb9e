"""Built-in networks: diffusers U-Net presets and a time-conditioned MLP for 2-D data."""

from __future__ import annotations

from diffstudio import Contribution, Param, hookimpl


@hookimpl
def diffstudio_networks() -> list[Contribution]:
    return [
        Contribution(
            kind="network",
            id="unet",
            display_name="U-Net (diffusers UNet2DModel)",
            description="Time-conditioned U-Net with GroupNorm and attention; presets by size.",
            factory="diffstudio.engine.networks.unet:build_unet",
            params=(
                Param("preset", "choice", "digits-8",
                      choices=("digits-8", "small-32", "medium-64", "large-128"),
                      help="widths sized for 8x8, 32x32, 64x64 or 128x128 images"),
                Param("class_conditional", "bool", False,
                      help="condition on the dataset's labels"),
                Param("dropout", "float", 0.0, minimum=0.0, maximum=0.9, help="dropout rate"),
            ),
            tags=("image",),
        ),
        Contribution(
            kind="network",
            id="mlp",
            display_name="MLP (2-D data)",
            description="Residual MLP with a sinusoidal time embedding, for points.",
            factory="diffstudio.engine.networks.mlp:build_mlp",
            params=(
                Param("hidden", "int", 128, minimum=8, maximum=4096, help="hidden width"),
                Param("depth", "int", 3, minimum=1, maximum=32, help="residual blocks"),
                Param("class_conditional", "bool", False,
                      help="condition on the dataset's labels"),
            ),
            tags=("points",),
        ),
    ]
