"""The public API is exactly what each public package's ``__all__`` says (the httpx
test_exported_members idea), and no module imports another module's private name."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import types
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "diffstudio"
PUBLIC = ["diffstudio", "diffstudio.engine", "diffstudio.app", "diffstudio.testing"]


@pytest.mark.parametrize("name", PUBLIC)
def test_all_lists_exactly_the_public_names(name):
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__), "a name is listed twice"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ lists {item!r}, which does not exist"
    if name == "diffstudio.engine":
        return  # lazy (PEP 562): its namespace holds only what was loaded so far
    package = hasattr(module, "__path__")

    def ours(value: object) -> bool:
        home = getattr(value, "__module__", None) or ""
        # A package re-exports from its own modules; a module defines its own names.
        return home.startswith(name + ".") or home == name if package else home == name

    public = {
        key for key, value in vars(module).items()
        if not key.startswith("_") and not isinstance(value, types.ModuleType) and ours(value)
    }
    assert public - exported == set(), f"public in {name} but not in __all__"


def test_the_engine_package_and_the_app_layer_import_without_torch():
    """The window imports them on its main thread before torch has loaded (in the background)."""
    code = ("import sys, diffstudio, diffstudio.engine, diffstudio.engine.runs, diffstudio.app, "
            "diffstudio.cli; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "False"


def _private_imports() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("diffstudio"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(PACKAGE.parent)}: "
                                     f"from {node.module} import {alias.name}")
    return found


def test_no_module_imports_another_modules_private_name():
    assert _private_imports() == []
