"""Plugin contribution specs: what a plugin declares, without importing heavy code.

A contribution (a dataset, a noise schedule, a network or a sampler) is a :class:`Contribution`
with an id, a display name, a description, a typed parameter schema and the dotted path of the
object that implements it (``"package.module:attribute"``), imported only when first used. The GUI
builds its forms and the CLI its options from the schema, so a plugin needs no Qt code.

Example (from a plugin's hook implementation)::

    Contribution(
        kind="sampler",
        id="my-sampler",
        display_name="My sampler",
        description="Euler steps on the probability-flow ODE.",
        params=(Param("steps", "int", 50, minimum=1, maximum=10000, help="network evaluations"),),
        factory="my_package.sampler:sample",
    )
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from diffstudio.errors import ConfigError, PluginError

__all__ = ["KINDS", "Contribution", "Param", "ParamType", "validate_params"]

ParamType = Literal["int", "float", "bool", "choice", "str", "path"]
KINDS: tuple[str, ...] = ("dataset", "schedule", "network", "sampler")
_PARAM_TYPES = ("int", "float", "bool", "choice", "str", "path")
_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Param:
    """One typed parameter of a contribution.

    ``minimum``/``maximum`` bound ``int`` and ``float`` parameters (inclusive); ``choices`` lists
    the allowed values of a ``choice`` parameter. A ``path`` default of ``None`` means optional.
    """

    name: str
    type: ParamType
    default: Any
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None

    def check_spec(self) -> None:
        """Raise :class:`ConfigError` when the parameter's own declaration is inconsistent."""
        if not isinstance(self.name, str) or not _NAME_PATTERN.match(self.name):
            raise ConfigError(
                f"parameter name {self.name!r} is not a lower-case Python identifier"
            )
        if self.type not in _PARAM_TYPES:
            raise ConfigError(
                f"parameter {self.name!r} has type {self.type!r}; expected one of {_PARAM_TYPES}"
            )
        if self.type == "choice" and not self.choices:
            raise ConfigError(f"choice parameter {self.name!r} declares no choices")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ConfigError(
                f"parameter {self.name!r} has minimum {self.minimum} > maximum {self.maximum}"
            )
        if not (self.type == "path" and self.default is None):
            self.coerce(self.default)  # the default itself must be valid

    def coerce(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise :class:`ConfigError`.

        Strings are parsed (the CLI and config files pass strings); numbers are range-checked.
        """
        where = f"parameter {self.name!r}"
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        if self.type in ("int", "float"):
            try:
                if isinstance(value, bool):
                    raise TypeError
                number = float(value) if self.type == "float" else _to_int(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where} must be {self.type}, got {value!r}") from exc
            if self.type == "float" and not math.isfinite(number):
                raise ConfigError(f"{where} must be a finite number, got {value!r}")
            if self.minimum is not None and number < self.minimum:
                raise ConfigError(f"{where} must be >= {self.minimum}, got {number}")
            if self.maximum is not None and number > self.maximum:
                raise ConfigError(f"{where} must be <= {self.maximum}, got {number}")
            return number
        if self.type == "choice":
            assert self.choices is not None
            for choice in self.choices:
                if value == choice or str(value) == str(choice):
                    return choice
            raise ConfigError(f"{where} must be one of {list(self.choices)}, got {value!r}")
        if self.type == "path":
            if value is None or value == "":
                return None
            return str(Path(str(value)).expanduser())
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "help": self.help,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "choices": list(self.choices) if self.choices is not None else None,
        }


def _to_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    return int(str(value).strip())


@dataclass(frozen=True)
class Contribution:
    """What a plugin contributes: one dataset, schedule, network or sampler.

    ``factory`` is ``"module:attribute"``; :meth:`load` imports it on first use. ``tags`` are free
    hints for the GUI and CLI (for example ``"points"`` for 2-D datasets, ``"image"``).
    """

    kind: str
    id: str
    display_name: str
    description: str
    factory: str
    params: tuple[Param, ...] = ()
    tags: tuple[str, ...] = ()
    plugin: str = field(default="", compare=False)

    def check_spec(self) -> None:
        """Raise :class:`ConfigError` when the declaration is incomplete or inconsistent."""
        if self.kind not in KINDS:
            raise ConfigError(f"contribution kind {self.kind!r} is not one of {KINDS}")
        if not isinstance(self.id, str) or not _ID_PATTERN.match(self.id):
            raise ConfigError(
                f"{self.kind} id {self.id!r} must be lower case letters, digits, '-', '_' or '.'"
            )
        for attribute in ("display_name", "description"):
            if not isinstance(getattr(self, attribute), str) or not getattr(self, attribute):
                raise ConfigError(f"{self.kind} {self.id!r} has no {attribute}")
        if not isinstance(self.factory, str) or self.factory.count(":") != 1:
            raise ConfigError(
                f"{self.kind} {self.id!r} factory {self.factory!r} must look like "
                "'module:attribute'"
            )
        names = [param.name for param in self.params]
        if len(set(names)) != len(names):
            raise ConfigError(f"{self.kind} {self.id!r} declares a parameter twice: {names}")
        for param in self.params:
            if not isinstance(param, Param):
                raise ConfigError(f"{self.kind} {self.id!r} has a parameter that is not a Param")
            param.check_spec()

    def defaults(self) -> dict[str, Any]:
        return {param.name: param.default for param in self.params}

    def validate(self, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Return the full parameter dict: defaults overlaid with ``values``, all coerced."""
        return validate_params(self, values or {})

    def load(self) -> Any:
        """Import and return the implementing object (a class or function)."""
        module_name, _, attribute = self.factory.partition(":")
        try:
            module = importlib.import_module(module_name)
            return getattr(module, attribute)
        except Exception as exc:
            raise PluginError(
                f"{self.kind} {self.id!r} from plugin {self.plugin or '?'} could not be imported "
                f"from {self.factory!r}: {type(exc).__name__}: {exc}"
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "display_name": self.display_name,
            "description": self.description,
            "factory": self.factory,
            "params": [param.to_dict() for param in self.params],
            "tags": list(self.tags),
            "plugin": self.plugin,
        }


def validate_params(contribution: Contribution, values: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults of ``contribution`` overlaid with ``values``; unknown names are an error."""
    by_name = {param.name: param for param in contribution.params}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise ConfigError(
            f"{contribution.kind} {contribution.id!r} has no parameter {', '.join(unknown)}; "
            f"it takes: {', '.join(by_name) or 'no parameters'}"
        )
    result = {}
    for name, param in by_name.items():
        raw = values.get(name, param.default)
        try:
            result[name] = param.coerce(raw) if raw is not None or param.type != "path" else None
        except ConfigError as exc:
            raise ConfigError(f"{contribution.kind} {contribution.id!r}: {exc}") from exc
    return result
