"""Nearest training images against brute force; the memorisation ratio test and its base rate."""

from __future__ import annotations

import numpy as np
import pytest

from diffstudio.engine.evaluation import memorization_check, nearest_training_images
from diffstudio.engine.evaluation._distances import k_nearest


def _brute(query: np.ndarray, bank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.linalg.norm(query[:, None, :] - bank[None, :, :], axis=2)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


@pytest.mark.parametrize("block_entries", [1 << 22, 50])
def test_retrieval_order_and_distances_match_brute_force(monkeypatch, block_entries):
    import diffstudio.engine.evaluation._distances as distances

    monkeypatch.setattr(distances, "_BLOCK_ENTRIES", block_entries)
    rng = np.random.default_rng(0)
    bank, query = rng.standard_normal((120, 2048)), rng.standard_normal((17, 2048))
    found = nearest_training_images(query, bank, k=5)
    indices, dist = _brute(query, bank, 5)
    np.testing.assert_array_equal(found.indices, indices)
    np.testing.assert_allclose(found.distances, dist, rtol=1e-12)
    assert found.k == 5 and found.space == "inception"
    assert np.all(np.diff(found.distances, axis=1) >= 0)


def test_near_duplicates_get_exact_distances_and_order():
    rng = np.random.default_rng(1)
    bank = rng.standard_normal((30, 64)) * 100  # large norms: |a|^2 + |b|^2 - 2ab cancels badly
    query = bank[[3, 7]] + np.array([[1e-7], [0.0]])
    found = nearest_training_images(query, bank, k=3, space="pixel")
    assert found.indices[:, 0].tolist() == [3, 7]
    assert found.distances[0, 0] == pytest.approx(1e-7 * 8, rel=1e-6)
    assert found.distances[1, 0] == 0.0


def test_leave_one_out_excludes_the_right_row():
    rng = np.random.default_rng(2)
    bank = rng.standard_normal((25, 3))
    picked = np.array([4, 9, 20])
    indices, _ = k_nearest(bank[picked], bank, 4, exclude=picked)
    d = np.linalg.norm(bank[picked][:, None] - bank[None], axis=2)
    d[np.arange(3), picked] = np.inf
    expected = np.argsort(d, axis=1)[:, :4]
    np.testing.assert_array_equal(indices, expected)
    assert not np.any(indices == picked[:, None])


def test_memorised_samples_are_flagged_and_others_are_not():
    rng = np.random.default_rng(3)
    training = rng.uniform(-1, 1, (300, 64))
    copies = training[[5, 42]] + rng.normal(0, 0.01, (2, 64))  # near-copies of two images
    novel = rng.uniform(-1, 1, (6, 64))
    report = memorization_check(np.vstack([copies, novel]), training, baseline_size=100)
    assert report.flagged == [0, 1]
    assert report.nearest_index[:2].tolist() == [5, 42]
    # The ratio is nearest / (0.5 x mean of the 50 nearest), by brute force.
    d = np.sort(np.linalg.norm(novel[0] - training, axis=1))[:50]
    assert report.ratios[2] == pytest.approx(d[0] / (0.5 * d.mean()), rel=1e-10)
    # Uniform training images have no near-duplicates: a zero base rate.
    assert report.baseline_size == 100 and report.baseline_flagged == 0
    summary = report.to_dict()
    assert summary["flagged_count"] == 2 and summary["training_baseline"]["flagged_count"] == 0


def test_duplicates_inside_the_training_set_show_in_the_base_rate():
    rng = np.random.default_rng(4)
    base = rng.uniform(-1, 1, (100, 16))
    training = np.vstack([base, base[:10]])  # ten images appear twice
    report = memorization_check(rng.uniform(-1, 1, (4, 16)), training, baseline_size=110)
    assert report.baseline_flagged == 20  # both copies of each repeated image
    assert report.flagged == []
