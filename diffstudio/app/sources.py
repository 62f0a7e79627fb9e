"""Where a model comes from, for every job that samples: a trained run, a pretrained diffusers
model (a local folder, or a hub id already in the local cache), or a run's network exported to
ONNX and run by onnxruntime (``backend="onnx"``).

:class:`ModelSource` says which (a plain, torch-free request field); :func:`load_source` loads it
into one :class:`LoadedSource` that the sample, compare, interpolate and evaluate jobs use
alike, whatever the origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffstudio.errors import ConfigError

__all__ = ["BACKENDS", "LoadedSource", "ModelSource", "load_source"]

#: Where a network computes: PyTorch, or an exported ONNX file on onnxruntime.
BACKENDS = ("torch", "onnx")


@dataclass(frozen=True)
class ModelSource:
    """A run folder (``run``, with ``checkpoint`` -- a name, a step or None for the latest --
    and ``ema``) or a pretrained diffusers model (``pretrained``: a folder or a hub id;
    ``download`` lets a hub id be fetched when it is not cached). Exactly one is given.

    ``backend`` "torch" (the default) or "onnx": a run's network from its exported ONNX file
    (``onnx_file``, default the checkpoint's file under the run's onnx/ folder) on onnxruntime;
    the schedule and parameterisation still come from the run."""

    run: str | None = None
    pretrained: str | None = None
    checkpoint: str | None = None
    ema: bool = True
    download: bool = False
    backend: str = "torch"
    onnx_file: str | None = None

    def validate(self) -> ModelSource:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose one of "
                              f"{', '.join(BACKENDS)}")
        if self.backend == "onnx" and self.pretrained:
            raise ConfigError("the onnx backend samples a run's exported network; export a run "
                              "with 'diffstudio onnx export RUN' and sample that run")
        if self.onnx_file and self.backend != "onnx":
            raise ConfigError("an ONNX file was given with the torch backend; add "
                              "--backend onnx")
        if bool(self.run) == bool(self.pretrained):
            raise ConfigError(
                "give a run folder or a pretrained model (one of them)"
                if not self.run else "give a run folder or a pretrained model, not both"
            )
        return self

    def describe(self) -> str:
        return Path(self.run).name if self.run else str(self.pretrained)


@dataclass
class LoadedSource:
    """A model ready to sample and where it came from.

    ``model`` is the engine's DiffusionModel; ``sample_shape`` (C, H, W) or (D,); ``kind``
    "image" or "points"; ``num_classes`` for class-conditional models (else None);
    ``metadata`` what every PNG of it records (run, checkpoint, ema, network hash, or the
    pretrained source and scheduler); ``notes`` lines for the user, ``warnings`` lines they
    must see (a provider asked for and not granted); ``sampler_defaults`` the
    sampler parameters the model suggests, by sampler id (a VE SDE's snr); ``dataset`` the
    training set (id, params) of a run; ``step`` the training step of the checkpoint.
    """

    source: ModelSource
    model: Any
    sample_shape: tuple[int, ...]
    kind: str
    num_classes: int | None
    name: str
    checkpoint: str
    step: int
    metadata: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sampler_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset: tuple[str, dict[str, Any]] | None = None
    run_config: Any = None  # diffstudio.engine.runs.RunConfig for a run

    @property
    def backend(self) -> str:
        """"torch-cpu", "torch-cuda", ..., or "onnx": what PNG metadata records as the
        backend (with the onnxruntime provider granted as ``onnx_provider``)."""
        from diffstudio.engine.model import network_device_dtype

        named = getattr(self.model.network, "backend", None)
        if isinstance(named, str):
            return named
        return f"torch-{network_device_dtype(self.model.network)[0].type}"


def load_source(source: ModelSource, *, device: str = "auto", registry: Any = None) -> LoadedSource:
    """Load ``source`` on ``device`` ("auto", "cpu", "cuda", "cuda:1", "mps")."""
    source.validate()
    if source.pretrained:
        return _load_pretrained(source, device)
    if source.backend == "onnx":
        return _load_onnx(source, device, registry)
    return _load_run(source, device, registry)


def _load_run(source: ModelSource, device: str, registry: Any) -> LoadedSource:
    from diffstudio.engine.sampling import load_model

    loaded = load_model(source.run, checkpoint=source.checkpoint, ema=source.ema, device=device,
                        registry=registry)
    config = loaded.run.config()
    return LoadedSource(
        source=source, model=loaded.model, sample_shape=tuple(loaded.sample_shape),
        kind=config.kind, num_classes=config.num_classes if config.class_conditional else None,
        name=str(loaded.run.path),
        checkpoint=loaded.checkpoint.name, step=loaded.step,
        metadata={"run": str(loaded.run.path), "checkpoint": loaded.checkpoint.name,
                  "ema": loaded.ema, "network_sha256": loaded.network_sha256},
        dataset=(config.dataset, dict(config.dataset_params)), run_config=config,
    )


def _load_onnx(source: ModelSource, device: str, registry: Any) -> LoadedSource:
    from diffstudio.engine.onnx_network import load_onnx_model
    from diffstudio.engine.runs import Run

    assert source.run is not None
    model, network, folder = load_onnx_model(
        source.run, source.onnx_file, checkpoint=source.checkpoint, ema=source.ema,
        device=device, registry=registry)
    run = Run(source.run)
    config = run.config()
    meta = network.metadata
    return LoadedSource(
        source=source, model=model, sample_shape=tuple(config.sample_shape), kind=config.kind,
        num_classes=config.num_classes if config.class_conditional else None,
        name=str(run.path), checkpoint=folder.name, step=Run.checkpoint_step(folder),
        metadata={"run": str(run.path), "checkpoint": folder.name, "ema": source.ema,
                  "network_sha256": meta.get("weights_sha256"), "onnx_file": str(network.path),
                  "onnx_sha256": meta.get("onnx_sha256"), "onnx_provider": network.provider},
        notes=[f"onnx backend: {network.describe()}"], warnings=list(network.notes),
        dataset=(config.dataset, dict(config.dataset_params)), run_config=config,
    )


def _load_pretrained(source: ModelSource, device: str) -> LoadedSource:
    from diffstudio.engine.networks.pretrained import load_pretrained
    from diffstudio.engine.sampling import resolve_device

    assert source.pretrained is not None
    pretrained = load_pretrained(source.pretrained, device=str(resolve_device(device)),
                                 download=source.download)
    if pretrained.model is None:
        raise ConfigError(
            f"{source.pretrained} ({pretrained.scheduler_class}, family {pretrained.family}) "
            "has no sampleable model; diffstudio samples discrete VP schedulers and "
            "ScoreSdeVeScheduler models"
        )
    classes = (pretrained.num_class_embeds - 1) if pretrained.num_class_embeds else None
    return LoadedSource(
        source=source, model=pretrained.model, sample_shape=tuple(pretrained.sample_shape),
        kind="image", num_classes=classes, name=str(source.pretrained),
        checkpoint=pretrained.scheduler_class, step=0,
        metadata={"pretrained": pretrained.source, "network_sha256": pretrained.weights_sha256,
                  "scheduler": pretrained.scheduler_class},
        notes=list(pretrained.notes), sampler_defaults=dict(pretrained.sampler_defaults),
    )
