"""Exporting a run's network to ONNX and checking the file against PyTorch.

The exported graph is :class:`ExportWrapper`: ``forward(sample f32[B, C, H, W], timestep
f32[B], class_labels i64[B] (class-conditional networks only)) -> out_sample f32[B, C', H, W]``
with a dynamic batch B. The timestep is a tensor input: tracing a Python-int timestep would
bake it into the graph as a constant (``UNet2DModel`` turns scalars into constants).

``torch.onnx.export`` with the dynamo exporter (``onnxscript``) is tried first; when it fails,
the TorchScript exporter is used and the metadata says so. The opset stays at one onnxruntime
implements whole (default 18): ``GroupNormalization`` (opset 21) is not implemented by
onnxruntime's CPU provider, and :func:`check_graph` refuses a graph that holds it.

Verification (part of every export, and ``diffstudio onnx verify``): onnxruntime against
PyTorch at the first, middle and last timestep for batch 1 and 4 (with class labels, the "no
label" class among them, for conditional networks); the maximum absolute error must stay at or
below 1e-4 in float32 (1e-3 in float16, measured against the float32 network the file stands
in for). The JSON beside the file (``onnx_network.metadata_path``)
records exporter, opset, inputs and dtypes, the source weights' SHA-256, the verification and
the date.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffstudio.engine.io import atomic_write_json, file_sha256
from diffstudio.engine.onnx_network import OnnxNetwork, metadata_path
from diffstudio.errors import OnnxError

__all__ = [
    "DEFAULT_OPSET",
    "EXPORTERS",
    "ExportWrapper",
    "GraphReport",
    "Verification",
    "check_graph",
    "export_network",
    "export_run",
    "verification_inputs",
    "verify_file",
    "verify_network",
]

DEFAULT_OPSET = 18
#: Opsets onnxruntime implements for these graphs (21 brings GroupNormalization).
OPSET_RANGE = (17, 20)
EXPORTERS = ("auto", "dynamo", "torchscript")
TOLERANCE = {False: 1e-4, True: 1e-3}  # fp16 -> max absolute error allowed
FORBIDDEN_OPS = ("GroupNormalization",)
#: Above this the weights go to a side file (protobuf's 2 GiB limit, with room for the graph).
_SINGLE_FILE_BYTES = 1_800_000_000


class Float32Island(torch.nn.Module):
    """``module`` kept in float32 inside a float16 network: the input is cast up, the output
    back to the input's dtype (``keep_float32`` leaves it float32: the network's last layer)."""

    def __init__(self, module: torch.nn.Module, *, keep_float32: bool = False) -> None:
        super().__init__()
        self.module = module.float()
        self.keep_float32 = keep_float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x.float())
        return y if self.keep_float32 else y.to(x.dtype)


def half_with_float32_islands(network: torch.nn.Module) -> torch.nn.Module:
    """``network`` in float16 except its normalisations and its output convolution.

    GroupNorm's mean and variance lose most of their digits in float16, and an output in
    float16 is rounded to its grid (a step of 2e-3 between 2 and 4, where noise predictions
    lie), so an all-float16 network cannot meet the 1e-3 verification however exact the
    runtime is (measured on a digits UNet: 1.6e-3 on CPU). Mixed precision frameworks keep
    the same layers in float32 (PyTorch autocast's float32 list holds group_norm)."""
    network = network.half()
    children = list(network.named_modules())
    last_conv = next((name for name, module in reversed(children)
                      if isinstance(module, torch.nn.Conv2d)), None)
    for name, module in children:
        is_norm = isinstance(module, torch.nn.GroupNorm | torch.nn.LayerNorm)
        if not name or not (is_norm or name == last_conv):
            continue
        parent_name, _, attribute = name.rpartition(".")
        parent = network.get_submodule(parent_name) if parent_name else network
        setattr(parent, attribute, Float32Island(module, keep_float32=name == last_conv))
    return network


class ExportWrapper(torch.nn.Module):
    """The exported interface around a diffstudio network (module docstring). With ``fp16``
    the network runs in float16 inside, but for float32 normalisations and output
    convolution (:func:`half_with_float32_islands`); the inputs and the output stay float32."""

    def __init__(self, network: torch.nn.Module, *, conditional: bool, fp16: bool = False
                 ) -> None:
        super().__init__()
        self.network = half_with_float32_islands(network) if fp16 else network
        self.conditional = conditional
        self.fp16 = fp16
        forward = getattr(network, "forward", None)
        varnames = getattr(getattr(forward, "__code__", None), "co_varnames", ())
        self._return_dict = "return_dict" in varnames  # diffusers networks

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        x = sample.half() if self.fp16 else sample
        kwargs: dict[str, Any] = {}
        if self.conditional:
            kwargs["class_labels"] = class_labels
        if self._return_dict:
            kwargs["return_dict"] = False
        output = self.network(x, timestep, **kwargs)
        if isinstance(output, tuple):
            output = output[0]
        elif hasattr(output, "sample"):
            output = output.sample
        return output.float()


@dataclass
class GraphReport:
    """What the file holds: ``ops`` the operator types, ``opset`` the default domain's version,
    ``inputs``/``outputs`` (name, dtype, shape with "batch" for a dynamic dimension)."""

    ops: list[str]
    opset: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]

    @property
    def dynamic_batch(self) -> bool:
        return all(isinstance(entry["shape"][0], str) for entry in self.inputs + self.outputs)


def check_graph(path: str | os.PathLike[str]) -> GraphReport:
    """Read the graph (not its weights); :class:`OnnxError` when it holds an operator that
    onnxruntime does not implement or has a fixed batch."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise OnnxError(f"{path} is not a readable ONNX file: {exc}") from exc
    names = {v: k for k, v in onnx.TensorProto.DataType.items()}

    def describe(values: Any) -> list[dict[str, Any]]:
        entries = []
        for value in values:
            tensor = value.type.tensor_type
            shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?")
                     for d in tensor.shape.dim]
            entries.append({"name": value.name, "dtype": names.get(tensor.elem_type, "?").lower(),
                            "shape": shape})
        return entries

    ops = sorted({node.op_type for node in model.graph.node}
                 | {node.op_type for function in model.functions for node in function.node})
    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")),
                 0)
    report = GraphReport(ops, int(opset), describe(model.graph.input),
                         describe(model.graph.output))
    bad = [op for op in FORBIDDEN_OPS if op in ops]
    if bad:
        raise OnnxError(f"{Path(path).name} holds {', '.join(bad)} (opset {report.opset}), which "
                        "onnxruntime does not implement; export with --opset "
                        f"{OPSET_RANGE[1]} or lower")
    if not report.dynamic_batch:
        raise OnnxError(f"{Path(path).name} has a fixed batch size ({report.inputs}); export it "
                        "again with 'diffstudio onnx export RUN'")
    return report


@dataclass
class Verification:
    """onnxruntime against PyTorch: ``cases`` one (batch, timestep, max abs error) each."""

    max_abs_error: float
    tolerance: float
    provider: str
    cases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.tolerance

    def describe(self) -> str:
        return (f"max |onnxruntime - PyTorch| = {self.max_abs_error:.2e} over "
                f"{len(self.cases)} cases ({self.provider}; limit {self.tolerance:.0e}): "
                f"{'passed' if self.passed else 'FAILED'}")

    def as_dict(self) -> dict[str, Any]:
        return {"max_abs_error": self.max_abs_error, "tolerance": self.tolerance,
                "provider": self.provider, "passed": self.passed, "cases": self.cases}


def verification_inputs(
    sample_shape: tuple[int, ...], labels: torch.Tensor, num_classes: int | None,
    batches: tuple[int, ...] = (1, 4), seed: int = 0,
) -> list[dict[str, Any]]:
    """The cases: the network's conditioning value at the first, middle and last timestep
    (``labels`` the process's labels over its grid) x each batch size; random x ~ N(0, I);
    class labels cycling through the classes and the "no label" class ``num_classes``."""
    generator = torch.Generator().manual_seed(seed)
    count = labels.numel()
    cases = []
    for index in sorted({0, count // 2, count - 1}):
        for batch in batches:
            x = torch.randn((batch, *sample_shape), generator=generator)
            timestep = torch.full((batch,), float(labels[index]), dtype=torch.float32)
            case: dict[str, Any] = {"index": index, "batch": batch, "sample": x,
                                    "timestep": timestep}
            if num_classes:
                case["class_labels"] = torch.randint(0, num_classes + 1, (batch,),
                                                     generator=generator)
                case["class_labels"][-1] = num_classes
            cases.append(case)
    return cases


def verify_network(
    onnx_network: OnnxNetwork, wrapper: ExportWrapper, labels: torch.Tensor,
    num_classes: int | None, *, fp16: bool = False,
) -> Verification:
    """Run the verification cases through both; never raises on a mismatch (see ``passed``).
    ``wrapper`` is the float32 network, also for a float16 file (``fp16`` sets the
    tolerance)."""
    worst = 0.0
    cases = []
    device = next(iter(wrapper.parameters())).device
    for case in verification_inputs(onnx_network.sample_shape, labels, num_classes):
        conditional = case.get("class_labels")
        with torch.no_grad():
            expected = wrapper(case["sample"].to(device), case["timestep"].to(device),
                               None if conditional is None else conditional.to(device)).cpu()
        got = onnx_network(case["sample"].to(onnx_network.device),
                           case["timestep"], conditional).cpu()
        if got.shape != expected.shape:
            raise OnnxError(f"{onnx_network.path.name} returned {tuple(got.shape)}, PyTorch "
                            f"{tuple(expected.shape)}; export again")
        error = float((got - expected).abs().max())
        worst = max(worst, error)
        cases.append({"timestep_index": case["index"], "timestep": float(case["timestep"][0]),
                      "batch": case["batch"], "max_abs_error": error})
    return Verification(worst, TOLERANCE[fp16], onnx_network.provider, cases)


def _dynamo_export(wrapper: ExportWrapper, args: tuple[Any, ...], names: list[str],
                   path: Path, opset: int, external: bool) -> None:
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings():  # verbose=False keeps its progress lines off stdout
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, args, str(path), input_names=names, output_names=["out_sample"],
            dynamic_shapes={name: {0: batch} for name in names}, opset_version=opset,
            external_data=external, dynamo=True, verbose=False,
        )


def _torchscript_export(wrapper: ExportWrapper, args: tuple[Any, ...], names: list[str],
                        path: Path, opset: int, external: bool) -> None:
    del external  # the TorchScript exporter writes side files by itself above 2 GiB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, args, str(path), input_names=names, output_names=["out_sample"],
            dynamic_axes={name: {0: "batch"} for name in [*names, "out_sample"]},
            opset_version=opset, dynamo=False,
        )


_EXPORT_FUNCTIONS: dict[str, Callable[..., None]] = {
    "dynamo": _dynamo_export, "torchscript": _torchscript_export,
}


def export_network(
    network: torch.nn.Module,
    out: str | os.PathLike[str],
    *,
    sample_shape: tuple[int, ...],
    num_classes: int | None,
    labels: torch.Tensor,
    source: dict[str, Any],
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    exporter: str = "auto",
    overwrite: bool = False,
    device: str = "cpu",
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Export ``network`` to ``out`` (``.onnx``), verify it and write its JSON; returns the JSON.

    ``labels``: the process's conditioning values over its grid (timesteps for DDPM);
    ``source``: what the JSON records of the weights (run, checkpoint, ema, weights_sha256).
    ``num_classes`` for a class-conditional network (its "no label" class is ``num_classes``).
    Nothing is left at ``out`` unless the file verifies: the export is written to a temporary
    name beside it and renamed last. ``report(line)`` hears each stage.
    """
    say = report or (lambda _line: None)
    target = Path(out).expanduser()
    if target.suffix != ".onnx":
        raise OnnxError(f"the export file must end in .onnx, got {target.name}")
    if not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        raise OnnxError(f"opset {opset} is outside {OPSET_RANGE[0]}..{OPSET_RANGE[1]}, the "
                        "opsets onnxruntime implements whole for these networks (21 brings "
                        "GroupNormalization, which it does not); choose one in that range")
    if exporter not in EXPORTERS:
        raise OnnxError(f"exporter {exporter!r} is not one of {', '.join(EXPORTERS)}")
    if target.exists() and not overwrite:
        raise OnnxError(f"{target} already exists; pass --overwrite to replace it or --out "
                        "another file")
    conditional = bool(num_classes)
    network = network.float().cpu().eval()
    # The reference is the float32 network, also for --fp16: that is what the file stands in
    # for, and PyTorch's own float16 CPU kernels round each layer's output, so they stray
    # further from it than onnxruntime does (digits UNet: 1.2e-3 against 6e-4).
    reference = ExportWrapper(network, conditional=conditional).eval()
    wrapper = (ExportWrapper(copy.deepcopy(network), conditional=conditional, fp16=True).eval()
               if fp16 else reference)
    names = ["sample", "timestep"] + (["class_labels"] if conditional else [])
    example: tuple[Any, ...] = (torch.randn(2, *sample_shape), torch.tensor([1.0, 2.0]))
    if conditional:
        example = (*example, torch.tensor([0, int(num_classes or 0)]))
    parameter_bytes = sum(p.numel() * p.element_size() for p in wrapper.parameters())
    if parameter_bytes > _SINGLE_FILE_BYTES:
        raise OnnxError(f"the network has {parameter_bytes / 2**30:.1f} GiB of weights, more "
                        "than one ONNX file holds (2 GiB); diffstudio exports single files only")
    external = False
    target.parent.mkdir(parents=True, exist_ok=True)
    stem = f".{target.stem}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    temp = target.with_name(stem + ".onnx")
    notes: list[str] = []
    order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    used = None
    started = time.perf_counter()
    try:
        for name in order:
            say(f"exporting with the {name} exporter (opset {opset})")
            try:
                _EXPORT_FUNCTIONS[name](wrapper, example, names, temp, opset, external)
            except Exception as exc:
                if name == order[-1]:
                    raise OnnxError(f"the {name} exporter failed: {type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())[:300]}") from exc
                notes.append(f"the {name} exporter failed ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}); the TorchScript exporter "
                             "was used instead")
                say(notes[-1])
                continue
            used = name
            break
        export_seconds = time.perf_counter() - started
        graph = check_graph(temp)
        meta: dict[str, Any] = {
            "format": "diffstudio-onnx/1",
            **source,
            "exporter": used, "torch": torch.__version__, "opset": graph.opset,
            "inputs": graph.inputs, "outputs": graph.outputs,
            "sample_shape": list(sample_shape), "num_classes": num_classes,
            "out_channels": int(graph.outputs[0]["shape"][1])
            if isinstance(graph.outputs[0]["shape"][1], int) else sample_shape[0],
            "fp16": fp16, "external_data": external, "notes": notes,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "export_seconds": round(export_seconds, 3),
        }
        say("verifying against PyTorch")
        session = OnnxNetwork(temp, device=device, metadata=meta)
        verification = verify_network(session, reference, labels, num_classes, fp16=fp16)
        del session
        meta["verification"] = verification.as_dict()
        if not verification.passed:
            raise OnnxError(f"the export does not match PyTorch: {verification.describe()}; "
                            "nothing was written (try --exporter torchscript, or without --fp16)")
        meta["onnx_sha256"] = file_sha256(temp)
        atomic_write_json(metadata_path(target), meta)
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return meta


def export_run(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    checkpoint: str | None = None,
    ema: bool = True,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    exporter: str = "auto",
    overwrite: bool = False,
    device: str = "cpu",
    registry: Any = None,
    report: Callable[[str], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Export a run's checkpoint (EMA weights unless ``ema`` is False) to ``out`` (default
    ``Run.onnx_path``); returns the file and its JSON (see :func:`export_network`)."""
    from diffstudio.engine.runs import Run
    from diffstudio.engine.sampling import load_model

    loaded = load_model(run_dir, checkpoint=checkpoint, ema=ema, device="cpu", registry=registry)
    if getattr(loaded.model.network, "conditions_on_marginal", False):
        raise OnnxError("this run's network conditions on the marginal (m, s) and cannot be "
                        "exported")
    config = loaded.run.config()
    num_classes = config.num_classes if config.class_conditional else None
    target = Path(out).expanduser() if out else Run(run_dir).onnx_path(loaded.checkpoint, ema,
                                                                       fp16)
    process = loaded.model.process
    source = {"run": str(loaded.run.path), "checkpoint": loaded.checkpoint.name,
              "step": loaded.step, "ema": ema, "weights_sha256": loaded.network_sha256,
              "network": config.network}
    meta = export_network(
        loaded.model.network, target, sample_shape=tuple(loaded.sample_shape),
        num_classes=num_classes, labels=process.label(process.grid), source=source,
        opset=opset, fp16=fp16, exporter=exporter, overwrite=overwrite, device=device,
        report=report,
    )
    return target, meta


def verify_file(
    onnx_file: str | os.PathLike[str], run_dir: str | os.PathLike[str], *,
    checkpoint: str | None = None, ema: bool | None = None, device: str = "cpu",
    registry: Any = None,
) -> tuple[Verification, GraphReport, dict[str, Any]]:
    """Check an exported file against a run: its graph (:func:`check_graph`), that it was made
    from the checkpoint's weights (the JSON's checkpoint and EMA choice unless given), and the
    verification cases. Raises :class:`OnnxError` on a stale file or a mismatch."""
    from diffstudio.engine.onnx_network import check_fresh, read_metadata
    from diffstudio.engine.sampling import load_model

    meta = read_metadata(onnx_file)
    use_ema = bool(meta.get("ema", True)) if ema is None else ema
    chosen = checkpoint if checkpoint is not None else meta.get("checkpoint")
    loaded = load_model(run_dir, checkpoint=chosen, ema=use_ema, device="cpu", registry=registry)
    check_fresh(onnx_file, meta, loaded.network_sha256,
                where=f"{loaded.run.name} {loaded.checkpoint.name} "
                      f"{'EMA' if use_ema else 'raw'} weights")
    if tuple(meta["sample_shape"]) != tuple(loaded.sample_shape):
        raise OnnxError(f"{Path(onnx_file).name} takes {tuple(meta['sample_shape'])} samples, "
                        f"the run makes {tuple(loaded.sample_shape)}")
    graph = check_graph(onnx_file)
    config = loaded.run.config()
    num_classes = config.num_classes if config.class_conditional else None
    fp16 = bool(meta.get("fp16"))
    reference = ExportWrapper(loaded.model.network, conditional=bool(num_classes)).eval()
    session = OnnxNetwork(onnx_file, device=device, metadata=meta)
    process = loaded.model.process
    verification = verify_network(session, reference, process.label(process.grid), num_classes,
                                  fp16=fp16)
    if not verification.passed:
        raise OnnxError(f"{Path(onnx_file).name} does not match the run: "
                        f"{verification.describe()}")
    return verification, graph, meta
