"""The window queues a sampling as the ``diffstudio sample`` command that makes it: the
arguments parse back into the same request (what the queue runs is what the page showed)."""

from __future__ import annotations

import pytest

from diffstudio.app.sample import SampleRequest
from diffstudio.app.sources import ModelSource
from diffstudio.cli.sample import parse_sample_args, sample_argv
from diffstudio.plugin_manager import load_plugins


@pytest.fixture(scope="module")
def registry():
    return load_plugins(safe_mode=True)


def _coerced(request, registry):
    params = {p.name: p for p in registry.get("sampler", request.sampler).params}
    return {name: params[name].coerce(value) for name, value in request.params.items()}


@pytest.mark.parametrize("request_", [
    SampleRequest(ModelSource(run="runs/a", checkpoint="step-00000010"), sampler="ddim",
                  params={"steps": 7, "eta": 0.3333333333333333}, num_samples=5, seed=11,
                  batch_size=3, device="cpu", class_label=2, guidance=1.5),
    SampleRequest(ModelSource(run="/abs/run b", checkpoint="latest", ema=False,
                              backend="onnx", onnx_file="x.onnx"), sampler="ddpm",
                  params={"steps": 50}, seed=0, device="cuda:1", out="out dir",
                  overwrite=True, preset=None),
    SampleRequest(ModelSource(pretrained="google/ddpm-cifar10-32", checkpoint="latest",
                              download=True), sampler="ddim", params={}, num_samples=4,
                  preset="seed-images", init_noise="noise.npy"),
])
def test_a_request_becomes_arguments_that_parse_back_to_it(request_, registry):
    parsed, _args = parse_sample_args(sample_argv(request_, registry), registry)
    assert parsed.source == request_.source
    assert _coerced(parsed, registry) == _coerced(request_, registry)
    for name in ("sampler", "num_samples", "seed", "batch_size", "device", "init_noise",
                 "class_label", "guidance", "preset", "out", "overwrite"):
        assert getattr(parsed, name) == getattr(request_, name), name
    assert parsed.save  # a command always saves what it draws
