"""An exported ONNX network run by onnxruntime, behind the interface every sampler already uses.

:class:`OnnxNetwork` is a ``torch.nn.Module`` called like the PyTorch network it was exported
from, ``network(x, timesteps, class_labels=None) -> tensor``, so :class:`DiffusionModel`, the
guidance wrapper and every sampler (built-in or third-party) run on it unchanged. x: (B, C, H, W)
float32; timesteps: (B,) or a scalar (sent as float32, which holds integer timesteps exactly);
class_labels: (B,) int64 for class-conditional networks. The batch is dynamic.

Providers: the CUDA provider when asked for (or on "auto" when onnxruntime offers it), else the
CPU one. What onnxruntime *granted* is read back from ``session.get_providers()`` after the
session is made -- a request onnxruntime could not honour falls back to CPU with a note, never
silently. On CUDA with a CUDA torch, inputs and outputs stay on the GPU as torch tensors between
steps (IO binding by ``data_ptr``, onnxruntime on torch's current stream); this path cannot be
tested on a CPU-only machine. On CPU the session uses one thread per core and does not spin
(torch shares the process).

The file's JSON beside it (:func:`metadata_path`, written by ``onnx_export``) names the weights it
was exported from; :func:`check_fresh` refuses a file whose weights hash no longer matches.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import metadata as distributions
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffstudio.engine.io import file_sha256
from diffstudio.errors import OnnxError

__all__ = [
    "GRAPH_OPTIMIZATION_LEVELS",
    "OnnxNetwork",
    "OnnxRuntimeInfo",
    "check_fresh",
    "detect_onnxruntime",
    "load_onnx_model",
    "metadata_path",
    "read_metadata",
]

#: The onnxruntime packages that all install the one ``onnxruntime`` module.
_RUNTIME_PACKAGES = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml",
                     "onnxruntime-openvino")
_INSTALL = ("pip install onnxruntime-gpu (Linux, Windows) or pip install onnxruntime (macOS, "
            "or CPU only)")
GRAPH_OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")


@dataclass
class OnnxRuntimeInfo:
    """Which onnxruntime packages are installed and what the module offers.

    ``packages`` the installed distributions with their versions; ``providers`` the module's
    ``get_available_providers()`` (empty when it does not import); ``notes`` problems worth
    saying: two packages at once (they overwrite each other's files, which hides the CUDA
    provider), none at all."""

    packages: dict[str, str] = field(default_factory=dict)
    providers: list[str] = field(default_factory=list)
    version: str | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if not self.packages and self.version is None:
            return f"onnxruntime is not installed; {_INSTALL}"
        packages = ", ".join(f"{name} {version}" for name, version in self.packages.items())
        return (f"onnxruntime {self.version or '?'} ({packages or 'unknown package'}); "
                f"providers: {', '.join(self.providers) or 'none'}")


def detect_onnxruntime() -> OnnxRuntimeInfo:
    """What onnxruntime this environment has; never raises."""
    info = OnnxRuntimeInfo()
    for name in _RUNTIME_PACKAGES:
        try:
            info.packages[name] = distributions.version(name)
        except distributions.PackageNotFoundError:
            continue
    try:
        import onnxruntime

        info.version = onnxruntime.__version__
        info.providers = list(onnxruntime.get_available_providers())
    except Exception as exc:  # not installed, or a broken mix of packages
        if info.packages:
            info.notes.append(f"onnxruntime is installed ({', '.join(info.packages)}) but does "
                              f"not import: {type(exc).__name__}: {exc}")
    if len(info.packages) > 1:
        names = sorted(info.packages)
        info.notes.append(
            f"{' and '.join(names)} are installed together; they share the 'onnxruntime' "
            "module and the last one installed overwrites the other's files, which hides the "
            f"CUDA provider. Fix: pip uninstall -y {' '.join(names)} && pip install "
            f"{'onnxruntime-gpu' if 'onnxruntime-gpu' in names else names[0]}")
    return info


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise OnnxError(f"the onnx backend needs onnxruntime, which is not installed; "
                        f"{_INSTALL}") from exc
    return onnxruntime


def metadata_path(onnx_file: str | os.PathLike[str]) -> Path:
    """The JSON written beside an exported file: ``model.onnx`` -> ``model.onnx.json``."""
    path = Path(onnx_file)
    return path.with_name(path.name + ".json")


def read_metadata(onnx_file: str | os.PathLike[str]) -> dict[str, Any]:
    """The export's JSON; :class:`OnnxError` when the file or its JSON is missing or bad."""
    path = Path(onnx_file).expanduser()
    if not path.is_file():
        raise OnnxError(f"ONNX file {path} does not exist; export one with "
                        "'diffstudio onnx export RUN' (or choose the file it wrote)")
    meta = metadata_path(path)
    try:
        payload = json.loads(meta.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise OnnxError(f"{meta} is missing: diffstudio cannot tell which weights {path.name} "
                        "was exported from; export again with 'diffstudio onnx export RUN'"
                        ) from exc
    except (OSError, ValueError) as exc:
        raise OnnxError(f"cannot read {meta}: {exc}; export again with "
                        "'diffstudio onnx export RUN'") from exc
    if not isinstance(payload, dict) or "sample_shape" not in payload or "inputs" not in payload:
        raise OnnxError(f"{meta} is not the metadata of a diffstudio ONNX export; export again "
                        "with 'diffstudio onnx export RUN'")
    return payload


def check_fresh(onnx_file: str | os.PathLike[str], metadata: dict[str, Any],
                weights_sha256: str, *, where: str) -> None:
    """Refuse an ONNX file exported from other weights than ``weights_sha256`` (``where`` names
    them: "run R, step-00100 EMA weights")."""
    recorded = metadata.get("onnx_sha256")
    if recorded and file_sha256(onnx_file) != recorded:
        raise OnnxError(
            f"{Path(onnx_file).name} is not the file its export wrote (its SHA-256 differs from "
            f"{metadata_path(onnx_file).name}: changed since, or the export was interrupted); "
            "export again with 'diffstudio onnx export RUN'")
    exported = str(metadata.get("weights_sha256", ""))
    if exported != weights_sha256:
        raise OnnxError(
            f"{Path(onnx_file).name} is stale: it was exported from weights {exported[:12] or '?'}"
            f" ({metadata.get('run', '?')}, {metadata.get('checkpoint', '?')}"
            f"{'' if metadata.get('ema', True) else ', raw'}), but {where} are "
            f"{weights_sha256[:12]}; export again with 'diffstudio onnx export RUN' (add "
            "--checkpoint/--no-ema to match) or choose the file made from these weights")


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _session_options(ort: Any, graph_optimization: str, threads: int | None) -> Any:
    if graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
        raise OnnxError(f"graph optimisation {graph_optimization!r} is not one of "
                        f"{', '.join(GRAPH_OPTIMIZATION_LEVELS)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_optimization]
    options.intra_op_num_threads = threads or _threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # torch computes in the same process between network calls: spinning threads would steal
    # its cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class OnnxNetwork(torch.nn.Module):
    """An onnxruntime session called like the network it was exported from (module docstring).

    ``device`` "auto", "cpu", "cuda" or "cuda:N": "auto" asks for CUDA when onnxruntime offers
    it and torch sees a GPU. ``provider`` is the one granted (``providers`` all of them, from
    ``session.get_providers()``); ``notes`` say what was asked for and not granted.
    ``metadata`` the export's JSON (read from beside the file when not given).
    """

    backend = "onnx"

    def __init__(self, onnx_file: str | os.PathLike[str], *, device: str = "auto",
                 graph_optimization: str = "all", threads: int | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        ort = _import_onnxruntime()
        self.path = Path(onnx_file).expanduser()
        self.metadata = metadata if metadata is not None else read_metadata(self.path)
        self.sample_shape = tuple(int(v) for v in self.metadata["sample_shape"])
        self.input_names = [entry["name"] for entry in self.metadata["inputs"]]
        self.notes: list[str] = list(detect_onnxruntime().notes)
        available = ort.get_available_providers()
        # "auto" asks for CUDA only where there is a GPU: no warning on a laptop CPU.
        wants_cuda = device.startswith("cuda") or (
            device == "auto" and "CUDAExecutionProvider" in available
            and torch.cuda.is_available())
        device_id = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
        providers: list[Any] = ["CPUExecutionProvider"]
        stream = None
        if wants_cuda:
            cuda_options: dict[str, Any] = {"device_id": device_id,
                                            # exhaustive search costs seconds per new shape
                                            "cudnn_conv_algo_search": "HEURISTIC"}
            if torch.cuda.is_available():
                # Run on torch's stream: no synchronisation between torch ops and the network.
                stream = torch.cuda.current_stream(device_id)
                cuda_options["user_compute_stream"] = str(stream.cuda_stream)
                cuda_options["has_user_compute_stream"] = "1"
            providers.insert(0, ("CUDAExecutionProvider", cuda_options))
        options = _session_options(ort, graph_optimization, threads)
        try:
            try:
                self.session = ort.InferenceSession(str(self.path), sess_options=options,
                                                    providers=providers)
            except Exception as exc:
                if len(providers) == 1:
                    raise
                # Some builds raise instead of falling back when CUDA cannot start.
                self.notes.append(f"onnxruntime could not start the CUDA provider "
                                  f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})")
                self.session = ort.InferenceSession(str(self.path), sess_options=options,
                                                    providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise OnnxError(f"onnxruntime cannot load {self.path}: {type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:300]}; export it again with "
                            "'diffstudio onnx export RUN'") from exc
        self.providers = list(self.session.get_providers())
        self.provider = self.providers[0]
        if wants_cuda and self.provider != "CUDAExecutionProvider":
            why = ("this onnxruntime has no CUDA provider (" + ", ".join(available) + ")"
                   if "CUDAExecutionProvider" not in available else
                   "onnxruntime could not start it (see its log: CUDA or cuDNN libraries)")
            self.notes.append(f"the CUDA provider was asked for but not granted: {why}; "
                              f"sampling with {self.provider} instead")
        self.io_binding = self.provider == "CUDAExecutionProvider" and torch.cuda.is_available()
        self._stream = stream
        target = torch.device("cuda", device_id) if self.io_binding else torch.device("cpu")
        # Where and in which dtype samplers put x (diffstudio.engine.model.network_device_dtype).
        self.register_buffer("_device_probe", torch.zeros((), device=target), persistent=False)
        self.output_name = self.session.get_outputs()[0].name
        self.out_channels = int(self.metadata.get("out_channels", self.sample_shape[0]))
        self.conditional = "class_labels" in self.input_names

    @property
    def device(self) -> torch.device:
        return self._device_probe.device

    def describe(self) -> str:
        return f"onnxruntime {self.provider} ({self.path.name})"

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != len(self.sample_shape) + 1 or tuple(x.shape[1:]) != self.sample_shape:
            shape = ", ".join(map(str, self.sample_shape))
            raise OnnxError(
                f"{self.path.name} takes samples shaped (B, {shape}), got {tuple(x.shape)}; "
                "use the run it was exported from or export this run")

    def _inputs(self, x: torch.Tensor, timesteps: Any, class_labels: Any) -> dict[str, Any]:
        self._check(x)
        batch = x.shape[0]
        t = torch.as_tensor(timesteps, device=x.device).to(torch.float32)
        if t.dim() == 0:
            t = t.expand(batch)
        inputs = {"sample": x.to(torch.float32), "timestep": t.reshape(batch).contiguous()}
        if self.conditional:
            if class_labels is None:
                raise OnnxError(f"{self.path.name} is class-conditional: pass class labels "
                                "(--class-label), or the 'no label' class for unconditional")
            labels = torch.as_tensor(class_labels, device=x.device).long()
            inputs["class_labels"] = (labels.expand(batch) if labels.dim() == 0 else labels)
        return {name: value.contiguous() for name, value in inputs.items()}

    def forward(self, x: torch.Tensor, timesteps: Any, class_labels: Any = None,
                **_: Any) -> torch.Tensor:
        inputs = self._inputs(x, timesteps, class_labels)
        if self.io_binding:
            return self._run_bound(inputs)
        feeds = {name: value.detach().cpu().numpy() for name, value in inputs.items()}
        try:
            output = self.session.run([self.output_name], feeds)[0]
        except Exception as exc:
            raise OnnxError(f"onnxruntime failed on {self.path.name}: {type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:300]}") from exc
        return torch.from_numpy(np.ascontiguousarray(output)).to(x.device)

    def _run_bound(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        """CUDA: bind torch tensors by data_ptr, the output into a torch tensor (no copies)."""
        sample = inputs["sample"]
        out = torch.empty((sample.shape[0], self.out_channels, *sample.shape[2:]),
                          dtype=torch.float32, device=sample.device)
        binding = self.session.io_binding()
        index = sample.device.index or 0
        element = {torch.float32: np.float32, torch.int64: np.int64}
        for name, value in inputs.items():
            binding.bind_input(name, "cuda", index, element[value.dtype], tuple(value.shape),
                               value.data_ptr())
        binding.bind_output(self.output_name, "cuda", index, np.float32, tuple(out.shape),
                            out.data_ptr())
        current = torch.cuda.current_stream(sample.device)
        if self._stream is None or current.cuda_stream != self._stream.cuda_stream:
            current.synchronize()  # the session runs on another stream than torch's now
        self.session.run_with_iobinding(binding)
        return out


def load_onnx_model(
    run_dir: str | os.PathLike[str], onnx_file: str | os.PathLike[str] | None = None, *,
    checkpoint: str | None = None, ema: bool = True, device: str = "auto",
    registry: Any = None,
) -> tuple[Any, OnnxNetwork, Path]:
    """A run's :class:`DiffusionModel` over its exported network: the schedule and
    parameterisation from the run, the network from ``onnx_file`` (default: where ``diffstudio
    onnx export`` puts this checkpoint's file). The file must have been exported from this
    checkpoint's weights (:func:`check_fresh`) and fit the run's sample shape. Returns (model,
    network, checkpoint folder); the PyTorch network is never built."""
    from diffstudio.engine.components import build_schedule
    from diffstudio.engine.model import DiffusionModel
    from diffstudio.engine.runs import Run
    from diffstudio.plugin_manager import load_plugins

    run = Run(run_dir)
    config = run.config()
    folder = run.resolve_checkpoint(checkpoint)
    path = Path(onnx_file).expanduser() if onnx_file else run.onnx_path(folder, ema)
    if not path.is_file():
        raise OnnxError(
            f"no ONNX file {path}; export it first with 'diffstudio onnx export {run.path}"
            f"{'' if checkpoint in (None, '', 'latest') else ' --checkpoint ' + str(checkpoint)}"
            f"{'' if ema else ' --no-ema'}' (or pass the file with --onnx FILE)")
    meta = read_metadata(path)
    check_fresh(path, meta, file_sha256(run.weights_file(folder, ema)),
                where=f"{run.name} {folder.name} {'EMA' if ema else 'raw'} weights")
    if tuple(meta["sample_shape"]) != tuple(config.sample_shape):
        raise OnnxError(
            f"{path.name} takes samples shaped {tuple(meta['sample_shape'])}, but {run.name} "
            f"makes {tuple(config.sample_shape)}; choose the file exported from this run")
    network = OnnxNetwork(path, device=device, metadata=meta)
    schedule = build_schedule(registry or load_plugins(), config.schedule,
                              config.schedule_params, config.num_timesteps)
    model = DiffusionModel(network, schedule, prediction_type=config.prediction_type,
                           x0_clip=config.x0_clip)
    return model, network, folder
