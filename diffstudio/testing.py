"""A conformance kit for samplers, for the built-in ones and for third-party plugins alike.

(Schedules, networks and datasets have theirs too: :class:`ScheduleConformance`,
:class:`NetworkConformance` and :class:`DatasetConformance`, subclassed the same way with
``contribution`` set; see their docstrings and docs/plugins.md.)

Modelled on diffusers' ``tests/schedulers/test_schedulers.py``: subclass
:class:`SamplerConformance` in a test module, name the subclass ``Test...`` so pytest collects
it, and give it the sampler function and the keyword parameters to call it with::

    from diffstudio.engine.samplers.ddim import ddim_sample
    from diffstudio.testing import SamplerConformance

    class TestDDIM(SamplerConformance):
        sampler = staticmethod(ddim_sample)
        params = {"eta": 0.0}
        deterministic = True

Set ``contribution`` to the plugin's :class:`~diffstudio.specs.Contribution` (what its
``diffstudio_samplers`` hook returns) and the kit also checks that the function's signature and
the declared parameter schema agree, and calls the sampler with the validated parameters, as
the app does (``sampler`` may then be left out: it is loaded from the contribution)::

    from my_package.plugin import diffstudio_samplers

    class TestMySampler(SamplerConformance):
        contribution = diffstudio_samplers()[0]

Every test runs on two models (``model_cases``): ``"points"``, an exact analytic eps-network
for Gaussian data N(0, 0.5^2 I) on 2-D points (B, 2) with a 100-step linear schedule, and
``"image"``, a randomly initialised tiny U-Net (preset ``digits-8``) on (1, 8, 8) images.
Override :meth:`SamplerConformance.build_model` to test on your own model, or
``model_cases`` to restrict the cases.

The sampler must follow the shared signature of :mod:`diffstudio.engine.samplers`::

    sampler(model, x, *, generator, callback, should_stop, **params) -> x_0

where ``generator`` is a sequence of one ``torch.Generator`` per row of ``x``. The kit calls it
through :func:`diffstudio.engine.sampling.call_sampler` and
:func:`~diffstudio.engine.sampling.sample_batch`, the functions ``generate`` uses, so a sampler
sees exactly the argument types it will see in the studio.

What is checked:

* it accepts the per-sample generators (a sampler that calls
  ``torch.randn(shape, generator=generator)`` fails here, with the fix in the message);
* sample i does not depend on the batch it is in: seeds [0, 1, 2, 3] in one batch and seed 2
  alone give the same sample 2 (set ``batch_independent = False``, with the reason in the
  class docstring, for a sampler that by design couples a batch);
* the output has the shape and dtype of the input noise, which is left unmodified;
* fixed generators give identical output, whatever the global RNG state (all noise must come
  from ``generator``); a deterministic sampler (``deterministic = True``) ignores the seed, a
  stochastic one does not;
* the callback is called once per step (as many times as the ``num_steps`` it reports), with
  consecutive indices and finite ``x`` and ``x0_pred`` of the sample's shape;
* cancellation: when ``should_stop`` returns True after k steps the sampler raises
  :class:`diffstudio.errors.Cancelled` and makes no further callback;
* finite output at 1, 2 and 10 steps (the step count is passed as ``steps_param``, ``"steps"``
  by default; set it to ``None`` for a sampler without one);
* the model's ``network_evaluations`` counter increases;
* with ``contribution`` set, its effective defaults on 2-D points (schema defaults under the
  data's suggestions, as the app lays them) move the points;
* opt in (``exact_score = True``, with ``contribution`` set): on the seed's 2-D mixture
  0.8 N((5, 5), I) + 0.2 N((-5, -5), I) with its exact score, the sampler's effective defaults
  bring the points to the modes in the right proportions
  (:func:`check_exact_score_mixture`; ``exact_score_params``, ``exact_score_samples`` and
  ``exact_score_tolerance`` tune it);
* with ``contribution`` set, :meth:`SamplerConformance.check_signature_matches_schema`: every
  declared ``Param`` is a keyword of the function with the same default, and every keyword of
  the function besides the shared ones is declared (:func:`signature_schema_mismatches` gives
  the list of disagreements without raising).

Class attributes to set: ``sampler`` (wrap plain functions in ``staticmethod``) or
``contribution``, ``params``, and optionally ``deterministic``, ``batch_independent``,
``steps_param``, ``default_steps``, ``model_cases``.

The module imports torch and diffstudio's engine but neither pytest nor diffusers at import
time: the test parametrisation goes through the class's ``pytest_generate_tests`` hook, and
the U-Net is built only when the ``"image"`` case runs. Loaded as a pytest plugin
(``pytest -p diffstudio.testing``) it also brings fixtures (:mod:`diffstudio.pytest_plugin`):
``diffstudio_gaussian_model``, ``diffstudio_seeds``, ``diffstudio_generators`` (the
per-sample generators as the app passes them), ``diffstudio_callback`` and
``diffstudio_sample`` (one batch sampled exactly as the app samples it).
:class:`GaussianEpsNetwork` is also useful on its own, as a network with a known exact answer.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from diffstudio.engine.datasets import Dataset
from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.samplers import SamplerStep, per_sample_generators
from diffstudio.engine.sampling import call_sampler, sample_batch
from diffstudio.engine.schedules import NoiseSchedule
from diffstudio.engine.schedules.linear import linear_schedule
from diffstudio.engine.suggestions import effective_params, noise_scale, suggest_sampler_defaults
from diffstudio.errors import Cancelled
from diffstudio.specs import Contribution, Param

__all__ = [
    "DatasetConformance",
    "ExactScoreResult",
    "GaussianEpsNetwork",
    "NetworkConformance",
    "SamplerConformance",
    "ScheduleConformance",
    "StepRecorder",
    "check_exact_score_mixture",
    "gaussian_model",
    "signature_schema_mismatches",
]

#: Loaded as a pytest plugin (``pytest -p diffstudio.testing``), this module brings the kit's
#: fixtures from :mod:`diffstudio.pytest_plugin`; imported as a library it imports no pytest.
pytest_plugins = ["diffstudio.pytest_plugin"]


class StepRecorder(list[SamplerStep]):
    """A sampler callback that keeps the :class:`~diffstudio.engine.samplers.SamplerStep` of
    every call, in order: ``steps = StepRecorder(); sampler(..., callback=steps)``."""

    def __call__(self, step: SamplerStep) -> None:
        self.append(step)


class GaussianEpsNetwork(nn.Module):
    """The exact eps-prediction for data x_0 ~ N(mean, std^2 I) under ``schedule``.

    With x_t = sqrt(a) x_0 + sqrt(1 - a) eps (a = alpha_bar_t), x_t is Gaussian with variance
    a std^2 + 1 - a, and E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) mean) / (a std^2 + 1 - a).
    ``std = 0`` is the single point ``mean``. Inputs: x (B, ...), timesteps (B,) or a scalar.
    Works in the input's dtype; it has no parameters.
    """

    def __init__(self, schedule: NoiseSchedule, std: float = 0.5, mean: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("alpha_bars", schedule.alpha_bars.clone(), persistent=False)
        self.std = float(std)
        self.mean = float(mean)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **_: Any) -> torch.Tensor:
        timesteps = torch.as_tensor(timesteps, device=x.device).long()
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(x.shape[0])
        a = self.alpha_bars.to(x.device)[timesteps].view(-1, *([1] * (x.dim() - 1)))
        eps = (1 - a).sqrt() * (x.double() - a.sqrt() * self.mean) / (a * self.std**2 + 1 - a)
        return eps.to(x.dtype)

    def marginal_std(self, t: int) -> float:
        """Standard deviation of x_t (per coordinate) under the forward process."""
        a = float(self.alpha_bars[t])
        return math.sqrt(a * self.std**2 + 1 - a)


def gaussian_model(
    schedule: NoiseSchedule | None = None, std: float = 0.5, mean: float = 0.0
) -> DiffusionModel:
    """A :class:`DiffusionModel` around :class:`GaussianEpsNetwork` (unbounded data: no clip)."""
    schedule = schedule if schedule is not None else linear_schedule(num_timesteps=100)
    return DiffusionModel(
        GaussianEpsNetwork(schedule, std, mean), schedule, prediction_type="epsilon", x0_clip=None
    )


_UNETS: dict[tuple[int, ...], nn.Module] = {}


def _tiny_unet(sample_shape: tuple[int, ...] = (1, 8, 8)) -> nn.Module:
    """A randomly initialised ``digits-8`` U-Net (seeded, eval mode), built once per shape."""
    if sample_shape not in _UNETS:
        from diffstudio.engine.networks.unet import build_unet

        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(0)
            _UNETS[sample_shape] = build_unet(sample_shape, preset="digits-8").eval()
        finally:
            torch.random.set_rng_state(state)
    return _UNETS[sample_shape]


#: The keywords every sampler takes besides its own parameters.
SHARED_ARGUMENTS = ("model", "x", "generator", "callback", "should_stop")


def _same_default(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):  # True == 1 in Python; not as a default
        return type(a) is type(b) and a == b
    return bool(a == b)


def signature_schema_mismatches(
    function: Callable[..., Any], params: Sequence[Param]
) -> list[str]:
    """How a sampler function's signature and its declared parameter schema disagree ([] when
    they agree): the shared arguments missing, a declared parameter that is not a keyword of the
    function, a default that differs, a keyword of the function that is not declared (the app
    could never set it). Each entry says the fix."""
    name = getattr(function, "__qualname__", repr(function))
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        return [f"cannot read the signature of {name}: {exc}"]
    parameters = signature.parameters
    problems = []
    positional = [p.name for p in parameters.values()][:2]
    if positional != ["model", "x"]:
        problems.append(
            f"{name} must start with (model, x, ...), got ({', '.join(positional)}, ...)"
        )
    keyword_kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    for shared in SHARED_ARGUMENTS[2:]:
        if shared not in parameters or parameters[shared].kind not in keyword_kinds:
            problems.append(f"{name} has no keyword argument {shared!r}; add `{shared}` after `*`")
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    own = {
        p.name: p for p in parameters.values()
        if p.name not in SHARED_ARGUMENTS and p.kind in keyword_kinds
    }
    declared = {param.name for param in params}
    for param in params:
        if param.name not in own:
            if not takes_any:
                problems.append(
                    f"Param {param.name!r} is declared but {name} has no such keyword; add "
                    f"`{param.name}={param.default!r}` to its signature or drop the Param"
                )
            continue
        default = own[param.name].default
        if default is inspect.Parameter.empty:
            problems.append(
                f"{name}'s {param.name!r} has no default; give it the declared default "
                f"{param.default!r}"
            )
        elif not _same_default(default, param.default):
            problems.append(
                f"{name}'s {param.name!r} defaults to {default!r} but the schema declares "
                f"{param.default!r}; make them one value (direct calls and the app must agree)"
            )
    for keyword, parameter in own.items():
        if keyword not in declared:
            default = parameter.default
            shown = "..." if default is inspect.Parameter.empty else repr(default)
            problems.append(
                f"{name}'s keyword {keyword!r} is not in the schema, so the app can never set "
                f"it; declare Param({keyword!r}, ..., {shown}) or remove the keyword"
            )
    return problems


#: What a sampler that fails when given per-sample generators is told.
_CONTRACT = (
    "a sampler's `generator` is a sequence of one torch.Generator per row of x, as "
    "diffstudio.engine.sampling.generate passes it (generator[i] seeded with sample i's seed); "
    "draw noise with diffstudio.engine.samplers.randn_like_per_sample(x, generator), never "
    "torch.randn(shape, generator=generator)"
)


#: The seed's mixture (Song & Ermon 2019, sec. 3.2): the weight of the mode at (5, 5).
_EXACT_WEIGHT = 0.8


@dataclass(frozen=True)
class ExactScoreResult:
    """What :func:`check_exact_score_mixture` measured: ``fractions`` of the points within 3
    of (5, 5) and of (-5, -5) (truth 0.79 and 0.198: 0.8 and 0.2 times the 98.9% of a unit
    Gaussian within 3), ``share`` of the points near a mode that are near (5, 5) (truth 0.8),
    the mean ``displacement`` from the initial noise, and the ``params`` it ran with."""

    sampler: str
    params: dict[str, Any]
    num_samples: int
    fractions: tuple[float, ...]
    share: float
    displacement: float
    network_evaluations: int


def check_exact_score_mixture(
    contribution: Contribution,
    *,
    sampler: Callable[..., torch.Tensor] | None = None,
    params: Mapping[str, Any] | None = None,
    num_samples: int = 1000,
    tolerance: float = 0.05,
    seed: int = 0,
) -> ExactScoreResult:
    """Sample the seed's 2-D mixture 0.8 N((5, 5), I) + 0.2 N((-5, -5), I) with its exact
    score under a VP SDE (the model of the 2-D lab, :mod:`diffstudio.app.lab`: the score is
    exact at every noise level, so the result is the sampler's alone) and check it.

    The sampler runs as the app runs it: its effective defaults (schema defaults under the
    suggestions for the mixture's data, :mod:`diffstudio.engine.suggestions`) with ``params``
    laid over them, validated by ``contribution``; ``num_samples`` points of seeds ``seed``,
    ``seed + 1``, ... in one batch through :func:`~diffstudio.engine.sampling.sample_batch`
    (x_T and the sampler's noise from each sample's own generator). ``sampler`` defaults to the
    contribution's factory.

    Raises AssertionError, with the numbers, unless the output is finite, the points moved
    (mean displacement > 1), at least 90% of them end within 3 of a mode, and the share of
    those near (5, 5) is within ``tolerance`` of 0.8. Returns what it measured.
    """
    from diffstudio.engine.datasets.toy2d import load_toy2d
    from diffstudio.engine.networks.analytic import build_analytic_mixture, mode_fractions
    from diffstudio.engine.schedules import VPSDE

    if num_samples < 10:
        raise ValueError(f"num_samples must be at least 10, got {num_samples}")
    model = DiffusionModel(build_analytic_mixture((2,)), VPSDE(), prediction_type="score",
                           x0_clip=None)
    scale = noise_scale(load_toy2d("mixture", 2000, seed=0))
    suggested = suggest_sampler_defaults(contribution.id, model, scale,
                                         contribution=contribution)
    values = effective_params(contribution, dict(params or {}), suggested)
    function = sampler if sampler is not None else contribution.load()
    seeds = list(range(seed, seed + num_samples))
    noise = torch.stack([torch.randn((2,), generator=g) for g in per_sample_generators(seeds)])
    out = sample_batch(model, function, seeds, (2,), params=values,
                       sampler_id=contribution.id, plugin=contribution.plugin)
    where = f"sampler {contribution.id!r} with {values} on the exact-score 2-D mixture"
    assert bool(torch.isfinite(out).all()), f"{where}: non-finite output"
    fractions = mode_fractions(out)
    near = sum(fractions)
    share = fractions[0] / near if near > 0 else 0.0
    displacement = float((out.double() - noise.double()).norm(dim=1).mean())
    result = ExactScoreResult(contribution.id, values, num_samples, fractions, share,
                              displacement, model.network_evaluations)
    summary = (f"{where}: {fractions[0]:.3f} of {num_samples} points near (5, 5), "
               f"{fractions[1]:.3f} near (-5, -5) (truth 0.791 / 0.198), mean displacement "
               f"{displacement:.2f}")
    assert displacement > 1.0, f"{summary}: the points did not move"
    assert near >= 0.9, (f"{summary}: only {near:.1%} of the points reached a mode (truth "
                         "98.9%): too few steps, or steps too small for data of this scale?")
    assert abs(share - _EXACT_WEIGHT) <= tolerance, (
        f"{summary}: {share:.3f} of the points near a mode are near (5, 5), not 0.8 +- "
        f"{tolerance}: the sampler does not sample the distribution its score describes")
    return result


class SamplerConformance:
    """Base class of the sampler conformance tests; not collected itself (no ``Test`` prefix).

    Subclass it as ``Test<Something>`` and set :attr:`sampler` (or :attr:`contribution`) and
    :attr:`params`.
    """

    #: The sampler function under test (wrap it in ``staticmethod``); loaded from
    #: :attr:`contribution` when left None.
    sampler: ClassVar[Callable[..., torch.Tensor] | None] = None
    #: The plugin's declaration of the sampler: enables the signature/schema check, and the
    #: parameters are then validated against it before each call, as the app does.
    contribution: ClassVar[Contribution | None] = None
    #: Extra keyword arguments for every call (besides generator, callback, should_stop).
    params: ClassVar[dict[str, Any]] = {}
    #: True when the output must not depend on the generator (DDIM with eta = 0).
    deterministic: ClassVar[bool] = False
    #: False for a sampler that by design makes a sample depend on its batch (say why).
    batch_independent: ClassVar[bool] = True
    #: Name of the keyword giving the number of steps; None if the sampler has none.
    steps_param: ClassVar[str | None] = "steps"
    #: Steps used by the tests that do not vary it.
    default_steps: ClassVar[int] = 5
    #: Step counts that must give finite output.
    step_counts: ClassVar[tuple[int, ...]] = (1, 2, 10)
    #: Models every test runs on (names understood by :meth:`build_model`).
    model_cases: ClassVar[tuple[str, ...]] = ("points", "image")
    #: Batch size of the initial noise.
    batch_size: ClassVar[int] = 3
    #: Opt in to :meth:`test_exact_score_mixture` (needs :attr:`contribution`).
    exact_score: ClassVar[bool] = False
    #: Parameters laid over the effective defaults in that test (fewer steps, say).
    exact_score_params: ClassVar[dict[str, Any]] = {}
    #: Points it samples, and how far from 0.8 the share of the (5, 5) mode may be.
    exact_score_samples: ClassVar[int] = 1000
    exact_score_tolerance: ClassVar[float] = 0.05

    # --- hooks -------------------------------------------------------------------------------

    def pytest_generate_tests(self, metafunc: Any) -> None:
        """Parametrise every test over ``model_cases`` (and the finite test over step counts)."""
        if "case" in metafunc.fixturenames:
            metafunc.parametrize("case", list(self.model_cases))
        if "num_steps" in metafunc.fixturenames:
            metafunc.parametrize("num_steps", list(self.step_counts))

    def build_model(self, case: str) -> tuple[DiffusionModel, tuple[int, ...]]:
        """(a fresh model, the sample shape) for ``case``. Override for other models."""
        if case == "points":
            return gaussian_model(linear_schedule(num_timesteps=100), std=0.5), (2,)
        if case == "image":
            model = DiffusionModel(
                _tiny_unet((1, 8, 8)), linear_schedule(num_timesteps=100), x0_clip=1.0
            )
            return model, (1, 8, 8)
        raise ValueError(f"unknown model case {case!r}; override build_model to add it")

    def initial_noise(self, shape: tuple[int, ...], seed: int = 1234) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn((self.batch_size, *shape), generator=generator)

    @classmethod
    def sampler_function(cls) -> Callable[..., torch.Tensor]:
        """:attr:`sampler`, or the function :attr:`contribution` names."""
        if cls.sampler is not None:
            return cls.sampler
        if cls.contribution is not None:
            return cls.contribution.load()
        raise TypeError(f"{cls.__name__} must set `sampler` or `contribution`")

    def sampler_params(self, steps: int | None = None) -> dict[str, Any]:
        """:attr:`params` with the step count; validated by :attr:`contribution` when set, so
        the sampler gets every declared parameter, coerced, as from ``generate``."""
        kwargs = dict(self.params)
        if self.steps_param is not None:
            kwargs[self.steps_param] = self.default_steps if steps is None else steps
        if self.contribution is not None:
            return self.contribution.validate(kwargs)
        return kwargs

    def _ids(self) -> tuple[str, str]:
        contribution = self.contribution
        if contribution is not None:
            return contribution.id, contribution.plugin
        return getattr(self.sampler_function(), "__qualname__", "sampler"), type(self).__name__

    def call_sampler(
        self,
        model: DiffusionModel,
        x: torch.Tensor,
        *,
        seed: int = 0,
        steps: int | None = None,
        callback: Callable[[SamplerStep], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        clone: bool = True,
    ) -> torch.Tensor:
        """Run the sampler once on ``x`` as the app does: generator = one torch.Generator per
        row, seeded seed, seed + 1, ..., through :func:`diffstudio.engine.sampling.call_sampler`."""
        sampler_id, plugin = self._ids()
        return call_sampler(
            self.sampler_function(), model, x.clone() if clone else x,
            per_sample_generators(range(seed, seed + x.shape[0])),
            params=self.sampler_params(steps), callback=callback, should_stop=should_stop,
            sampler_id=sampler_id, plugin=plugin,
        )

    def sample_seeds(self, case: str, seeds: Sequence[int]) -> torch.Tensor:
        """Samples for ``seeds`` in one batch, drawn exactly as ``generate`` draws a batch
        (initial noise and sampler noise from each seed's own generator)."""
        model, shape = self.build_model(case)
        sampler_id, plugin = self._ids()
        return sample_batch(
            model, self.sampler_function(), list(seeds), shape, params=self.sampler_params(),
            sampler_id=sampler_id, plugin=plugin,
        )

    @classmethod
    def check_signature_matches_schema(
        cls,
        sampler: Callable[..., Any] | None = None,
        contribution: Contribution | None = None,
    ) -> None:
        """Raise AssertionError listing every disagreement between the sampler's signature and
        the contribution's ``params`` (names and defaults); see
        :func:`signature_schema_mismatches`. Defaults to the class's own sampler and
        contribution."""
        contribution = contribution if contribution is not None else cls.contribution
        if contribution is None:
            raise TypeError(f"{cls.__name__} must set `contribution` to check the schema")
        function = sampler if sampler is not None else (cls.sampler or contribution.load())
        problems = signature_schema_mismatches(function, contribution.params)
        assert not problems, (
            f"sampler {contribution.id!r}: signature and schema disagree:\n  "
            + "\n  ".join(problems)
        )

    def _run(self, case: str, **kwargs: Any) -> tuple[DiffusionModel, torch.Tensor, torch.Tensor]:
        model, shape = self.build_model(case)
        x = self.initial_noise(shape)
        return model, x, self.call_sampler(model, x, **kwargs)

    # --- tests -------------------------------------------------------------------------------

    def test_accepts_per_sample_generators(self, case: str) -> None:
        model, shape = self.build_model(case)
        x = self.initial_noise(shape)
        try:
            self.call_sampler(model, x)
        except Exception as exc:
            raise AssertionError(
                f"the sampler failed when called as diffstudio calls it, with generator = a "
                f"list of {x.shape[0]} torch.Generators: {exc}\nThe contract: {_CONTRACT}"
            ) from exc

    def test_sample_does_not_depend_on_its_batch(self, case: str) -> None:
        if not self.batch_independent:
            import pytest

            pytest.skip("batch_independent = False: this sampler couples the samples of a batch")
        together = self.sample_seeds(case, [0, 1, 2, 3])
        alone = self.sample_seeds(case, [2])
        scale = max(1.0, float(alone.abs().max()))
        difference = float((together[2] - alone[0]).abs().max()) / scale
        assert difference <= 1e-4, (
            f"sample 2 differs by {difference:.3g} (relative) between a batch of seeds "
            "[0, 1, 2, 3] and seed 2 alone, so a sample cannot be regenerated from its seed: "
            "row i must depend on x[i] and generator[i] only (no statistics across the batch); "
            + _CONTRACT
        )

    def test_signature_matches_schema(self) -> None:
        if self.contribution is None:
            import pytest

            pytest.skip("set `contribution` to check the signature against the schema")
        self.check_signature_matches_schema()

    def test_output_shape_and_dtype(self, case: str) -> None:
        _, x, out = self._run(case)
        assert isinstance(out, torch.Tensor)
        assert out.shape == x.shape, f"output shape {tuple(out.shape)} != input {tuple(x.shape)}"
        assert out.dtype == x.dtype
        assert out.device == x.device
        assert bool(torch.isfinite(out).all())

    def test_does_not_modify_its_input(self, case: str) -> None:
        model, shape = self.build_model(case)
        x = self.initial_noise(shape)
        original = x.clone()
        self.call_sampler(model, x, clone=False)
        assert torch.equal(x, original), "the sampler must not modify the initial noise in place"

    def test_deterministic_with_fixed_generator(self, case: str) -> None:
        model, shape = self.build_model(case)
        x = self.initial_noise(shape)
        with torch.random.fork_rng(devices=[]):  # restores the global RNG afterwards
            torch.manual_seed(1)
            first = self.call_sampler(model, x, seed=7)
            torch.manual_seed(2)  # the global RNG must not matter: noise comes from `generator`
            second = self.call_sampler(model, x, seed=7)
        assert torch.equal(first, second), "the same generator seed must give the same output"
        other = self.call_sampler(model, x, seed=8)
        if self.deterministic:
            assert torch.equal(first, other), "a deterministic sampler must ignore the seed"
        else:
            assert not torch.equal(first, other), (
                "a stochastic sampler must draw its noise from `generator` "
                "(set `deterministic = True` for a sampler that adds none)"
            )

    def test_callback_once_per_step(self, case: str) -> None:
        steps: list[SamplerStep] = []
        _, x, _ = self._run(case, callback=steps.append)
        assert steps, "the callback was never called"
        num_steps = steps[0].num_steps
        assert len(steps) == num_steps
        assert [s.index for s in steps] == list(range(num_steps))
        for step in steps:
            assert step.num_steps == num_steps
            assert step.x.shape == x.shape and step.x0_pred.shape == x.shape
            assert bool(torch.isfinite(step.x).all()) and bool(torch.isfinite(step.x0_pred).all())
            assert math.isfinite(float(step.t))

    def test_cancellation(self, case: str) -> None:
        model, shape = self.build_model(case)
        x = self.initial_noise(shape)
        steps: list[SamplerStep] = []
        stop_after = 2
        total = self.default_steps if self.steps_param is not None else None
        if total is not None and total <= stop_after:
            raise AssertionError("default_steps must exceed 2 for the cancellation test")
        polls = 0

        def should_stop() -> bool:
            nonlocal polls
            polls += 1
            return len(steps) >= stop_after

        raised = False
        try:
            self.call_sampler(model, x, callback=steps.append, should_stop=should_stop)
        except Cancelled:
            raised = True
        assert raised, "should_stop returning True must raise diffstudio.errors.Cancelled"
        assert len(steps) == stop_after, "no callback may follow a stop request"
        assert polls >= stop_after + 1, "should_stop must be polled before each step"

    def test_finite_at_few_steps(self, case: str, num_steps: int) -> None:
        if self.steps_param is None:
            import pytest

            pytest.skip("the sampler has no step count")
        steps: list[SamplerStep] = []
        _, x, out = self._run(case, steps=num_steps, callback=steps.append)
        assert out.shape == x.shape
        assert bool(torch.isfinite(out).all()), f"non-finite output at {num_steps} steps"
        assert steps and len(steps) == steps[0].num_steps

    def test_effective_defaults_move_2d_points(self) -> None:
        """With its effective defaults on 2-D points (the schema's defaults under the data's
        suggestions, as ``app.sample`` lays them, :mod:`diffstudio.engine.suggestions`), the
        sampler moves the initial noise: the mean displacement is not ~0 (issue 17: plain
        Langevin at eps = 2e-5 did not move)."""
        if self.contribution is None or "points" not in self.model_cases:
            import pytest

            pytest.skip("needs `contribution` and the points case")
        model, shape = self.build_model("points")
        data = 0.5 * torch.randn((2000, 2), generator=torch.Generator().manual_seed(7))
        scale = noise_scale(Dataset("gaussian", data, "points"))
        suggested = suggest_sampler_defaults(self.contribution.id, model, scale,
                                             contribution=self.contribution)
        params = effective_params(self.contribution, {}, suggested)
        if self.steps_param in params:
            params[self.steps_param] = min(params[self.steps_param], model.num_timesteps)
        x = torch.randn((64, *shape), generator=torch.Generator().manual_seed(3))
        sampler_id, plugin = self._ids()
        out = call_sampler(self.sampler_function(), model, x.clone(),
                           per_sample_generators(range(64)), params=params,
                           sampler_id=sampler_id, plugin=plugin)
        displacement = float((out - x).flatten(1).norm(dim=1).mean())
        assert displacement > 0.2, (
            f"sampler {sampler_id!r} with its effective defaults {params} moved the points by "
            f"{displacement:.3g} on average: its defaults do not fit data of this scale; "
            "suggest better ones (docs/plugins.md, 'Sampler defaults from the data')")

    def test_exact_score_mixture(self) -> None:
        """Opt-in (``exact_score = True``): :func:`check_exact_score_mixture` on this sampler
        with ``exact_score_params``, ``exact_score_samples`` points, ``exact_score_tolerance``:
        the seed's mixture sampled with its exact score comes back in its 0.8 / 0.2
        proportions."""
        if not self.exact_score or self.contribution is None:
            import pytest

            pytest.skip("opt in with exact_score = True (and contribution set) to check the "
                        "sampler on the exact-score 2-D mixture")
        check_exact_score_mixture(
            self.contribution, sampler=self.sampler_function(), params=self.exact_score_params,
            num_samples=self.exact_score_samples, tolerance=self.exact_score_tolerance)

    def test_counts_network_evaluations(self, case: str) -> None:
        model, x, _ = self._run(case)
        first = model.network_evaluations
        assert first > 0, "sampling must call the network through the model"
        self.call_sampler(model, x)
        assert model.network_evaluations > first


class ScheduleConformance:
    """Conformance tests for a schedule contribution: subclass as ``Test<Something>`` and set
    :attr:`contribution` (what the plugin's ``diffstudio_schedules`` returns)::

        class TestMySchedule(ScheduleConformance):
            contribution = diffstudio_schedules()[0]

    The factory is called as the app calls it, ``factory(num_timesteps=T, **validated params)``
    for each T of :attr:`timestep_counts`, and the process it returns is checked: a
    :class:`~diffstudio.engine.processes.DiffusionProcess`; an ascending float64 grid in [0, 1];
    m(t) in (0, 1], s(t) > 0 for t > 0, alpha_bar non-increasing along the grid and near 1 at
    its start; ``drift_rate`` the derivative of ``log_mean`` and ``diffusion_squared`` =
    d s^2/dt - 2 a s^2 >= 0 (finite differences between grid points); finite values; and
    ``q_sample`` keeping x_0's shape and dtype.
    """

    contribution: ClassVar[Contribution | None] = None
    #: Overrides of the declared defaults.
    params: ClassVar[dict[str, Any]] = {}
    #: The T values the factory is called with.
    timestep_counts: ClassVar[tuple[int, ...]] = (10, 1000)
    #: Relative tolerance of the finite-difference checks.
    derivative_rtol: ClassVar[float] = 0.05

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "num_timesteps" in metafunc.fixturenames:
            metafunc.parametrize("num_timesteps", list(self.timestep_counts))

    def build_process(self, num_timesteps: int) -> Any:
        from diffstudio.engine.processes import DiffusionProcess

        contribution = self.contribution
        if contribution is None:
            raise TypeError(f"{type(self).__name__} must set `contribution`")
        process = contribution.load()(num_timesteps=num_timesteps,
                                      **contribution.validate(self.params))
        assert isinstance(process, DiffusionProcess), (
            f"schedule {contribution.id!r} returned {type(process).__name__}; a schedule "
            "factory must return a diffstudio.engine.processes.DiffusionProcess (wrap betas "
            "as ScheduleProcess(NoiseSchedule(betas, name=...)))")
        return process

    def test_grid(self, num_timesteps: int) -> None:
        grid = self.build_process(num_timesteps).grid
        assert grid.dtype == torch.float64 and grid.dim() == 1 and grid.numel() >= 2
        assert torch.all(grid[1:] > grid[:-1]), "the grid must be strictly ascending"
        assert float(grid.min()) >= 0.0 and float(grid.max()) <= 1.0

    def test_marginals(self, num_timesteps: int) -> None:
        process = self.build_process(num_timesteps)
        grid = process.grid
        m, s = process.marginal(grid)
        assert m.shape == grid.shape and s.shape == grid.shape
        assert torch.isfinite(m).all() and torch.isfinite(s).all()
        assert torch.all(m > 0) and torch.all(m <= 1 + 1e-12), "m(t) must be in (0, 1]"
        assert torch.all(s[grid > 0] > 0), "s(t) must be positive for t > 0"
        alpha_bar = process.alpha_bar(grid)
        assert torch.all(alpha_bar[1:] <= alpha_bar[:-1] + 1e-12), "alpha_bar must not rise"

    def test_derivatives_agree_with_the_marginals(self, num_timesteps: int) -> None:
        process = self.build_process(num_timesteps)
        grid = process.grid
        t = (grid[1:] + grid[:-1]) / 2  # between grid points: smooth for interpolated grids
        h = (grid[1:] - grid[:-1]).min() / 8
        log_m = (process.log_mean(t + h) - process.log_mean(t - h)) / (2 * h)
        variance = (process.std(t + h) ** 2 - process.std(t - h) ** 2) / (2 * h)
        a = process.drift_rate(t)
        g2 = process.diffusion_squared(t)
        assert torch.isfinite(a).all() and torch.isfinite(g2).all()
        assert torch.all(g2 >= -1e-9), "g(t)^2 must not be negative"
        scale = a.abs().max().clamp_min(1e-12)
        assert torch.allclose(a, log_m, rtol=self.derivative_rtol,
                              atol=self.derivative_rtol * float(scale)), (
            "drift_rate(t) is not d log_mean / dt")
        expected = variance - 2 * a * process.std(t) ** 2
        scale = expected.abs().max().clamp_min(1e-12)
        assert torch.allclose(g2, expected, rtol=self.derivative_rtol,
                              atol=self.derivative_rtol * float(scale)), (
            "diffusion_squared(t) is not d s^2/dt - 2 a(t) s(t)^2")

    def test_q_sample_keeps_shape_and_dtype(self, num_timesteps: int) -> None:
        process = self.build_process(num_timesteps)
        x0 = torch.zeros(3, 1, 4, 4)
        noise = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        t = process.grid[[0, len(process.grid) // 2, -1]]
        x_t = process.q_sample(x0, t, noise)
        assert x_t.shape == x0.shape and x_t.dtype == x0.dtype and torch.isfinite(x_t).all()


class NetworkConformance:
    """Conformance tests for a network contribution: subclass as ``Test<Something>`` and set
    :attr:`contribution` and the :attr:`sample_shape` it is for::

        class TestMyNet(NetworkConformance):
            contribution = diffstudio_networks()[0]
            sample_shape = (2,)

    The factory is called as the app calls it, ``factory(sample_shape, num_classes,
    **validated params)``; the network must be a ``torch.nn.Module`` whose
    ``network(x_t, t, class_labels=None)`` returns a finite float32 prediction shaped like x_t
    (a tensor or an object with ``.sample``), the same for a scalar t and one t per sample,
    also for float t, deterministic in eval mode; when :attr:`num_classes` is set, changed by
    the labels and working with the "no label" class ``num_classes``; and (a
    diffusers ``ModelMixin``) giving the same output after ``save_pretrained`` /
    ``from_pretrained``.
    """

    contribution: ClassVar[Contribution | None] = None
    sample_shape: ClassVar[tuple[int, ...]] = (1, 8, 8)
    num_classes: ClassVar[int | None] = None
    params: ClassVar[dict[str, Any]] = {}
    batch_size: ClassVar[int] = 3

    def build_network(self) -> nn.Module:
        contribution = self.contribution
        if contribution is None:
            raise TypeError(f"{type(self).__name__} must set `contribution`")
        network = contribution.load()(self.sample_shape, self.num_classes,
                                      **contribution.validate(self.params))
        assert isinstance(network, nn.Module), (
            f"network {contribution.id!r} returned {type(network).__name__}; expected a "
            "torch.nn.Module")
        return network.eval()

    def _inputs(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn((self.batch_size, *self.sample_shape), generator=generator)
        labels = (torch.arange(self.batch_size) % self.num_classes
                  if self.num_classes else None)
        return x, labels

    @staticmethod
    def _output(network: nn.Module, x: torch.Tensor, t: Any,
                labels: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            output = network(x, t, class_labels=labels)
        return getattr(output, "sample", output)

    def test_output_shape_dtype_and_finite(self) -> None:
        network = self.build_network()
        x, labels = self._inputs()
        output = self._output(network, x, torch.full((self.batch_size,), 10), labels)
        assert output.shape == x.shape, f"output {tuple(output.shape)} for x {tuple(x.shape)}"
        assert output.dtype == torch.float32 and torch.isfinite(output).all()

    def test_scalar_and_per_sample_timesteps_agree(self) -> None:
        network = self.build_network()
        x, labels = self._inputs()
        scalar = self._output(network, x, torch.tensor(10), labels)
        per_sample = self._output(network, x, torch.full((self.batch_size,), 10), labels)
        assert torch.allclose(scalar, per_sample, atol=1e-5)

    def test_float_timesteps(self) -> None:
        """Continuous processes condition on 999 t, a float (DDPM schedules on int64 steps)."""
        network = self.build_network()
        x, labels = self._inputs()
        t = torch.linspace(0.5, 998.5, self.batch_size)
        output = self._output(network, x, t, labels)
        assert output.shape == x.shape and torch.isfinite(output).all(), (
            "the network must take float timesteps (999 t of a continuous process)")

    def test_deterministic_in_eval_mode(self) -> None:
        network = self.build_network()
        x, labels = self._inputs()
        t = torch.full((self.batch_size,), 10)
        assert torch.equal(self._output(network, x, t, labels),
                           self._output(network, x, t, labels))

    def test_class_labels_change_the_output(self) -> None:
        if not self.num_classes:
            import pytest

            pytest.skip("set `num_classes` (and the params that make it class-conditional)")
        network = self.build_network()
        x, labels = self._inputs()
        assert labels is not None
        t = torch.full((self.batch_size,), 10)
        other = (labels + 1) % self.num_classes
        assert not torch.allclose(self._output(network, x, t, labels),
                                  self._output(network, x, t, other)), (
            f"with num_classes={self.num_classes} the network's output does not depend on "
            "class_labels: embed them (or leave num_classes None)")
        null = torch.full_like(labels, self.num_classes)
        try:
            unlabelled = self._output(network, x, t, null)
        except Exception as exc:
            raise AssertionError(
                f"class_labels = num_classes ({self.num_classes}) must work: it is the 'no "
                "label' class of label dropout and classifier-free guidance (embed "
                f"num_classes + 1 classes): {type(exc).__name__}: {exc}") from exc
        assert unlabelled.shape == x.shape and torch.isfinite(unlabelled).all()

    def test_save_pretrained_round_trip(self, tmp_path: Any) -> None:
        network = self.build_network()
        if not hasattr(network, "save_pretrained"):
            return  # not a diffusers ModelMixin: runs cannot save it with save_pretrained
        x, labels = self._inputs()
        t = torch.full((self.batch_size,), 10)
        network.save_pretrained(tmp_path / "network")
        loaded = type(network).from_pretrained(tmp_path / "network").eval()
        assert torch.allclose(self._output(network, x, t, labels),
                              self._output(loaded, x, t, labels), atol=1e-6)


class DatasetConformance:
    """Conformance tests for a dataset contribution: subclass as ``Test<Something>`` and set
    :attr:`contribution` (what the plugin's ``diffstudio_datasets`` returns)::

        class TestMyData(DatasetConformance):
            contribution = diffstudio_datasets()[0]
            params = {"num_points": 500}   # keep the test fast
            expected_len = 500

    The factory is called as the app calls it, ``factory(**validated params)``
    (:func:`diffstudio.engine.components.dataset_from`), and the
    :class:`~diffstudio.engine.datasets.Dataset` it returns is checked: ``kind`` ``"image"``
    with data (N, C, H, W) in [-1, 1] or ``"points"`` with data (N, D), agreeing with the
    contribution's ``"image"``/``"points"`` tag; float32, finite, not constant; N > 0 (and
    :attr:`expected_len` when set); labels None or (N,) int64 in [0, num_classes) with
    ``num_classes`` set exactly when there are labels and ``class_names`` (if any) one per
    class; ``log_density`` (if any) finite of shape (N,) on the data; ``noise_scale`` (if any)
    a :class:`~diffstudio.engine.suggestions.NoiseScale` with 0 < sigma_min < sigma_max; and
    determinism: a second call gives identical data and labels (runs resume on it and FID
    caches its statistics by its content).
    """

    contribution: ClassVar[Contribution | None] = None
    #: Overrides of the declared defaults (a small dataset keeps the test fast).
    params: ClassVar[dict[str, Any]] = {}
    #: The number of items the factory must return with :attr:`params`; None: any N > 0.
    expected_len: ClassVar[int | None] = None

    def build_dataset(self) -> Dataset:
        from diffstudio.engine.components import dataset_from

        if self.contribution is None:
            raise TypeError(f"{type(self).__name__} must set `contribution`")
        return dataset_from(self.contribution, self.params)

    def test_declaration(self) -> None:
        contribution = self.contribution
        assert contribution is not None, f"{type(self).__name__} must set `contribution`"
        assert contribution.kind == "dataset", f"kind {contribution.kind!r}, expected 'dataset'"
        contribution.check_spec()

    def test_kind_and_shapes(self) -> None:
        dataset = self.build_dataset()
        data = dataset.data
        assert isinstance(data, torch.Tensor), f"data is {type(data).__name__}, not a Tensor"
        if dataset.kind == "image":
            assert data.dim() == 4, f"image data must be (N, C, H, W), got {tuple(data.shape)}"
        else:
            assert dataset.kind == "points", (
                f"kind {dataset.kind!r}; expected 'image' or 'points'")
            assert data.dim() == 2, f"points must be (N, D), got {tuple(data.shape)}"
        assert dataset.sample_shape == tuple(data.shape[1:])
        assert self.contribution is not None
        tags = self.contribution.tags
        for tag in ("image", "points"):
            if tag in tags:
                assert dataset.kind == tag, (
                    f"the contribution is tagged {tag!r} but the dataset's kind is "
                    f"{dataset.kind!r}; the window picks networks by this tag")

    def test_dtype_and_value_range(self) -> None:
        dataset = self.build_dataset()
        data = dataset.data
        assert data.dtype == torch.float32, f"data must be float32, got {data.dtype}"
        assert bool(torch.isfinite(data).all()), "data has NaN or infinite values"
        assert float(data.max()) > float(data.min()), "every value is the same"
        if dataset.kind == "image":
            low, high = float(data.min()), float(data.max())
            assert low >= -1.0 and high <= 1.0, (
                f"images must be in [-1, 1] (x / 127.5 - 1 for 8-bit pixels), got "
                f"[{low:.3g}, {high:.3g}]")

    def test_length_and_labels(self) -> None:
        dataset = self.build_dataset()
        count = dataset.data.shape[0]
        assert count > 0 and len(dataset) == count, "the dataset is empty"
        if self.expected_len is not None:
            assert count == self.expected_len, (
                f"{count} items with params {self.params}, expected {self.expected_len}")
        labels = dataset.labels
        if labels is None:
            assert dataset.num_classes is None, "num_classes is set but there are no labels"
            return
        assert labels.shape == (count,), f"labels {tuple(labels.shape)} for {count} items"
        assert labels.dtype == torch.int64, f"labels must be int64, got {labels.dtype}"
        assert dataset.num_classes is not None and dataset.num_classes > 0, (
            "labels need num_classes (class-conditional networks embed that many classes)")
        assert int(labels.min()) >= 0 and int(labels.max()) < dataset.num_classes, (
            f"labels must be in [0, {dataset.num_classes})")
        if dataset.class_names is not None:
            assert len(dataset.class_names) == dataset.num_classes, "one class name per class"

    def test_density_and_noise_scale(self) -> None:
        from diffstudio.engine.suggestions import NoiseScale

        dataset = self.build_dataset()
        if dataset.log_density is not None:
            points = dataset.data[:256].double()
            values = dataset.log_density(points)
            assert values.shape == points.shape[:1], (
                f"log_density of (N, D) points must be (N,), got {tuple(values.shape)}")
            assert bool(torch.isfinite(values).all()), "log_density is not finite on the data"
        if dataset.noise_scale is not None:
            scale = dataset.noise_scale
            assert isinstance(scale, NoiseScale), (
                f"noise_scale is {type(scale).__name__}; use "
                "diffstudio.engine.suggestions.NoiseScale")
            assert 0 < scale.sigma_min < scale.sigma_max, "need 0 < sigma_min < sigma_max"

    def test_deterministic(self) -> None:
        first, second = self.build_dataset(), self.build_dataset()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(12345)  # the global RNG must not matter: seed your own generator
            third = self.build_dataset()
        for other in (second, third):
            assert torch.equal(first.data, other.data), (
                "two calls with the same params gave different data: draw with a seeded "
                "torch.Generator (resumed runs and cached FID statistics rely on it)")
            assert (first.labels is None) == (other.labels is None)
            if first.labels is not None:
                assert torch.equal(first.labels, other.labels), "labels differ between calls"
