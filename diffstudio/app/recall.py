"""Recall: the sample request that made a sample PNG, read back from its metadata.

Sample i of a request with seed S is drawn from its own generator seeded S + i (see
:mod:`diffstudio.engine.sampling`), and the PNG records that seed, the run, checkpoint, EMA
choice, sampler and every sampler parameter it ran with. :func:`recall_request` turns that
back into a one-sample :class:`SampleRequest`; running it on the same backend gives the same
image bit for bit (a test checks it on the CPU). :func:`recall_problems` says what would stop
that (a missing run, a checkpoint that is gone, a network whose hash changed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from diffstudio.app.sample import SampleRequest
from diffstudio.app.sources import ModelSource
from diffstudio.errors import ConfigError

__all__ = ["recall_problems", "recall_request"]


def _metadata(sample: str | os.PathLike[str] | dict[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(sample, dict):
        return sample, "the sample"
    from diffstudio.engine.pngmeta import read_png_metadata

    try:
        return read_png_metadata(sample), str(sample)
    except OSError as exc:
        raise ConfigError(f"cannot read {sample}: {exc}") from exc


def recall_request(sample: str | os.PathLike[str] | dict[str, Any], *,
                   device: str = "auto") -> SampleRequest:
    """The request that regenerates ``sample`` (a PNG path or its ``diffstudio`` metadata).

    A PNG without diffstudio metadata ("unknown parameters") or made from a given initial
    noise file cannot be recalled from a seed: ConfigError says so."""
    meta, where = _metadata(sample)
    if not meta or not meta.get("sampler"):
        raise ConfigError(f"{where} carries no diffstudio parameters (unknown parameters), so "
                          "it cannot be recalled; only samples written by diffstudio can")
    if meta.get("init_noise"):
        raise ConfigError(f"{where} started from a given initial noise "
                          f"({meta.get('init_noise_file') or 'a .npy file'}), not from its "
                          "seed; sample that file again with --init-noise to reproduce it")
    if meta.get("run"):
        source = ModelSource(run=str(meta["run"]), checkpoint=str(meta.get("checkpoint")
                                                                  or "latest"),
                             ema=bool(meta.get("ema", True)))
    elif meta.get("pretrained"):
        source = ModelSource(pretrained=str(meta["pretrained"]))
    else:
        raise ConfigError(f"{where} names neither a run nor a pretrained model")
    seed = meta.get("seed")
    if not isinstance(seed, int):
        raise ConfigError(f"{where} records no integer seed (got {seed!r})")
    params = meta.get("sampler_params")
    guidance = meta.get("guidance")
    return SampleRequest(
        source=source, sampler=str(meta["sampler"]),
        params=dict(params) if isinstance(params, dict) else {}, num_samples=1, seed=seed,
        batch_size=1, device=device,
        class_label=meta.get("class_label") if isinstance(meta.get("class_label"), int)
        else None,
        guidance=float(guidance) if isinstance(guidance, (int, float)) else None,
    )


def recall_problems(sample: str | os.PathLike[str] | dict[str, Any]) -> list[str]:
    """Why regenerating ``sample`` might not give the same image: each a line ([] when none).
    Reads files only (no torch)."""
    meta, where = _metadata(sample)
    problems: list[str] = []
    run = meta.get("run")
    if not run:
        return problems
    from diffstudio.engine.io import file_sha256
    from diffstudio.engine.runs import Run

    folder = Run(run)
    if not folder.exists():
        return [f"the run {run} of {where} is not there any more"]
    checkpoint = folder.checkpoints_dir / str(meta.get("checkpoint") or "")
    weights = Run.weights_file(checkpoint, ema=bool(meta.get("ema", True)))
    if not Path(weights).is_file():
        return [f"the checkpoint {meta.get('checkpoint')} of {run} is gone (pruned by later "
                "training?); the latest one gives a different image"]
    recorded = meta.get("network_sha256")
    if recorded and file_sha256(weights) != recorded:
        problems.append(f"the network of {checkpoint.name} changed since {where} was made "
                        "(its SHA-256 differs)")
    return problems
