"""The tiny experiment the experiment tests share (importable from them: pytest puts this
folder on sys.path): two tiny trainings x two samplers on digits, random Inception weights at
96 px, and helpers to write it and read its results."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["TINY", "results_by_key", "write_tiny"]

# Two tiny trainings x two samplers on digits, random Inception weights at 96 px.
TINY = """\
[experiment]
name = "tiny"

[defaults]
dataset = "digits"
steps = 4
batch_size = 8
num_timesteps = 20
warmup_steps = 0
preview_every = 0
checkpoint_every = 2
device = "cpu"

[training.linear]
schedule = "linear"

[training.cosine]
schedule = "cosine"

[[sampler]]
id = "ddim"
steps = [5]

[[sampler]]
id = "ddpm"
steps = 20

[evaluation]
num_samples = 16
weights = "random"
resize_to = 96
inception_batch_size = 16
kid_subsets = 10
kid_subset_size = 8
reference_limit = 32
device = "cpu"

[published]
note = "made-up numbers for the test"
fid = { "linear/ddpm" = 99.8, "cosine/ddim-steps5" = 113.4 }
"""


def write_tiny(folder: Path, text: str = TINY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.toml"
    path.write_text(text, encoding="utf-8")
    return path


def results_by_key(folder: Path) -> dict[str, dict]:
    """Every finished cell's result JSON, by job key (from state.json)."""
    state = json.loads((folder / "state.json").read_text())
    return {key: json.loads((folder / entry["result"]).read_text())
            for key, entry in state["jobs"].items() if key.startswith("eval/")}
