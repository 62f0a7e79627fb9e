"""The command line on a run that went wrong: a diverged run is resumed with a lower learning
rate, a run has one writer, samples land whole or not at all."""

from __future__ import annotations

import json

import numpy as np
import torch

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
