"""A saved sample's nearest training images, found in the evaluation that retrieved them: a
samples folder's own evaluation (row = the PNG's place), a run's evaluation (row = its seed),
nothing when the folder changed afterwards or the model differs."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch

from diffstudio.engine.evaluation.sample_neighbours import (
    find_sample_neighbours,
    load_sample_neighbours,
)
from diffstudio.engine.pngmeta import write_png
from diffstudio.engine.sample_index import read_record

COPIED = 123  # the training image planted among the samples


@pytest.fixture(scope="module")
def registry():
    from diffstudio.plugin_manager import load_plugins

    return load_plugins(safe_mode=True)


@pytest.fixture(scope="module")
def digits(registry):
    from diffstudio.engine.evaluation.sources import reference_from_registry

    return reference_from_registry(registry, "digits", {})[0].data


def _folder(path, digits):
    rng = np.random.default_rng(0)
    for seed in range(5):
        image = digits[COPIED].numpy() if seed == 2 else rng.uniform(-1, 1, (1, 8, 8))
        write_png(path / f"sample-{seed:06d}.png", image,
                  {"sampler": "ddim", "sampler_params": {"steps": 2}, "seed": seed,
                   "index": seed})
    return path


def test_a_folder_evaluation_gives_each_png_its_own_row(tmp_path, digits, registry,
                                                       monkeypatch):
    import diffstudio.engine.evaluation as evaluation
    from diffstudio.cli.evaluate import cmd_eval

    torch.set_num_threads(1)
    folder = _folder(tmp_path / "samples", digits)
    original = evaluation.prepare_extractor
    monkeypatch.setattr(evaluation, "prepare_extractor",
                        lambda *a, **k: original(*a, **{**k, "resize_to": 96}))
    assert cmd_eval([str(folder), "--reference", "digits", "--metrics",
                     "retrieval,memorization", "--weights", "random", "--reference-limit", "10",
                     "--device", "cpu", "--batch-size", "8", "--cache-dir",
                     str(tmp_path / "cache"), "--quiet"], registry) == 0
    assert list(folder.glob("evaluation-*.json"))

    copy = find_sample_neighbours(read_record(folder / "sample-000002.png"))
    assert copy is not None and copy.row == 2
    # The Inception features saw 10 of 1797 images: the pixel search (all of them) is shown.
    assert copy.space == "pixel" and len(copy.indices) == 5
    assert copy.indices[0] == COPIED and copy.distances[0] < 0.05  # 8-bit PNG
    assert copy.flagged and copy.ratio < 0.05
    other = find_sample_neighbours(read_record(folder / "sample-000004.png"))
    assert other.row == 4 and not other.flagged and other.distances[0] > 1
    loaded = load_sample_neighbours(read_record(folder / "sample-000002.png"), registry)
    np.testing.assert_allclose(loaded.images[0], digits[COPIED].numpy())
    np.testing.assert_allclose(loaded.sample, digits[COPIED].numpy(), atol=1 / 127.5)
    assert loaded.images.shape == (5, 1, 8, 8)

    # A PNG added after the evaluation shifts the rows: nothing is claimed any more.
    later = time.time() + 5
    write_png(folder / "sample-000001b.png", np.zeros((1, 8, 8)), {"sampler": "ddim"})
    os.utime(folder / "sample-000001b.png", (later, later))
    assert find_sample_neighbours(read_record(folder / "sample-000002.png")) is None


def test_a_run_evaluation_matches_the_same_model_sampler_and_seed(tmp_path):
    run = tmp_path / "run"
    (run / "evaluations").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    source = {"kind": "run", "run": str(run), "checkpoint": "step-00000002", "ema": True,
              "network_sha256": "ab" * 32, "sampler": "ddim", "sampler_params": {"steps": 2},
              "seed": 10, "class_label": None}
    evaluation = {"format": "diffstudio-evaluation/1", "n": 4, "source": source,
                  "reference": {"dataset": "digits", "params": {}, "size": 1797,
                                "used": 1797},
                  "retrieval": {"pixel": {"indices": [[9, 8]] * 4,
                                          "distances": [[0.5, 0.7]] * 4},
                                "inception": {"indices": [[row, 1] for row in range(4)],
                                              "distances": [[1.0, 2.0]] * 4}}}
    (run / "evaluations" / "ddim-2steps.json").write_text(json.dumps(evaluation))
    meta = {"run": str(run), "checkpoint": "step-00000002", "ema": True,
            "network_sha256": "ab" * 32, "sampler": "ddim", "sampler_params": {"steps": 2},
            "seed": 12, "index": 0, "guidance": None, "init_noise": False}
    png = run / "samples" / "ddim-x" / "sample-000012.png"
    write_png(png, np.zeros((1, 8, 8)), meta)
    found = find_sample_neighbours(read_record(png))
    # Seed 12 is the third sample of an evaluation from seed 10; the whole reference set
    # went through Inception, so its neighbours are shown.
    assert found.row == 2 and found.space == "inception" and list(found.indices) == [2, 1]
    assert "seed 12" in found.how and found.ratio is None
    for change in ({"seed": 14}, {"seed": 9}, {"checkpoint": "step-00000001"},
                   {"sampler_params": {"steps": 3}}, {"network_sha256": "cd" * 32},
                   {"ema": False}, {"guidance": 3.0}):
        write_png(png, np.zeros((1, 8, 8)), {**meta, **change})
        assert find_sample_neighbours(read_record(png)) is None, change
