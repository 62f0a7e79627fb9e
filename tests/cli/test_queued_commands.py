"""The window queues a sampling or an evaluation as the ``diffstudio sample`` / ``eval``
command that makes it: the arguments parse back into the same request (what the queue runs is
what the page showed)."""

from __future__ import annotations

import pytest

from diffstudio.app.sample import SampleRequest
from diffstudio.app.sources import ModelSource
from diffstudio.cli.evaluate import eval_argv, parse_eval_args
from diffstudio.cli.sample import parse_sample_args, sample_argv
from diffstudio.engine.evaluation import DEFAULT_METRICS
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


@pytest.fixture(scope="module")
def points_run(tmp_path_factory):
    from diffstudio.cli import main

    run = tmp_path_factory.mktemp("queued") / "run"
    assert main(["train", "--out", str(run), "--dataset", "toy2d", "--dataset.num-points", "64",
                 "--steps", "2", "--batch-size", "8", "--num-timesteps", "20",
                 "--checkpoint-every", "2", "--preview-every", "0", "--device", "cpu",
                 "--quiet"]) == 0
    return run


def test_an_evaluation_becomes_arguments_that_parse_back_to_it(points_run, registry):
    from diffstudio.app.evaluate import EvalRequest

    requests = [
        EvalRequest(location=str(points_run), sampler="ddim",
                    sampler_params={"steps": 6, "eta": 0.1}, num_samples=32, seed=4,
                    sample_batch_size=16, checkpoint="latest", ema=False, device="cpu",
                    reference="toy2d", reference_params={"num_points": 128},
                    reference_limit=50, metrics=("fid", "kid"), weights="random",
                    download=False, inception_batch_size=25, kid_subsets=7,
                    kid_subset_size=9, memorization_threshold=0.75, blas_threads=1,
                    out="result.json", step_sweep=(5, 10)),
        EvalRequest(location=str(points_run), sampler="ddpm", sampler_params={},
                    checkpoint="latest", reference="toy2d", metrics=None, download=None,
                    use_cache=False, allow_unverified_weights=True, cache_dir="cache"),
    ]
    for request in requests:
        parsed, _args = parse_eval_args(eval_argv(request, registry), registry)
        params = {p.name: p for p in registry.get("sampler", request.sampler).params}
        assert {k: params[k].coerce(v) for k, v in parsed.sampler_params.items()} == \
            dict(request.sampler_params)
        references = {p.name: p for p in registry.get("dataset", "toy2d").params}
        assert {k: references[k].coerce(v) for k, v in parsed.reference_params.items()} == \
            dict(request.reference_params)
        for name in ("location", "sampler", "num_samples", "seed", "sample_batch_size",
                     "checkpoint", "ema", "class_label", "device", "reference",
                     "reference_limit", "weights", "download", "allow_unverified_weights",
                     "inception_batch_size", "cache_dir", "use_cache", "kid_subsets",
                     "kid_subset_size", "memorization_threshold", "blas_threads", "out",
                     "step_sweep"):
            assert getattr(parsed, name) == getattr(request, name), name
        assert tuple(parsed.metrics) == tuple(request.metrics or DEFAULT_METRICS)
