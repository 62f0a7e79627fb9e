"""Pretrained diffusers ``UNet2DModel`` checkpoints with their noise schedule (for example
google/ddpm-cifar10-32, google/ddpm-celebahq-256, google/ncsnpp-celebahq-256).

``load_pretrained(source)`` accepts

* a local **pipeline folder** (``model_index.json``, ``unet/``, ``scheduler/``), as written by
  ``DDPMPipeline.save_pretrained`` or ``hf download <id> --local-dir FOLDER``;
* a local **U-Net folder** (``config.json`` + ``diffusion_pytorch_model.safetensors``) with an
  optional ``scheduler_config.json`` beside it (without one, diffusers' default DDPM schedule:
  linear betas 1e-4..0.02 over 1000 steps, as in Ho et al. 2020);
* a **hub id** such as ``google/ddpm-cifar10-32``, looked up in the local Hugging Face cache
  only (``local_files_only=True``: nothing is downloaded unless ``download=True``), so an
  offline machine answers at once with a message naming the folder to use instead.

Weights are read from safetensors only: a ``.bin`` file is a pickle, which can run arbitrary
code when loaded, so a folder that holds only ``.bin`` weights is refused with the command that
converts it.

Two families of scheduler configs:

* **discrete VP** (DDPMScheduler, DDIMScheduler, PNDMScheduler, ...: anything with betas): the
  betas become a :class:`NoiseSchedule` and the result carries a ready :class:`DiffusionModel`
  (its ``prediction_type`` and ``clip_sample_range`` from the config), sampled by DDPM, DDIM,
  DPM-Solver++ or UniPC like a model trained here. Betas: ``trained_betas`` and the "linear"
  schedule are computed in float64 (the formula diffusers uses, without its float32 rounding);
  other ``beta_schedule`` values are taken from the diffusers scheduler class named in the
  config, which computes them (in float32).
* **VE SDE** (``ScoreSdeVeScheduler``, the NCSN++ models of Song et al. 2021): these networks
  take the noise level sigma (not an integer timestep), return the score grad_x log p_sigma(x)
  (diffusers divides the raw output by sigma) and model data x in [0, 1] perturbed as
  x_t = x_0 + sigma(t) z, sigma(t) = sigma_min (sigma_max / sigma_min)^t (the VE SDE, Song et
  al. 2021, arXiv 2011.13456, eq. 9). :class:`VEScoreUNet` presents the network in
  diffstudio's [-1, 1] frame y = 2x - 1, where y_t = y_0 + 2 sigma(t) z: the process is
  ``VESDE(2 sigma_min, 2 sigma_max)`` ending at the config's ``sampling_eps``, with
  ``prediction_type="score"``. The result carries that :class:`DiffusionModel`, sampled by the
  predictor-corrector sampler (the config's ``snr`` and ``correct_steps``, as diffusers'
  ``ScoreSdeVePipeline``), the reverse SDE (eq. 35) or the probability-flow ODE, and by DDIM
  and the other discrete samplers through its VP view.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffstudio.engine.io import file_sha256
from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.runs import WEIGHTS_NAME
from diffstudio.engine.schedules import VESDE, NoiseSchedule
from diffstudio.errors import ConfigError, RunError

__all__ = ["PretrainedModel", "VEScoreUNet", "build_pretrained_network", "load_pretrained"]

PICKLE_WEIGHTS_NAME = "diffusion_pytorch_model.bin"
VE_SDE_SCHEDULERS = ("ScoreSdeVeScheduler",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass
class PretrainedModel:
    """A pretrained U-Net, its schedule and where it came from.

    model: the ready :class:`DiffusionModel`; for a VE SDE it wraps ``network`` in
    :class:`VEScoreUNet` and works in the [-1, 1] frame y = 2x - 1 (its samples are images in
    [-1, 1] like every other model's). network: the ``UNet2DModel`` (eval mode, float32, on
    ``device``). sample_shape: (C, H, W) from the U-Net config. family: ``"vp-discrete"`` or
    ``"ve-sde"``. scheduler_class / scheduler_config: as read (for a VE SDE, completed with
    diffusers' defaults: sigma_min, sigma_max, num_train_timesteps, snr, sampling_eps,
    correct_steps). prediction_type: of ``model``. weights_sha256: of the safetensors file.
    folder: the U-Net folder. data_range: (low, high) of the data the checkpoint models ((0, 1)
    for a VE SDE, before the frame change). sampler_defaults: parameters suggested by the
    scheduler config, by built-in sampler id (for a VE SDE, the predictor-corrector's ``snr``
    and ``corrector_steps``).
    """

    source: str
    folder: Path
    network: torch.nn.Module
    sample_shape: tuple[int, ...]
    weights_sha256: str
    family: str
    scheduler_class: str
    scheduler_config: dict[str, Any]
    model: DiffusionModel | None
    prediction_type: str | None = None
    variance_type: str | None = None
    data_range: tuple[float, float] = (-1.0, 1.0)
    num_class_embeds: int | None = None
    notes: list[str] = field(default_factory=list)
    sampler_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)


class VEScoreUNet(torch.nn.Module):
    """A score-SDE (VE) ``UNet2DModel`` in diffstudio's [-1, 1] frame y = 2x - 1.

    The checkpoint perturbs x in [0, 1] as x_t = x_0 + sigma_x z (Song et al. 2021, eq. 9) and
    ``unet(x_t, sigma_x).sample`` is the score grad_x log p(x_t). In the y frame
    y_t = y_0 + s z with s = 2 sigma_x, and p_y(y) = 2^-d p_x((y + 1) / 2) gives
    grad_y log p = (1/2) grad_x log p. The ``"score"`` prediction type wants
    s * grad_y log p (the target of eq. 36 with lambda = s^2), so::

        output = s * (score_x / 2) = sigma_x * score_x,   sigma_x = s / 2,  x = (y + 1) / 2

    Called by :class:`DiffusionModel` as ``network(y, labels, marginal=(m, s))`` (m = 1 for
    the VE process); ``labels`` are ignored, the noise level comes from s.
    """

    conditions_on_marginal = True

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(
        self,
        y: torch.Tensor,
        labels: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        marginal: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if marginal is None:
            raise ConfigError(
                "a VE-SDE U-Net needs the noise level: call it through its DiffusionModel, "
                "which passes marginal=(m, s)"
            )
        sigma = (marginal[1] / 2).to(device=y.device, dtype=y.dtype)  # sigma_x, (B,)
        score = self.unet((y + 1) / 2, sigma, class_labels=class_labels).sample
        return sigma.view(-1, *([1] * (y.dim() - 1))) * score


# --- locating the files -----------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {path}: {exc}; the download may be incomplete") from exc


def _resolve_hub_id(
    repo_id: str, *, cache_dir: str | Path | None, download: bool, timeout: float
) -> Path:
    """The local snapshot folder of a hub repository: from the cache, or downloaded on request."""
    folder_hint = repo_id.split("/")[-1]
    advice = (
        f"download it on a machine with internet access (hf download {repo_id} --local-dir "
        f"{folder_hint}; with huggingface_hub < 1.0: huggingface-cli download {repo_id} "
        f"--local-dir {folder_hint}), copy the folder here and pass the folder instead of the id"
    )
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - diffusers depends on huggingface_hub
        raise ConfigError(
            f"{repo_id!r} looks like a Hugging Face hub id, but huggingface_hub is not "
            f"installed (pip install huggingface_hub); or {advice}"
        ) from exc
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass  # not cached
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if not download or offline:
        reason = "it is not in the local Hugging Face cache" + (
            " and HF_HUB_OFFLINE is set" if offline else " (diffstudio downloads only if asked)"
        )
        raise RunError(
            f"cannot load the pretrained model {repo_id!r}: {reason}. To use it, {advice}"
        )
    try:
        path = snapshot_download(
            repo_id,
            cache_dir=cache_dir,
            allow_patterns=["*.json", "*.safetensors"],  # never the pickle weights
            etag_timeout=timeout,
        )
    except Exception as exc:  # network errors come in many types; all mean the same here
        raise RunError(
            f"could not download {repo_id!r} ({type(exc).__name__}: {exc}). Check the id and "
            f"the connection, or {advice}"
        ) from exc
    return Path(path)


def _locate(source: str, subfolder: str | None, **hub: Any) -> tuple[Path, Path, Path | None]:
    """(root, U-Net folder, scheduler config file or None) for a folder or a hub id."""
    path = Path(source).expanduser()
    if path.exists():
        root = path
    elif _HUB_ID.match(source) and not source.startswith((".", "~")):
        root = _resolve_hub_id(source, **hub)
    else:
        raise RunError(
            f"pretrained model {source!r} not found: no such folder, and it is not a hub id "
            "like 'google/ddpm-cifar10-32'. Pass a folder holding model_index.json (a "
            "pipeline) or config.json + diffusion_pytorch_model.safetensors (a U-Net)"
        )
    if not root.is_dir():
        raise RunError(f"{root} is a file; pass the folder that holds the model")
    subfolder = (subfolder or "").strip() or None  # the plugin form's empty text: look for unet/
    if subfolder is not None:
        unet = root / subfolder
    elif (root / "model_index.json").exists() and (root / "unet" / "config.json").exists():
        unet = root / "unet"
    else:
        unet = root  # a bare U-Net folder (or a legacy flat pipeline layout)
    if not (unet / "config.json").exists():
        raise RunError(
            f"no U-Net config in {unet} (expected config.json there"
            + (", or a unet/ folder beside model_index.json" if subfolder is None else "")
            + "); is this a diffusers model folder?"
        )
    candidates = [unet / "scheduler_config.json", root / "scheduler" / "scheduler_config.json",
                  root / "scheduler_config.json", unet.parent / "scheduler" /
                  "scheduler_config.json"]
    scheduler = next((c for c in candidates if c.exists()), None)
    return root, unet, scheduler


def _weights_file(unet: Path) -> Path:
    safetensors = unet / WEIGHTS_NAME
    if safetensors.exists():
        return safetensors
    pickle = unet / PICKLE_WEIGHTS_NAME
    if pickle.exists():
        raise RunError(
            f"{unet} holds only {PICKLE_WEIGHTS_NAME}, a Python pickle: loading a pickle can "
            "run arbitrary code, so diffstudio reads safetensors only. If you trust its "
            "source, convert it once (torch's weights_only loader refuses code): python -c "
            f"\"import torch, safetensors.torch as st; st.save_file(torch.load('{pickle}', "
            f"weights_only=True), '{safetensors}')\""
        )
    present = ", ".join(sorted(p.name for p in unet.iterdir())) or "nothing"
    raise RunError(
        f"no weights in {unet}: expected {WEIGHTS_NAME}, found {present}. The download may be "
        "incomplete"
    )


# --- the schedule -----------------------------------------------------------------------------


def _scheduler_config(path: Path | None, notes: list[str]) -> tuple[str, dict[str, Any]]:
    if path is None:
        notes.append(
            "no scheduler config found: using diffusers' DDPMScheduler defaults (linear betas "
            "1e-4..0.02, 1000 steps, epsilon prediction)"
        )
        return "DDPMScheduler", {}
    config = _read_json(path)
    return str(config.get("_class_name", "DDPMScheduler")), config


def _betas(class_name: str, config: dict[str, Any], source: str) -> torch.Tensor:
    """float64 betas of a discrete VP scheduler config (see the module docstring)."""
    import diffusers

    scheduler_class = getattr(diffusers, class_name, None)
    if scheduler_class is None or not hasattr(scheduler_class, "from_config"):
        raise ConfigError(
            f"{source}: unknown scheduler class {class_name!r} in its scheduler config; this "
            f"diffusers ({diffusers.__version__}) has no such scheduler. Upgrade diffusers or "
            "edit _class_name to DDPMScheduler"
        )
    try:
        scheduler = scheduler_class.from_config(config)
    except Exception as exc:
        raise ConfigError(
            f"{source}: diffusers' {class_name} rejects the scheduler config ({exc})"
        ) from exc
    if not hasattr(scheduler, "betas"):
        raise ConfigError(
            f"{source}: scheduler {class_name} has no beta schedule; diffstudio loads discrete "
            f"(betas) schedulers and {', '.join(VE_SDE_SCHEDULERS)}"
        )
    betas = torch.as_tensor(scheduler.betas).to(torch.float64)
    settings = scheduler.config
    steps = int(settings.num_train_timesteps)
    if settings.get("rescale_betas_zero_snr", False):
        return betas  # zero terminal SNR: NoiseSchedule refuses beta = 1 with its own message
    if settings.get("trained_betas") is not None:
        exact = torch.tensor(list(settings.trained_betas), dtype=torch.float64)
    elif settings.get("beta_schedule", "linear") == "linear":
        exact = torch.linspace(
            float(settings.beta_start), float(settings.beta_end), steps, dtype=torch.float64
        )
    else:
        return betas
    if exact.shape != betas.shape or not torch.allclose(exact, betas, rtol=1e-5, atol=1e-9):
        return betas  # the class computes something else: trust diffusers
    return exact


# --- loading ----------------------------------------------------------------------------------


def load_pretrained(
    source: str,
    *,
    device: str | torch.device = "cpu",
    subfolder: str | None = None,
    cache_dir: str | Path | None = None,
    download: bool = False,
    timeout: float = 10.0,
) -> PretrainedModel:
    """Load a diffusers ``UNet2DModel`` and its schedule from a folder or a cached hub id.

    source: a local folder (pipeline or U-Net layout) or a hub id ("google/ddpm-cifar10-32").
    subfolder: the U-Net's folder inside ``source`` (default: ``unet`` when ``source`` is a
    pipeline, else ``source`` itself). cache_dir: the Hugging Face cache to look in (default:
    huggingface_hub's). download: fetch a hub id that is not cached (json and safetensors files
    only; never when HF_HUB_OFFLINE=1), with ``timeout`` seconds for each connection.

    Raises :class:`RunError` (missing, not cached, pickle-only, incomplete) or
    :class:`ConfigError` (a model or scheduler diffstudio cannot use), each saying the fix.
    """
    from diffusers import UNet2DModel

    _, unet_folder, scheduler_path = _locate(
        source, subfolder, cache_dir=cache_dir, download=download, timeout=timeout
    )
    unet_config = _read_json(unet_folder / "config.json")
    class_name = unet_config.get("_class_name", "UNet2DModel")
    if class_name != "UNet2DModel":
        raise ConfigError(
            f"{source}: the network is a {class_name}; diffstudio loads pixel-space "
            "UNet2DModel checkpoints (unconditional or class-conditional). Latent and "
            "text-to-image models (UNet2DConditionModel with a VAE) are not supported"
        )
    weights = _weights_file(unet_folder)
    try:
        network = UNet2DModel.from_pretrained(
            unet_folder, use_safetensors=True, torch_dtype=torch.float32
        )
    except Exception as exc:
        raise RunError(
            f"could not load the U-Net from {unet_folder} ({type(exc).__name__}: {exc})"
        ) from exc
    network = network.to(device).eval()
    size = network.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    sample_shape = (int(network.config.in_channels), int(height), int(width))

    notes: list[str] = []
    scheduler_class, scheduler_config = _scheduler_config(scheduler_path, notes)
    common = dict(
        source=source, folder=unet_folder, network=network, sample_shape=sample_shape,
        weights_sha256=file_sha256(weights), scheduler_class=scheduler_class,
        num_class_embeds=network.config.num_class_embeds, notes=notes,
    )
    if scheduler_class in VE_SDE_SCHEDULERS:
        return _ve_sde(network, scheduler_class, scheduler_config, source, common)

    betas = _betas(scheduler_class, scheduler_config, source)
    try:
        schedule = NoiseSchedule(betas, name=f"pretrained ({scheduler_class})")
    except ConfigError as exc:
        raise ConfigError(
            f"{source}: its scheduler config gives an unusable schedule: {exc}"
        ) from exc
    prediction_type = scheduler_config.get("prediction_type", "epsilon")
    if prediction_type not in ("epsilon", "sample", "v_prediction"):
        raise ConfigError(
            f"{source}: prediction_type {prediction_type!r} in its scheduler config is not one "
            "of 'epsilon', 'sample', 'v_prediction'"
        )
    variance_type = scheduler_config.get("variance_type")
    if variance_type in ("learned", "learned_range"):
        notes.append(
            f"learned variance ({variance_type}): the network's last {sample_shape[0]} "
            "channels are the variance output"
        )
    clip_range = float(scheduler_config.get("clip_sample_range", 1.0))
    model = DiffusionModel(
        network, schedule, prediction_type=prediction_type, x0_clip=clip_range
    )
    return PretrainedModel(
        family="vp-discrete", scheduler_config=scheduler_config, model=model,
        prediction_type=prediction_type, variance_type=variance_type,
        data_range=(-clip_range, clip_range), **common,
    )


def _ve_sde(
    network: torch.nn.Module,
    scheduler_class: str,
    scheduler_config: dict[str, Any],
    source: str,
    common: dict[str, Any],
) -> PretrainedModel:
    """A VE-SDE checkpoint as a :class:`DiffusionModel` in the [-1, 1] frame (see
    :class:`VEScoreUNet`): sigma doubles, t_min is the config's ``sampling_eps``."""
    import diffusers

    try:
        defaults = getattr(diffusers, scheduler_class).from_config(scheduler_config).config
    except Exception as exc:
        raise ConfigError(
            f"{source}: diffusers' {scheduler_class} rejects the scheduler config ({exc})"
        ) from exc
    config = {k: v for k, v in dict(defaults).items() if not k.startswith("_")}
    sampling_eps = float(config["sampling_eps"])
    if not 0.0 <= sampling_eps < 1.0:
        raise ConfigError(
            f"{source}: sampling_eps {sampling_eps} in its scheduler config must be in [0, 1) "
            "(the time the samplers stop at; 1e-5 in Song et al. 2021)"
        )
    try:
        process = VESDE(
            sigma_min=2.0 * float(config["sigma_min"]),
            sigma_max=2.0 * float(config["sigma_max"]),
            num_scales=int(config["num_train_timesteps"]),
        )
    except ConfigError as exc:
        raise ConfigError(
            f"{source}: its scheduler config gives an unusable VE SDE (in the [0, 1] frame): "
            f"{exc}"
        ) from exc
    process.t_min = sampling_eps  # where sde_times ends, as diffusers' set_timesteps
    process.name = f"pretrained ({scheduler_class})"
    model = DiffusionModel(VEScoreUNet(network), process, prediction_type="score", x0_clip=1.0)
    notes: list[str] = common["notes"]
    notes.append(
        f"VE-SDE model (sigma {config['sigma_min']}..{config['sigma_max']} on data in [0, 1], "
        f"trained with {config['num_train_timesteps']} steps): sampled in the [-1, 1] frame "
        "with sigma doubled; use predictor-corrector (snr "
        f"{config['snr']}, {config['correct_steps']} corrector step(s), as the config), "
        "reverse-sde or probability-flow; DDIM also works through the VP view"
    )
    if network.config.time_embedding_type != "fourier":
        notes.append(
            f"the U-Net's time embedding is {network.config.time_embedding_type!r}, not "
            "'fourier': its output is taken as the score, as ScoreSdeVePipeline does"
        )
    return PretrainedModel(
        family="ve-sde", scheduler_config=config, model=model, prediction_type="score",
        variance_type=None, data_range=(0.0, 1.0),
        sampler_defaults={"predictor-corrector": {
            "snr": float(config["snr"]), "corrector_steps": int(config["correct_steps"]),
        }},
        **common,
    )


def build_pretrained_network(
    sample_shape: tuple[int, ...],
    num_classes: int | None = None,
    *,
    source: str = "",
    subfolder: str | None = None,
) -> torch.nn.Module:
    """Network-plugin factory: the pretrained U-Net alone (for example to fine-tune it).

    Follows the network factory convention ``(sample_shape, num_classes, **params)``; the
    dataset's ``sample_shape`` must match the U-Net's. Its schedule is not part of a network:
    to sample the model as it was trained, use :func:`load_pretrained`.
    """
    if not source:
        raise ConfigError(
            "the pretrained network needs source=FOLDER or a hub id such as "
            "google/ddpm-cifar10-32"
        )
    loaded = load_pretrained(source, subfolder=subfolder)
    if tuple(sample_shape) != loaded.sample_shape:
        raise ConfigError(
            f"{source} models images of shape {loaded.sample_shape} but the dataset gives "
            f"{tuple(sample_shape)}; set the dataset's size and channels to match"
        )
    if num_classes is not None and loaded.num_class_embeds not in (None, num_classes + 1):
        raise ConfigError(
            f"{source} has {loaded.num_class_embeds} class embeddings; the dataset has "
            f"{num_classes} classes (+1 'no label' = {num_classes + 1})"
        )
    return loaded.network
