"""The conformance kit's pytest fixtures, loaded with ``pytest -p diffstudio.testing``.

``diffstudio.testing`` itself imports no pytest (it names this module in its
``pytest_plugins``), so loading it as a plugin brings these fixtures; in a plugin's
``pyproject.toml``::

    [tool.pytest.ini_options]
    addopts = ["-p", "diffstudio.testing"]

(or ``pytest_plugins = ["diffstudio.testing"]`` in the top-level ``conftest.py``). Every fixture
is fresh per test; override ``diffstudio_seeds`` (a fixture of the same name in your
conftest) to change the batch. The fixtures hand a sampler exactly what the studio hands it:
see :func:`diffstudio.engine.sampling.sample_batch`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch

from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.samplers import per_sample_generators
from diffstudio.engine.sampling import sample_batch
from diffstudio.engine.schedules.linear import linear_schedule
from diffstudio.testing import StepRecorder, gaussian_model

__all__ = [
    "diffstudio_callback",
    "diffstudio_gaussian_model",
    "diffstudio_generators",
    "diffstudio_sample",
    "diffstudio_seeds",
]


@pytest.fixture
def diffstudio_gaussian_model() -> DiffusionModel:
    """The exact eps-network of Gaussian data N(0, 0.5^2 I) on 2-D points under DDPM's
    1000-step linear schedule (``gaussian_model(linear_schedule(num_timesteps=1000))``: its
    alpha-bar falls to 4e-5, so x_T ~ N(0, I) is the right prior), no clipping. A sampler's
    points must have the data's statistics: DDIM at 100 steps gives a standard deviation of
    0.48 (0.49 at 1000). Its ``network_evaluations`` starts at 0. (The conformance classes'
    ``"points"`` case is the faster 100-step ``gaussian_model()``.)"""
    return gaussian_model(linear_schedule(num_timesteps=1000), std=0.5)


@pytest.fixture
def diffstudio_seeds() -> list[int]:
    """The seeds of the batch the other fixtures use: ``[0, 1, 2, 3]``."""
    return [0, 1, 2, 3]


@pytest.fixture
def diffstudio_generators(diffstudio_seeds: list[int]) -> list[torch.Generator]:
    """What a sampler's ``generator`` argument is in the studio: a list of one CPU
    ``torch.Generator`` per sample, generator i seeded with ``diffstudio_seeds[i]``
    (``per_sample_generators``). Draw noise from it with ``randn_like_per_sample(x, generator)``."""
    return per_sample_generators(diffstudio_seeds)


@pytest.fixture
def diffstudio_callback() -> StepRecorder:
    """A sampler callback that keeps every ``SamplerStep`` it is given (a list): pass it as
    ``callback`` and check ``len(steps) == steps[0].num_steps``."""
    return StepRecorder()


@pytest.fixture
def diffstudio_sample(
    diffstudio_gaussian_model: DiffusionModel, diffstudio_seeds: list[int]
) -> Callable[..., torch.Tensor]:
    """``diffstudio_sample(sampler, **params)``: run ``sampler`` on one batch exactly as
    ``diffstudio sample`` and the window do (x_T and the sampler's noise from each seed's own
    generator, through ``sample_batch``); returns x_0 (len(seeds), *sample_shape).

    Keywords besides the sampler's own parameters: ``model`` (default: the
    ``diffstudio_gaussian_model`` of this test), ``seeds`` (default ``diffstudio_seeds``),
    ``sample_shape`` (default (2,)), ``callback``, ``should_stop``."""

    def run(
        sampler: Callable[..., Any],
        *,
        model: DiffusionModel | None = None,
        seeds: Sequence[int] | None = None,
        sample_shape: tuple[int, ...] = (2,),
        callback: Callable[..., None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        **params: Any,
    ) -> torch.Tensor:
        return sample_batch(
            model if model is not None else diffstudio_gaussian_model, sampler,
            list(seeds if seeds is not None else diffstudio_seeds), sample_shape,
            params=params, callback=callback, should_stop=should_stop,
            sampler_id=getattr(sampler, "__qualname__", "sampler"),
        )

    return run
