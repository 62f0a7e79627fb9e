"""Forms come from parameter schemas: a plugin's sampler gets a working form with no Qt code,
and invalid values are shown inline and refused."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox

from diffstudio.errors import ConfigError
from diffstudio.gui.forms import ContributionPicker, ParamForm, PathEdit, ScientificSpinBox
from diffstudio.plugin_manager import load_plugins
from diffstudio.specs import Contribution, Param

SCHEMA = Contribution(
    kind="sampler", id="acme-test", display_name="Acme test", description="A test sampler.",
    factory="acme:sample",
    params=(
        Param("steps", "int", 10, minimum=1, maximum=500, help="network evaluations"),
        Param("eta", "float", 1e-4, minimum=1e-8, maximum=0.5),
        Param("clip_x0", "bool", True),
        Param("spacing", "choice", "uniform", choices=("uniform", "trailing")),
        Param("label", "str", "hello"),
        Param("noise_file", "path", None, help="a .npy file"),
        Param("cache_folder", "path", None, help="folder for caches"),
    ),
)

PLUGIN = """
from diffstudio import Contribution, Param, hookimpl
from diffstudio.engine.samplers import SamplerStep, check_stop

@hookimpl
def diffstudio_samplers():
    return [Contribution(kind="sampler", id="acme-shrink", display_name="Acme shrink",
                         description="Shrinks x towards zero (a test).",
                         factory="acme_shrink:sample",
                         params=(Param("steps", "int", 5, minimum=1, maximum=50),
                                 Param("factor", "float", 0.5, minimum=0.0, maximum=1.0)))]

def sample(model, x, *, generator, callback, should_stop, steps, factor):
    for index in range(steps):
        check_stop(should_stop, index)
        if callback is not None:
            callback(SamplerStep(index, steps, float(steps - index), x, x))
        x = x * factor
    return x
"""


def test_widgets_follow_the_schema(qtbot):
    form = ParamForm.for_contribution(SCHEMA)
    qtbot.addWidget(form)
    steps = form.editors["steps"]
    assert isinstance(steps, QSpinBox) and (steps.minimum(), steps.maximum()) == (1, 500)
    eta = form.editors["eta"]
    assert isinstance(eta, ScientificSpinBox) and eta.text() == "0.0001"
    assert (eta.minimum(), eta.maximum()) == (1e-8, 0.5)
    assert isinstance(form.editors["clip_x0"], QCheckBox) and form.editors["clip_x0"].isChecked()
    spacing = form.editors["spacing"]
    assert isinstance(spacing, QComboBox)
    assert [spacing.itemText(i) for i in range(spacing.count())] == ["uniform", "trailing"]
    assert isinstance(form.editors["label"], QLineEdit)
    assert isinstance(form.editors["noise_file"], PathEdit)
    assert not form.editors["noise_file"].directory and form.editors["cache_folder"].directory
    assert "network evaluations" in steps.toolTip() and "1 .. 500" in steps.toolTip()
    assert form.validated() == SCHEMA.validate({})


def test_edited_values_are_validated(qtbot):
    form = ParamForm.for_contribution(SCHEMA)
    qtbot.addWidget(form)
    form.editors["steps"].setValue(42)
    form.editors["eta"].lineEdit().setText("2e-5")
    form.editors["clip_x0"].setChecked(False)
    form.editors["spacing"].setCurrentIndex(1)
    form.editors["noise_file"].setText("/tmp/noise.npy")
    values = form.validated()
    assert values["steps"] == 42 and values["eta"] == pytest.approx(2e-5)
    assert values["clip_x0"] is False and values["spacing"] == "trailing"
    assert values["noise_file"] == "/tmp/noise.npy" and values["cache_folder"] is None


@pytest.mark.parametrize(("name", "text", "fragment"), [
    ("steps", "0", ">= 1"),
    ("steps", "abc", "must be int"),
    ("eta", "0.9", "<= 0.5"),
])
def test_invalid_text_is_refused_and_shown_inline(qtbot, name, text, fragment):
    form = ParamForm.for_contribution(SCHEMA)
    qtbot.addWidget(form)
    form.show()
    form.editors[name].lineEdit().setText(text)
    with pytest.raises(ConfigError, match=fragment):
        form.validated()
    assert fragment in form.error_text() and not form.error_label.isHidden()
    assert "d9534f" in form.editors[name].styleSheet()  # the bad field is marked
    form.reset_defaults()
    assert form.error_text() == "" and form.validated() == SCHEMA.validate({})


def test_out_of_range_values_are_shown_not_clamped(qtbot):
    form = ParamForm.for_contribution(SCHEMA)
    qtbot.addWidget(form)
    form.set_values({"steps": 10_000, "spacing": "bogus"})
    assert form.editors["steps"].lineEdit().text() == "10000"
    with pytest.raises(ConfigError, match="<= 500"):
        form.validated()
    form.set_values({"spacing": "bogus"})
    with pytest.raises(ConfigError, match="must be one of"):
        form.validated()


def test_picker_keeps_typed_values_per_contribution(qtbot, registry):
    picker = ContributionPicker("sampler")
    qtbot.addWidget(picker)
    picker.set_contributions(registry.contributions("sampler"))
    picker.select("ddim", {"steps": 12})
    picker.select("ddpm")
    picker.select("ddim")
    assert picker.validated() == ("ddim", registry.get("sampler", "ddim").validate({"steps": 12}))
    state = picker.state()
    other = ContributionPicker("sampler")
    qtbot.addWidget(other)
    other.set_contributions(registry.contributions("sampler"))
    other.restore(state)
    assert other.current_id() == "ddim" and other.form().values()["steps"] == 12


def test_third_party_sampler_gets_a_working_form(qtbot, make_window, install_fake_plugin,
                                                  trained_run):
    install_fake_plugin("acme-shrink", "acme_shrink", PLUGIN)
    registry = load_plugins(safe_mode=False)
    window = make_window(registry_override=registry)
    view = window.sample_view
    view.select_run(str(trained_run))
    assert view.sampler_picker.select("acme-shrink")
    form = view.sampler_picker.form()
    assert set(form.editors) == {"steps", "factor"}
    # Invalid: refused inline, no job started.
    form.editors["factor"].lineEdit().setText("3")
    assert view.start() is False and view.job is None
    assert "<= 1.0" in form.error_text()
    form.set_values({"steps": 7, "factor": 0.25})
    view.options.set_values({"num_samples": 2})
    assert view.start()
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    assert view.outcome is not None
    assert view.outcome.result.sampler == "acme-shrink"
    assert view.outcome.result.params == {"steps": 7, "factor": 0.25}


# -- typed text is never rewritten: it is kept, marked and explained ------------------------------
@pytest.mark.parametrize(("name", "typed", "fragment"), [
    ("steps", "abc-1e9", "not a whole number"),  # was silently read as 19
    ("eta", "fast", "not a number"),  # was dropped key by key
    ("steps", "900", "<= 500"),
])
def test_typed_text_is_kept_marked_and_explained(qtbot, name, typed, fragment):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    holder = QWidget()
    qtbot.addWidget(holder)
    form = ParamForm.for_contribution(SCHEMA)
    elsewhere = QLineEdit()
    layout = QVBoxLayout(holder)
    layout.addWidget(form)
    layout.addWidget(elsewhere)
    holder.show()
    field = form.editors[name]
    field.setFocus()
    field.lineEdit().selectAll()
    qtbot.keyClicks(field.lineEdit(), typed)
    assert field.lineEdit().text() == typed  # every key kept
    assert fragment in form.field_message(name) and field.property("invalid")
    assert form.messages[name].isVisible()  # the line below the field says why
    assert fragment in field.toolTip() and "d9534f" in field.styleSheet()
    qtbot.keyClick(field.lineEdit(), Qt.Key.Key_Return)  # Qt would put the old value back
    elsewhere.setFocus()  # and again on leaving the field
    assert field.lineEdit().text() == typed and fragment in form.field_message(name)
    with pytest.raises(ConfigError):
        form.validated()  # no job starts with it
    field.setFocus()
    field.lineEdit().selectAll()
    qtbot.keyClicks(field.lineEdit(), "5" if name == "steps" else "0.01")
    assert form.field_message(name) == "" and not field.property("invalid")
    assert "d9534f" not in field.styleSheet() and not form.messages[name].isVisible()
    assert form.validated()[name] == pytest.approx(5 if name == "steps" else 0.01)


def test_disabled_fields_say_why(qtbot):
    form = ParamForm.for_contribution(SCHEMA)
    qtbot.addWidget(form)
    form.set_field_enabled("eta", False, "only for runs")
    assert not form.editors["eta"].isEnabled() and not form.labels["eta"].isEnabled()
    assert form.editors["eta"].toolTip().startswith("only for runs")
    form.set_field_enabled("eta", True)
    assert form.editors["eta"].isEnabled() and "only for runs" not in form.editors["eta"].toolTip()
