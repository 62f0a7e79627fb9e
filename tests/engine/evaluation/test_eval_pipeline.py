"""The whole evaluation with a randomly initialised Inception (no weights needed), on tiny sets:
features equal pytorch-fid's, the reference is cached, the CLI writes its JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diffstudio.engine.datasets import Dataset
from diffstudio.engine.evaluation import (
    EvalSettings,
    FidWeights,
    InceptionFeatures,
    ReferenceCache,
    evaluate_samples,
    load_results,
    load_samples_folder,
    write_result,
)
from diffstudio.errors import Cancelled


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, 2 OpenMP threads stall whenever the
    other core is busy (measured: 8 images at 299 px took 1.0 s with 1 thread, 1.8-5.2 s with 2).
    """
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):  # the same for OpenBLAS (see _blas_threads)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def extractor() -> InceptionFeatures:
    return InceptionFeatures(FidWeights.random(0), device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def fast_extractor() -> InceptionFeatures:
    """The same network on 96 x 96 inputs: ~7x faster on a CPU, not FID, for plumbing tests."""
    return InceptionFeatures(FidWeights.random(0), device="cpu", batch_size=8, resize_to=96)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.as_tensor(load_digits().images[:40], dtype=torch.float32)[:, None] / 8 - 1


def _reference(digits: torch.Tensor) -> Dataset:
    return Dataset(name="digits-10", data=digits[:10].clone(), kind="image")


def test_memory_features_equal_pytorch_fid_on_the_png_files(extractor, digits, tmp_path,
                                                            monkeypatch):
    from pytorch_fid import inception as pfi
    from pytorch_fid.fid_score import get_activations

    from diffstudio.engine.evaluation.features import (
        fid_inception_architecture,
        randomize_inception,
    )
    from diffstudio.engine.pngmeta import write_png

    inception = fid_inception_architecture()
    randomize_inception(inception, 0)  # the same random weights as the extractor's
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: inception.state_dict())
    model = pfi.InceptionV3([3]).eval()  # pytorch-fid's own resize and normalisation
    images = digits[20:24]
    files = []
    for index, image in enumerate(images):
        files.append(tmp_path / f"sample-{index}.png")
        write_png(files[-1], image.numpy(), {})
    theirs = get_activations(files, model, batch_size=3, device="cpu", num_workers=0)
    ours = extractor(images)
    assert ours.shape == (4, 2048) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())


def test_pipeline_computes_every_metric_and_a_repeat_pays_only_for_the_samples(
    extractor, digits, tmp_path
):
    reference = _reference(digits)
    samples = torch.cat([digits[3:4], digits[20:25]])  # sample 0 is a training image
    cache = ReferenceCache(tmp_path / "cache")
    settings = EvalSettings(metrics=("fid", "kid", "precision_recall", "density_coverage",
                                     "retrieval", "memorization"), kid_subsets=10)
    events = []
    before = extractor.images_processed
    first = evaluate_samples(samples, reference, extractor, settings=settings, cache=cache,
                             reference_spec={"dataset": "digits"}, source={"kind": "memory"},
                             progress=events.append)
    assert extractor.images_processed - before == 10 + 6
    assert (cache.hits, cache.misses) == (0, 1) and not first.reference["from_cache"]
    assert {e.stage for e in events} >= {"reference", "samples", "metrics"}

    before = extractor.images_processed
    second = evaluate_samples(samples, reference, extractor, settings=settings, cache=cache)
    assert extractor.images_processed - before == 6  # reference features came from the cache
    assert cache.hits == 1 and second.reference["from_cache"]
    assert second.fid == pytest.approx(first.fid, rel=1e-9)

    assert first.n_generated == 6 and first.n_reference == 10 and first.fid > 0
    assert first.kid is not None and first.kid.subset_size == 6
    assert first.precision_recall is not None and first.density_coverage is not None
    assert not first.comparable_fid
    assert any("FID@6 uses fewer than 2048" in w for w in first.warnings)
    assert any("published FIDs use 10000" in w for w in first.warnings)
    for space in ("inception", "pixel"):
        assert first.retrieval[space].indices.shape == (6, 5)
    assert first.retrieval["pixel"].indices[0, 0] == 3
    assert first.retrieval["pixel"].distances[0, 0] == 0.0
    assert first.memorization is not None and 0 in first.memorization.flagged

    # The cache file is pytorch-fid-compatible precomputed statistics.
    from pytorch_fid.fid_score import compute_statistics_of_path

    mu, sigma = compute_statistics_of_path(first.reference["cache_file"], None, 1, 2048, "cpu")
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)

    path = write_result(first, tmp_path / "result.json")
    data = json.loads(path.read_text())
    assert data["metrics"]["fid"]["label"] == "FID@6" and data["n"] == 6
    assert data["inception"]["source"] == "random" and data["memorization"]["flagged_count"] >= 1
    assert load_results([path])[0].fid == pytest.approx(first.fid)


def test_a_changed_reference_or_preprocessing_is_a_new_cache_entry(
    extractor, fast_extractor, digits, tmp_path
):
    cache = ReferenceCache(tmp_path)
    samples = digits[20:23]
    settings = EvalSettings(metrics=("fid",))
    evaluate_samples(samples, _reference(digits), fast_extractor, settings=settings, cache=cache)
    changed = Dataset(name="digits-10", data=digits[1:11].clone(), kind="image")
    evaluate_samples(samples, changed, fast_extractor, settings=settings, cache=cache)
    assert (cache.hits, cache.misses) == (0, 2) and len(list(tmp_path.glob("*.npz"))) == 2
    # Another preprocessing (input size) is another key, without computing anything.
    from diffstudio.engine.evaluation import reference_key

    keys = {reference_key("sha", (1, 8, 8), e.identity) for e in (extractor, fast_extractor)}
    assert len(keys) == 2
    # A torn cache file is recomputed, not trusted.
    for file in tmp_path.glob("*.npz"):
        file.write_bytes(b"torn")
    evaluate_samples(samples, changed, fast_extractor, settings=settings, cache=cache)
    assert cache.misses == 3


def test_stopping_between_batches_raises_cancelled(fast_extractor, digits, tmp_path):
    with pytest.raises(Cancelled):
        evaluate_samples(digits[20:24], _reference(digits), fast_extractor,
                         cache=ReferenceCache(tmp_path), should_stop=lambda: True)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from diffstudio.cli import main

    run = tmp_path_factory.mktemp("eval") / "run"
    assert main(["train", "--out", str(run), "--dataset", "digits", "--steps", "2",
                 "--batch-size", "4", "--num-timesteps", "20", "--warmup-steps", "1",
                 "--checkpoint-every", "2", "--preview-every", "0", "--device", "cpu",
                 "--quiet"]) == 0
    return run


def test_cli_evaluates_a_run_in_memory_then_its_samples_folder(tiny_run, tmp_path, capsys,
                                                                monkeypatch):
    import diffstudio.engine.evaluation as evaluation
    from diffstudio.cli.evaluate import cmd_eval
    from diffstudio.engine.sampling import generate, load_model, save_samples
    from diffstudio.plugin_manager import load_plugins

    original = evaluation.prepare_extractor
    monkeypatch.setattr(evaluation, "prepare_extractor",
                        lambda *a, **k: original(*a, **{**k, "resize_to": 96}))
    registry = load_plugins()
    common = ["--weights", "random", "--reference-limit", "10", "--device", "cpu",
              "--batch-size", "8", "--cache-dir", str(tmp_path / "cache"), "--kid-subsets", "5",
              "--quiet"]
    assert cmd_eval([str(tiny_run), "--sampler", "ddim", "--steps", "2", "--num", "6",
                     *common], registry) == 0
    out = capsys.readouterr().out
    assert "FID@6:" in out and "KID:" in out and "±" in out
    assert "warning: FID@6 uses fewer than 2048 samples" in out and "note: FID@6" in out
    written = sorted((tiny_run / "evaluations").glob("ddim-2steps-*.json"))
    assert len(written) == 1
    result = json.loads(written[0].read_text())
    assert result["source"]["kind"] == "run" and result["source"]["network_evaluations"] == 2
    assert result["source"]["sampling_seconds_per_100"] > 0
    assert result["reference"]["dataset"] == "digits" and result["reference"]["used"] == 10
    assert result["model"]["schedule"] == "cosine" and result["model"]["training_steps"] == 2
    assert not result["reference"]["from_cache"]

    # A samples folder as 'diffstudio sample' writes it (PNGs with metadata + samples.npz).
    loaded_model = load_model(tiny_run, device="cpu", registry=registry)
    drawn = generate(loaded_model.model, "ddim", {"steps": 2}, num_samples=5,
                     sample_shape=loaded_model.sample_shape, registry=registry)
    samples = tmp_path / "samples"
    save_samples(drawn, samples, metadata={"run": str(tiny_run.resolve()), "steps": 2,
                                           "checkpoint": loaded_model.checkpoint.name})
    loaded = load_samples_folder(samples)
    assert loaded.source == "samples.npz" and tuple(loaded.samples.shape) == (5, 1, 8, 8)
    # No --reference: taken from the run the PNGs name; the reference comes from the cache.
    assert cmd_eval([str(samples), "--metrics", "fid,kid", *common], registry) == 0
    assert "FID@5:" in capsys.readouterr().out
    result = json.loads(next(samples.glob("evaluation-*.json")).read_text())
    assert result["reference"]["from_cache"] and result["source"]["sampler"] == "ddim"
    assert set(result["metrics"]) == {"fid", "kid"}
    # PNGs alone (no samples.npz) give the same images, to 8-bit precision.
    (samples / "samples.npz").unlink()
    from_pngs = load_samples_folder(samples)
    assert from_pngs.source == "png"
    np.testing.assert_allclose(from_pngs.samples, loaded.samples, atol=1 / 127.5)


def test_cli_bad_input_says_what_to_do(tmp_path):
    from diffstudio.cli.evaluate import cmd_eval
    from diffstudio.errors import DiffstudioError
    from diffstudio.plugin_manager import load_plugins

    registry = load_plugins()
    folder = tmp_path / "pngs"
    folder.mkdir()
    np.savez(folder / "samples.npz", samples=np.zeros((3, 1, 8, 8), np.float32))
    with pytest.raises(DiffstudioError, match="pass --reference"):
        cmd_eval([str(folder), "--weights", "random"], registry)
    with pytest.raises(DiffstudioError, match="unknown metric"):
        cmd_eval([str(folder), "--reference", "digits", "--metrics", "fid,inception_score"],
                 registry)
    with pytest.raises(DiffstudioError, match="no run or samples folder"):
        cmd_eval([str(tmp_path / "nowhere"), "--reference", "digits"], registry)
