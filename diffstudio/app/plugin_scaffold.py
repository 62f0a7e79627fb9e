"""``diffstudio plugins new NAME``: write a plugin package that already runs and passes its test.

The package (``NAME/``) holds ``pyproject.toml`` with the ``diffstudio`` entry point,
``src/<module>/plugin.py`` (declarations only, cheap to import), the implementation
(``sampler.py``, ``schedule.py``, ``network.py`` or ``dataset.py``), a README and
``tests/test_<module>.py`` using :mod:`diffstudio.testing`. ``pip install -e NAME`` (or
``diffstudio plugins install -e NAME``) and ``pytest`` in the folder pass as written; a test
of diffstudio's checks exactly that.
The folder is written atomically and never over an existing one. No torch, no Qt.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from diffstudio.engine.io import atomic_directory
from diffstudio.errors import ConfigError

__all__ = ["KINDS", "KIND_PAGES", "module_name", "scaffold_plugin"]

KINDS = ("sampler", "schedule", "network", "dataset")
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
# The conformance kit's fixtures (diffstudio_sample, diffstudio_generators, ...).
addopts = ["-p", "diffstudio.testing"]
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
determinism, one callback per step, cancellation, finite output, the schema, the exact-score
mixture (check_exact_score_mixture); and the kit's fixtures (loaded by ``-p
diffstudio.testing`` in pyproject.toml) on the exact Gaussian model."""

from __future__ import annotations

import pytest

from diffstudio.testing import SamplerConformance

from {module}.plugin import diffstudio_samplers
from {module}.sampler import sample


class Test{klass}(SamplerConformance):
    contribution = diffstudio_samplers()[0]  # the sampler is loaded from its factory
    params = {{"steps": 5}}
    deterministic = True  # at the default eta = 0 it adds no noise
    exact_score = True  # and it samples the seed's 2-D mixture from its exact score


class Test{klass}Stochastic(SamplerConformance):
    contribution = diffstudio_samplers()[0]
    params = {{"steps": 5, "eta": 1.0}}
    deterministic = False


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_the_exact_gaussian_comes_back(diffstudio_sample, eta):
    """On the kit's exact model of N(0, 0.5^2 I) data (the diffstudio_gaussian_model fixture),
    400 samples drawn as the app draws them have the data's standard deviation."""
    x0 = diffstudio_sample(sample, seeds=range(400), steps=100, eta=eta)
    assert x0.shape == (400, 2)
    assert 0.44 < float(x0.std()) < 0.56  # DDIM-100: 0.48
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

_NETWORK_PLUGIN = '''\
"""The module the entry point names: declarations only, so that listing plugins stays fast."""

from __future__ import annotations

from diffstudio import Contribution, Param, hookimpl


@hookimpl
def diffstudio_networks() -> list[Contribution]:
    return [
        Contribution(
            kind="network",
            id="{name}",
            display_name="{title}",
            description="A residual MLP on the flattened sample with a sinusoidal time "
                        "embedding: 2-D points, or small images.",
            factory="{module}.network:build",  # imported on first use
            params=(
                Param("hidden", "int", 128, minimum=8, maximum=4096, help="hidden width"),
                Param("depth", "int", 3, minimum=1, maximum=32, help="residual blocks"),
                Param("class_conditional", "bool", False,
                      help="condition on the dataset's labels"),
            ),
            tags=("points",),  # the window offers it for points datasets first
        )
    ]
'''

_NETWORK = '''\
"""{title}: a time-conditioned residual MLP (edit this file).

The factory is called as ``build(sample_shape, num_classes, **params)``: ``sample_shape`` is
(D,) for points or (C, H, W) for images, ``num_classes`` the dataset's number of classes
(None without labels). The network is called as ``network(x_t, t, class_labels=None)`` with
x_t (B, *sample_shape) and t one timestep for the batch (a 0-d tensor) or one per sample (B,),
int64 steps or floats (999 t of a continuous process), and returns the prediction shaped like
x_t. ``class_labels`` (B,) int64 come only when the run's ``class_conditional`` is true, in
[0, num_classes]: num_classes itself means "no label". As a diffusers ``ModelMixin`` +
``ConfigMixin`` it is saved by runs with ``save_pretrained`` (config.json and weights).
"""

from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from diffstudio.errors import ConfigError


class {klass}Network(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, sample_shape=(2,), hidden=128, depth=3, num_classes=None,
                 time_dim=64):
        super().__init__()
        size = math.prod(sample_shape)
        self.input = nn.Linear(size, hidden)
        self.time = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(),
                                  nn.Linear(hidden, hidden))
        # One embedding per class and one more, index num_classes: "no label" (label dropout
        # in training, the unconditional half of classifier-free guidance).
        self.classes = nn.Embedding(num_classes + 1, hidden) if num_classes else None
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden))
                                    for _ in range(depth))
        self.output = nn.Sequential(nn.SiLU(), nn.Linear(hidden, size))

    def time_embedding(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Sines and cosines of t at geometric frequencies (Transformer-style)."""
        half = self.config.time_dim // 2
        steps = torch.arange(half, device=timesteps.device)
        frequencies = torch.exp(-math.log(10000.0) * steps / half)
        angles = timesteps.float()[:, None] * frequencies[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    def forward(self, x, timesteps, class_labels=None):
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(x.shape[0])
        conditioning = self.time(self.time_embedding(timesteps).to(x.dtype))
        if self.classes is not None and class_labels is not None:
            conditioning = conditioning + self.classes(class_labels)
        h = self.input(x.flatten(1))
        for block in self.blocks:
            h = h + block(h + conditioning)
        return self.output(h).reshape(x.shape)


def build(sample_shape, num_classes=None, hidden=128, depth=3, class_conditional=False):
    if class_conditional and not num_classes:
        raise ConfigError("{name}: class_conditional needs a dataset with labels")
    return {klass}Network(sample_shape=tuple(sample_shape), hidden=hidden, depth=depth,
                         num_classes=num_classes if class_conditional else None)
'''

_NETWORK_TEST = '''\
"""The conformance kit for networks: built as the app builds them, outputs shaped like x_t,
finite float32, the same for a scalar t and one t per sample, deterministic in eval mode,
using the class labels, and unchanged by save_pretrained / from_pretrained."""

from __future__ import annotations

import pytest

from diffstudio.errors import ConfigError
from diffstudio.testing import NetworkConformance

from {module}.network import build
from {module}.plugin import diffstudio_networks


class Test{klass}OnPoints(NetworkConformance):
    contribution = diffstudio_networks()[0]  # the factory is called as the app calls it
    sample_shape = (2,)
    params = {{"hidden": 32}}


class Test{klass}OnLabelledImages(NetworkConformance):
    contribution = diffstudio_networks()[0]
    sample_shape = (1, 8, 8)
    num_classes = 10
    params = {{"hidden": 32, "depth": 1, "class_conditional": True}}


def test_class_conditional_without_labels_is_refused():
    with pytest.raises(ConfigError, match="needs a dataset with labels"):
        build((2,), None, class_conditional=True)
'''

_DATASET_PLUGIN = '''\
"""The module the entry point names: declarations only, so that listing plugins stays fast."""

from __future__ import annotations

from diffstudio import Contribution, Param, hookimpl


@hookimpl
def diffstudio_datasets() -> list[Contribution]:
    return [
        Contribution(
            kind="dataset",
            id="{name}",
            display_name="{title}",
            description="2-D points around eight Gaussians on a circle, labelled by mode.",
            factory="{module}.dataset:load",  # imported on first use
            params=(
                Param("num_points", "int", 8000, minimum=8, maximum=10_000_000,
                      help="number of points drawn"),
                Param("radius", "float", 4.0, minimum=0.1, maximum=1000.0,
                      help="radius of the circle of modes"),
                Param("std", "float", 0.25, minimum=0.01, maximum=100.0,
                      help="standard deviation of each mode"),
                Param("seed", "int", 0, minimum=0, maximum=2**31 - 1,
                      help="random seed of the draw"),
            ),
            tags=("points",),  # "image" for (N, C, H, W) images in [-1, 1]
        )
    ]
'''

_DATASET = '''\
"""{title}: eight Gaussians on a circle (edit this file).

The factory is called as ``load(**params)`` and returns a ``Dataset``: float32 points (N, D)
(``kind="points"``) or images (N, C, H, W) in [-1, 1] (``kind="image"``), optional int64
labels (N,) with ``num_classes``, and (when the density is known exactly) ``log_density``,
which the 2-D lab draws under the samples. The same parameters must give the same data at
every call: draw from a seeded ``torch.Generator``, never the global RNG.
"""

from __future__ import annotations

import math

import torch

from diffstudio.engine.datasets import Dataset

MODES = 8


def centres(radius: float) -> torch.Tensor:
    """The modes' means, (MODES, 2) float64."""
    angles = torch.arange(MODES, dtype=torch.float64) * (2 * math.pi / MODES)
    return torch.stack([angles.cos(), angles.sin()], dim=1) * radius


def load(num_points: int = 8000, radius: float = 4.0, std: float = 0.25,
         seed: int = 0) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, MODES, (num_points,), generator=generator)
    noise = torch.randn((num_points, 2), generator=generator, dtype=torch.float64)
    means = centres(radius)
    points = means[labels] + std * noise

    def log_density(x: torch.Tensor) -> torch.Tensor:
        """log p(x) of the equal-weight mixture, for points (..., 2) float64."""
        squared = ((x[..., None, :] - means) ** 2).sum(-1)  # (..., MODES)
        log_normal = -squared / (2 * std**2) - math.log(2 * math.pi * std**2)
        return torch.logsumexp(log_normal, dim=-1) - math.log(MODES)

    return Dataset(name="{name}", data=points.float(), kind="points", labels=labels,
                   num_classes=MODES, class_names=[f"mode {{i}}" for i in range(MODES)],
                   source=f"{name}: radius {{radius}}, std {{std}}, seed {{seed}}",
                   log_density=log_density)
'''

_DATASET_TEST = '''\
"""The conformance kit for datasets: kind and tag agree, float32 finite data of the right
shape, labels in range, a finite density, identical data at every call."""

from __future__ import annotations

import torch

from diffstudio.testing import DatasetConformance

from {module}.dataset import centres, load
from {module}.plugin import diffstudio_datasets


class Test{klass}(DatasetConformance):
    contribution = diffstudio_datasets()[0]  # the factory is called as the app calls it
    params = {{"num_points": 512}}  # small: fast
    expected_len = 512


def test_each_point_lies_near_its_labelled_mode():
    dataset = load(num_points=400, radius=4.0, std=0.1)
    distance = (dataset.data.double() - centres(4.0)[dataset.labels]).norm(dim=1)
    assert float(distance.max()) < 1.0
    assert int(torch.bincount(dataset.labels, minlength=8).min()) > 20  # every mode is drawn
'''

_README = '''\
# {name}

A diffstudio {kind} plugin, `{name}`, written by `diffstudio plugins new`.

```
diffstudio plugins install --editable ".[test]"   # pip install -e, with pytest; torch pinned
python -m pytest                                  # the conformance kit (the same Python)
diffstudio plugins                                # lists {name}
```

Without a network add `--no-index --no-build-isolation` to the install.

In the window it is "{title}" on the {page} page, with a form built from its parameters;
on the command line: `{usage}`.

Edit `src/{module}/{impl}.py` (the {what}) and `src/{module}/plugin.py` (its id,
name and parameters: the window's form and the command line's options are built from them).
Restart diffstudio after changing `plugin.py`. The author's guide is diffstudio's `docs/plugins.md`.
'''


#: The window's page that lists each kind's contributions.
KIND_PAGES: dict[str, str] = {"sampler": "Sample", "schedule": "Model & schedule",
                              "network": "Model & schedule", "dataset": "Data"}

#: Per kind: (a command that uses it, what its implementation file holds).
_USAGE: dict[str, tuple[str, str]] = {
    "sampler": ("diffstudio sample RUN --sampler {name} --steps 20", "algorithm"),
    "schedule": ("diffstudio train --schedule {name} --out RUN", "noise schedule"),
    "network": ("diffstudio train --dataset toy2d --network {name} --out RUN", "network"),
    "dataset": ("diffstudio train --dataset {name} --out RUN", "data loader"),
}

#: Per kind: the templates of plugin.py, of the implementation ``<kind>.py`` and of the test.
_TEMPLATES: dict[str, tuple[str, str, str]] = {
    "sampler": (_SAMPLER_PLUGIN, _SAMPLER, _SAMPLER_TEST),
    "schedule": (_SCHEDULE_PLUGIN, _SCHEDULE, _SCHEDULE_TEST),
    "network": (_NETWORK_PLUGIN, _NETWORK, _NETWORK_TEST),
    "dataset": (_DATASET_PLUGIN, _DATASET, _DATASET_TEST),
}


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
    usage, what = _USAGE[kind]
    values |= {"page": KIND_PAGES[kind], "usage": usage.format(name=name), "what": what}
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        f"src/{module}/__init__.py": '"""{title}: a diffstudio {kind} plugin."""\n',
    }
    plugin, implementation, test = _TEMPLATES[kind]
    files |= {f"src/{module}/plugin.py": plugin,
              f"src/{module}/{kind}.py": implementation,
              f"tests/test_{module}.py": test}
    with atomic_directory(folder) as temp:
        for relative, template in files.items():
            path = temp / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(template).format(**values), encoding="utf-8")
    return folder
