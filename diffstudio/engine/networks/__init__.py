"""Networks: diffusers ``UNet2DModel`` presets for images and a time-conditioned MLP for 2-D data.

Every network is a diffusers ``ModelMixin`` so that ``save_pretrained`` writes safetensors and a
config, and ``from_pretrained`` loads it back; a U-Net from a run loads with
``diffusers.UNet2DModel.from_pretrained(run/checkpoints/<step>/network)``.
Call convention: ``network(x_t, timesteps, class_labels=None)``; x_t: (B, C, H, W) or (B, D),
timesteps: (B,) integers in [0, T).
"""

__all__: list[str] = []
