"""Pretrained diffusers models: both folder layouts, a cached hub id, DDIM through the loaded
schedule against diffusers' DDIM loop, the pickle refusal, VE-SDE (NCSN++) models in the
[-1, 1] frame against diffusers' predictor-corrector steps and from the command line, and the
offline message for a hub id that is not here."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    ScoreSdeVeScheduler,
    UNet2DModel,
)

from diffstudio.engine.io import file_sha256
from diffstudio.engine.model import DiffusionModel
from diffstudio.engine.networks.pretrained import (
    PretrainedModel,
    VEScoreUNet,
    build_pretrained_network,
    load_pretrained,
)
from diffstudio.engine.samplers.ddim import ddim_sample
from diffstudio.engine.samplers.predictor_corrector import predictor_corrector_sample
from diffstudio.engine.schedules.ve_sde import VESDE
from diffstudio.errors import ConfigError, DiffstudioError, RunError


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: faster for these small networks on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(loaded):
    """The DiffusionModel of a loaded pretrained model (every test folder has one)."""
    assert loaded.model is not None, f"{loaded.source}: no sampleable model"
    return loaded.model


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
    model = _model(loaded)
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
    model = _model(loaded)
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
    model = _model(loaded)
    assert model.prediction_type == "v_prediction" and model.x0_clip == 2.0
    assert loaded.variance_type == "fixed_large" and loaded.data_range == (-2.0, 2.0)
    assert torch.equal(model.schedule.betas, scheduler.betas.double())  # diffusers' own


def test_no_scheduler_config_means_ddpm_defaults(tmp_path) -> None:
    _tiny_unet().save_pretrained(tmp_path)
    loaded = load_pretrained(str(tmp_path))
    assert _model(loaded).num_timesteps == 1000
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


VE_CONFIG = dict(num_train_timesteps=100, sigma_min=0.02, sigma_max=50.0, snr=0.12,
                 sampling_eps=1e-3, correct_steps=1)


def _ve_unet() -> UNet2DModel:
    """A tiny NCSN++-style U-Net: Fourier noise-level embedding and the skip blocks of
    google/ncsnpp-celebahq-256 (its output is divided by sigma: a score)."""
    return _tiny_unet(
        in_channels=3, out_channels=3, time_embedding_type="fourier", block_out_channels=(32, 32),
        down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
        up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"), attention_head_dim=8,
        mid_block_scale_factor=2**0.5, norm_eps=1e-6,
    )


def _save_ve(folder: Path, **overrides) -> Path:
    """A ScoreSdeVePipeline folder with the tiny U-Net."""
    _ve_unet().save_pretrained(folder / "unet")
    ScoreSdeVeScheduler(**{**VE_CONFIG, **overrides}).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "ScoreSdeVePipeline", "unet": ["diffusers", "UNet2DModel"],
        "scheduler": ["diffusers", "ScoreSdeVeScheduler"],
    }))
    return folder


@pytest.fixture(scope="module")
def ve_folder(tmp_path_factory) -> Path:
    return _save_ve(tmp_path_factory.mktemp("ve") / "ncsnpp")


def _sigma_x(t: float) -> float:
    """The checkpoint's noise level sigma_min (sigma_max / sigma_min)^t, [0, 1] frame."""
    low, high = VE_CONFIG["sigma_min"], VE_CONFIG["sigma_max"]
    return low * math.exp(t * math.log(high / low))


def test_ve_sde_model_is_a_score_model_in_the_minus_one_one_frame(ve_folder) -> None:
    loaded = load_pretrained(str(ve_folder))
    assert loaded.family == "ve-sde" and loaded.data_range == (0.0, 1.0)
    assert loaded.scheduler_config["sigma_max"] == 50.0 and loaded.scheduler_config["snr"] == 0.12
    assert loaded.sampler_defaults == {"predictor-corrector": {"snr": 0.12, "corrector_steps": 1}}
    assert isinstance(loaded.network, UNet2DModel) and not loaded.network.training
    model = _model(loaded)
    assert model is loaded.model and isinstance(model.network, VEScoreUNet)
    assert model.network.unet is loaded.network
    assert model.prediction_type == "score" == loaded.prediction_type and model.x0_clip == 1.0
    process = model.process
    assert isinstance(process, VESDE)
    # y = 2x - 1: y_t = y_0 + 2 sigma_x z, so both noise levels double.
    assert (process.sigma_min, process.sigma_max) == (0.04, 100.0)
    assert process.num_scales == 100 and model.num_timesteps == 100
    assert process.t_min == 1e-3  # sampling_eps: where the SDE samplers stop
    assert any("predictor-corrector" in note for note in loaded.notes)


@pytest.mark.parametrize("t", [1.0, 0.37, 1e-3])
def test_ve_sde_score_is_half_the_network_score(ve_folder, t) -> None:
    """grad_y log p_t(y) = 1/2 grad_x log p_t(x) at x = (y + 1)/2 and the checkpoint's sigma(t)."""
    loaded = load_pretrained(str(ve_folder))
    model = _model(loaded)
    y = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 * _sigma_x(t)
    sigma = torch.full((2,), _sigma_x(t))
    with torch.no_grad():
        score, x0 = model.score(y, t)
        expected = 0.5 * loaded.network((y + 1) / 2, sigma).sample
    torch.testing.assert_close(score, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))
    # Tweedie in the y frame: x0 = y + s^2 score with s = 2 sigma_x.
    s = 2 * _sigma_x(t)
    torch.testing.assert_close(x0, y + s * s * expected, rtol=1e-5, atol=1e-5 * s)
    assert model.network_evaluations == 1


class _ForgotTheFactorTwo(VEScoreUNet):
    """The frame mapping done wrong: sigma_x = s instead of s / 2."""

    def forward(self, y, labels, class_labels=None, marginal=None):
        m, s = marginal
        return super().forward(y, labels, class_labels, marginal=(m, 2 * s)) / 2


def _diffusers_pc(unet, scheduler, x, times, noises, monkeypatch) -> torch.Tensor:
    """ScoreSdeVePipeline's loop (step_correct, then step_pred) on the given time grid."""
    import diffusers.schedulers.scheduling_sde_ve as sde_ve

    queue = iter(noises)
    monkeypatch.setattr(sde_ve, "randn_tensor", lambda shape, **kwargs: next(queue))
    steps = len(times) - 1
    # step_pred reads sigma(t_j) from discrete_sigmas[int(t_j * steps)] and the next level
    # from the index below: put sigma(times) there, smallest first.
    scheduler.timesteps = torch.tensor(times, dtype=torch.float64)
    sigmas = torch.tensor([_sigma_x(t) for t in times], dtype=torch.float64)
    scheduler.discrete_sigmas = sigmas.flip(0)
    indices = (torch.tensor(times[:-1]) * torch.ones(1) * steps).long()  # as step_pred does
    assert indices.tolist() == list(range(steps, 0, -1))
    with torch.no_grad():
        for index, t in enumerate(times[:-1]):
            sigma = sigmas[index] * torch.ones(x.shape[0], dtype=torch.float64)
            for _ in range(scheduler.config.correct_steps):
                x = scheduler.step_correct(unet(x, sigma).sample, x).prev_sample
            output = scheduler.step_pred(unet(x, sigma).sample, t, x)
            x, mean = output.prev_sample, output.prev_sample_mean
    return mean


def test_predictor_corrector_matches_diffusers_score_sde_ve_loop_in_float64(
    ve_folder, monkeypatch
) -> None:
    """Our predictor-corrector sampler in the y frame against diffusers' ScoreSdeVeScheduler
    steps (step_correct, step_pred: the ScoreSdeVePipeline loop) in the x frame, float64.

    The two loops draw their noise differently, so both are fed the same noise tensors (the
    sampler's ``randn_like_per_sample`` and diffusers' ``randn_tensor`` monkeypatched to read
    one list). Their time grids differ too (diffusers evaluates the network on
    linspace(1, eps, N) but takes its predictor steps between levels of a separate grid), so
    diffusers' loop is given our grid:
    ``timesteps`` and ``discrete_sigmas`` set to linspace(1, t_min, steps + 1) and its sigmas;
    its formulas are untouched. diffusers starts at x = (y + 1) / 2 for our start y (its own
    start sigma_max z is centred at 0 instead of 1/2, a shift far below sigma_max). With the
    same noise the two runs are images of each other under y = 2x - 1 up to rounding (diffusers
    rounds the corrector step size to float32). Forgetting the factor 2 of the frame change
    breaks the match, which the test checks too.
    """
    from diffstudio.engine.samplers import predictor_corrector as pc

    loaded = load_pretrained(str(ve_folder))
    model = _model(loaded)
    loaded.network.double()
    steps, batch = 3, 2
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(batch, 3, 8, 8, generator=generator, dtype=torch.float64)
    noises = [torch.randn(batch, 3, 8, 8, generator=generator, dtype=torch.float64)
              for _ in range(2 * steps)]  # corrector, predictor for each step

    def ours(network) -> torch.Tensor:
        queue = iter(noises)
        monkeypatch.setattr(pc, "randn_like_per_sample", lambda like, generator: next(queue))
        sampler_model = DiffusionModel(network, model.process, prediction_type="score")
        return predictor_corrector_sample(
            sampler_model, z, generator=None, callback=None, should_stop=None, steps=steps,
            corrector_steps=1, snr=loaded.scheduler_config["snr"], denoise=False,
        )

    y = ours(model.network)  # t_min = 0: the process's own, sampling_eps
    times = torch.linspace(1.0, model.process.t_min, steps + 1, dtype=torch.float64).tolist()
    y_start = z * model.process.prior_std
    scheduler = ScoreSdeVeScheduler.from_pretrained(ve_folder / "scheduler")
    x = _diffusers_pc(loaded.network, scheduler, (y_start + 1) / 2, times, noises, monkeypatch)
    scale = float(y.abs().max())
    error = float((y - (2 * x - 1)).abs().max()) / scale
    print(f"VE predictor-corrector float64 vs diffusers: {error:.3e} (relative to {scale:.3g})")
    assert error < 1e-6
    wrong = ours(_ForgotTheFactorTwo(loaded.network))
    wrong_error = float((wrong - (2 * x - 1)).abs().max()) / scale
    print(f"with sigma_x = s (no factor 1/2): {wrong_error:.3e}")
    assert wrong_error > 1e-3


def test_sample_a_ve_sde_folder_from_the_command_line(ve_folder, tmp_path) -> None:
    from diffstudio.cli import main
    from diffstudio.engine.pngmeta import read_png_metadata

    out = tmp_path / "samples"
    assert main(["sample", "--pretrained", str(ve_folder), "--sampler", "predictor-corrector",
                 "--num", "2", "--steps", "3", "--out", str(out), "--device", "cpu",
                 "--quiet"]) == 0
    pngs = sorted(out.glob("sample-*.png"))
    assert len(pngs) == 2
    samples = np.load(out / "samples.npz")["samples"]
    assert samples.shape == (2, 3, 8, 8) and np.isfinite(samples).all()
    meta = read_png_metadata(pngs[0])
    assert meta["scheduler"] == "ScoreSdeVeScheduler" and meta["sampler"] == "predictor-corrector"
    # The config's snr and corrector steps; 3 steps x (1 corrector + 1 predictor) + denoising.
    assert meta["sampler_params"]["snr"] == 0.12 and meta["sampler_params"]["corrector_steps"] == 1
    assert meta["network_evaluations"] == 7
    # A value on the command line wins over the config's.
    assert main(["sample", "--pretrained", str(ve_folder), "--sampler", "predictor-corrector",
                 "--num", "1", "--steps", "2", "--snr", "0.2", "--out", str(tmp_path / "b"),
                 "--device", "cpu", "--quiet"]) == 0
    assert read_png_metadata(tmp_path / "b" / "sample-000000.png")["sampler_params"]["snr"] == 0.2


@pytest.mark.parametrize("sampler", ["reverse-sde", "probability-flow", "ddim"])
def test_other_samplers_run_on_a_ve_sde_model(ve_folder, sampler) -> None:
    from diffstudio.engine.sampling import generate

    model = _model(load_pretrained(str(ve_folder)))
    result = generate(model, sampler, {"steps": 3}, sample_shape=(3, 8, 8), num_samples=2)
    assert result.samples.shape == (2, 3, 8, 8) and torch.isfinite(result.samples).all()


def test_ve_sde_config_errors_name_the_fix(tmp_path) -> None:
    folder = _save_ve(tmp_path / "bad")
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "sigma_min": 60.0}))
    with pytest.raises(ConfigError, match=r"unusable VE SDE .*sigma_min < sigma_max"):
        load_pretrained(str(folder))
    config_path.write_text(json.dumps({**config, "sampling_eps": 1.5}))
    with pytest.raises(ConfigError, match=r"sampling_eps 1.5 .* must be in \[0, 1\)"):
        load_pretrained(str(folder))
    with pytest.raises(ConfigError, match="marginal"):  # the wrapper alone has no sigma
        VEScoreUNet(_ve_unet())(torch.zeros(1, 3, 8, 8), torch.zeros(1))


def test_a_pretrained_folder_without_a_model_says_so(saved, monkeypatch) -> None:
    """What the sample jobs are told when a scheduler family cannot be sampled."""
    import diffstudio.engine.networks.pretrained as pretrained
    from diffstudio.app.sources import ModelSource, load_source

    loaded = load_pretrained(str(saved["bare"]))
    loaded.model = None
    monkeypatch.setattr(pretrained, "load_pretrained", lambda *a, **k: loaded)
    with pytest.raises(ConfigError, match="no sampleable model"):
        load_source(ModelSource(pretrained=str(saved["bare"])), device="cpu")


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


def test_the_network_plugin_finds_a_pipelines_unet_as_the_cli_passes_it(saved) -> None:
    """`--network pretrained --network.source PIPELINE_DIR`: the form's subfolder default is the
    empty string, which must mean "look for unet/", not "the pipeline folder itself"."""
    from diffstudio.engine.components import build_network
    from diffstudio.plugin_manager import load_plugins

    registry = load_plugins()
    values = registry.get("network", "pretrained").validate({"source": str(saved["pipeline"])})
    network = build_network(registry, "pretrained", values, (1, 8, 8), None)
    assert isinstance(network, UNet2DModel)
