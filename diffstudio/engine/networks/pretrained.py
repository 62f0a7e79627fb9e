"""Pretrained diffusers ``UNet2DModel`` checkpoints with their noise schedule (the seed's cases:
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
* **VE SDE** (``ScoreSdeVeScheduler``, the NCSN++ models of Song et al. 2021): the U-Net is
  loaded and the config returned, but ``model`` is None: these networks take the noise level
  sigma (not an integer timestep) as input, return the score grad_x log p_sigma(x) (diffusers
  divides the raw output by sigma), and model data in [0, 1]. They need the VE-SDE samplers
  (predictor-corrector with ``snr`` and ``correct_steps`` from the config, sigma from
  ``sigma_max`` down to ``sigma_min``); :meth:`PretrainedModel.require_model` says so.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.runs import file_sha256
from diffstudio.engine.schedules import NoiseSchedule
from diffstudio.errors import ConfigError, RunError

__all__ = ["PretrainedModel", "build_pretrained_network", "load_pretrained"]

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
PICKLE_WEIGHTS_NAME = "diffusion_pytorch_model.bin"
VE_SDE_SCHEDULERS = ("ScoreSdeVeScheduler",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass
class PretrainedModel:
    """A pretrained U-Net, its schedule and where it came from.

    model: the ready :class:`DiffusionModel` (discrete VP family) or None (VE SDE; see
    :meth:`require_model`). network: the ``UNet2DModel`` (eval mode, float32, on ``device``).
    sample_shape: (C, H, W) from the U-Net config. family: ``"vp-discrete"`` or ``"ve-sde"``.
    scheduler_class / scheduler_config: as read (for a VE SDE: sigma_min, sigma_max,
    num_train_timesteps, snr, sampling_eps, correct_steps). weights_sha256: of the safetensors
    file. folder: the U-Net folder. data_range: (low, high) of the modelled data.
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

    def require_model(self) -> DiffusionModel:
        """The :class:`DiffusionModel`, or a :class:`ConfigError` saying what it needs instead."""
        if self.model is not None:
            return self.model
        config = self.scheduler_config
        raise ConfigError(
            f"{self.source} is a score-SDE model ({self.scheduler_class}: VE SDE, sigma "
            f"{config.get('sigma_max')} down to {config.get('sigma_min')}, "
            f"{config.get('num_train_timesteps')} steps, snr {config.get('snr')}); its network "
            "takes the noise level sigma and returns the score, so it cannot be sampled with "
            "DDPM/DDIM/DPM-Solver timesteps. Sample it with a VE-SDE sampler "
            "(predictor-corrector or the probability-flow ODE)"
        )


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
        import diffusers

        defaults = dict(getattr(diffusers, scheduler_class).from_config(scheduler_config).config)
        config = {k: v for k, v in defaults.items() if not k.startswith("_")}
        notes.append(
            "VE-SDE model: network(x, sigma) returns the score grad log p_sigma(x); data in "
            "[0, 1]; sample it with the VE-SDE samplers"
        )
        return PretrainedModel(
            family="ve-sde", scheduler_config=config, model=None, prediction_type=None,
            variance_type=None, data_range=(0.0, 1.0), **common,
        )

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
