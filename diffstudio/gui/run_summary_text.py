"""A run's config.json as a reader wants it: what it trains, how, how far, and what changed on
resumes -- then the full JSON for everything else."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["readable_config"]


def _params(values: Any) -> str:
    if not isinstance(values, dict) or not values:
        return ""
    return " (" + ", ".join(f"{k} {v}" for k, v in sorted(values.items())) + ")"


def readable_config(path: str, config: dict[str, Any]) -> str:
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    info = config.get("dataset_info") if isinstance(config.get("dataset_info"), dict) else {}
    lines = [path, ""]
    shape = "x".join(str(n) for n in info.get("sample_shape", []))
    lines.append(f"Data       {train.get('dataset', '?')}{_params(train.get('dataset_params'))}"
                 f": {info.get('size', '?')} samples of {shape or '?'}"
                 + (f", {len(info['skipped'])} files skipped" if info.get("skipped") else ""))
    lines.append(f"Network    {train.get('network', '?')}{_params(train.get('network_params'))}")
    lines.append(f"Schedule   {train.get('schedule', '?')}{_params(train.get('schedule_params'))}"
                 f", T = {train.get('num_timesteps', '?')}, predicts "
                 f"{train.get('prediction_type', '?')}")
    lines.append(f"Training   {config.get('total_steps', train.get('steps', '?'))} steps, batch "
                 f"{train.get('batch_size', '?')}, lr {train.get('learning_rate', '?')} "
                 f"({train.get('lr_schedule', '?')}, warm-up {train.get('warmup_steps', '?')}), "
                 f"EMA {train.get('ema_decay', '?')}, clip {train.get('grad_clip', '?')}, "
                 f"seed {train.get('seed', '?')}, {train.get('device', '?')} "
                 f"{train.get('mixed_precision', '')}".rstrip())
    versions = config.get("versions") if isinstance(config.get("versions"), dict) else {}
    if versions:
        lines.append("Made with  " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    for entry in config.get("history") or []:
        if isinstance(entry, dict) and isinstance(entry.get("changes"), dict):
            changes = ", ".join(f"{name} {old} -> {new}" for name, (old, new)
                                in entry["changes"].items())
            lines.append(f"Resumed    at step {entry.get('step', '?')}: {changes}")
    lines += ["", "Full config.json:", json.dumps(config, indent=2)]
    return "\n".join(lines)
