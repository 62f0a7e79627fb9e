"""``diffstudio plugins new NAME``: write a plugin package that already runs and passes its test.

The package (``NAME/``) holds ``pyproject.toml`` with the ``diffstudio`` entry point,
``src/<module>/plugin.py`` (declarations only, cheap to import), the implementation
(``sampler.py`` or ``schedule.py``), a README and ``tests/test_<module>.py`` using
:mod:`diffstudio.testing`. ``pip install -e NAME`` (or ``diffstudio plugins install -e NAME``)
and ``pytest`` in the folder pass as written; a test of diffstudio's checks exactly that.
The folder is written atomically and never over an existing one. No torch, no Qt.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from diffstudio.engine.io import atomic_directory
from diffstudio.errors import ConfigError

__all__ = ["KINDS", "module_name", "scaffold_plugin"]

KINDS = ("sampler", "schedule")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*([-_.][A-Za-z0-9]+)*$")


def module_name(name: str) -> str:
    """The import name of distribution ``name``: ``my-sampler`` -> ``my_sampler``."""
    return re.sub(r"[-.]+", "_", name).lower()


_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
description = "{title}: a diffstudio {kind} plugin."
readme = "README.md"
requires-python = ">=3.10"
# Depend on diffstudio only: never pin or require torch, a Qt binding or numpy yourself
# (diffstudio refuses installs that would change them, and brings them anyway).
dependencies = ["diffstudio"]

[project.optional-dependencies]
test = ["pytest"]

# This is all diffstudio needs to find the plugin.
[project.entry-points.diffstudio]
{name} = "{module}.plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

_SAMPLER_PLUGIN = '''\
"""The module the entry point names: declarations only, so that listing plugins stays fast."""

from __future__ import annotations

from diffstudio import Contribution, Param, hookimpl


@hookimpl
def diffstudio_samplers() -> list[Contribution]:
    return [
        Contribution(
            kind="sampler",
            id="{name}",
            display_name="{title}",
            description="DDIM with eta: deterministic at eta = 0, DDPM-like at eta = 1.",
            factory="{module}.sampler:sample",  # imported on first use
            params=(
                Param("steps", "int", 20, minimum=1, maximum=1000,
                      help="sampling steps (one network evaluation each)"),
                Param("eta", "float", 0.0, minimum=0.0, maximum=1.0,
                      help="noise added per step: 0 deterministic, 1 DDPM-like"),
            ),
        )
    ]
'''

_SAMPLER = '''\
"""{title}: DDIM's update with eta (Song et al. 2021, arXiv:2010.02502, eq. 12 and 16).

Edit this file: it is a working sampler to start from. The signature is the one every
diffstudio sampler has; the keyword defaults must match the Params of plugin.py (the test
checks it).
"""

from __future__ import annotations

import torch

from diffstudio.engine.samplers import (
    Generators,
    SamplerCallback,
    SamplerStep,
    StopCheck,
    check_stop,
    randn_like_per_sample,
    timestep_sequence,
)


@torch.no_grad()
def sample(
    model,
    x: torch.Tensor,
    *,
    generator: Generators,
    callback: SamplerCallback | None,
    should_stop: StopCheck | None,
    steps: int = 20,
    eta: float = 0.0,
) -> torch.Tensor:
    """x: (B, *sample_shape) initial noise (left unmodified); returns x_0, same shape.

    ``generator`` holds one torch.Generator per row of x: draw noise with
    ``randn_like_per_sample(x, generator)`` so that each sample depends on its own seed only.
    """
    timesteps = timestep_sequence(model.num_timesteps, steps, "trailing")
    for index, t in enumerate(timesteps):
        check_stop(should_stop, index)  # raises Cancelled when the user pressed Stop
        prev = timesteps[index + 1] if index + 1 < len(timesteps) else -1
        alpha_bar, alpha_bar_prev = model.alpha_bar(t), model.alpha_bar(prev)
        prediction = model.predict(x, t)  # eps and x0 predictions; one network evaluation
        if callback is not None:
            callback(SamplerStep(index, len(timesteps), t, x, prediction.x0))
        sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar)
                       * (1 - alpha_bar / alpha_bar_prev)) ** 0.5
        direction = (1 - alpha_bar_prev - sigma**2) ** 0.5 * prediction.eps
        x = alpha_bar_prev**0.5 * prediction.x0 + direction
        if eta > 0 and prev >= 0:
            x = x + sigma * randn_like_per_sample(x, generator)
    return x
'''

_SAMPLER_TEST = '''\
"""The conformance kit diffstudio's own samplers pass: shapes, dtypes, per-sample generators,
determinism, one callback per step, cancellation, finite output, the schema."""

from __future__ import annotations

from diffstudio.testing import SamplerConformance

from {module}.plugin import diffstudio_samplers


class Test{klass}(SamplerConformance):
    contribution = diffstudio_samplers()[0]  # the sampler is loaded from its factory
    params = {{"steps": 5}}
    deterministic = True  # at the default eta = 0 it adds no noise


class Test{klass}Stochastic(SamplerConformance):
    contribution = diffstudio_samplers()[0]
    params = {{"steps": 5, "eta": 1.0}}
    deterministic = False
'''

_SCHEDULE_PLUGIN = '''\
"""The module the entry point names: declarations only, so that listing plugins stays fast."""

from __future__ import annotations

from diffstudio import Contribution, Param, hookimpl


@hookimpl
def diffstudio_schedules() -> list[Contribution]:
    return [
        Contribution(
            kind="schedule",
            id="{name}",
            display_name="{title}",
            description="Betas rising geometrically from beta_start to beta_end.",
            factory="{module}.schedule:schedule",  # imported on first use
            params=(
                Param("beta_start", "float", 1e-4, minimum=1e-6, maximum=0.1,
                      help="the first beta"),
                Param("beta_end", "float", 0.02, minimum=1e-4, maximum=0.999,
                      help="the last beta"),
            ),
        )
    ]
'''

_SCHEDULE = '''\
"""{title}: a DDPM noise schedule whose betas rise geometrically (edit this file).

The factory is called as ``schedule(num_timesteps=T, **params)`` and returns a
``DiffusionProcess``; ``ScheduleProcess(NoiseSchedule(betas))`` wraps a beta schedule.
"""

from __future__ import annotations

import math

import torch

from diffstudio.engine.schedules import NoiseSchedule, ScheduleProcess


def schedule(num_timesteps: int = 1000, beta_start: float = 1e-4,
             beta_end: float = 0.02) -> ScheduleProcess:
    betas = torch.logspace(math.log10(beta_start), math.log10(beta_end), num_timesteps,
                           dtype=torch.float64)
    return ScheduleProcess(NoiseSchedule(betas, name="{name}"))
'''

_SCHEDULE_TEST = '''\
"""The conformance kit for schedules: a DiffusionProcess with an ascending grid, m in (0, 1],
s > 0, alpha-bar falling, drift and diffusion the derivatives of the marginals."""

from __future__ import annotations

import torch

from diffstudio.testing import ScheduleConformance

from {module}.plugin import diffstudio_schedules
from {module}.schedule import schedule


class Test{klass}(ScheduleConformance):
    contribution = diffstudio_schedules()[0]  # the factory is called as the app calls it


def test_alpha_bar_falls_from_one_towards_zero():
    process = schedule(num_timesteps=1000)
    alpha_bar = process.alpha_bar(process.grid)
    assert alpha_bar[0] > 0.99 and alpha_bar[-1] < 0.05
'''

_README = '''\
# {name}

A diffstudio {kind} plugin, `{name}`, written by `diffstudio plugins new`.

```
diffstudio plugins install --editable .   # or: pip install -e .
pytest                                    # the conformance kit
diffstudio plugins                        # lists {name}
```

Edit `src/{module}/{impl}.py` (the algorithm) and `src/{module}/plugin.py` (its id, name and
parameters: the window's form and the command line's options are built from them). Restart
diffstudio after changing `plugin.py`. The author's guide is diffstudio's `docs/plugins.md`.
'''


def scaffold_plugin(name: str, *, kind: str = "sampler", out: str | Path | None = None) -> Path:
    """Write the package for plugin ``name`` into ``out`` (default ``./NAME``); returns it."""
    if not _NAME.match(name):
        raise ConfigError(f"{name!r} is not a usable distribution name: use letters, digits "
                          "and single '-', e.g. my-sampler")
    if kind not in KINDS:
        raise ConfigError(f"unknown plugin kind {kind!r}; expected one of {', '.join(KINDS)}")
    folder = Path(out) if out else Path.cwd() / name
    if folder.exists():
        raise ConfigError(f"{folder} already exists; choose another --out or remove it")
    module = module_name(name)
    words = re.split(r"[-_.]+", name)
    values = {"name": name, "module": module, "kind": kind,
              "title": " ".join(words).capitalize(),
              "klass": "".join(word.capitalize() for word in words),
              "impl": kind}
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        f"src/{module}/__init__.py": '"""{title}: a diffstudio {kind} plugin."""\n',
    }
    if kind == "sampler":
        files |= {f"src/{module}/plugin.py": _SAMPLER_PLUGIN,
                  f"src/{module}/sampler.py": _SAMPLER,
                  f"tests/test_{module}.py": _SAMPLER_TEST}
    else:
        files |= {f"src/{module}/plugin.py": _SCHEDULE_PLUGIN,
                  f"src/{module}/schedule.py": _SCHEDULE,
                  f"tests/test_{module}.py": _SCHEDULE_TEST}
    with atomic_directory(folder) as temp:
        for relative, template in files.items():
            path = temp / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(template).format(**values), encoding="utf-8")
    return folder
