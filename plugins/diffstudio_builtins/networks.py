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
                Param("learned_variance", "bool", False,
                      help="also predict the variance (Improved DDPM, trained with L_hybrid)"),
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
                Param("learned_variance", "bool", False,
                      help="also predict the variance (Improved DDPM, trained with L_hybrid)"),
                Param("class_conditional", "bool", False,
                      help="condition on the dataset's labels"),
            ),
            tags=("points",),
        ),
        Contribution(
            kind="network",
            id="analytic-mixture",
            display_name="Exact mixture score (2-D lab)",
            description="The exact score of a Gaussian mixture under any process: no training; "
                        "Song & Ermon's 0.8/0.2 mixture for comparing Langevin samplers.",
            factory="diffstudio.engine.networks.analytic:build_analytic_mixture",
            params=(
                Param("mixture", "choice", "seed-mixture",
                      choices=("seed-mixture", "standard-gaussian"),
                      help="which distribution's exact score"),
            ),
            tags=("points", "analytic"),
        ),
        Contribution(
            kind="network",
            id="pretrained",
            display_name="Pretrained diffusers U-Net",
            description="A UNet2DModel from a local diffusers folder or a hub id in the local "
                        "cache (e.g. google/ddpm-cifar10-32), to fine-tune; sample one directly "
                        "with 'diffstudio sample --pretrained'.",
            factory="diffstudio.engine.networks.pretrained:build_pretrained_network",
            params=(
                Param("source", "path", None, help="folder, or hub id already downloaded"),
                Param("subfolder", "str", "", help="subfolder holding the U-Net, if any"),
            ),
            tags=("image",),
        ),
    ]
