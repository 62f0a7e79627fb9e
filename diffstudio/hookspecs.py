"""The hooks a diffstudio plugin implements (pluggy project ``diffstudio``).

A plugin is a module (or object) named by an entry point in the ``diffstudio`` group::

    # pyproject.toml of the plugin's distribution
    [project.entry-points.diffstudio]
    my_sampler = "my_package.plugin"

and implements any of the hooks below with ``@diffstudio.hookimpl``. Each hook returns a list of
:class:`diffstudio.specs.Contribution`; the code that does the work is named by
``Contribution.factory`` and imported only when the contribution is first used, so listing
plugins stays fast and a broken implementation does not stop the others loading.

Built-in contributions come from the ``diffstudio_builtins`` package, registered through the same
entry-point group.

What each kind's factory must be is documented with each hook below and in
``docs/plugins.md``.
"""

from __future__ import annotations

import pluggy

from diffstudio.specs import Contribution

PROJECT_NAME = "diffstudio"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def diffstudio_datasets() -> list[Contribution]:
    """Datasets this plugin contributes (``kind="dataset"``).

    The factory is called as ``factory(**params)`` and returns a
    :class:`diffstudio.engine.datasets.Dataset`.

    Example::

        @hookimpl
        def diffstudio_datasets():
            return [Contribution(kind="dataset", id="my-faces", display_name="My faces",
                                 description="...", factory="my_pkg.data:load_faces",
                                 params=(Param("size", "int", 32, minimum=8, maximum=256),))]
    """


@hookspec
def diffstudio_schedules() -> list[Contribution]:
    """Noise schedules this plugin contributes (``kind="schedule"``).

    The factory is called as ``factory(num_timesteps=T, **params)`` (T is the run's number of
    timesteps, an int >= 2, which a schedule with its own grid such as NCSN's levels may ignore;
    params are the validated values of ``Contribution.params``) and must return a
    :class:`diffstudio.engine.processes.DiffusionProcess`: the one contract the trainer, every
    sampler and the GUI's forward-process explorer use. A process describes
    x_t = m(t) x_0 + s(t) z for t in [0, 1]; a subclass defines ``log_mean(t)`` (log m),
    ``std(t)`` (s), ``drift_rate(t)`` (d log m / dt), ``diffusion_squared(t)`` (g^2 of the
    forward SDE), the ``grid`` property ((N,) ascending float64 times in [0, 1]) and sets
    ``kind`` and ``name``; ``marginal``, ``q_sample``, ``alpha_bar``, ``snr``, ``sigma``,
    ``drift``, ``diffusion``, ``prior_std`` and ``num_timesteps`` follow. A DDPM schedule given
    as betas is wrapped as ``ScheduleProcess(NoiseSchedule(betas, name=...))`` (both in
    :mod:`diffstudio.engine.schedules`); anything else is refused with a
    :class:`diffstudio.errors.PluginError`.

    Example::

        # my_pkg/plugin.py
        @hookimpl
        def diffstudio_schedules():
            return [Contribution(kind="schedule", id="exp", display_name="Exponential",
                                 description="Betas rising geometrically.",
                                 factory="my_pkg.sched:exponential",
                                 params=(Param("beta_end", "float", 0.02, minimum=1e-4,
                                               maximum=0.5),))]

        # my_pkg/sched.py
        import torch
        from diffstudio.engine.schedules import NoiseSchedule, ScheduleProcess

        def exponential(num_timesteps=1000, beta_end=0.02):
            betas = torch.logspace(-4, torch.log10(torch.tensor(beta_end)), num_timesteps,
                                   dtype=torch.float64)
            return ScheduleProcess(NoiseSchedule(betas, name="exp"))
    """


@hookspec
def diffstudio_networks() -> list[Contribution]:
    """Networks (model plugins) this plugin contributes (``kind="network"``).

    The factory is called as ``factory(sample_shape=(C, H, W) or (D,), num_classes=K or None,
    **params)`` and returns a ``torch.nn.Module`` that is also a diffusers ``ModelMixin`` (so it
    saves with ``save_pretrained``) and whose ``forward(x, t, class_labels=None)`` returns the
    prediction (``.sample`` or a tensor).

    Example::

        @hookimpl
        def diffstudio_networks():
            return [Contribution(kind="network", id="my-unet", display_name="My U-Net",
                                 description="...", factory="my_pkg.nets:build")]
    """


@hookspec
def diffstudio_samplers() -> list[Contribution]:
    """Samplers this plugin contributes (``kind="sampler"``).

    The factory is a function with the shared signature
    ``sample(model, x, *, generator, callback, should_stop, **params) -> Tensor`` where x is the
    initial noise (B, *sample_shape) and ``generator`` is a sequence of B ``torch.Generator``,
    one per row of x (``diffstudio.engine.samplers.Generators``): draw row i's noise from
    ``generator[i]`` only, with ``randn_like_per_sample(x, generator)``. The factory's keyword
    parameters are exactly the declared ``params``, with the same defaults. See
    :mod:`diffstudio.engine.samplers` and test with :class:`diffstudio.testing.SamplerConformance`.

    Example::

        @hookimpl
        def diffstudio_samplers():
            return [Contribution(kind="sampler", id="euler", display_name="Euler",
                                 description="...", factory="my_pkg.euler:sample",
                                 params=(Param("steps", "int", 50, minimum=1, maximum=1000),))]
    """


HOOK_KINDS: dict[str, str] = {
    "diffstudio_datasets": "dataset",
    "diffstudio_schedules": "schedule",
    "diffstudio_networks": "network",
    "diffstudio_samplers": "sampler",
}
