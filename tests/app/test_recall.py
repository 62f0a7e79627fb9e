"""Recall: sample -> PNG -> index -> recall -> the identical sample, bit for bit on the CPU,
for a stochastic sampler (DDPM: fresh noise every step) and a deterministic one."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diffstudio.app import ModelSource, SampleRequest, TrainRequest, run_job, sample, train
from diffstudio.app.recall import recall_problems, recall_request
from diffstudio.engine.pngmeta import to_uint8_image
from diffstudio.engine.sample_index import SampleFilter, SampleIndex
from diffstudio.errors import ConfigError
from diffstudio.plugin_manager import load_plugins

SETTINGS = {"dataset": "digits", "steps": 4, "batch_size": 8, "num_timesteps": 40,
            "warmup_steps": 1, "checkpoint_every": 4, "preview_every": 0, "device": "cpu",
            "log_every": 2}


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, registry):
    root = tmp_path_factory.mktemp("gallery")
    run_job(train(TrainRequest(out=str(root / "run"), settings=SETTINGS), registry=registry))
    return root


@pytest.mark.parametrize("sampler, params", [("ddpm", {"steps": 12}),
                                              ("ddim", {"steps": 6, "eta": 0.5})])
def test_a_recalled_sample_regenerates_bit_for_bit(workspace, registry, sampler, params):
    out = workspace / "run" / "samples" / sampler
    batch = run_job(sample(SampleRequest(ModelSource(run=str(workspace / "run")), sampler,
                                         params, num_samples=4, seed=3, batch_size=4,
                                         device="cpu", save=True, out=str(out)),
                           registry=registry))
    index = SampleIndex(workspace)
    index.scan()
    [record] = index.records(SampleFilter(sampler=sampler, seed=5))
    assert record.params["steps"] == params["steps"] and record.run == "run"
    assert recall_problems(record.path) == []

    recall = recall_request(record.path, device="cpu")
    request = recall.request
    assert recall.exact and recall.position == 2
    assert (request.sampler, request.seed, request.num_samples) == (sampler, 3, 4)
    again = run_job(sample(request, registry=registry)).samples[recall.position]
    # The floats are identical to those saved with the batch, and so are the PNG's pixels.
    np.testing.assert_array_equal(again, batch.samples[2])
    with np.load(out / "samples.npz") as saved:
        assert saved["seeds"][2] == 5
        np.testing.assert_array_equal(saved["samples"][2], again)
    with Image.open(record.path) as picture:
        np.testing.assert_array_equal(np.asarray(picture), to_uint8_image(again))
    # Without its batch recorded, a sample recalls alone: the same image up to rounding.
    alone = recall_request({**record.meta, "batch_size": None})
    assert not alone.exact and (alone.request.seed, alone.request.num_samples) == (5, 1)
    single = run_job(sample(alone.request, registry=registry)).samples[0]
    np.testing.assert_allclose(single, batch.samples[2], atol=1e-5)


def test_a_shorter_last_batch_is_rebuilt_with_its_own_length():
    meta = {"run": "r", "sampler": "ddim", "seed": 19, "index": 9, "batch_size": 4,
            "num_samples": 10, "sampler_params": {"steps": 3}}
    recall = recall_request(meta)
    assert (recall.request.seed, recall.request.num_samples, recall.position) == (18, 2, 1)
    assert recall.request.batch_size == 2 and recall.request.params == {"steps": 3}


def test_what_cannot_be_recalled_says_why(workspace, tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(ConfigError, match="unknown parameters"):
        recall_request(tmp_path / "plain.png")
    with pytest.raises(ConfigError, match="initial noise"):
        recall_request({"sampler": "ddim", "run": "r", "seed": 0, "init_noise": True})
    assert "not there" in recall_problems({"run": str(tmp_path / "gone"), "sampler": "ddim"})[0]
    meta = {"run": str(workspace / "run"), "checkpoint": "step-00000001", "sampler": "ddim"}
    assert "is gone" in recall_problems(meta)[0]
