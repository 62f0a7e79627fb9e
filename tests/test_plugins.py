"""Plugin discovery and isolation: a broken plugin is named, rolled back, and breaks nothing."""

from __future__ import annotations

import json

from diffstudio.cli import main
from diffstudio.plugin_manager import load_plugins

GOOD = """
from diffstudio import Contribution, Param, hookimpl

@hookimpl
def diffstudio_samplers():
    return [Contribution(kind="sampler", id="acme-euler", display_name="Acme Euler",
                         description="A test sampler.", factory="acme_good:sample",
                         params=(Param("steps", "int", 10, minimum=1, maximum=100),))]

def sample(model, x, *, generator, callback, should_stop, steps):
    return x
"""

IMPORT_ERROR = """
import a_module_that_does_not_exist
"""

INVALID_SPEC = """
from diffstudio import Contribution, Param, hookimpl

@hookimpl
def diffstudio_samplers():
    return [Contribution(kind="sampler", id="Bad Id!", display_name="x", description="x",
                         factory="acme_invalid:sample")]
"""

RAISING_HOOK = """
from diffstudio import Contribution, hookimpl

@hookimpl
def diffstudio_schedules():
    # This one succeeds; the samplers hook below raises: neither may be kept (rollback).
    return [Contribution(kind="schedule", id="half", display_name="Half", description="x",
                         factory="acme_raises:make")]

@hookimpl
def diffstudio_samplers():
    raise RuntimeError("boom in the hook")
"""

CLASHING_ID = """
from diffstudio import Contribution, hookimpl

@hookimpl
def diffstudio_samplers():
    return [Contribution(kind="sampler", id="ddim", display_name="Fake DDIM", description="x",
                         factory="acme_clash:sample")]
"""

BUILTIN_SAMPLERS = {"ddpm", "ddim"}


def _builtins_ok(registry) -> None:
    assert set(registry.ids("sampler")) >= BUILTIN_SAMPLERS
    assert {"linear", "cosine", "quadratic", "sigmoid"} <= set(registry.ids("schedule"))
    assert {"unet", "mlp"} <= set(registry.ids("network"))
    assert "digits" in registry.ids("dataset")
    assert all(plugin.ok for plugin in registry.plugins if plugin.builtin)


def test_builtins_load_through_entry_points():
    registry = load_plugins(safe_mode=False)
    _builtins_ok(registry)
    builtin = [plugin for plugin in registry.plugins if plugin.builtin]
    assert builtin and all(plugin.distribution == "diffstudio" for plugin in builtin)


def test_good_third_party_plugin_loads(install_fake_plugin):
    install_fake_plugin("acme-good", "acme_good", GOOD, version="2.3")
    registry = load_plugins(safe_mode=False)
    plugin = next(p for p in registry.plugins if p.name == "acme-good")
    assert plugin.ok and plugin.version == "2.3" and not plugin.builtin
    contribution = registry.get("sampler", "acme-euler")
    assert contribution.plugin == "acme-good"
    assert contribution.load()(None, 5, generator=None, callback=None, should_stop=None,
                               steps=1) == 5


def test_broken_plugins_are_isolated_and_named(install_fake_plugin):
    install_fake_plugin("acme-import", "acme_import", IMPORT_ERROR)
    install_fake_plugin("acme-invalid", "acme_invalid", INVALID_SPEC)
    install_fake_plugin("acme-raises", "acme_raises", RAISING_HOOK)
    install_fake_plugin("acme-clash", "acme_clash", CLASHING_ID)
    install_fake_plugin("acme-good", "acme_good", GOOD)
    registry = load_plugins(safe_mode=False)
    by_name = {plugin.name: plugin for plugin in registry.plugins}

    assert by_name["acme-import"].error_stage == "import"
    assert "a_module_that_does_not_exist" in by_name["acme-import"].error
    assert by_name["acme-import"].distribution == "acme-import"
    assert by_name["acme-invalid"].error_stage == "spec"
    assert "Bad Id!" in by_name["acme-invalid"].error
    assert by_name["acme-raises"].error_stage == "hook"
    assert "boom in the hook" in by_name["acme-raises"].error
    assert "RuntimeError" in by_name["acme-raises"].traceback
    assert "already provided" in by_name["acme-clash"].error

    # Rolled back: nothing of a failed plugin stays registered or contributed.
    assert "half" not in registry.ids("schedule")
    assert registry.manager.get_plugin("acme-raises") is None
    assert registry.get("sampler", "ddim").plugin == "builtin-samplers"
    assert {p.name for p in registry.errors} == {
        "acme-import", "acme-invalid", "acme-raises", "acme-clash"
    }
    # Everything else still works.
    _builtins_ok(registry)
    assert "acme-euler" in registry.ids("sampler")


def test_safe_mode_loads_builtins_only(install_fake_plugin, monkeypatch):
    install_fake_plugin("acme-good", "acme_good", GOOD)
    registry = load_plugins(safe_mode=True)
    _builtins_ok(registry)
    assert "acme-euler" not in registry.ids("sampler")
    assert next(p for p in registry.plugins if p.name == "acme-good").skipped
    monkeypatch.setenv("DIFFSTUDIO_SAFE_MODE", "1")
    assert load_plugins().safe_mode


def test_unknown_id_message_lists_available():
    registry = load_plugins(safe_mode=True)
    try:
        registry.get("sampler", "nope")
    except Exception as exc:
        assert "ddim" in str(exc) and "nope" in str(exc)
    else:
        raise AssertionError("expected an error")


def test_cli_plugins_lists_errors_as_text_and_json(install_fake_plugin, capsys):
    install_fake_plugin("acme-import", "acme_import", IMPORT_ERROR)
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert "acme-import" in text and "ERROR" in text and "ddim" in text
    assert main(["plugins", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    entry = next(p for p in payload["plugins"] if p["name"] == "acme-import")
    assert entry["status"] == "error" and entry["error_stage"] == "import"
    assert main(["--safe-mode", "plugins", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["safe_mode"] is True


SLOW_IMPORT = """
import time
time.sleep(0.3)
from diffstudio import hookimpl
"""


def test_a_slow_plugin_is_reported_once_with_its_time(install_fake_plugin, capsys, monkeypatch):
    import diffstudio.plugin_manager as plugin_manager

    monkeypatch.setattr(plugin_manager, "SLOW_PLUGIN_SECONDS", 0.2)  # the test sleeps 0.3 s
    install_fake_plugin("acme-slow", "acme_slow", SLOW_IMPORT)
    registry = load_plugins()
    assert [p.name for p in registry.slow] == ["acme-slow"]
    assert registry.slow[0].load_seconds >= 0.3
    message = registry.slow_message()
    assert "acme-slow (0.3 s)" in message and "--safe-mode" in message
    import sys

    sys.modules.pop("acme_slow")  # as in a new process: the CLI imports it afresh
    assert main(["plugins", "--json"]) == 0
    captured = capsys.readouterr()
    entry = next(p for p in json.loads(captured.out)["plugins"] if p["name"] == "acme-slow")
    assert entry["load_seconds"] >= 0.3
    notes = [line for line in captured.err.splitlines() if "slow plugin" in line]
    assert len(notes) == 1 and "acme-slow" in notes[0]
