"""The engine imports no Qt; the plugin declarations import nothing heavy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6", "qtpy")
# Everything except the GUI package must stay free of Qt.
NON_GUI = [
    path for path in (ROOT / "diffstudio").rglob("*.py")
    if "gui" not in path.relative_to(ROOT / "diffstudio").parts
] + list((ROOT / "plugins").rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_engine_and_plugins_import_no_qt():
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in NON_GUI
        for name in _imports(path)
        if name.split(".")[0] in QT_MODULES
    ]
    assert NON_GUI and not offenders, offenders


def test_importing_the_engine_loads_no_qt_at_run_time():
    code = (
        "import sys, diffstudio.engine.training, diffstudio.engine.sampling, diffstudio.cli;"
        f"bad=[m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r}]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_listing_plugins_imports_no_torch():
    code = (
        "import sys; from diffstudio.plugin_manager import load_plugins; r = load_plugins();"
        "assert r.ids('sampler'); assert 'torch' not in sys.modules, 'plugins imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
