"""A time-conditioned MLP for 2-D (or any flat) data, saved like a diffusers model.

x: (B, D); timesteps: (B,) integers. The timestep goes through the same sinusoidal embedding as
the U-Net (diffusers' ``get_timestep_embedding``), is projected, and added to every hidden layer.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class TimeMLP(ModelMixin, ConfigMixin):
    """Residual MLP with a sinusoidal time embedding and an optional class embedding."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        data_dim: int = 2,
        hidden: int = 128,
        depth: int = 3,
        time_embedding_dim: int = 64,
        num_class_embeds: int | None = None,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.input = nn.Linear(data_dim, hidden)
        self.time = nn.Sequential(
            nn.Linear(time_embedding_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.classes = nn.Embedding(num_class_embeds, hidden) if num_class_embeds else None
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth)
        )
        self.output = nn.Sequential(nn.SiLU(), nn.Linear(hidden, out_dim or data_dim))

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        class_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(x.shape[0])
        embedding = get_timestep_embedding(timesteps.float(), self.config.time_embedding_dim)
        conditioning = self.time(embedding.to(x.dtype))
        if self.classes is not None and class_labels is not None:
            conditioning = conditioning + self.classes(class_labels)
        h = self.input(x)
        for block in self.blocks:
            h = h + block(h + conditioning)
        return self.output(h)


def build_mlp(
    sample_shape: tuple[int, ...],
    num_classes: int | None = None,
    *,
    hidden: int = 128,
    depth: int = 3,
    class_conditional: bool = False,
    learned_variance: bool = False,
) -> TimeMLP:
    if len(sample_shape) != 1:
        from diffstudio.errors import ConfigError

        raise ConfigError(
            f"the MLP takes flat data such as 2-D points; this dataset gives {sample_shape}. "
            "Use a U-Net preset for images."
        )
    dim = sample_shape[0]
    return TimeMLP(
        data_dim=dim,
        hidden=hidden,
        depth=depth,
        num_class_embeds=(num_classes + 1) if class_conditional and num_classes else None,
        out_dim=dim * (2 if learned_variance else 1),
    )
