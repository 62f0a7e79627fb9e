"""The example third-party plugin, installed with a real pip, is found and works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "plugins" / "example-sampler"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(EXAMPLE)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return site


def _run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("DIFFSTUDIO_SAFE_MODE", None)
    return subprocess.run([sys.executable, "-m", "diffstudio", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_pip_installed_plugin_is_listed_with_its_distribution(example_site):
    result = _run(example_site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    example = plugins["example-heun"]
    assert example["status"] == "ok"
    assert example["distribution"] == "diffstudio-example-sampler"
    assert example["version"] == "0.1.0" and example["builtin"] is False
    assert example["contributions"] == [
        {"kind": "sampler", "id": "example-heun", "display_name": "Heun (example plugin)"},
        {"kind": "sampler", "id": "example-edm",
         "display_name": "EDM stochastic (example plugin)"},
    ]
    # Safe mode leaves it out.
    safe = json.loads(_run(example_site, "--safe-mode", "plugins", "--json").stdout)
    assert next(p for p in safe["plugins"] if p["name"] == "example-heun")["status"].startswith(
        "skipped"
    )


def test_pip_installed_sampler_gets_cli_options_from_its_schema(example_site):
    result = _run(example_site, "sample", "--sampler", "example-heun", "--help")
    assert result.returncode == 0, result.stderr
    assert "--steps" in result.stdout and "Heun steps" in result.stdout


# The example plugin passes the same conformance kit as the built-in samplers (imported from
# its source tree so this runs without installing it).
sys.path.insert(0, str(EXAMPLE / "src"))
from diffstudio_example_sampler.heun import heun_sample  # noqa: E402
from diffstudio_example_sampler.plugin import diffstudio_samplers  # noqa: E402

from diffstudio.testing import SamplerConformance  # noqa: E402


class TestExampleHeunConformance(SamplerConformance):
    """As the README tells plugin authors: the kit loads the sampler from the contribution and
    also checks its signature against the declared schema."""

    contribution = diffstudio_samplers()[0]
    params = {}
    deterministic = True
    exact_score = True

    def test_loads_the_sampler_from_the_contribution(self) -> None:
        assert self.sampler_function() is heun_sample


class TestExampleEDMConformance(SamplerConformance):
    """EDM's Algorithm 2 with its default churn: stochastic, noise from each row's generator."""

    contribution = diffstudio_samplers()[1]
    params = {}
    exact_score = True  # the seed's mixture from its exact score, with the default churn


class TestExampleEDMDeterministicConformance(SamplerConformance):
    """S_churn = 0 is Algorithm 1: deterministic Heun steps on the Karras noise levels."""

    contribution = diffstudio_samplers()[1]
    params = {"s_churn": 0.0}
    deterministic = True


def test_edm_sampler_recovers_gaussian_data_and_converges_with_steps():
    """On the exact eps of N(0, 0.5^2 I) (T = 1000) the samples' std nears the data's as the
    steps grow (Heun on the Karras levels), in 2 N - 1 network calls."""
    import torch
    from diffstudio_example_sampler.edm import edm_sample

    from diffstudio.engine.samplers import per_sample_generators
    from diffstudio.engine.schedules.linear import linear_schedule
    from diffstudio.testing import gaussian_model

    noise = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    errors = []
    for steps in (12, 25):
        model = gaussian_model(linear_schedule(num_timesteps=1000), std=0.5)
        x0 = edm_sample(model, noise, generator=per_sample_generators(range(4000)),
                        callback=None, should_stop=None, steps=steps, s_churn=10.0)
        assert model.network_evaluations == 2 * steps - 1
        assert abs(float(x0.mean())) < 0.05
        errors.append(abs(float(x0.std()) - 0.5))
    assert errors[1] < 0.05 and errors[1] < errors[0]
