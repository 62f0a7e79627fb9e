"""Pretrained diffusers models: both folder layouts, a cached hub id, DDIM through the loaded
schedule against diffusers' DDIM loop, the pickle refusal, VE-SDE models, and the offline
message for a hub id that is not here."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    ScoreSdeVeScheduler,
    UNet2DModel,
)

from diffstudio.engine.networks.pretrained import (
    PretrainedModel,
    build_pretrained_network,
    load_pretrained,
)
from diffstudio.engine.runs import file_sha256
from diffstudio.engine.samplers.ddim import ddim_sample
from diffstudio.errors import ConfigError, DiffstudioError, RunError


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: faster for these small networks on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_unet(**overrides) -> UNet2DModel:
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    config = dict(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
        layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    )
    config.update(overrides)
    unet = UNet2DModel(**config).eval()
    torch.random.set_rng_state(state)
    return unet


def _scheduler(**overrides) -> DDPMScheduler:
    config = dict(num_train_timesteps=50, beta_schedule="linear", beta_start=1e-4, beta_end=0.2)
    config.update(overrides)
    return DDPMScheduler(**config)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """The same tiny model in both layouts."""
    root = tmp_path_factory.mktemp("pretrained")
    unet, scheduler = _tiny_unet(), _scheduler()
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(root / "pipeline")
    unet.save_pretrained(root / "bare")
    scheduler.save_pretrained(root / "bare")
    return {"pipeline": root / "pipeline", "bare": root / "bare"}


@pytest.mark.parametrize("layout", ["pipeline", "bare"])
def test_loads_both_layouts(saved, layout) -> None:
    loaded = load_pretrained(str(saved[layout]))
    assert isinstance(loaded, PretrainedModel)
    assert loaded.family == "vp-discrete" and loaded.scheduler_class == "DDPMScheduler"
    assert loaded.sample_shape == (1, 8, 8)
    assert loaded.folder == (saved[layout] / "unet" if layout == "pipeline" else saved[layout])
    weights = loaded.folder / "diffusion_pytorch_model.safetensors"
    assert loaded.weights_sha256 == file_sha256(weights)
    model = loaded.require_model()
    assert model.num_timesteps == 50 and model.prediction_type == "epsilon"
    assert model.x0_clip == 1.0 and not loaded.network.training
    # Linear betas in float64, the formula diffusers rounds to float32.
    assert torch.equal(model.schedule.betas, torch.linspace(1e-4, 0.2, 50, dtype=torch.float64))
    reference = DDPMScheduler.from_pretrained(saved["pipeline"] / "scheduler")
    torch.testing.assert_close(model.schedule.betas.float(), reference.betas)
    # The network is the saved one.
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 40])
    with torch.no_grad():
        torch.testing.assert_close(loaded.network(x, t).sample, _tiny_unet()(x, t).sample,
                                   rtol=0, atol=1e-6)


def test_ddim_matches_a_diffusers_ddim_loop_in_float64(saved) -> None:
    loaded = load_pretrained(str(saved["pipeline"]))
    model = loaded.require_model()
    x = torch.randn(3, *loaded.sample_shape, generator=torch.Generator().manual_seed(0))
    out32 = ddim_sample(model, x, generator=None, callback=None, should_stop=None, steps=10)
    assert out32.shape == x.shape and torch.isfinite(out32).all()

    loaded.network.double()  # model.network is the same module
    ours = ddim_sample(model, x.double(), generator=None, callback=None, should_stop=None,
                       steps=10, clip_x0=True)
    # DDIMPipeline's loop, on the scheduler config saved with the pipeline.
    config = json.loads((saved["pipeline"] / "scheduler" / "scheduler_config.json").read_text())
    scheduler = DDIMScheduler.from_config(
        config, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading",
        clip_sample=True,
    )
    scheduler.alphas_cumprod = model.schedule.alpha_bars.clone()  # our float64 alpha_bar
    scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    scheduler.set_timesteps(10)
    theirs = x.double()
    with torch.no_grad():
        for t in scheduler.timesteps:
            output = loaded.network(theirs, t).sample
            theirs = scheduler.step(output, t, theirs, eta=0.0).prev_sample
    error = float((ours - theirs).abs().max())
    print(f"pretrained DDIM float64 vs diffusers: {error:.3e}")
    assert error < 1e-10


def test_scheduler_config_sets_prediction_type_and_betas(tmp_path) -> None:
    unet = _tiny_unet()
    scheduler = _scheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                           clip_sample_range=2.0, variance_type="fixed_large")
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path)
    loaded = load_pretrained(str(tmp_path))
    model = loaded.require_model()
    assert model.prediction_type == "v_prediction" and model.x0_clip == 2.0
    assert loaded.variance_type == "fixed_large" and loaded.data_range == (-2.0, 2.0)
    assert torch.equal(model.schedule.betas, scheduler.betas.double())  # diffusers' own


def test_no_scheduler_config_means_ddpm_defaults(tmp_path) -> None:
    _tiny_unet().save_pretrained(tmp_path)
    loaded = load_pretrained(str(tmp_path))
    assert loaded.require_model().num_timesteps == 1000
    assert any("defaults" in note for note in loaded.notes)


def test_cached_hub_id_loads_without_network(tmp_path, saved, monkeypatch) -> None:
    """A hub id in the local Hugging Face cache (its snapshots/refs layout)."""
    import shutil

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "models--google--tiny-ddpm"
    revision = "0" * 40
    shutil.copytree(saved["pipeline"], repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    loaded = load_pretrained("google/tiny-ddpm", cache_dir=tmp_path)
    assert loaded.source == "google/tiny-ddpm" and loaded.sample_shape == (1, 8, 8)


def test_pickle_weights_are_refused_with_the_conversion(tmp_path) -> None:
    unet = _tiny_unet()
    unet.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "diffusion_pytorch_model.bin").exists()
    with pytest.raises(RunError, match="pickle") as caught:
        load_pretrained(str(tmp_path))
    message = str(caught.value)
    assert "weights_only=True" in message and "safetensors" in message
    # The conversion the message gives works.
    command = message.split('python -c "', 1)[1].rstrip('"')
    exec(command, {})  # the exact one-liner the user is told to run
    loaded = load_pretrained(str(tmp_path))
    x, t = torch.randn(1, 1, 8, 8), torch.tensor([7])
    with torch.no_grad():
        # Same weights; the loaded copy may pick other kernels (last-bit differences).
        assert torch.equal(loaded.network.state_dict()["conv_in.weight"], unet.conv_in.weight)
        torch.testing.assert_close(loaded.network(x, t).sample, unet(x, t).sample,
                                   rtol=0, atol=1e-6)


def test_ve_sde_model_loads_but_needs_the_sde_samplers(tmp_path) -> None:
    unet = _tiny_unet(time_embedding_type="fourier", block_out_channels=(16, 16))
    scheduler = ScoreSdeVeScheduler(num_train_timesteps=100, sigma_max=50.0, snr=0.16)
    unet.save_pretrained(tmp_path / "unet")
    scheduler.save_pretrained(tmp_path / "scheduler")
    (tmp_path / "model_index.json").write_text(json.dumps({
        "_class_name": "ScoreSdeVePipeline", "unet": ["diffusers", "UNet2DModel"],
        "scheduler": ["diffusers", "ScoreSdeVeScheduler"],
    }))
    loaded = load_pretrained(str(tmp_path))
    assert loaded.family == "ve-sde" and loaded.model is None
    assert loaded.scheduler_config["sigma_max"] == 50.0
    assert loaded.scheduler_config["snr"] == 0.16 and loaded.data_range == (0.0, 1.0)
    with pytest.raises(ConfigError, match="VE SDE"):
        loaded.require_model()
    with torch.no_grad():  # the network takes sigma
        out = loaded.network(torch.randn(2, 1, 8, 8), torch.tensor([50.0, 0.5])).sample
    assert torch.isfinite(out).all()


def test_other_network_classes_are_refused(tmp_path) -> None:
    _tiny_unet().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["_class_name"] = "UNet2DConditionModel"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="UNet2DConditionModel"):
        load_pretrained(str(tmp_path))


def test_missing_weights_name_what_is_there(tmp_path) -> None:
    _tiny_unet().save_pretrained(tmp_path)
    (tmp_path / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(RunError, match=r"no weights .* found config\.json"):
        load_pretrained(str(tmp_path))


@pytest.mark.parametrize("download", [False, True])
def test_missing_hub_id_offline_is_one_clear_error(tmp_path, monkeypatch, download) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(DiffstudioError) as caught:
        load_pretrained("google/ddpm-cifar10-32", cache_dir=tmp_path, download=download)
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert "google/ddpm-cifar10-32" in message
    assert "hf download google/ddpm-cifar10-32 --local-dir ddpm-cifar10-32" in message
    assert "pass the folder" in message
    if download:
        assert "HF_HUB_OFFLINE" in message


def test_missing_folder_is_one_clear_error(tmp_path) -> None:
    started = time.perf_counter()
    for source in (str(tmp_path / "nowhere"), "./not/a/model", "not a model"):
        with pytest.raises(RunError, match="not found"):
            load_pretrained(source)
    with pytest.raises(RunError, match="no U-Net config"):
        load_pretrained(str(tmp_path))  # exists, but empty
    assert time.perf_counter() - started < 10



def test_network_factory_checks_the_shape(saved) -> None:
    network = build_pretrained_network((1, 8, 8), None, source=str(saved["bare"]))
    assert isinstance(network, UNet2DModel)
    with pytest.raises(ConfigError, match=r"\(1, 8, 8\) but the dataset gives \(3, 8, 8\)"):
        build_pretrained_network((3, 8, 8), None, source=str(saved["bare"]))
    with pytest.raises(ConfigError, match="source="):
        build_pretrained_network((1, 8, 8), None)
