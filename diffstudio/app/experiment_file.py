"""Experiment files: a grid of trainings x samplers x seeds, evaluated with FID@N and KID, in
one TOML file (the schema is documented in ``docs/experiments.md``).

::

    [experiment]
    name = "seed-table1-digits"

    [defaults]                      # laid under every training
    dataset = "digits"
    steps = 2000

    [training.linear]               # one run per training, named after it
    schedule = "linear"

    [[sampler]]                     # each list is a grid axis: ddim at 10, 20 and 50 steps
    id = "ddim"
    steps = [10, 20, 50]

    [evaluation]
    metrics = ["fid", "kid"]
    num_samples = 256               # N of FID@N
    seeds = [0]                     # repeats: one evaluation per sampling seed

    [published]                     # numbers to print beside ours (optional)
    note = "the seed's Table 1, FID@? on CelebA-HQ 128"
    fid = { "linear/ddim" = 103.3 }

    [executor]                      # where the jobs run (optional; default: this process)
    kind = "slurm"
    partition = "gpu"
    gpus_per_node = 1

:func:`load_experiment` reads and validates the whole file against the plugin registry before
anything starts: every error is a :class:`~diffstudio.errors.ConfigError` naming the file and
the line of the offending key (tomllib reports no positions for values, so the line is found
here, in the text). Nothing here imports torch or Qt.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffstudio.app.train import COMPONENTS, TrainRequest
from diffstudio.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with tomli (a dependency there)
    import tomli as tomllib

__all__ = [
    "EXECUTORS",
    "Cell",
    "EvaluationSpec",
    "ExecutorSpec",
    "Experiment",
    "SamplerSpec",
    "TrainingSpec",
    "fingerprint",
    "load_experiment",
    "parse_experiment",
    "preset_path",
    "presets",
]

# Experiment files shipped as package data (pyproject's package-data).
PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets" / "experiments"

SECTIONS = ("experiment", "defaults", "training", "sampler", "evaluation", "published",
            "executor")
#: Where an experiment's jobs run: in the process running the queue, on a Slurm cluster
#: through submitit, or through submitit's local executor (one process per job, this machine).
EXECUTORS = ("local", "slurm", "submitit-local")
# [executor] keys and their defaults (ExecutorSpec's fields).
EXECUTOR_KEYS: dict[str, Any] = {
    "kind": "local", "partition": "", "gpus_per_node": 0, "cpus_per_task": 0, "mem_gb": 0.0,
    "timeout_min": 720, "max_parallel": 0, "log_folder": "logs/submitit", "setup": [],
    "additional": {}, "poll_seconds": 2.0,
}
EXPERIMENT_KEYS = ("name", "description")
# [evaluation] keys and their defaults (EvalRequest fields, N as num_samples).
EVALUATION_KEYS: dict[str, Any] = {
    "metrics": ["fid", "kid"], "num_samples": 256, "seeds": [0], "reference": "",
    "reference_params": {}, "reference_limit": 0, "weights": "", "resize_to": 299,
    "inception_batch_size": 50, "sample_batch_size": 64, "kid_subsets": 100,
    "kid_subset_size": 1000, "device": "auto",
}


def fingerprint(payload: Any) -> str:
    """A short, stable hash of a JSON-able request: a result is reused only while it stays."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def presets() -> list[Path]:
    """The shipped experiment files, by name."""
    return sorted(PRESETS_DIR.glob("*.toml")) if PRESETS_DIR.is_dir() else []


def preset_path(name: str) -> Path | None:
    """The shipped preset ``name`` (with or without ``.toml``), unless ``name`` is a file."""
    if Path(name).expanduser().exists():
        return None
    stem = name[:-5] if name.endswith(".toml") else name
    found = PRESETS_DIR / f"{stem}.toml"
    return found if found.is_file() and "/" not in stem else None


# -- where a key is ---------------------------------------------------------------------------
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _split_dotted(name: str) -> tuple[str, ...]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s]+)', name)
    return tuple(next(p for p in part if p) if any(part) else "" for part in parts)


class _Lines:
    """Finds the line of a key in the TOML text: tables by their headers (``[[x]]`` counted
    per occurrence), keys by ``key =`` inside them, inline tables by their key's line."""

    def __init__(self, text: str) -> None:
        self.tables: dict[tuple[Any, ...], int] = {}
        self.keys: dict[tuple[Any, ...], int] = {}
        counts: dict[tuple[str, ...], int] = {}
        current: tuple[Any, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = _HEADER.match(line)
            if header:
                parts = _split_dotted(header.group(2))
                if header.group(1) == "[[":
                    index = counts.get(parts, 0)
                    counts[parts] = index + 1
                    current = (*parts, index)
                else:
                    current = parts
                self.tables.setdefault(current, number)
                continue
            key = re.match(r'^\s*("[^"]*"|\'[^\']*\'|[A-Za-z0-9_.-]+)\s*=', line)
            if key:
                path = (*current, *_split_dotted(key.group(1)))
                self.keys.setdefault(path, number)
                inline = re.findall(r'("[^"]*"|[A-Za-z0-9_-]+)\s*=', line[key.end():])
                for inner in inline:  # keys of an inline table: { size = 8 }
                    self.keys.setdefault((*path, inner.strip('"')), number)

    def line(self, *path: Any) -> int | None:
        """The line of ``path`` (a key, else its table, else the nearest enclosing table)."""
        while path:
            if path in self.keys:
                return self.keys[path]
            if path in self.tables:
                return self.tables[path]
            path = path[:-1]
        return None


# -- the parsed experiment --------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingSpec:
    """One training of the grid: a run named ``name``, trained with ``settings`` (TrainConfig
    fields, ids and ``*_params``), already validated."""

    name: str
    settings: dict[str, Any]

    def request_payload(self) -> dict[str, Any]:
        return {"training": self.name, "settings": self.settings}


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler setting of the grid: ``sampler`` with ``params`` (one point of its lists);
    ``label`` groups the points of one ``[[sampler]]`` entry (the plot's series)."""

    label: str
    sampler: str
    params: dict[str, Any]
    axes: tuple[str, ...] = ()  # the parameters given as lists (they name the setting)

    @property
    def name(self) -> str:
        """``label`` plus the grid values: ``ddim-steps50``; a sampler with no list, its
        label."""
        values = "-".join(f"{k}{self.params[k]}" for k in self.axes)
        return f"{self.label}-{values}" if values else self.label

    def describe(self) -> str:
        values = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.sampler} ({values})" if values else self.sampler


@dataclass(frozen=True)
class EvaluationSpec:
    """How each cell is evaluated: metrics, N, the repeats' seeds, the reference (default:
    each training's own dataset) and the Inception weights ("random": pipeline checks only)."""

    metrics: tuple[str, ...]
    num_samples: int
    seeds: tuple[int, ...]
    reference: str
    reference_params: dict[str, Any]
    reference_limit: int
    weights: str
    resize_to: int
    inception_batch_size: int
    sample_batch_size: int
    kid_subsets: int
    kid_subset_size: int
    device: str


@dataclass(frozen=True)
class Cell:
    """One evaluation of the grid: a training's run sampled with one sampler setting and seed."""

    training: str
    sampler: SamplerSpec
    seed: int

    @property
    def key(self) -> str:
        return f"eval/{self.training}/{self.sampler.name}/seed{self.seed}"

    @property
    def file_name(self) -> str:
        return f"{self.training}--{self.sampler.name}--seed{self.seed}.json"


@dataclass(frozen=True)
class ExecutorSpec:
    """Where the jobs run (``[executor]``): ``kind`` one of :data:`EXECUTORS`; for submitit,
    each training and each cell is one job with these resources (``0``/``""``: the cluster's
    default), at most ``max_parallel`` at once (0: no limit), its logs in ``log_folder``
    (inside the experiment folder); ``setup`` lines run before the job (``module load ...``),
    ``additional`` is passed to sbatch as ``--KEY=VALUE``."""

    kind: str = "local"
    partition: str = ""
    gpus_per_node: int = 0
    cpus_per_task: int = 0
    mem_gb: float = 0
    timeout_min: int = 720
    max_parallel: int = 0
    log_folder: str = "logs/submitit"
    setup: tuple[str, ...] = ()
    additional: tuple[tuple[str, Any], ...] = ()
    poll_seconds: float = 2.0


@dataclass
class Experiment:
    """A validated experiment file."""

    name: str
    description: str
    path: Path
    text: str
    trainings: list[TrainingSpec]
    samplers: list[SamplerSpec]
    evaluation: EvaluationSpec
    published_fid: dict[str, float] = field(default_factory=dict)
    published_note: str = ""
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)

    def training(self, name: str) -> TrainingSpec:
        return next(t for t in self.trainings if t.name == name)

    def cells(self) -> list[Cell]:
        """Every evaluation: trainings x sampler settings x seeds, in file order."""
        return [Cell(training.name, sampler, seed) for training in self.trainings
                for sampler in self.samplers for seed in self.evaluation.seeds]

    def published_for(self, training: str, sampler: SamplerSpec) -> float | None:
        """The published FID of a cell: keyed "TRAINING/SETTING" (``ddim-steps50``) or
        "TRAINING/LABEL" (every setting of a ``[[sampler]]``)."""
        return self.published_fid.get(f"{training}/{sampler.name}",
                                      self.published_fid.get(f"{training}/{sampler.label}"))


# -- reading and validating -------------------------------------------------------------------
class _Checker:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = _Lines(text)

    def error(self, message: str, *where: Any, cause: Exception | None = None) -> ConfigError:
        line = self.lines.line(*where)
        at = f"{self.path.name}, line {line}" if line else self.path.name
        error = ConfigError(f"{at}: {message}")
        error.__cause__ = cause
        return error

    def table(self, data: Mapping[str, Any], key: str, *where: Any) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(f"'{key}' must be a table ([{key}] or {{ ... }}), got "
                             f"{type(value).__name__}", *where, key)
        return value

    def unknown(self, given: Mapping[str, Any], known: Any, what: str, *where: Any) -> None:
        for key in given:
            if key not in known:
                raise self.error(f"unknown key '{key}' in {what}; known: "
                                 f"{', '.join(sorted(known))}", *where, key)


def load_experiment(path: str | Path, registry: Any) -> Experiment:
    """Read and validate an experiment file; a :class:`ConfigError` names the line."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the experiment file {file}: "
                          f"{exc.strerror or exc}") from exc
    return parse_experiment(text, registry, path=file)


def parse_experiment(text: str, registry: Any, *, path: str | Path = "experiment.toml"
                     ) -> Experiment:
    """Validate the TOML ``text`` against the registry's schemas (nothing is run)."""
    file = Path(path)
    check = _Checker(file, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message carries "(at line N, column M)"
        raise ConfigError(f"{file.name}: not valid TOML: {exc}") from exc
    check.unknown(data, SECTIONS, "the file (sections)")
    head = check.table(data, "experiment")
    check.unknown(head, EXPERIMENT_KEYS, "[experiment]", "experiment")
    name = str(head.get("name") or file.stem)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise check.error(f"name {name!r} must be a folder name (letters, digits, . _ -)",
                          "experiment", "name")
    defaults = check.table(data, "defaults")
    trainings = _trainings(check, check.table(data, "training"), defaults, registry)
    samplers = _samplers(check, data.get("sampler", []), registry)
    evaluation = _evaluation(check, check.table(data, "evaluation"), registry)
    experiment = Experiment(name=name, description=str(head.get("description", "")),
                            path=file, text=text, trainings=trainings, samplers=samplers,
                            evaluation=evaluation)
    _published(check, check.table(data, "published"), experiment)
    experiment.executor = _executor(check, check.table(data, "executor"))
    for training in trainings:  # Inception metrics compare images
        reference = evaluation.reference or training.settings["dataset"]
        if "points" in registry.get("dataset", reference).tags:
            where = ("evaluation", "reference") if evaluation.reference else (
                ("training", training.name, "dataset") if "dataset" in
                data["training"][training.name] else ("defaults", "dataset"))
            raise check.error(f"the dataset {reference!r} holds 2-D points, not images; FID "
                              "and KID need an image dataset (digits, image-folder, mnist, "
                              "...)", *where)
    return experiment


def _trainings(check: _Checker, table: dict[str, Any], defaults: dict[str, Any],
               registry: Any) -> list[TrainingSpec]:
    from diffstudio.engine.train_config import TRAIN_SETTINGS, setting

    if not table:
        raise check.error("no training: add at least one [training.NAME] table")
    known = {p.name for p in TRAIN_SETTINGS} | set(COMPONENTS) | {
        f"{kind}_params" for kind in COMPONENTS}
    check.unknown(defaults, known, "[defaults]", "defaults")
    trainings = []
    for name, given in table.items():
        where = ("training", name)
        if not isinstance(given, dict):
            raise check.error(f"training '{name}' must be a table [training.{name}]", *where)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise check.error(f"training name {name!r} must be a folder name "
                              "(letters, digits, . _ -)", *where)
        check.unknown(given, known, f"[training.{name}]", *where)
        settings = {**defaults, **given}
        for key, value in settings.items():
            origin = where if key in given else ("defaults",)
            if key in COMPONENTS:
                if not isinstance(value, str):
                    raise check.error(f"'{key}' must be a {key} id (a string)", *origin, key)
                try:
                    registry.get(key, value)
                except ConfigError as exc:
                    raise check.error(str(exc), *origin, key, cause=exc) from exc
            elif key.endswith("_params"):
                if not isinstance(value, dict):
                    raise check.error(f"'{key}' must be a table of parameters", *origin, key)
            else:
                try:
                    settings[key] = setting(key).coerce(value)
                except ConfigError as exc:
                    raise check.error(str(exc), *origin, key, cause=exc) from exc
        request = TrainRequest(out=f"{name}", settings=settings)
        chosen = request.chosen_ids(registry)
        for kind in COMPONENTS:  # each parameter alone, so the error has its line
            params = settings.get(f"{kind}_params") or {}
            origin = where if f"{kind}_params" in given else ("defaults",)
            for key, value in params.items():
                try:
                    registry.get(kind, chosen[kind]).validate({key: value})
                except ConfigError as exc:
                    raise check.error(str(exc), *origin, f"{kind}_params", key,
                                      cause=exc) from exc
        try:
            request.resolve(registry)  # what no single key shows (epochs x steps, ...)
        except ConfigError as exc:
            raise check.error(f"training '{name}': {exc}", *where, cause=exc) from exc
        trainings.append(TrainingSpec(name, {**settings, **chosen}))
    return trainings


def _samplers(check: _Checker, entries: Any, registry: Any) -> list[SamplerSpec]:
    if not isinstance(entries, list) or not entries:
        raise check.error("no sampler: add at least one [[sampler]] table with an id",
                          "sampler")
    samplers: list[SamplerSpec] = []
    for index, entry in enumerate(entries):
        where = ("sampler", index)
        if not isinstance(entry, dict):
            raise check.error("each sampler must be a [[sampler]] table", *where)
        if not isinstance(entry.get("id"), str):
            raise check.error("a [[sampler]] needs an id (a string, e.g. id = \"ddim\"); "
                              f"installed: {', '.join(registry.ids('sampler'))}", *where)
        try:
            contribution = registry.get("sampler", entry["id"])
        except ConfigError as exc:
            raise check.error(str(exc), *where, "id", cause=exc) from exc
        label = str(entry.get("label") or entry["id"])
        params = {k: v for k, v in entry.items() if k not in ("id", "label")}
        axes: dict[str, list[Any]] = {}
        listed = tuple(key for key, value in params.items() if isinstance(value, list))
        for key, value in params.items():
            values = value if isinstance(value, list) else [value]
            if not values:
                raise check.error(f"'{key}' is an empty list; give at least one value",
                                  *where, key)
            for item in values:
                try:
                    contribution.validate({key: item})
                except ConfigError as exc:
                    raise check.error(str(exc), *where, key,
                                      cause=exc) from exc
            axes[key] = values
        if any(s.label == label for s in samplers):
            raise check.error(f"two samplers are labelled {label!r}; give one a label = "
                              "\"...\"", *where, "label" if "label" in entry else "id")
        for point in itertools.product(*axes.values()):
            values = dict(zip(axes, point, strict=True))
            samplers.append(SamplerSpec(label, entry["id"], values, listed))
    return samplers


def _evaluation(check: _Checker, table: dict[str, Any], registry: Any) -> EvaluationSpec:
    from diffstudio.engine.evaluation.settings import EvalSettings

    where = ("evaluation",)
    check.unknown(table, EVALUATION_KEYS, "[evaluation]", *where)
    values = {**EVALUATION_KEYS, **table}
    for key, default in EVALUATION_KEYS.items():
        value = values[key]
        kind = type(default)
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise check.error(f"'{key}' must be an integer, got {value!r}", *where, key)
        if kind in (str, dict, list) and not isinstance(value, kind):
            raise check.error(f"'{key}' must be a {kind.__name__}, got {value!r}", *where, key)
    if values["num_samples"] < 2:
        raise check.error(f"num_samples (N) must be at least 2, got {values['num_samples']}",
                          *where, "num_samples")
    for key in ("resize_to", "inception_batch_size", "sample_batch_size", "kid_subsets",
                "kid_subset_size"):
        if values[key] < 1:
            raise check.error(f"'{key}' must be at least 1, got {values[key]}", *where, key)
    seeds = values["seeds"]
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise check.error(f"'seeds' must be a list of integers >= 0 (one evaluation per seed),"
                          f" got {seeds!r}", *where, "seeds")
    if len(set(seeds)) != len(seeds):
        raise check.error(f"'seeds' repeats a seed: {seeds!r}", *where, "seeds")
    try:
        metrics = EvalSettings(metrics=tuple(values["metrics"])).validate().metrics
    except Exception as exc:
        raise check.error(str(exc), *where, "metrics", cause=exc) from exc
    if values["reference"]:
        try:
            registry.get("dataset", values["reference"]).validate(values["reference_params"])
        except ConfigError as exc:
            key = "reference_params" if values["reference_params"] else "reference"
            raise check.error(str(exc), *where, key, cause=exc) from exc
    elif values["reference_params"]:
        raise check.error("reference_params without a reference dataset id", *where,
                          "reference_params")
    return EvaluationSpec(
        metrics=tuple(metrics), num_samples=values["num_samples"], seeds=tuple(seeds),
        reference=values["reference"], reference_params=dict(values["reference_params"]),
        reference_limit=values["reference_limit"], weights=values["weights"],
        resize_to=values["resize_to"], inception_batch_size=values["inception_batch_size"],
        sample_batch_size=values["sample_batch_size"], kid_subsets=values["kid_subsets"],
        kid_subset_size=values["kid_subset_size"], device=values["device"],
    )


def _published(check: _Checker, table: dict[str, Any], experiment: Experiment) -> None:
    where = ("published",)
    check.unknown(table, ("note", "fid"), "[published]", *where)
    experiment.published_note = str(table.get("note", ""))
    fid = check.table(table, "fid", *where)
    trainings = {t.name for t in experiment.trainings}
    labels = {s.label for s in experiment.samplers} | {s.name for s in experiment.samplers}
    for key, value in fid.items():
        training, _, label = key.partition("/")
        if training not in trainings or label not in labels:
            raise check.error(
                f"published fid '{key}' names no cell; write \"TRAINING/SAMPLER\" with a "
                f"training of {sorted(trainings)} and a sampler label or setting of "
                f"{sorted(labels)}",
                *where, "fid", key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise check.error(f"published fid '{key}' must be a number", *where, "fid", key)
        experiment.published_fid[key] = float(value)


def _executor(check: _Checker, table: dict[str, Any]) -> ExecutorSpec:
    where = ("executor",)
    check.unknown(table, EXECUTOR_KEYS, "[executor]", *where)
    values = {**EXECUTOR_KEYS, **table}
    for key, default in EXECUTOR_KEYS.items():
        value = values[key]
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            if not isinstance(value, type(default)):
                raise check.error(f"'{key}' must be a {type(default).__name__}, got {value!r}",
                                  *where, key)
            continue
        integer = isinstance(default, int)
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            raise check.error(f"'{key}' must be {'an integer' if integer else 'a number'}, "
                              f"got {value!r}", *where, key)
        positive = key in ("timeout_min", "poll_seconds")
        if value < 0 or (positive and value == 0):
            bound = "> 0" if positive else ">= 0"
            raise check.error(f"'{key}' must be {bound}, got {value!r}", *where, key)
    if values["kind"] not in EXECUTORS:
        raise check.error(f"executor kind {values['kind']!r} is not one of "
                          f"{', '.join(EXECUTORS)}", *where, "kind")
    logs = Path(values["log_folder"])
    if not values["log_folder"] or logs.is_absolute() or ".." in logs.parts:
        raise check.error(f"log_folder {values['log_folder']!r} must be a folder inside the "
                          "experiment folder (a relative path without '..')", *where,
                          "log_folder")
    if not all(isinstance(line, str) for line in values["setup"]):
        raise check.error("'setup' must be a list of shell lines (strings)", *where, "setup")
    for key, value in values["additional"].items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key) or not isinstance(
                value, (str, int, float, bool)):
            raise check.error(f"additional parameter {key!r} must be an sbatch option name "
                              "with a plain value (account = \"proj\", qos = \"high\")",
                              *where, "additional", key)
    return ExecutorSpec(
        kind=values["kind"], partition=values["partition"],
        gpus_per_node=values["gpus_per_node"], cpus_per_task=values["cpus_per_task"],
        mem_gb=values["mem_gb"], timeout_min=values["timeout_min"],
        max_parallel=values["max_parallel"], log_folder=values["log_folder"],
        setup=tuple(values["setup"]), additional=tuple(sorted(values["additional"].items())),
        poll_seconds=float(values["poll_seconds"]),
    )
