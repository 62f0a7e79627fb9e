"""Building datasets, schedules, networks and samplers from plugin contributions.

Everything the engine builds goes through here, so a plugin's failure is reported the same way
everywhere: a :class:`PluginError` naming the plugin, the contribution and the cause, while a
:class:`DiffstudioError` the factory raised on purpose (bad parameters, a missing folder) passes
through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from diffstudio.engine.datasets import Dataset
from diffstudio.engine.processes import DiffusionProcess
from diffstudio.engine.schedules.ddpm import NoiseSchedule
from diffstudio.errors import DiffstudioError, PluginError
from diffstudio.plugin_manager import PluginRegistry
from diffstudio.specs import Contribution

__all__ = [
    "build_dataset",
    "build_network",
    "build_schedule",
    "call_factory",
    "dataset_from",
    "get_sampler",
]


def call_factory(contribution: Contribution, *args: Any, **kwargs: Any) -> Any:
    """Import the contribution's factory and call it, naming the plugin on an unexpected error."""
    factory = contribution.load()
    try:
        return factory(*args, **kwargs)
    except DiffstudioError:
        raise
    except Exception as exc:
        raise PluginError(
            f"{contribution.kind} {contribution.id!r} (plugin {contribution.plugin or '?'}) "
            f"failed: {type(exc).__name__}: {exc}"
        ) from exc


def build_dataset(
    registry: PluginRegistry, dataset_id: str, params: Mapping[str, Any] | None = None
) -> Dataset:
    return dataset_from(registry.get("dataset", dataset_id), params)


def dataset_from(contribution: Contribution, params: Mapping[str, Any] | None = None) -> Dataset:
    """Call a dataset contribution's factory as the app does (``factory(**validated params)``)
    and check that it returned a :class:`Dataset` (the conformance kit uses it too)."""
    dataset = call_factory(contribution, **contribution.validate(params))
    if not isinstance(dataset, Dataset):
        raise PluginError(
            f"dataset {contribution.id!r} (plugin {contribution.plugin or '?'}) returned "
            f"{type(dataset).__name__}; expected diffstudio.engine.datasets.Dataset"
        )
    return dataset


def build_schedule(
    registry: PluginRegistry,
    schedule_id: str,
    params: Mapping[str, Any] | None = None,
    num_timesteps: int = 1000,
) -> DiffusionProcess:
    """The schedule ``schedule_id`` as a :class:`DiffusionProcess` (DDPM, NCSN, SDEs, plugins).

    The factory is called as ``factory(num_timesteps=num_timesteps, **validated params)`` and
    must return a DiffusionProcess (the one schedule contract, see
    :func:`diffstudio.hookspecs.diffstudio_schedules`).
    """
    contribution = registry.get("schedule", schedule_id)
    process = call_factory(
        contribution, num_timesteps=num_timesteps, **contribution.validate(params)
    )
    if isinstance(process, NoiseSchedule):
        raise PluginError(
            f"schedule {schedule_id!r} (plugin {contribution.plugin}) returned a bare "
            "NoiseSchedule; a schedule factory must return a DiffusionProcess: return "
            "diffstudio.engine.schedules.ScheduleProcess(NoiseSchedule(betas, name=...))"
        )
    if not isinstance(process, DiffusionProcess):
        raise PluginError(
            f"schedule {schedule_id!r} (plugin {contribution.plugin}) returned "
            f"{type(process).__name__}; a schedule factory must return a "
            "diffstudio.engine.processes.DiffusionProcess"
        )
    return process


def build_network(
    registry: PluginRegistry,
    network_id: str,
    params: Mapping[str, Any] | None,
    sample_shape: tuple[int, ...],
    num_classes: int | None,
) -> torch.nn.Module:
    contribution = registry.get("network", network_id)
    network = call_factory(
        contribution, sample_shape, num_classes, **contribution.validate(params)
    )
    if not isinstance(network, torch.nn.Module):
        raise PluginError(
            f"network {network_id!r} (plugin {contribution.plugin}) returned "
            f"{type(network).__name__}; expected a torch.nn.Module"
        )
    return network


def get_sampler(
    registry: PluginRegistry, sampler_id: str
) -> tuple[Contribution, Callable[..., Any]]:
    contribution = registry.get("sampler", sampler_id)
    function = contribution.load()
    if not callable(function):
        raise PluginError(
            f"sampler {sampler_id!r} (plugin {contribution.plugin}) is not callable"
        )
    return contribution, function
