"""The command line on a run that went wrong: a diverged run is resumed with a lower learning
rate, a run has one writer, samples land whole or not at all."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from tiny_runs import train_flags

from diffstudio.cli import main
from diffstudio.engine.runs import Run

POINTS = ["--dataset", "toy2d", "--dataset.num-points", "256", "--network", "mlp",
          "--network.hidden", "16", "--network.depth", "1", "--num-timesteps", "50",
          "--batch-size", "8", "--preview-every", "0", "--log-every", "1", "--device", "cpu",
          "--quiet"]


def test_a_diverged_run_samples_its_kept_checkpoint_and_resumes_with_a_lower_lr(
    tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    original = torch.optim.AdamW.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):  # a learning rate far too large: the weights overflow
        result = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= 2:
            with torch.no_grad():
                for group in self.param_groups:
                    for param in group["params"]:
                        param.mul_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    code = main(["train", "--out", str(run), "--steps", "6", "--lr", "1", "--warmup-steps", "0",
                 "--checkpoint-every", "1", *POINTS])
    monkeypatch.undo()
    assert code != 0
    error = capsys.readouterr().err
    assert "at step 2" in error and "the last good checkpoint is kept" in error
    assert "--resume" in error and len(error.strip().splitlines()) == 1

    out = tmp_path / "samples"
    assert main(["sample", str(run), "--num", "8", "--steps", "5", "--out", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    assert np.isfinite(np.load(out / "samples.npz")["samples"]).all()

    # What the message says to do works: resume with a lower learning rate.
    assert main(["train", "--resume", str(run), "--lr", "0.001", "--quiet"]) == 0
    assert "completed at step 6/6" in capsys.readouterr().out
    [entry] = Run(run).config_history()
    assert entry["step"] == 1 and entry["changes"] == {"learning_rate": [1.0, 0.001]}


def test_resume_refuses_fewer_steps_and_a_model_change_in_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "4", "--checkpoint-every", "2",
                 *POINTS]) == 0
    capsys.readouterr()
    config = json.loads((run / "config.json").read_text())
    assert main(["train", "--resume", str(run), "--steps", "3", "--quiet"]) != 0
    error = capsys.readouterr().err
    assert "already at step 4" in error and "--steps 4 or more" in error
    assert main(["train", "--resume", str(run), "--num-timesteps", "60", "--quiet"]) != 0
    error = capsys.readouterr().err
    assert "would change num_timesteps" in error and "learning_rate" in error
    assert json.loads((run / "config.json").read_text()) == config


# -- samples land whole, or not at all ----------------------------------------------------------
IMAGES = train_flags("digits", batch_size=4)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("rel") / "run"
    assert main(["train", "--out", str(run), *IMAGES]) == 0
    return run


def _sample(run, out, *extra):
    return main(["sample", str(run), "--steps", "2", "--out", str(out), "--device", "cpu",
                 "--quiet", *extra])


def test_overwrite_leaves_exactly_the_new_samples(image_run, tmp_path):
    out = tmp_path / "out"
    assert _sample(image_run, out, "--num", "5") == 0
    assert len(list(out.glob("sample-*.png"))) == 5
    assert _sample(image_run, out, "--num", "2", "--seed", "100", "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "grid.png", "sample-000100.png", "sample-000101.png", "samples.npz"]
    assert np.load(out / "samples.npz")["samples"].shape[0] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".trash-"))]


def test_without_overwrite_new_seeds_join_the_folder_and_clashes_are_refused(
    image_run, tmp_path, capsys
):
    out = tmp_path / "out"
    assert _sample(image_run, out, "--num", "2", "--seed", "0") == 0
    (out / "samples.npz").rename(out / "first.npz")
    assert _sample(image_run, out, "--num", "2", "--seed", "2") == 0
    assert len(list(out.glob("sample-*.png"))) == 4
    assert _sample(image_run, out, "--num", "2", "--seed", "3") != 0
    assert "already exist" in capsys.readouterr().err
    assert len(list(out.glob("sample-*.png"))) == 4


def test_overwrite_never_replaces_a_folder_of_other_files(image_run, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me", encoding="utf-8")
    assert _sample(image_run, out, "--num", "2", "--overwrite") != 0
    assert "holds other files than samples (e.g. thesis.tex)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_an_unwritable_output_fails_before_sampling_and_leaves_nothing(
    image_run, tmp_path, capsys, monkeypatch
):
    import diffstudio.engine.sampling as sampling

    calls = []
    real_generate = sampling.generate
    monkeypatch.setattr(sampling, "generate",
                        lambda *a, **k: calls.append(1) or real_generate(*a, **k))
    if os.geteuid() == 0:  # root writes anywhere: provoke NotADirectoryError instead
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder", encoding="utf-8")
        out = blocker / "samples"
    else:
        locked = tmp_path / "read-only"
        locked.mkdir()
        locked.chmod(0o555)
        out = locked / "samples"
    try:
        assert _sample(image_run, out, "--num", "2") != 0
    finally:
        if os.geteuid() != 0:
            locked.chmod(0o755)
    error = capsys.readouterr().err
    assert "cannot write samples to" in error and len(error.strip().splitlines()) == 1
    assert calls == []  # refused before any sampling work
    assert not out.exists()


def test_a_failure_while_saving_leaves_no_folder_behind(image_run, tmp_path, monkeypatch):
    import diffstudio.engine.gallery as gallery

    def broken_grid(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gallery, "save_grid", broken_grid)
    out = tmp_path / "out"
    assert _sample(image_run, out, "--num", "2") != 0
    assert list(tmp_path.iterdir()) == []
