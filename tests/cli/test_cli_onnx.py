"""``diffstudio onnx export|verify|info`` and ``diffstudio sample --backend onnx`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from diffstudio.cli import main
from diffstudio.engine.pngmeta import read_png_metadata

TRAIN = ["--dataset", "digits", "--steps", "2", "--batch-size", "4", "--num-timesteps", "50",
         "--warmup-steps", "1", "--checkpoint-every", "2", "--preview-every", "0",
         "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli-onnx") / "run"
    assert main(["train", "--out", str(run), *TRAIN]) == 0
    assert main(["onnx", "export", str(run), "--quiet"]) == 0
    return run, run / "onnx" / "step-00000002.onnx"


def test_export_then_verify(exported, capsys):
    run, path = exported
    assert path.is_file() and path.with_name(path.name + ".json").is_file()
    assert main(["onnx", "verify", str(path), str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "passed; opset 18, inputs sample float['batch', 1, 8, 8]" in out
    assert "dynamic batch: yes" in out


def test_sample_on_onnxruntime_records_backend_and_provider(exported, tmp_path, capsys):
    run, path = exported
    noise = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    arrays = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / backend
        assert main(["sample", str(run), "--backend", backend, "--sampler", "dpm-solver-pp",
                     "--steps", "6", "--init-noise", str(tmp_path / "noise.npy"), "--out",
                     str(out), "--device", "cpu", "--quiet"]) == 0
        arrays[backend] = np.load(out / "samples.npz")["samples"]
    assert np.abs(arrays["torch"] - arrays["onnx"]).max() <= 1e-4
    onnx_meta = read_png_metadata(tmp_path / "onnx" / "sample-000000.png")
    torch_meta = read_png_metadata(tmp_path / "torch" / "sample-000000.png")
    assert onnx_meta["backend"] == "onnx" and onnx_meta["onnx_provider"] == "CPUExecutionProvider"
    assert onnx_meta["onnx_file"] == str(path.resolve())
    assert torch_meta["backend"] == "torch-cpu" and "onnx_provider" not in torch_meta
    # The same weights made both: the network hash is the run's, on either backend.
    assert onnx_meta["network_sha256"] == torch_meta["network_sha256"]
    capsys.readouterr()


def test_info_names_the_installed_package(capsys):
    assert main(["onnx", "info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("onnxruntime ") and "CPUExecutionProvider" in out


@pytest.mark.parametrize("argv, message", [
    (["sample", "{run}", "--backend", "onnx", "--no-ema", "--num", "1"],
     "no ONNX file {run_resolved}/onnx/step-00000002-raw.onnx; export it first with "
     "'diffstudio onnx export {run_resolved} --no-ema'"),
    (["sample", "--pretrained", "google/ddpm-cifar10-32", "--backend", "onnx"],
     "the onnx backend samples a run's exported network"),
    (["sample", "{run}", "--onnx", "{file}"], "add --backend onnx"),
    (["onnx", "export", "{run}", "--opset", "21"], "opset 21 is outside 17..20"),
    (["onnx", "export", "{run}"], "already exists; pass --overwrite"),
    (["onnx", "verify", "{run}/missing.onnx", "{run}"], "does not exist; export one"),
])
def test_bad_input_is_one_line_and_exit_2(exported, capsys, argv, message):
    run, path = exported
    values = {"run": str(run), "file": str(path), "run_resolved": str(run.resolve())}
    code = main([token.format(**values) for token in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message.format(**values) in err, err


def test_verify_against_another_run_says_stale(exported, tmp_path, capsys):
    _, path = exported
    other = tmp_path / "other"
    assert main(["train", "--out", str(other), *TRAIN, "--seed", "1"]) == 0
    assert main(["onnx", "verify", str(path), str(other), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is stale: it was exported from weights" in err
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    assert meta["weights_sha256"][:12] in err
