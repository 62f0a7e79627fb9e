"""ONNX export and the onnxruntime backend (issue 12): real exports of tiny trained runs, real
onnxruntime sessions, samplers on both backends from the same noise."""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from diffstudio.engine import onnx_export, onnx_network  # noqa: E402
from diffstudio.engine.onnx_export import check_graph, export_run, verify_file  # noqa: E402
from diffstudio.engine.onnx_network import (  # noqa: E402
    OnnxNetwork,
    detect_onnxruntime,
    load_onnx_model,
    metadata_path,
)
from diffstudio.engine.sampling import generate, load_model  # noqa: E402
from diffstudio.errors import OnnxError  # noqa: E402
from diffstudio.plugin_manager import load_plugins  # noqa: E402


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train(folder: Path, registry: Any, **overrides: Any) -> Path:
    from diffstudio.engine.training import TrainConfig, Trainer

    # The linear schedule: the backends' float32 rounding (~1e-6 per network call) is what
    # these tests bound; the cosine default's alpha-bar ends at 2.4e-7 at T = 100 (linear:
    # 0.36), and x_0's prediction there divides by its square root, so the rounding grows.
    settings = {"schedule": "linear", "steps": 2, "batch_size": 4, "num_timesteps": 100,
                "log_every": 1,
                "checkpoint_every": 2, "warmup_steps": 1, "preview_every": 0, "device": "cpu",
                **overrides}
    with _one_thread():
        Trainer(TrainConfig(**settings), folder, registry=registry).train()
    return folder


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


@pytest.fixture(scope="module")
def digits(tmp_path_factory, registry) -> tuple[Path, Path, dict[str, Any]]:
    """The default digits preset, exported with the default (dynamo) exporter."""
    run = _train(tmp_path_factory.mktemp("onnx") / "digits", registry)
    with _one_thread():
        path, meta = export_run(run, registry=registry)
    return run, path, meta


@pytest.fixture(scope="module")
def conditional(tmp_path_factory, registry) -> tuple[Path, Path, dict[str, Any]]:
    run = _train(tmp_path_factory.mktemp("onnx") / "conditional", registry,
                 network_params={"class_conditional": True})
    with _one_thread():
        path, meta = export_run(run, registry=registry)
    return run, path, meta


def test_digits_export_is_verified_and_described(digits):
    run, path, meta = digits
    assert path == run.resolve() / "onnx" / "step-00000002.onnx" and path.is_file()
    on_disk = json.loads(metadata_path(path).read_text())
    assert on_disk == json.loads(json.dumps(meta))
    assert meta["exporter"] == "dynamo" and meta["opset"] == 18 and meta["notes"] == []
    assert [(i["name"], i["dtype"]) for i in meta["inputs"]] == [("sample", "float"),
                                                                 ("timestep", "float")]
    weights = run / "checkpoints" / "step-00000002" / "network_ema"
    from diffstudio.engine.io import file_sha256

    assert meta["weights_sha256"] == file_sha256(weights / "diffusion_pytorch_model.safetensors")
    assert meta["onnx_sha256"] == file_sha256(path) and meta["created"].endswith("Z")
    verification = meta["verification"]
    assert verification["passed"] and verification["max_abs_error"] <= 1e-4
    assert {(c["timestep"], c["batch"]) for c in verification["cases"]} == {
        (t, b) for t in (0.0, 50.0, 99.0) for b in (1, 4)}
    # No temporary file is left beside the export.
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".json"]


def test_graph_has_a_dynamic_batch_and_no_group_normalization(digits):
    _, path, _ = digits
    report = check_graph(path)
    assert report.dynamic_batch
    assert "GroupNormalization" not in report.ops and "Conv" in report.ops
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 17):
        x = np.random.default_rng(batch).standard_normal((batch, 1, 8, 8)).astype(np.float32)
        out = session.run(None, {"sample": x, "timestep": np.full(batch, 7.0, np.float32)})[0]
        assert out.shape == (batch, 1, 8, 8)


def test_a_graph_with_group_normalization_is_refused(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=1)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 4])],
        [helper.make_tensor("s", TensorProto.FLOAT, [2], [1, 1]),
         helper.make_tensor("b", TensorProto.FLOAT, [2], [0, 0])])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(path))
    with pytest.raises(OnnxError, match=r"GroupNormalization.*--opset 20 or lower"):
        check_graph(path)


def test_opset_21_is_refused_before_any_work(digits, tmp_path, registry):
    run, _, _ = digits
    with pytest.raises(OnnxError, match=r"opset 21 is outside 17\.\.20"):
        export_run(run, tmp_path / "x.onnx", opset=21, registry=registry)
    assert not (tmp_path / "x.onnx").exists()


def test_float16_keeps_normalisations_and_the_output_layer_in_float32(digits, registry):
    from diffstudio.engine.onnx_export import ExportWrapper

    run, _, _ = digits
    network = load_model(run, device="cpu", registry=registry).model.network.float().eval()
    reference = ExportWrapper(network, conditional=False).eval()
    wrapper = ExportWrapper(copy.deepcopy(network), conditional=False, fp16=True).eval()
    mixed = wrapper.network
    dtypes = {name: module.weight.dtype for name, module in mixed.named_modules()
              if isinstance(module, torch.nn.Conv2d | torch.nn.GroupNorm)}
    norms = [name for name in dtypes if ".module" in name and "norm" in name]
    assert norms and all(dtypes[name] == torch.float32 for name in norms)
    last_conv = [name for name in dtypes if name.endswith("conv_out.module")]
    assert last_conv and dtypes[last_conv[0]] == torch.float32
    assert sum(dtype == torch.float16 for dtype in dtypes.values()) > len(dtypes) // 2
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.full((3,), 50.0)
    with torch.no_grad():
        out = wrapper(x, t)
        assert out.dtype == torch.float32
        assert (out - reference(x, t)).abs().max() < 1e-2


def test_float16_export_verifies_against_the_float32_network(digits, tmp_path, registry):
    run, _, _ = digits
    with _one_thread():
        path, meta = export_run(run, tmp_path / "half.onnx", fp16=True, registry=registry)
    assert meta["fp16"] and meta["verification"]["passed"]
    assert 0 < meta["verification"]["max_abs_error"] <= 1e-3
    weights = {init.data_type for init in onnx.load(str(path)).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in weights and onnx.TensorProto.FLOAT in weights
    verification, _, _ = verify_file(path, run, registry=registry)
    assert verification.passed and verification.tolerance == 1e-3


def test_class_conditional_export_takes_labels(conditional):
    _, path, meta = conditional
    assert [(i["name"], i["dtype"]) for i in meta["inputs"]] == [
        ("sample", "float"), ("timestep", "float"), ("class_labels", "int64")]
    assert meta["num_classes"] == 10 and meta["verification"]["passed"]
    network = OnnxNetwork(path)
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([5, 5])
    differs = (network(x, t, torch.tensor([1, 1])) - network(x, t, torch.tensor([7, 7])))
    assert float(differs.abs().max()) > 0  # the label reaches the graph
    with pytest.raises(OnnxError, match="class-conditional"):
        network(x, t)


@pytest.mark.parametrize("sampler,params", [
    ("ddim", {"steps": 10, "eta": 0.0}),
    ("dpm-solver-pp", {"steps": 8}),
    ("ddpm", {"steps": 6}),  # stochastic: the same per-sample generators on both backends
])
def test_samplers_agree_on_both_backends_from_the_same_noise(digits, registry, sampler, params):
    run, _, _ = digits
    noise = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with _one_thread():
        torch_model = load_model(run, device="cpu", registry=registry).model
        onnx_model, network, _ = load_onnx_model(run, device="cpu", registry=registry)
        results = [generate(model, sampler, params, sample_shape=(1, 8, 8), init_noise=noise,
                            seed=11, batch_size=5, registry=registry)
                   for model in (torch_model, onnx_model)]
    assert network.provider == "CPUExecutionProvider" and network.providers[-1] == network.provider
    difference = float((results[0].samples - results[1].samples).abs().max())
    assert difference <= 1e-4, difference
    assert results[0].network_evaluations == results[1].network_evaluations > 0


def test_guided_sampling_on_the_conditional_export_matches_pytorch(conditional, registry):
    run, _, _ = conditional
    noise = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with _one_thread():
        models = [load_model(run, device="cpu", registry=registry).model,
                  load_onnx_model(run, device="cpu", registry=registry)[0]]
        results = [generate(model, "ddim", {"steps": 6}, sample_shape=(1, 8, 8),
                            init_noise=noise, class_label=3, guidance=2.0, num_classes=10,
                            registry=registry) for model in models]
    assert float((results[0].samples - results[1].samples).abs().max()) <= 1e-4
    assert results[1].network_evaluations == 12  # two per guided step


def test_a_stale_file_is_refused(digits, tmp_path, registry):
    run, path, _ = digits
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    # The run trains on: its weights change under the exported file.
    weights = copy / "checkpoints" / "step-00000002" / "network_ema"
    data = (weights / "diffusion_pytorch_model.safetensors").read_bytes()
    from safetensors.torch import load_file, save_file

    tensors = load_file(weights / "diffusion_pytorch_model.safetensors")
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 0.01
    save_file(tensors, weights / "diffusion_pytorch_model.safetensors")
    assert (weights / "diffusion_pytorch_model.safetensors").read_bytes() != data
    with pytest.raises(OnnxError, match=r"is stale: it was exported from weights .* export "
                                        r"again with 'diffstudio onnx export RUN'"):
        load_onnx_model(copy, path, device="cpu", registry=registry)
    with pytest.raises(OnnxError, match="is stale"):
        verify_file(path, copy, registry=registry)


def test_a_file_from_another_run_or_changed_since_is_refused(digits, conditional, tmp_path,
                                                             registry):
    run, path, _ = digits
    _, other_path, _ = conditional
    with pytest.raises(OnnxError, match="is stale"):
        load_onnx_model(run, other_path, device="cpu", registry=registry)
    changed = tmp_path / "changed.onnx"
    shutil.copy(path, changed)
    shutil.copy(metadata_path(path), metadata_path(changed))
    with open(changed, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(OnnxError, match="not the file its export wrote"):
        load_onnx_model(run, changed, device="cpu", registry=registry)
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(path, lonely)
    with pytest.raises(OnnxError, match=r"lonely.onnx.json is missing"):
        load_onnx_model(run, lonely, device="cpu", registry=registry)
    with pytest.raises(OnnxError, match=r"no ONNX file .*export it first with 'diffstudio onnx "
                                        r"export"):
        load_onnx_model(run, checkpoint=None, ema=False, device="cpu", registry=registry)


def test_wrong_input_shape_or_channels_is_a_clear_error(digits):
    _, path, _ = digits
    network = OnnxNetwork(path)
    with pytest.raises(OnnxError, match=r"takes samples shaped \(B, 1, 8, 8\), got "
                                        r"\(2, 3, 8, 8\)"):
        network(torch.randn(2, 3, 8, 8), torch.tensor([1, 1]))
    with pytest.raises(OnnxError, match="takes samples shaped"):
        network(torch.randn(2, 1, 16, 16), 3)


def test_a_cuda_request_not_granted_falls_back_to_cpu_with_a_note(digits):
    _, path, _ = digits
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: CUDA is granted")
    network = OnnxNetwork(path, device="cuda")
    assert network.provider == "CPUExecutionProvider" and not network.io_binding
    assert any("CUDA provider was asked for but not granted" in note for note in network.notes)
    assert network(torch.randn(1, 1, 8, 8), 0).shape == (1, 1, 8, 8)


def test_torchscript_fallback_with_a_note_and_the_32x32_preset(tmp_path, registry, monkeypatch):
    run = _train(tmp_path / "small32", registry, batch_size=2, steps=2,
                 dataset_params={"size": 32}, network_params={"preset": "small-32"})

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("dynamo cannot trace this network")

    monkeypatch.setitem(onnx_export._EXPORT_FUNCTIONS, "dynamo", broken)
    with _one_thread():
        path, meta = export_run(run, registry=registry)
    assert meta["exporter"] == "torchscript"
    assert "dynamo exporter failed (RuntimeError: dynamo cannot trace" in meta["notes"][0]
    assert meta["sample_shape"] == [1, 32, 32] and meta["verification"]["passed"]
    assert check_graph(path).dynamic_batch
    verification, graph, _ = verify_file(path, run, registry=registry)
    assert verification.passed and verification.max_abs_error <= 1e-4
    assert "GroupNormalization" not in graph.ops


def test_a_failed_verification_writes_nothing(digits, tmp_path, registry, monkeypatch):
    run, _, _ = digits
    original = onnx_export.verify_network

    def worse(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        result.max_abs_error = 0.5
        return result

    monkeypatch.setattr(onnx_export, "verify_network", worse)
    out = tmp_path / "bad.onnx"
    with pytest.raises(OnnxError, match=r"does not match PyTorch.*FAILED; nothing was written"):
        export_run(run, out, exporter="torchscript", registry=registry)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_not_overwritten_without_asking(digits, registry):
    run, path, _ = digits
    before = path.read_bytes()
    with pytest.raises(OnnxError, match="already exists; pass --overwrite"):
        export_run(run, registry=registry)
    assert path.read_bytes() == before


def test_detection_says_when_both_onnxruntime_packages_are_installed(monkeypatch):
    info = detect_onnxruntime()
    assert info.version == ort.__version__ and "CPUExecutionProvider" in info.providers
    assert info.packages  # the installed distribution(s) are named
    versions = {"onnxruntime": "1.20.0", "onnxruntime-gpu": "1.20.0"}

    def version(name: str) -> str:
        if name in versions:
            return versions[name]
        raise onnx_network.distributions.PackageNotFoundError(name)

    monkeypatch.setattr(onnx_network.distributions, "version", version)
    info = detect_onnxruntime()
    assert sorted(info.packages) == ["onnxruntime", "onnxruntime-gpu"]
    assert any("hides the CUDA provider" in note and "pip uninstall -y onnxruntime "
               "onnxruntime-gpu && pip install onnxruntime-gpu" in note for note in info.notes)


#: A few steps of every built-in sampler (the conformance kit's kind of settings).
FEW_STEPS = {
    "ddpm": {"steps": 4}, "ddim": {"steps": 4}, "dpm-solver-pp": {"steps": 4},
    "unipc": {"steps": 4}, "annealed-langevin": {"levels": 2, "steps_per_level": 2},
    "langevin": {"steps": 4}, "reverse-sde": {"steps": 4},
    "predictor-corrector": {"steps": 3, "corrector_steps": 1},
    "probability-flow": {"method": "heun", "steps": 3},
}


def test_every_installed_sampler_runs_unchanged_on_the_onnx_network(digits, registry):
    """Continuous-time samplers call the network at non-integer timesteps: the float32
    timestep input takes them as the PyTorch network does."""
    run, _, _ = digits
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    torch_model = load_model(run, device="cpu", registry=registry).model
    onnx_model = load_onnx_model(run, device="cpu", registry=registry)[0]
    assert set(FEW_STEPS) <= set(registry.ids("sampler"))
    for sampler in registry.ids("sampler"):
        params = FEW_STEPS.get(sampler, {})
        with _one_thread():
            results = [generate(model, sampler, params, sample_shape=(1, 8, 8),
                                init_noise=noise, seed=2, registry=registry)
                       for model in (torch_model, onnx_model)]
        assert results[1].network_evaluations == results[0].network_evaluations > 0, sampler
        difference = float((results[0].samples - results[1].samples).abs().max())
        assert difference <= 1e-3, (sampler, difference)
