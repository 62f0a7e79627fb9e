"""Classifier-free guidance (Ho & Salimans, arXiv 2207.12598).

One network trained both conditionally and, with its label dropped to a "no label" class,
unconditionally (label dropout, p = 0.1 by default in training), gives both scores. The seed
mixes them with a scale gamma:

    grad log p_gamma(x_t | c) = (1 - gamma) grad log p(x_t) + gamma grad log p(x_t | c)

and since eps_theta(x_t, c) = -sqrt(1 - alpha_bar_t) grad log p(x_t | c), the guided network
output is

    out_guided = out(x_t, null) + gamma (out(x_t, c) - out(x_t, null)).

gamma = 0 is the unconditional model, gamma = 1 the conditional one, gamma > 1 trades
diversity for fidelity to the class (Ho & Salimans' w is gamma - 1). The combination has
weights summing to 1, and eps, x_0, v and the scaled score are each affine in the network
output with coefficients that depend only on (x_t, t), so guiding the raw output is the same as
guiding any of them: one wrapper, :class:`GuidedNetwork`, serves every prediction type and every
sampler.

Cost: two network evaluations per call (the conditional and unconditional halves go through the
network as one batch of 2B), except at gamma = 0 and gamma = 1, which need only one; see
:attr:`GuidedNetwork.evaluations_per_call`, which :class:`DiffusionModel` adds to its
``network_evaluations`` per call (so a guided DDIM step counts 2, as the field counts CFG).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from diffstudio.engine.model import DiffusionModel
from diffstudio.errors import ConfigError

__all__ = ["GuidedNetwork", "guided_model"]

Labels = int | torch.Tensor


def _output_tensor(output: Any) -> torch.Tensor:
    # diffusers networks return an object with .sample; ours may return a tensor.
    return output.sample if hasattr(output, "sample") else output


def _doubled(value: Any) -> Any:
    """A per-sample keyword argument repeated for the 2B batch (tensors and tuples of them)."""
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return torch.cat([value, value])
    if isinstance(value, tuple):
        return tuple(_doubled(item) for item in value)
    return value


def _batch_labels(labels: Labels, batch: int, device: torch.device) -> torch.Tensor:
    """``labels`` as a (batch,) int64 tensor: an int or a 0-d tensor is repeated."""
    labels = torch.as_tensor(labels, device=device)
    if labels.is_floating_point() or labels.is_complex():
        raise ConfigError(f"class labels must be integers, got a {labels.dtype} tensor")
    labels = labels.long()
    if labels.dim() == 0:
        return labels.expand(batch)
    if labels.shape != (batch,):
        raise ConfigError(
            f"class labels have shape {tuple(labels.shape)}; expected one label or one per "
            f"sample, ({batch},)"
        )
    return labels


class GuidedNetwork(nn.Module):
    """A class-conditional network with classifier-free guidance applied to its output.

    Same call convention as the network it wraps: ``forward(x, timesteps, class_labels=None)``
    with x: (B, ...) and timesteps: (B,) or a scalar (other per-sample keyword arguments, such
    as ``marginal=(m, s)``, are passed on, doubled along the batch); returns a tensor shaped
    like the wrapped network's output (diffusers' ``.sample`` objects are unwrapped).

    ``class_labels``: the label(s) to guide towards, an int or a (B,) integer tensor; a
    ``class_labels`` passed to :meth:`forward` (what :class:`DiffusionModel` passes when its
    ``class_labels`` is set, for example by ``generate(..., class_label=...)``) takes
    precedence. ``null_label``: the "no label" class the network was trained with under label
    dropout (``num_classes`` for diffstudio's networks). ``scale``: gamma, any finite number.

    For 0 < gamma != 1 the wrapped network runs once on a batch of 2B: the conditional labels,
    then the null label. At gamma = 0 only the unconditional half is computed and returned, and
    at gamma = 1 only the conditional half, so those two reproduce the unconditional and the
    conditional network bit for bit (a 2B batch may round differently from a B batch).

    Learned-variance networks (output channels 2C for C input channels): the first C channels
    are guided; the variance channels come from the conditional half (as in GLIDE), or from the
    unconditional one at gamma = 0.
    """

    def __init__(
        self, network: nn.Module, class_labels: Labels, null_label: int, scale: float
    ) -> None:
        super().__init__()
        scale = float(scale)
        if not math.isfinite(scale):
            raise ConfigError(f"guidance scale must be a finite number, got {scale}")
        if isinstance(network, GuidedNetwork):
            raise ConfigError("the network is already guided; wrap the original network")
        self.network = network
        self.class_labels = class_labels
        self.null_label = int(null_label)
        self.scale = scale

    @property
    def conditions_on_marginal(self) -> bool:
        """Pass-through: the wrapped network's wish to get ``marginal=(m, s)``."""
        return bool(getattr(self.network, "conditions_on_marginal", False))

    @property
    def evaluations_per_call(self) -> int:
        """Network evaluations one call costs: 1 at gamma = 0 or 1, otherwise 2."""
        return 1 if self.scale in (0.0, 1.0) else 2

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor | int,
        class_labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        batch = x.shape[0]
        labels = _batch_labels(
            self.class_labels if class_labels is None else class_labels, batch, x.device
        )
        null = torch.full_like(labels, self.null_label)
        if self.scale == 0.0:
            return _output_tensor(self.network(x, timesteps, class_labels=null, **kwargs))
        if self.scale == 1.0:
            return _output_tensor(self.network(x, timesteps, class_labels=labels, **kwargs))
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(batch)
        output = _output_tensor(
            self.network(
                torch.cat([x, x]),
                torch.cat([timesteps, timesteps]),
                class_labels=torch.cat([labels, null]),
                **{name: _doubled(value) for name, value in kwargs.items()},
            )
        )
        conditional, unconditional = output[:batch], output[batch:]
        channels = x.shape[1]
        mean_cond, mean_uncond = conditional[:, :channels], unconditional[:, :channels]
        guided = mean_uncond + self.scale * (mean_cond - mean_uncond)
        if output.shape[1] != channels:  # learned variance: keep the conditional variance
            guided = torch.cat([guided, conditional[:, channels:]], dim=1)
        return guided


def _check_conditional(network: nn.Module, num_classes: int) -> None:
    """Refuse networks whose config says they have no (or a different) class embedding."""
    config = getattr(network, "config", None)
    if config is None or not hasattr(config, "num_class_embeds"):
        return  # a third-party network: trust the caller
    embeds = config.num_class_embeds
    if embeds is None:
        raise ConfigError(
            "classifier-free guidance needs a class-conditional network, and this one has no "
            "class embedding; train it with the network parameter class_conditional=True"
        )
    if embeds != num_classes + 1:
        raise ConfigError(
            f"the network has {embeds} class embeddings but guidance was asked for "
            f"{num_classes} classes (+1 'no label' class = {num_classes + 1}); pass the "
            "dataset's number of classes"
        )


def guided_model(
    model: DiffusionModel, class_label: Labels, scale: float, num_classes: int
) -> DiffusionModel:
    """``model`` with classifier-free guidance towards ``class_label`` at scale gamma.

    class_label: an int in [0, num_classes) or a (B,) integer tensor of them (one per sample).
    The null ("no label") class is ``num_classes``, as in diffstudio's networks and training.
    Returns a new model over the same schedule, prediction type and x0_clip; its
    ``network_evaluations`` starts at 0 and counts ``evaluations_per_call`` per call: 2 per
    guided call, 1 at gamma = 0 or 1.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    labels = torch.as_tensor(class_label)
    if labels.is_floating_point() or labels.numel() == 0:
        raise ConfigError(f"class label must be an integer or integer tensor, got {class_label!r}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ConfigError(
            f"class label {bad} is out of range; this model has classes 0..{num_classes - 1}"
        )
    _check_conditional(model.network, num_classes)
    network = GuidedNetwork(model.network, class_label, null_label=num_classes, scale=scale)
    return DiffusionModel(
        network, model.process, prediction_type=model.prediction_type, x0_clip=model.x0_clip
    )
