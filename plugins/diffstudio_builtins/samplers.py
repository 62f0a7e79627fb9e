"""Built-in samplers: DDPM (Ho et al. 2020, arXiv:2006.11239), DDIM (Song et al. 2021,
arXiv:2010.02502), annealed and plain Langevin (Song & Ermon 2019, arXiv:1907.05600), reverse
SDE, predictor-corrector and probability-flow ODE (Song et al. 2021, arXiv:2011.13456),
DPM-Solver++ (Lu et al. 2022, arXiv:2211.01095) and UniPC (Zhao et al. 2023, arXiv:2302.04867).

Each schema lists exactly the keyword parameters of its function, with the same defaults
(tests/test_sampler_conformance.py checks it)."""

from __future__ import annotations

from diffstudio import Contribution, Param, hookimpl

_CLIP = Param(
    "clip_x0", "bool", True, help="clip the predicted x_0 to the data range (images only)"
)
_SPACING = Param(
    "spacing", "choice", "uniform", choices=("uniform", "quadratic", "trailing"),
    help="which timesteps a shortened schedule visits",
)

_INIT = Param("init", "choice", "prior", choices=("prior", "uniform", "given"),
              help="start from N(0, sigma_1^2), uniform noise, or the given noise")
_INIT_RANGE = Param("init_range", "float", 1.0, minimum=1e-6, maximum=1e6,
                    help="uniform start in [-range, range]")
_SDE_STEPS = Param("steps", "int", 1000, minimum=1, maximum=100000, help="discretisation steps")
_T_MIN = Param("t_min", "float", 0.0, minimum=0.0, maximum=0.5,
               help="end time epsilon (0 = the process's own: 1e-3 VP, 1e-5 VE)")
_DENOISE = Param("denoise", "bool", True, help="return the model's x_0 estimate at t_min")


@hookimpl
def diffstudio_samplers() -> list[Contribution]:
    return [
        Contribution(
            kind="sampler",
            id="ddpm",
            display_name="DDPM (ancestral)",
            description="Algorithm 2 of Ho et al. 2020: one network call per timestep.",
            factory="diffstudio.engine.samplers.ddpm:ddpm_sample",
            params=(
                Param("steps", "int", 1000, minimum=1, maximum=100000,
                      help="timesteps visited (all T for the original sampler)"),
                Param("variance", "choice", "auto", choices=("auto", "small", "large", "learned"),
                      help="sigma_t^2 = beta_tilde_t (small), beta_t (large), or the network's "
                           "learned interpolation (auto: learned when available, else small)"),
                _CLIP,
                _SPACING,
            ),
        ),
        Contribution(
            kind="sampler",
            id="ddim",
            display_name="DDIM",
            description="Song et al. 2021, eq. 12: deterministic at eta = 0, few steps.",
            factory="diffstudio.engine.samplers.ddim:ddim_sample",
            params=(
                Param("steps", "int", 50, minimum=1, maximum=100000, help="network evaluations"),
                Param("eta", "float", 0.0, minimum=0.0, maximum=1.0,
                      help="0 = deterministic DDIM, 1 = DDPM-like noise"),
                _SPACING,
                _CLIP,
            ),
        ),
        Contribution(
            kind="sampler",
            id="annealed-langevin",
            display_name="Annealed Langevin (NCSN)",
            description="Algorithm 1 of Song & Ermon 2019: Langevin steps at decreasing noise "
                        "levels.",
            factory="diffstudio.engine.samplers.annealed_langevin:annealed_langevin_sample",
            params=(
                Param("steps_per_level", "int", 100, minimum=1, maximum=100000,
                      help="Langevin steps T at each level"),
                Param("step_lr", "float", 2e-5, minimum=1e-12, maximum=10.0,
                      help="eps: the step at level i is eps sigma_i^2 / sigma_L^2"),
                Param("levels", "int", 0, minimum=0, maximum=10000,
                      help="noise levels L (0 = the model's own, or 10)"),
                Param("sigma_max", "float", 0.0, minimum=0.0, maximum=1e5,
                      help="largest level (0 = the model's)"),
                Param("sigma_min", "float", 0.0, minimum=0.0, maximum=1e5,
                      help="smallest level (0 = the model's)"),
                _INIT,
                _INIT_RANGE,
                Param("denoise", "bool", False, help="end with one denoising (Tweedie) step"),
            ),
        ),
        Contribution(
            kind="sampler",
            id="langevin",
            display_name="Langevin (plain)",
            description="Unadjusted Langevin dynamics at one noise level (Song & Ermon 2019, "
                        "eq. 4), for contrast.",
            factory="diffstudio.engine.samplers.langevin:langevin_sample",
            params=(
                Param("steps", "int", 1000, minimum=1, maximum=1000000, help="Langevin steps"),
                Param("step_size", "float", 2e-5, minimum=1e-12, maximum=10.0, help="eps"),
                Param("sigma", "float", 0.0, minimum=0.0, maximum=1e5,
                      help="noise level of the score (0 = the model's smallest)"),
                Param("init", "choice", "uniform", choices=("uniform", "prior", "given"),
                      help="start from uniform noise, the prior, or the given noise"),
                _INIT_RANGE,
            ),
        ),
        Contribution(
            kind="sampler",
            id="reverse-sde",
            display_name="Reverse SDE (Euler-Maruyama)",
            description="Euler-Maruyama on the reverse-time SDE (Song et al. 2021, eq. 6).",
            factory="diffstudio.engine.samplers.reverse_sde:reverse_sde_sample",
            params=(_SDE_STEPS, _T_MIN, _DENOISE),
        ),
        Contribution(
            kind="sampler",
            id="predictor-corrector",
            display_name="Predictor-corrector",
            description="Reverse-diffusion or Euler-Maruyama predictor with a Langevin corrector "
                        "(Song et al. 2021).",
            factory="diffstudio.engine.samplers.predictor_corrector:predictor_corrector_sample",
            params=(
                _SDE_STEPS,
                Param("predictor", "choice", "reverse-diffusion",
                      choices=("reverse-diffusion", "euler-maruyama"), help="predictor step"),
                Param("corrector_steps", "int", 1, minimum=0, maximum=100,
                      help="Langevin corrector steps per predictor step"),
                Param("snr", "float", 0.16, minimum=0.0, maximum=10.0,
                      help="corrector signal-to-noise ratio"),
                _T_MIN,
                _DENOISE,
            ),
        ),
        Contribution(
            kind="sampler",
            id="probability-flow",
            display_name="Probability-flow ODE",
            description="The deterministic ODE with the SDE's marginals: fixed-step Heun or "
                        "adaptive RK45.",
            factory="diffstudio.engine.samplers.probability_flow:probability_flow_sample",
            params=(
                Param("method", "choice", "heun", choices=("heun", "rk45"), help="ODE solver"),
                Param("steps", "int", 100, minimum=1, maximum=100000,
                      help="Heun steps (2 network evaluations each; rk45 adapts instead)"),
                Param("rtol", "float", 1e-5, minimum=1e-10, maximum=1.0, help="rk45 tolerance"),
                Param("atol", "float", 1e-5, minimum=1e-10, maximum=1.0, help="rk45 tolerance"),
                _T_MIN,
                _DENOISE,
            ),
        ),
        # Fast ODE solvers on diffusers' schedulers (dpm_solver.py, unipc.py).
        Contribution(
            kind="sampler",
            id="dpm-solver-pp",
            display_name="DPM-Solver++ (2M)",
            description="Lu et al. 2022: multistep solver of the diffusion ODE in x_0, one "
                        "network call per step; good samples at 10-25 steps.",
            factory="diffstudio.engine.samplers.dpm_solver:dpm_solver_sample",
            params=(
                Param("steps", "int", 20, minimum=1, maximum=1000,
                      help="network evaluations (good samples at 10-25)"),
                Param("order", "choice", 2, choices=(1, 2, 3),
                      help="1 = DDIM, 2 = DPM-Solver++(2M), 3 = 3M"),
                Param("spacing", "choice", "linspace", choices=("linspace", "leading", "trailing"),
                      help="timesteps visited, as diffusers' timestep_spacing (linspace starts "
                           "at T-1)"),
                _CLIP,
                Param("lower_order_final", "bool", True,
                      help="first-order final steps below 15 steps, for stability"),
            ),
        ),
        Contribution(
            kind="sampler",
            id="unipc",
            display_name="UniPC (bh2)",
            description="Zhao et al. 2023: multistep predictor with a free corrector, one "
                        "network call per step; good samples at 10-25 steps.",
            factory="diffstudio.engine.samplers.unipc:unipc_sample",
            params=(
                Param("steps", "int", 20, minimum=1, maximum=1000,
                      help="network evaluations (good samples at 10-25)"),
                Param("order", "choice", 2, choices=(1, 2, 3),
                      help="order of the predictor (the corrector adds one)"),
                Param("spacing", "choice", "linspace", choices=("linspace", "leading", "trailing"),
                      help="timesteps visited, as diffusers' timestep_spacing (linspace starts "
                           "at T-1)"),
                _CLIP,
                Param("lower_order_final", "bool", True,
                      help="lower the order over the last steps, for stability"),
            ),
        ),
    ]
