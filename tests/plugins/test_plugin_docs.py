"""docs/plugins.md, the author's guide, stays complete and true (after datasette's test_docs):
every hook, every Param type, every public name of diffstudio.testing and every fixture of its
pytest plugin is documented, every ``plugins`` action is shown, every ``--kind`` of ``plugins
new`` is listed, and the guide's Python blocks run (its ``# my_package/...`` blocks are written
out as a package and imported, its ``# tests/...`` blocks run with ``pytest -p
diffstudio.testing``, then every other block runs in order)."""

from __future__ import annotations

import importlib
import re
import sys
import typing
from pathlib import Path

import pytest

import diffstudio.pytest_plugin
import diffstudio.testing
from diffstudio import hookspecs
from diffstudio.app.plugin_scaffold import KINDS as SCAFFOLD_KINDS
from diffstudio.cli.plugins import ACTIONS
from diffstudio.specs import ParamType

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
TEXT = GUIDE.read_text(encoding="utf-8")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
FILE_LINE = re.compile(r"^# (my_package/[\w/]+\.py)\n")
TEST_LINE = re.compile(r"^# tests/(test_\w+)\.py\n")

pytest_plugins = ["pytester"]


@pytest.mark.parametrize("hook", sorted(hookspecs.HOOK_KINDS))
def test_every_hook_has_a_section_with_an_example(hook):
    heading = f"### `{hook}()`"
    assert heading in TEXT, f"docs/plugins.md has no section {heading}"
    section = TEXT.split(heading, 1)[1].split("\n### ", 1)[0]
    assert "factory" in section and "```python" in section, f"{hook}: no example"


@pytest.mark.parametrize("param_type", typing.get_args(ParamType))
def test_every_param_type_is_documented(param_type):
    assert f"| `{param_type}` |" in TEXT


@pytest.mark.parametrize("name", diffstudio.testing.__all__)
def test_every_public_name_of_the_kit_is_documented(name):
    assert f"`{name}" in TEXT


@pytest.mark.parametrize("name", diffstudio.pytest_plugin.__all__)
def test_every_fixture_of_the_kit_is_documented(name):
    assert f"| `{name}` |" in TEXT


@pytest.mark.parametrize("kind", SCAFFOLD_KINDS)
def test_every_kind_of_plugins_new_is_listed(kind):
    assert f"| `{kind}`" in TEXT and "--kind sampler|schedule|network|dataset" in TEXT


@pytest.mark.parametrize("action", ACTIONS)
def test_every_plugins_action_is_shown(action):
    assert re.search(rf"diffstudio plugins( {action}|\s*#)" if action == "list"
                     else rf"diffstudio plugins {action}\b", TEXT), action


def test_the_guides_code_runs(tmp_path, monkeypatch, pytester):
    blocks = BLOCK.findall(TEXT)
    assert len(blocks) >= 8
    files: dict[str, str] = {}
    for block in blocks:
        match = FILE_LINE.match(block)
        if match:
            files[match.group(1)] = files.get(match.group(1), "") + block + "\n"
    assert {"my_package/plugin.py", "my_package/sampler.py", "my_package/schedule.py",
            "my_package/data.py", "my_package/nets.py"} <= set(files)
    (tmp_path / "my_package").mkdir()
    (tmp_path / "my_package" / "__init__.py").write_text("")
    for relative, source in files.items():
        (tmp_path / relative).write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        for relative in files:  # each file imports on its own
            importlib.import_module(relative[:-3].replace("/", "."))
        tests = {m.group(1): block for block in blocks if (m := TEST_LINE.match(block))}
        assert tests, "the guide shows no test file using the kit's fixtures"
        pytester.makepyfile(**tests)
        result = pytester.runpytest("-p", "diffstudio.testing", "-q", "-p", "no:cacheprovider")
        assert result.ret == 0, result.stdout.str()
        outcomes = result.parseoutcomes()
        written = sum(block.count("\ndef test_") for block in tests.values())
        assert outcomes.get("passed") == written and not {"failed", "errors"} & set(outcomes), (
            outcomes)
        for index, block in enumerate(blocks):
            if FILE_LINE.match(block) or TEST_LINE.match(block):
                continue
            namespace: dict[str, object] = {"__name__": f"guide_block_{index}"}
            try:
                exec(compile(block, f"docs/plugins.md block {index}", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"docs/plugins.md block {index} fails:\n{block}") from exc
            for value in list(namespace.values()):  # the guide's conformance test class
                if isinstance(value, type) and value.__name__.startswith("Test") and issubclass(
                        value, diffstudio.testing.SamplerConformance):
                    value().test_signature_matches_schema()
                    value().test_output_shape_and_dtype("points")
    finally:
        for name in [m for m in sys.modules if m == "my_package" or m.startswith("my_package.")]:
            del sys.modules[name]
