"""The kit as a pytest plugin: an author's test file run with ``pytest -p diffstudio.testing``
gets the fixtures (the exact Gaussian model, per-sample generators as the app passes them, a
recording callback, a batch sampled as the app samples it) next to the conformance classes;
without ``-p`` the fixtures are missing, and ``diffstudio.testing`` imports no pytest."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import diffstudio.testing  # noqa: F401  (torch loads once: in-process runs cannot reload it)

pytest_plugins = ["pytester"]

AUTHOR_TESTS = textwrap.dedent('''
    import torch

    from diffstudio.engine.samplers import (
        SamplerStep, check_stop, randn_like_per_sample, timestep_sequence)
    from diffstudio.testing import SamplerConformance, StepRecorder


    @torch.no_grad()
    def sample(model, x, *, generator, callback, should_stop, steps=10):
        """DDIM with eta = 1: its noise from the per-sample generators."""
        timesteps = timestep_sequence(model.num_timesteps, steps, "trailing")
        for index, t in enumerate(timesteps):
            check_stop(should_stop, index)
            prev = timesteps[index + 1] if index + 1 < len(timesteps) else -1
            a, a_prev = model.alpha_bar(t), model.alpha_bar(prev)
            prediction = model.predict(x, t)
            if callback is not None:
                callback(SamplerStep(index, len(timesteps), t, x, prediction.x0))
            sigma = ((1 - a_prev) / (1 - a) * (1 - a / a_prev)) ** 0.5
            x = a_prev**0.5 * prediction.x0 + (1 - a_prev - sigma**2) ** 0.5 * prediction.eps
            if prev >= 0:
                x = x + sigma * randn_like_per_sample(x, generator)
        return x


    def test_generators_are_one_per_sample(diffstudio_generators, diffstudio_seeds):
        assert isinstance(diffstudio_generators, list)
        assert len(diffstudio_generators) == len(diffstudio_seeds) == 4
        assert [g.initial_seed() for g in diffstudio_generators] == diffstudio_seeds
        x = torch.zeros(4, 2)
        noise = randn_like_per_sample(x, diffstudio_generators)
        assert noise.shape == (4, 2) and not torch.equal(noise[0], noise[1])


    def test_a_batch_sampled_as_the_app_samples(diffstudio_sample, diffstudio_callback,
                                                diffstudio_gaussian_model):
        assert isinstance(diffstudio_callback, StepRecorder)
        x0 = diffstudio_sample(sample, seeds=range(400), callback=diffstudio_callback, steps=100)
        assert x0.shape == (400, 2)
        assert 0.44 < float(x0.std()) < 0.56  # the exact model's data: N(0, 0.5^2 I)
        assert len(diffstudio_callback) == 100 and diffstudio_callback[-1].index == 99
        assert diffstudio_gaussian_model.network_evaluations == 100


    def test_a_sample_depends_on_its_seed_only(diffstudio_sample):
        together = diffstudio_sample(sample, seeds=[5, 6, 7], steps=5)
        alone = diffstudio_sample(sample, seeds=[6], steps=5)
        assert torch.allclose(together[1], alone[0], atol=1e-6)


    def test_the_seeds_fixture_can_be_overridden(diffstudio_sample, diffstudio_seeds):
        assert diffstudio_seeds == [0, 1, 2, 3]
        assert diffstudio_sample(sample, steps=2).shape == (4, 2)


    class TestTheSampler(SamplerConformance):
        sampler = staticmethod(sample)
        params = {}
        model_cases = ("points",)
''')


def test_an_authors_tests_get_the_fixtures_with_p_diffstudio_testing(pytester):
    pytester.makepyfile(test_author=AUTHOR_TESTS)
    result = pytester.runpytest_subprocess("-p", "diffstudio.testing", "-v",
                                           "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines_random([
        "*::test_generators_are_one_per_sample PASSED*",
        "*::test_a_batch_sampled_as_the_app_samples PASSED*",
        "*::test_a_sample_depends_on_its_seed_only PASSED*",
        "*::test_the_seeds_fixture_can_be_overridden PASSED*",
        "*::TestTheSampler::test_callback_once_per_step[[]points[]] PASSED*",
        "*::TestTheSampler::test_cancellation[[]points[]] PASSED*",
    ])
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] >= 12 and not {"failed", "errors"} & set(outcomes), outcomes


def test_without_the_plugin_the_fixtures_are_missing(pytester):
    pytester.makepyfile(test_author=AUTHOR_TESTS)
    result = pytester.runpytest("-q", "-p", "no:cacheprovider", "-k", "one_per_sample")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'diffstudio_generators' not found*"])


def test_a_conftest_can_load_the_kit_and_override_the_seeds(pytester):
    pytester.makeconftest('pytest_plugins = ["diffstudio.testing"]\n\n'
                          "import pytest\n\n\n@pytest.fixture\ndef diffstudio_seeds():\n"
                          "    return [9, 8]\n")
    pytester.makepyfile(test_seeds=textwrap.dedent('''
        def test_two(diffstudio_generators, diffstudio_sample):
            assert [g.initial_seed() for g in diffstudio_generators] == [9, 8]

            def still(model, x, *, generator, callback, should_stop):
                return x

            assert diffstudio_sample(still).shape == (2, 2)
    '''))
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_kit_imports_no_pytest_as_a_library():
    code = "import sys, diffstudio.testing; print('pytest' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "False"
