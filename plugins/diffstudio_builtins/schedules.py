"""Built-in noise schedules: linear, cosine, quadratic, sigmoid (seed 002 §2.2, §4.1)."""

from __future__ import annotations

from diffstudio import Contribution, Param, hookimpl

_BETA_RANGE = (
    Param("beta_start", "float", 1e-4, minimum=1e-8, maximum=0.5, help="beta_1"),
    Param("beta_end", "float", 0.02, minimum=1e-6, maximum=0.999, help="beta_T"),
)


@hookimpl
def diffstudio_schedules() -> list[Contribution]:
    return [
        Contribution(
            kind="schedule",
            id="linear",
            display_name="Linear",
            description="DDPM's linear betas from 1e-4 to 0.02 (Ho et al. 2020).",
            factory="diffstudio.engine.schedules.linear:linear_schedule",
            params=_BETA_RANGE,
        ),
        Contribution(
            kind="schedule",
            id="cosine",
            display_name="Cosine",
            description="Improved DDPM's cosine alpha-bar, s = 0.008, beta clipped at 0.999.",
            factory="diffstudio.engine.schedules.cosine:cosine_schedule",
            params=(
                Param("s", "float", 0.008, minimum=0.0, maximum=0.5, help="offset s of eq. 18"),
                Param("max_beta", "float", 0.999, minimum=0.01, maximum=0.9999,
                      help="largest beta allowed"),
            ),
        ),
        Contribution(
            kind="schedule",
            id="quadratic",
            display_name="Quadratic",
            description="sqrt(beta) linear between sqrt(beta_start) and sqrt(beta_end).",
            factory="diffstudio.engine.schedules.quadratic:quadratic_schedule",
            params=_BETA_RANGE,
        ),
        Contribution(
            kind="schedule",
            id="sigmoid",
            display_name="Sigmoid",
            description="Betas on a logistic curve between beta_start and beta_end.",
            factory="diffstudio.engine.schedules.sigmoid:sigmoid_schedule",
            params=_BETA_RANGE,
        ),
    ]
