"""The plugin module named by the entry point: declarations only, nothing heavy imported."""

from __future__ import annotations

from diffstudio import Contribution, Param, hookimpl


@hookimpl
def diffstudio_samplers() -> list[Contribution]:
    return [
        Contribution(
            kind="sampler",
            id="example-heun",
            display_name="Heun (example plugin)",
            description="Second-order Heun steps on DDIM's ODE: two network calls per step.",
            factory="diffstudio_example_sampler.heun:heun_sample",
            params=(
                Param("steps", "int", 10, minimum=1, maximum=1000,
                      help="Heun steps (about 2 network evaluations each)"),
                Param("clip_x0", "bool", False, help="clip the predicted x_0 to the data range"),
            ),
        )
    ]
