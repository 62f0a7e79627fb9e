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
        ),
        Contribution(
            kind="sampler",
            id="example-edm",
            display_name="EDM stochastic (example plugin)",
            description="Karras et al. 2022, Algorithm 2: Heun steps on Karras noise levels "
                        "with S_churn noise injection; 2 N - 1 network calls.",
            factory="diffstudio_example_sampler.edm:edm_sample",
            params=(
                Param("steps", "int", 18, minimum=1, maximum=1000,
                      help="EDM steps (2 network evaluations each, 1 for the last)"),
                Param("s_churn", "float", 10.0, minimum=0.0, maximum=1000.0,
                      help="total noise injected (S_churn); 0 = deterministic Algorithm 1"),
                Param("s_tmin", "float", 0.05, minimum=0.0, maximum=1e6,
                      help="churn only at sigma >= S_tmin"),
                Param("s_tmax", "float", 50.0, minimum=0.0, maximum=1e6,
                      help="churn only at sigma <= S_tmax"),
                Param("s_noise", "float", 1.0, minimum=0.0, maximum=2.0,
                      help="scale of the injected noise (S_noise)"),
                Param("rho", "float", 7.0, minimum=1.0, maximum=20.0,
                      help="spacing of the noise levels (eq. 5; 7 in the paper)"),
                Param("clip_x0", "bool", False, help="clip the predicted x_0 to the data range"),
            ),
        ),
    ]
