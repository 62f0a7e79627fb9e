"""The schemas of the training and diffusion settings, so that their forms are built by
:mod:`diffstudio.gui.forms` like any plugin's.

Names are :class:`diffstudio.engine.training.TrainConfig` fields and the defaults are its
defaults, except where :data:`GUI_DEFAULTS` says otherwise (a test keeps the two in step);
``TrainConfig.validate`` checks everything again before a job starts. Declared here rather
than read from the engine because the engine imports torch, and the window is built before
torch has loaded.
"""

from __future__ import annotations

from diffstudio.specs import Param

__all__ = [
    "DIFFUSION_PARAMS",
    "GUI_DEFAULTS",
    "PREDICTION_TYPES",
    "TRAIN_PARAMS",
    "diffusion_params",
]

# Offered until the engine has loaded; then the Model page offers the engine's own
# diffstudio.engine.parameterization.PREDICTION_TYPES (see diffusion_params).
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "sample", "v_prediction")

# Where the window's defaults differ from TrainConfig's, and why.
GUI_DEFAULTS = {
    "preview_every": 200,  # previews sooner: a new user sees samples after a minute on a CPU
}



def diffusion_params(prediction_types: tuple[str, ...] = PREDICTION_TYPES) -> tuple[Param, ...]:
    """T and the prediction type, offering ``prediction_types``."""
    return (
        Param("num_timesteps", "int", 1000, minimum=2, maximum=100_000,
              help="T, the number of diffusion steps of the forward process"),
        Param("prediction_type", "choice", "epsilon", choices=tuple(prediction_types),
              help="what the network predicts: the noise eps, x_0 (sample), v, ..."),
    )


DIFFUSION_PARAMS: tuple[Param, ...] = diffusion_params()

TRAIN_PARAMS: tuple[Param, ...] = (
    Param("steps", "int", 3000, minimum=1, maximum=100_000_000,
          help="optimizer steps to train for (on continuing: the new total)"),
    Param("batch_size", "int", 128, minimum=1, maximum=65_536, help="samples per step"),
    Param("learning_rate", "float", 1e-3, minimum=1e-8, maximum=1.0,
          help="AdamW learning rate after warm-up"),
    Param("lr_schedule", "choice", "cosine", choices=("constant", "linear", "cosine"),
          help="how the learning rate decays after warm-up"),
    Param("warmup_steps", "int", 500, minimum=0, maximum=10_000_000,
          help="steps of linear learning-rate warm-up"),
    Param("weight_decay", "float", 0.0, minimum=0.0, maximum=1.0, help="AdamW weight decay"),
    Param("ema_decay", "float", 0.999, minimum=0.0, maximum=0.99999,
          help="decay of the EMA copy of the weights used for previews and sampling"),
    Param("grad_clip", "float", 1.0, minimum=0.0, maximum=1e6,
          help="largest gradient norm (0: no clipping)"),
    Param("label_dropout", "float", 0.1, minimum=0.0, maximum=0.99,
          help="class-conditional networks: share of labels dropped (classifier-free guidance)"),
    Param("seed", "int", 0, minimum=0, maximum=2**31 - 1, help="seeds initialisation and data"),
    Param("log_every", "int", 10, minimum=1, maximum=1_000_000,
          help="steps between points of the loss curve"),
    Param("checkpoint_every", "int", 500, minimum=1, maximum=10_000_000,
          help="steps between checkpoints (a stop always writes one)"),
    Param("keep_checkpoints", "int", 2, minimum=0, maximum=1000,
          help="checkpoints kept on disk (0: all)"),
    Param("preview_every", "int", GUI_DEFAULTS["preview_every"], minimum=0, maximum=10_000_000,
          help="steps between preview samples from the EMA weights (0: none)"),
    Param("preview_samples", "int", 16, minimum=1, maximum=4096,
          help="samples in each preview (use hundreds for 2-D points)"),
    Param("preview_steps", "int", 25, minimum=1, maximum=10_000,
          help="DDIM steps used for the previews"),
)
