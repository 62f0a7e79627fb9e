"""Recall: the sample request that made a sample PNG, read back from its metadata.

Sample i of a request with seed S is drawn from its own generator seeded S + i (see
:mod:`diffstudio.engine.sampling`), and the PNG records that seed, the run, checkpoint, EMA
choice, sampler and every sampler parameter it ran with, its index in the request, the batch
size and the number of samples. The same seed gives the same image up to the last bits of
float32; bit for bit needs the same batch too, because CPU kernels (oneDNN convolutions)
round differently for different batch sizes. So :func:`recall_request` rebuilds the batch the
sample was drawn in (first seed, length) and says where in it the sample is
(:attr:`Recall.position`); running it on the same backend gives the same image bit for bit (a
test checks it on the CPU). A PNG written before the batch was recorded recalls as a batch of
one (the same image up to rounding). :func:`recall_problems` says what would stop that (a
missing run, a checkpoint that is gone, a network whose hash changed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffstudio.app.sample import SampleRequest
from diffstudio.app.sources import ModelSource
from diffstudio.errors import ConfigError

__all__ = ["Recall", "recall_problems", "recall_request"]


@dataclass
class Recall:
    """``request`` regenerates the batch a sample was drawn in; the sample is
    ``outcome.samples[position]`` of it. ``exact`` False: the PNG did not record its batch, so
    a batch of one is used (same image up to float rounding)."""

    request: SampleRequest
    position: int
    exact: bool
    metadata: dict[str, Any]


def _metadata(sample: str | os.PathLike[str] | dict[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(sample, dict):
        return sample, "the sample"
    from diffstudio.engine.pngmeta import read_png_metadata

    try:
        return read_png_metadata(sample), str(sample)
    except OSError as exc:
        raise ConfigError(f"cannot read {sample}: {exc}") from exc


def recall_request(sample: str | os.PathLike[str] | dict[str, Any], *,
                   device: str = "auto") -> Recall:
    """How to regenerate ``sample`` (a PNG path or its ``diffstudio`` metadata).

    A PNG without diffstudio metadata ("unknown parameters") or made from a given initial
    noise file cannot be recalled from a seed: ConfigError says so."""
    meta, where = _metadata(sample)
    if not meta or not meta.get("sampler"):
        raise ConfigError(f"{where} carries no diffstudio parameters (unknown parameters), so "
                          "it cannot be recalled; only samples written by diffstudio can")
    path_info = meta.get("interpolation")
    if isinstance(path_info, dict):
        raise ConfigError(f"{where} is point {int(meta.get('index', 0)) + 1} of "
                          f"{path_info.get('points', '?')} on an interpolation between seeds "
                          f"{path_info.get('seed_a')} and {path_info.get('seed_b')} (DDIM, "
                          f"{meta.get('steps')} steps); decode it again on the Sample page's "
                          "Interpolation tab")
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
    index, batch, total = (meta.get(key) for key in ("index", "batch_size", "num_samples"))
    exact = all(isinstance(v, int) and not isinstance(v, bool) for v in (index, batch, total)) \
        and 0 <= index < total and batch >= 1
    if exact:
        first = index - index % batch  # the batch's first position in the request
        position, length = index - first, min(batch, total - first)
    else:
        position, length = 0, 1
    request = SampleRequest(
        source=source, sampler=str(meta["sampler"]),
        params=dict(params) if isinstance(params, dict) else {}, num_samples=length,
        seed=seed - position, batch_size=length, device=device,
        class_label=meta.get("class_label") if isinstance(meta.get("class_label"), int)
        else None,
        guidance=float(guidance) if isinstance(guidance, (int, float)) else None,
    )
    return Recall(request, position, exact, meta)


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
