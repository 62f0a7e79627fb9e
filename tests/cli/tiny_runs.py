"""The command-line flags of a tiny CPU training, shared by the CLI tests (importable from
them: pytest puts this folder on sys.path)."""

from __future__ import annotations

from typing import Any

BASE = {"--batch-size": 8, "--num-timesteps": 20, "--warmup-steps": 0, "--preview-every": 0,
        "--device": "cpu"}


def train_flags(dataset: str | None = "toy2d", steps: int | None = 2, **overrides: Any
                ) -> list[str]:
    """``--dataset D --steps N`` (None leaves one out), a checkpoint at the last step, tiny
    sizes and ``--quiet``; ``overrides`` by option without its dashes, ``_`` for ``-``
    (``checkpoint_every=6``)."""
    flags: dict[str, Any] = {}
    if dataset is not None:
        flags["--dataset"] = dataset
    if steps is not None:
        flags["--steps"] = steps
    flags.update(BASE)
    flags["--checkpoint-every"] = steps or 2
    flags.update({"--" + name.replace("_", "-"): value for name, value in overrides.items()})
    out = [str(token) for option, value in flags.items() for token in (option, value)]
    return [*out, "--quiet"]
