"""Bad input on the command line: each case is one clear line on stderr with the right exit
status -- never "unexpected ...", never a usage dump. A table: command -> status, fragment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_runs import train_flags

from diffstudio.cli import main

TOY = train_flags()


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """A toy run and the broken things the cases point at."""
    root = tmp_path_factory.mktemp("bad-input")
    assert main(["train", "--out", str(root / "run"), *TOY]) == 0
    for name, text in (("list-config", "[]"), ("empty-config", "{}")):
        (root / name).mkdir()
        (root / name / "config.json").write_text(text)
    (root / "empty.npy").write_bytes(b"")
    np.savez(root / "noise.npz", a=np.zeros(3))
    (root / "a-file").write_text("not a folder")
    return root


CASES = [
    # (arguments, with {p} for the fixture's folder; exit status; fragment of the one line)
    (["sample", "{p}/list-config"], 2, "holds list, not a diffstudio run config"),
    (["sample", "{p}/empty-config"], 2, "has no 'train' or 'dataset_info' section"),
    (["sample", "{p}/run", "--init-noise", "{p}/empty.npy", "--out", "{p}/s1"], 2,
     "the file is empty"),
    (["sample", "{p}/run", "--init-noise", "{p}/noise.npz", "--out", "{p}/s2"], 2,
     "is an .npz archive"),
    (["sample", "{p}/run", "--num", str(10**12), "--out", "{p}/s3"], 2, "GiB in memory"),
    (["train", *TOY, "--out", "{p}/a-file"], 2, "is a file, not a folder"),
    (["train", *TOY, "--out", "{p}/a-file/run"], 2, "no folder can be made inside it"),
    (["train", *TOY, "--checkpoint-every", "0", "--out", "{p}/r0"], 2,
     "'checkpoint_every' must be >= 1"),
    (["train", "--dataset", "toy2d"], 2, "give --out RUN"),
    (["sample", "{p}/run", "--pretrained", "x"], 2, "one of them"),
    (["sampel", "{p}/run"], 2, "did you mean sample?"),
    (["sample", "{p}/run", "--nmu", "2"], 2, "did you mean --num?"),
    (["sample", "{p}/run", "--sampler", "dmid"], 2, "unknown sampler 'dmid'"),
    (["sample", "{p}/run", "--class-label", "3", "--out", "{p}/s4"], 2, "not class-conditional"),
    (["eval", "{p}/a-file"], 2, "is a file; give a run folder or a samples folder"),
    (["eval", "{p}/nowhere", "--reference", "digits"], 2, "no run or samples folder"),
]


@pytest.mark.parametrize(("arguments", "status", "fragment"), CASES,
                         ids=[" ".join(case[0][:2]) + f" #{i}" for i, case in enumerate(CASES)])
def test_bad_input_is_one_clear_line(place, capsys, arguments, status, fragment):
    argv = [a.replace("{p}", str(place)) for a in arguments]
    assert main(argv) == status
    err = capsys.readouterr().err.strip()
    # Notes (a slow plugin, a default fitted to the run) may come first; then the one error.
    lines = [line for line in err.splitlines()
             if "slow plugin" not in line and not line.startswith("note:")]
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]
    assert "unexpected" not in lines[0] and "usage:" not in lines[0]


def test_a_nan_sampler_plugin_is_named(place, capsys, install_fake_plugin):
    install_fake_plugin("acme-nan", "acme_nan", '''
import torch
from diffstudio import Contribution, hookimpl

@hookimpl
def diffstudio_samplers():
    return [Contribution(kind="sampler", id="acme-nan", display_name="NaN",
                         description="Returns NaN.", factory="acme_nan:sample")]

def sample(model, x, *, generator, callback, should_stop):
    return torch.full_like(x, float("nan"))
''')
    assert main(["sample", str(place / "run"), "--sampler", "acme-nan", "--num", "2",
                 "--out", str(place / "nan")]) != 0
    err = capsys.readouterr().err
    assert "'acme-nan' (plugin acme-nan) produced NaN" in err and "unexpected" not in err
