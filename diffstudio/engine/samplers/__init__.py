"""Samplers: plain functions with one shared signature (after k-diffusion)::

    def sample(model: DiffusionModel, x: Tensor, *, generator: Sequence[torch.Generator],
               callback: Callable[[SamplerStep], None] | None,
               should_stop: Callable[[], bool] | None, **params) -> Tensor

``x`` is the initial noise x_T: (B, *sample_shape), on the network's device and dtype.

``generator`` is a **sequence of B per-sample generators**, one CPU ``torch.Generator`` per row of
``x``: row i's noise (every step's) must be drawn from ``generator[i]`` only, in step order. That
is what :func:`diffstudio.engine.sampling.generate` passes (generator i seeded with the sample's
seed, after it drew that sample's x_T), so any sample can be regenerated from its seed alone,
whatever batch it was made in. Draw noise with :func:`randn_like_per_sample` (or
:func:`rand_like_per_sample` for uniform noise), never ``torch.randn(shape, generator=generator)``,
which fails on a list. A sampler that adds no noise ignores ``generator``.

``callback`` gets one :class:`SamplerStep` per step. ``should_stop`` is polled before each step;
when it returns True the sampler raises :class:`diffstudio.errors.Cancelled`
(:func:`check_stop`). Network evaluations are counted by the model
(``model.network_evaluations``). The return value is x_0, shaped and typed like ``x``, which the
sampler must not modify in place.

:func:`per_sample_generators` builds the generators for a list of seeds as ``generate`` does;
:class:`diffstudio.testing.SamplerConformance` checks a sampler against this contract.

One algorithm per file: ``ddpm.py`` (ancestral sampling), ``ddim.py`` (DDIM), ``dpm_solver.py``,
``unipc.py``, ``annealed_langevin.py``, ``langevin.py``, ``reverse_sde.py``,
``predictor_corrector.py``, ``probability_flow.py``; helpers shared between them (time grids,
noise levels, timestep sub-sequences) in ``_common.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from diffstudio.errors import Cancelled, ConfigError

__all__ = [
    "Generators",
    "SamplerCallback",
    "SamplerStep",
    "StopCheck",
    "check_generators",
    "check_stop",
    "per_sample_generators",
    "rand_like_per_sample",
    "randn",
    "randn_like_per_sample",
    "timestep_sequence",
]

#: The type of a sampler's ``generator`` argument: one ``torch.Generator`` per row of ``x``.
Generators = Sequence[torch.Generator]


@dataclass
class SamplerStep:
    """One sampler step, as reported to the callback.

    index: 0-based step number; num_steps: the total; t: the timestep (or noise level) of x;
    x: the current state x_t (B, *sample_shape); x0_pred: the network's estimate of x_0 from x.
    """

    index: int
    num_steps: int
    t: float
    x: torch.Tensor
    x0_pred: torch.Tensor


SamplerCallback = Callable[[SamplerStep], None]
StopCheck = Callable[[], bool]


def check_stop(should_stop: StopCheck | None, index: int) -> None:
    """Raise :class:`Cancelled` between steps when the user asked to stop."""
    if should_stop is not None and should_stop():
        raise Cancelled(f"sampling stopped by request before step {index}")


def per_sample_generators(seeds: Iterable[int]) -> list[torch.Generator]:
    """One CPU generator per seed, ``torch.Generator().manual_seed(seed)``: what
    :func:`~diffstudio.engine.sampling.generate` gives a sampler for the samples of one batch
    (CPU, so a seed gives the same noise on every device)."""
    return [torch.Generator().manual_seed(int(seed)) for seed in seeds]


def check_generators(like: torch.Tensor, generator: object) -> Generators:
    """Return ``generator`` when it is a sequence of one ``torch.Generator`` per row of
    ``like``; otherwise raise :class:`ConfigError` saying what was passed and what to pass."""
    if isinstance(generator, torch.Generator) or generator is None:
        got = "None" if generator is None else "a single torch.Generator"
        raise ConfigError(
            f"generator is {got}; samplers take a sequence of one torch.Generator per sample "
            f"(here {like.shape[0]}), generator[i] drawing the noise of x[i]; build it with "
            "diffstudio.engine.samplers.per_sample_generators(seeds)"
        )
    if not isinstance(generator, Sequence) or not all(
        isinstance(g, torch.Generator) for g in generator
    ):
        raise ConfigError(
            f"generator must be a sequence of torch.Generator, got {type(generator).__name__}; "
            "build it with diffstudio.engine.samplers.per_sample_generators(seeds)"
        )
    if len(generator) != like.shape[0]:
        raise ConfigError(
            f"{len(generator)} generators for a batch of {like.shape[0]}; give one per sample"
        )
    return generator


def _per_sample(fill: str, like: torch.Tensor, generator: object) -> torch.Tensor:
    """Fill row i of a tensor shaped like ``like`` in place with ``Tensor.<fill>`` from
    generator i: the same numbers as ``torch.randn(like.shape[1:], generator=g)`` (or
    ``torch.rand``), without a tensor per row."""
    generators = check_generators(like, generator)
    devices = {g.device for g in generators}
    device = devices.pop() if len(devices) == 1 else torch.device("cpu")
    noise = torch.empty(like.shape, dtype=like.dtype, device=device)
    for row, g in zip(noise, generators, strict=True):
        if g.device == device:
            getattr(row, fill)(generator=g)
        else:  # generators on several devices: draw where each lives
            row.copy_(getattr(torch.empty_like(row, device=g.device), fill)(generator=g))
    return noise.to(like.device)


def randn_like_per_sample(like: torch.Tensor, generator: Generators) -> torch.Tensor:
    """Standard normal noise shaped like ``like`` (B, ...), row i drawn from ``generator[i]``
    only (on that generator's device, then moved to ``like``'s device and kept in its dtype).

    So a sample's noise does not depend on the batch it is in, and a CPU generator reproduces the
    same sample on any device. Raises :class:`ConfigError` unless ``generator`` holds one
    ``torch.Generator`` per row.
    """
    return _per_sample("normal_", like, generator)


def rand_like_per_sample(like: torch.Tensor, generator: Generators) -> torch.Tensor:
    """Uniform noise on [0, 1) shaped like ``like``, row i from ``generator[i]``; as
    :func:`randn_like_per_sample`."""
    return _per_sample("uniform_", like, generator)


#: The former name of :func:`randn_like_per_sample`, kept for plugins written against it.
randn = randn_like_per_sample


# Re-exported for plugin authors; defined with the other shared helpers, which build on the
# names above (hence imported last).
from diffstudio.engine.samplers._common import timestep_sequence  # noqa: E402
