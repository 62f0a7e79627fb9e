"""Built-in schedules, each factory returning a DiffusionProcess (the one schedule contract):
DDPM's linear, cosine, quadratic and sigmoid betas (Ho et al. 2020, arXiv 2006.11239; Nichol &
Dhariwal 2021, arXiv 2102.09672), NCSN's geometric levels (Song & Ermon 2019, arXiv 1907.05600)
and the VE, VP and sub-VP SDEs (Song et al. 2021, arXiv 2011.13456, eqs. 9, 11, 12)."""

from __future__ import annotations

from diffstudio import Contribution, Param, hookimpl

_BETA_RANGE = (
    Param("beta_start", "float", 1e-4, minimum=1e-8, maximum=0.5, help="beta_1"),
    Param("beta_end", "float", 0.02, minimum=1e-6, maximum=0.999, help="beta_T"),
)

_SDE_BETAS = (
    Param("beta_min", "float", 0.1, minimum=1e-4, maximum=100.0, help="beta(0)"),
    Param("beta_max", "float", 20.0, minimum=1e-3, maximum=1000.0, help="beta(1)"),
)


@hookimpl
def diffstudio_schedules() -> list[Contribution]:
    return [
        Contribution(
            kind="schedule",
            id="linear",
            display_name="Linear",
            description="DDPM's linear betas from 1e-4 to 0.02 (Ho et al. 2020).",
            factory="diffstudio.engine.schedules.linear:linear_process",
            params=_BETA_RANGE,
        ),
        Contribution(
            kind="schedule",
            id="cosine",
            display_name="Cosine",
            description="Improved DDPM's cosine alpha-bar, s = 0.008, beta clipped at 0.999.",
            factory="diffstudio.engine.schedules.cosine:cosine_process",
            params=(
                Param("s", "float", 0.008, minimum=0.0, maximum=0.5, help="offset s of eq. 17"),
                Param("max_beta", "float", 0.999, minimum=0.01, maximum=0.9999,
                      help="largest beta allowed"),
            ),
        ),
        Contribution(
            kind="schedule",
            id="quadratic",
            display_name="Quadratic",
            description="sqrt(beta) linear between sqrt(beta_start) and sqrt(beta_end).",
            factory="diffstudio.engine.schedules.quadratic:quadratic_process",
            params=_BETA_RANGE,
        ),
        Contribution(
            kind="schedule",
            id="sigmoid",
            display_name="Sigmoid",
            description="Betas on a logistic curve between beta_start and beta_end.",
            factory="diffstudio.engine.schedules.sigmoid:sigmoid_process",
            params=_BETA_RANGE,
        ),
        Contribution(
            kind="schedule",
            id="ncsn",
            display_name="NCSN noise levels",
            description="L geometric sigmas for a noise-conditional score network (Song & Ermon "
                        "2019); train with prediction type 'score', sample with annealed Langevin.",
            factory="diffstudio.engine.schedules.ncsn:ncsn_levels",
            params=(
                Param("sigma_max", "float", 1.0, minimum=1e-3, maximum=1e4, help="sigma_1"),
                Param("sigma_min", "float", 0.01, minimum=1e-5, maximum=10.0, help="sigma_L"),
                Param("levels", "int", 10, minimum=2, maximum=10000, help="number of levels L"),
            ),
        ),
        Contribution(
            kind="schedule",
            id="ve-sde",
            display_name="VE SDE",
            description="Variance-exploding SDE (Song et al. 2021), continuous time.",
            factory="diffstudio.engine.schedules.ve_sde:ve_sde",
            params=(
                Param("sigma_min", "float", 0.01, minimum=1e-5, maximum=10.0, help="sigma(0)"),
                Param("sigma_max", "float", 50.0, minimum=1e-2, maximum=1e5, help="sigma(1)"),
            ),
        ),
        Contribution(
            kind="schedule",
            id="vp-sde",
            display_name="VP SDE",
            description="Variance-preserving SDE, the continuous limit of DDPM's linear schedule.",
            factory="diffstudio.engine.schedules.vp_sde:vp_sde",
            params=_SDE_BETAS,
        ),
        Contribution(
            kind="schedule",
            id="subvp-sde",
            display_name="sub-VP SDE",
            description="Sub-variance-preserving SDE (Song et al. 2021, eq. 12).",
            factory="diffstudio.engine.schedules.subvp_sde:subvp_sde",
            params=_SDE_BETAS,
        ),
    ]
