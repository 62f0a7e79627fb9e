"""packaging/install.sh picks the PyTorch build from what nvidia-smi reports (stand-in
nvidia-smi commands on PATH play the machines), says which, and refuses a build it does not
know. The full install from a wheel is in tests/test_packaging.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SH = ROOT / "packaging" / "install.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or os.name == "nt",
                                reason="install.sh is for Linux and macOS")

GPU_LIST = "GPU 0: NVIDIA H200 (UUID: GPU-0b7e)"


def _fake_nvidia_smi(folder: Path, gpus: str, cuda: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    header = (f"| NVIDIA-SMI 560.35.03    Driver Version: 560.35.03    CUDA Version: {cuda}  |"
              if cuda else "| NVIDIA-SMI has failed because it couldn't communicate |")
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        f"if [ \"$1\" = \"-L\" ]; then printf '%s' '{gpus}'; [ -n '{gpus}' ]; exit $?; fi\n"
        f"echo '{header}'\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return folder


def _print_torch(tmp_path: Path, gpus: str, cuda: str | None, *args: str,
                 **env: str) -> subprocess.CompletedProcess[str]:
    fake = _fake_nvidia_smi(tmp_path / "bin", gpus, cuda)
    environment = {key: value for key, value in os.environ.items() if key != "DIFFSTUDIO_TORCH"}
    environment.update(env, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(["bash", str(INSTALL_SH), "--print-torch", "--python", sys.executable,
                           *args], capture_output=True, text=True, env=environment, timeout=60)


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS always takes PyPI's build (MPS)")
@pytest.mark.parametrize(("cuda", "build"), [
    ("13.0", "cu130"), ("12.9", "cu128"), ("12.6", "cu126"), ("12.4", "cu118"),
])
def test_a_gpu_gets_the_newest_cuda_build_its_driver_runs(tmp_path, cuda, build):
    result = _print_torch(tmp_path, GPU_LIST, cuda)
    assert result.returncode == 0, result.stderr
    assert f"PyTorch build: {build} (nvidia-smi found GPU 0: NVIDIA H200)" in result.stdout
    assert f"index: https://download.pytorch.org/whl/{build}" in result.stdout
    assert "to change it: install.sh --torch cpu|" in result.stdout


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS always takes PyPI's build (MPS)")
def test_no_gpu_or_an_old_driver_gets_the_cpu_build_and_says_why(tmp_path):
    none = _print_torch(tmp_path / "none", "", None)
    assert "PyTorch build: cpu (no NVIDIA GPU found" in none.stdout
    assert "index: https://download.pytorch.org/whl/cpu" in none.stdout
    old = _print_torch(tmp_path / "old", GPU_LIST, "11.4")
    assert "PyTorch build: cpu (nvidia-smi found a GPU, but its driver is older" in old.stdout


def test_the_choice_can_be_changed_and_a_wrong_one_is_refused(tmp_path):
    chosen = _print_torch(tmp_path / "a", GPU_LIST, "12.6", "--torch", "cpu")
    assert "PyTorch build: cpu (chosen with --torch" in chosen.stdout
    by_env = _print_torch(tmp_path / "b", "", None, DIFFSTUDIO_TORCH="default")
    assert "PyTorch build: default" in by_env.stdout and "index: PyPI" in by_env.stdout
    wrong = _print_torch(tmp_path / "c", "", None, "--torch", "cu999")
    assert wrong.returncode == 2
    assert "--torch must be cpu, cu118, cu126, cu128, cu130 or default, not 'cu999'" in \
        wrong.stderr


def test_the_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    result = subprocess.run(["shellcheck", str(INSTALL_SH)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout
