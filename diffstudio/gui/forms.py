"""Forms generated from plugin parameter schemas (:class:`diffstudio.specs.Param`).

Every dataset, schedule, network and sampler form in the window is built here from the
contribution's declared parameters, so a third-party plugin gets a working form without any Qt
code of its own:

========  ===================================================================
int       a spin box bounded by the schema's minimum/maximum
float     a spin box that reads and shows scientific notation (1e-4), bounded
bool      a check box
choice    a combo box of the declared choices
str       a line edit
path      a line edit with a browse button (a folder when the name or help says so)
========  ===================================================================

What the widgets show is what gets validated: :meth:`ParamForm.validated` reads the text of each
field, checks it with :meth:`diffstudio.specs.Param.coerce` and the whole with the form's
validator (``Contribution.validate`` for a contribution), and on a bad value marks the field,
shows the message inline and raises :class:`diffstudio.errors.ConfigError` so that no job starts.

Typed text is never rewritten: the number fields accept any text (a spin box's validator would
otherwise drop the keys it does not like, so "abc-1e9" became 19), and as the user types each
field is checked; a bad one gets a red border (and the ``invalid`` property), the reason in its
tooltip and in a line right below it. The wheel changes a field only once it has the focus
(:mod:`diffstudio.gui.wheel_guard`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from diffstudio.errors import ConfigError
from diffstudio.gui import wheel_guard
from diffstudio.specs import Contribution, Param

__all__ = [
    "ContributionPicker",
    "IntSpinBox",
    "ParamForm",
    "PathEdit",
    "ScientificSpinBox",
    "field_problem",
    "label_for",
]

_INT_LIMIT = 2**31 - 1  # QSpinBox holds a C int
_FLOAT_LIMIT = 1e15
_INVALID_STYLE = "border: 1px solid #d9534f; border-radius: 2px;"
_MESSAGE_STYLE = "color: #b52a25;"
_HINT_STYLE = "color: #5a5a5a;"


_ACRONYMS = {"lr": "LR", "ema": "EMA", "snr": "SNR", "cfg": "CFG", "x0": "x_0"}


def label_for(param: Param) -> str:
    """``beta_start`` -> ``Beta start``; ``ema_decay`` -> ``EMA decay``."""
    words = [_ACRONYMS.get(word, word) for word in param.name.split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _tooltip(param: Param) -> str:
    lines = [param.help] if param.help else []
    if param.minimum is not None or param.maximum is not None:
        low = "-inf" if param.minimum is None else f"{param.minimum:g}"
        high = "inf" if param.maximum is None else f"{param.maximum:g}"
        lines.append(f"range {low} .. {high}")
    if param.choices:
        lines.append("one of: " + ", ".join(map(str, param.choices)))
    lines.append(f"default: {param.default!r}")
    return "\n".join(lines)


def field_problem(param: Param, value: Any) -> str | None:
    """Why ``value`` (as read from a field) is not valid for ``param``, in words for the
    person who typed it; None when it is valid."""
    if value is None and param.type == "path":
        return None
    try:
        param.coerce(value)
    except ConfigError as exc:
        if isinstance(value, str) and param.type == "int":
            return f"“{value}” is not a whole number; type digits only, e.g. {param.default}"
        if isinstance(value, str) and param.type == "float":
            example = f"{param.default:g}" if isinstance(param.default, int | float) else "0.5"
            return (f"“{value}” is not a number; type e.g. {example} (1e-4 and 0.0001 are "
                    "read alike)")
        return str(exc).replace(f"parameter {param.name!r} ", "")
    return None


class _KeepsTypedText:
    """Mixed into the spin boxes: text that is not a valid value stays as typed.

    ``validate`` never answers Invalid (which makes Qt drop the key silently) and focus-out does
    not put the last valid value back; the form marks the text instead (see the module
    docstring)."""

    def _keeping_typed_text(self, handler: Callable[[Any], None], event: Any) -> None:
        line = self.lineEdit()  # type: ignore[attr-defined]
        typed = line.text()
        acceptable = self.validate(typed, 0)[0] == QValidator.State.Acceptable  # type: ignore
        handler(event)
        if not acceptable and line.text() != typed:
            line.setText(typed)  # Qt wrote the last valid value back over what was typed

    def focusOutEvent(self, event: Any) -> None:
        self._keeping_typed_text(super().focusOutEvent, event)  # type: ignore[misc]

    def keyPressEvent(self, event: Any) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self._keeping_typed_text(super().keyPressEvent, event)  # type: ignore[misc]
        else:
            super().keyPressEvent(event)  # type: ignore[misc]


class IntSpinBox(_KeepsTypedText, QSpinBox):
    """An integer spin box that keeps whatever is typed (see :class:`_KeepsTypedText`)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setKeyboardTracking(False)

    def validate(self, text: str, position: int) -> object:
        try:
            value = int(text.strip())
        except ValueError:
            return QValidator.State.Intermediate, text, position
        inside = self.minimum() <= value <= self.maximum()
        state = QValidator.State.Acceptable if inside else QValidator.State.Intermediate
        return state, text, position

    def valueFromText(self, text: str) -> int:
        try:
            return int(text.strip())
        except ValueError:
            return self.value()

    def fixup(self, text: str) -> str:
        return text


class ScientificSpinBox(_KeepsTypedText, QDoubleSpinBox):
    """A double spin box for values across many orders of magnitude (1e-8 .. 1e3).

    Shows six significant digits (``0.0001`` as ``0.0001``, ``2e-05`` as ``2e-05``), accepts any
    text Python's ``float`` reads, and steps by a tenth of the value's order of magnitude.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(323)  # keep full precision; the text is formatted below
        self.setKeyboardTracking(False)

    def textFromValue(self, value: float) -> str:
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, position: int) -> object:
        try:
            value = float(text.strip())
        except ValueError:  # kept as typed and marked by the form, never dropped
            return QValidator.State.Intermediate, text, position
        inside = math.isfinite(value) and self.minimum() <= value <= self.maximum()
        state = QValidator.State.Acceptable if inside else QValidator.State.Intermediate
        return state, text, position

    def fixup(self, text: str) -> str:
        return text

    def stepBy(self, steps: int) -> None:
        value = self.value()
        step = 10.0 ** math.floor(math.log10(abs(value))) / 10.0 if value else 0.1
        self.setValue(value + steps * step)


class PathEdit(QWidget):
    """A line edit with a browse button; ``directory`` picks folders, otherwise files."""

    textChanged = Signal(str)

    def __init__(self, directory: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.directory = directory
        self.line = QLineEdit()
        self.browse = QToolButton()
        self.browse.setText("Browse…")
        self.browse.setToolTip("Choose a folder" if directory else "Choose a file")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.line, 1)
        layout.addWidget(self.browse)
        self.browse.clicked.connect(self._choose)
        self.line.textChanged.connect(self.textChanged)

    def _choose(self) -> None:
        start = self.line.text() or ""
        if self.directory:
            chosen = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        else:
            chosen, _ = QFileDialog.getOpenFileName(self, "Choose a file", start)
        if chosen:
            self.line.setText(chosen)

    def text(self) -> str:
        return self.line.text()

    def setText(self, text: str) -> None:
        self.line.setText(text)


class ParamForm(QWidget):
    """A form for a sequence of :class:`Param`; see the module docstring.

    ``validator`` turns the raw values into clean ones or raises :class:`ConfigError`
    (``Contribution.validate`` for a contribution's form).
    """

    changed = Signal()

    def __init__(
        self,
        params: Sequence[Param],
        *,
        validator: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.params: tuple[Param, ...] = tuple(params)
        self.validator = validator
        self.editors: dict[str, QWidget] = {}
        self.labels: dict[str, QLabel] = {}
        self.messages: dict[str, QLabel] = {}  # the line below a field saying what is wrong
        self.hints: dict[str, QLabel] = {}  # the line below a field saying what sampling uses
        self._tooltips: dict[str, str] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.form_layout = QFormLayout()
        self.form_layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        layout.addLayout(self.form_layout)
        for param in self.params:
            editor = self._make_editor(param)
            editor.setToolTip(_tooltip(param))
            editor.setObjectName(f"param_{param.name}")
            editor.setMinimumWidth(120)  # 1024x700 windows: the form beside its page
            label = QLabel(label_for(param))
            label.setToolTip(_tooltip(param))
            self.editors[param.name] = editor
            self.labels[param.name] = label
            self._tooltips[param.name] = _tooltip(param)
            self.form_layout.addRow(label, editor)
            self.messages[param.name] = self._hidden_row(f"message_{param.name}",
                                                         _MESSAGE_STYLE)
            self.hints[param.name] = self._hidden_row(f"hint_{param.name}", _HINT_STYLE)
            self._watch(param, editor)
        wheel_guard.guard_tree(self)  # the wheel edits a field only once it has the focus
        if not self.params:
            self.form_layout.addRow(QLabel("No parameters."))
        self.error_label = QLabel()
        self.error_label.setObjectName("formError")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b52a25;")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setVisible(False)
        layout.addWidget(self.error_label)
        self.set_values({})

    @classmethod
    def for_contribution(cls, contribution: Contribution, parent: QWidget | None = None
                         ) -> ParamForm:
        """The form of a plugin contribution, validated by ``contribution.validate``."""
        return cls(contribution.params, validator=contribution.validate, parent=parent)

    # -- building -------------------------------------------------------------------------------
    def _hidden_row(self, name: str, style: str) -> QLabel:
        """A wrapping line under a field (its error, its hint), hidden until it has text."""
        label = QLabel()
        label.setObjectName(name)
        label.setWordWrap(True)
        label.setStyleSheet(style)
        self.form_layout.addRow("", label)
        self.form_layout.setRowVisible(label, False)
        return label

    def _make_editor(self, param: Param) -> QWidget:
        if param.type == "int":
            spin = IntSpinBox()
            low = -_INT_LIMIT if param.minimum is None else max(math.ceil(param.minimum),
                                                                -_INT_LIMIT)
            high = _INT_LIMIT if param.maximum is None else min(math.floor(param.maximum),
                                                                _INT_LIMIT)
            spin.setRange(low, high)
            spin.setKeyboardTracking(False)
            spin.valueChanged.connect(self.changed)
            return spin
        if param.type == "float":
            spin = ScientificSpinBox()
            low = -_FLOAT_LIMIT if param.minimum is None else float(param.minimum)
            high = _FLOAT_LIMIT if param.maximum is None else float(param.maximum)
            spin.setRange(low, high)
            spin.valueChanged.connect(self.changed)
            return spin
        if param.type == "bool":
            box = QCheckBox()
            box.toggled.connect(self.changed)
            return box
        if param.type == "choice":
            combo = QComboBox()
            for choice in param.choices or ():
                combo.addItem(str(choice), choice)
            combo.currentIndexChanged.connect(self.changed)
            return combo
        if param.type == "path":
            hint = f"{param.name} {param.help}".lower()
            edit = PathEdit(directory="folder" in hint or "dir" in hint)
            edit.line.setPlaceholderText("(none)" if param.default is None else "")
            edit.textChanged.connect(self.changed)
            return edit
        line = QLineEdit()
        line.textChanged.connect(self.changed)
        return line

    def _watch(self, param: Param, editor: QWidget) -> None:
        """Check the field as it is typed into (the text stays as typed; see the module)."""
        if isinstance(editor, QSpinBox | QDoubleSpinBox):
            editor.lineEdit().textChanged.connect(lambda _: self.check_field(param.name))
        elif isinstance(editor, QComboBox):
            editor.editTextChanged.connect(lambda _: self.check_field(param.name))

    def check_field(self, name: str) -> str | None:
        """Mark the field ``name`` if what it shows is not valid; returns the problem."""
        param = next(p for p in self.params if p.name == name)
        problem = field_problem(param, self._raw_value(param))
        if problem is None:
            self._unmark(name)
        else:
            self._mark(name, problem)
        return problem

    def field_message(self, name: str) -> str:
        """The message shown below the field ("" when it is valid)."""
        label = self.messages[name]
        return label.text() if self.form_layout.isRowVisible(label) else ""

    def set_hints(self, hints: Mapping[str, str]) -> None:
        """Show ``hints[name]`` in grey below each named field (and hide every other hint):
        what is used for a field and why, e.g. the value the data suggests while the field is
        left at its default. A hint never changes the field's value."""
        for name, label in self.hints.items():
            text = hints.get(name, "")
            label.setText(text)
            self.form_layout.setRowVisible(label, bool(text))

    def field_hint(self, name: str) -> str:
        """The hint shown below the field ("" when none)."""
        label = self.hints[name]
        return label.text() if self.form_layout.isRowVisible(label) else ""

    def set_field_enabled(self, name: str, enabled: bool, why: str = "") -> None:
        """Enable or disable one field; ``why`` (for a disabled field) goes in its tooltip."""
        editor = self.editors[name]
        editor.setEnabled(enabled)
        self.labels[name].setEnabled(enabled)
        tip = self._tooltips[name]
        editor.setToolTip(tip if enabled or not why else f"{why}\n\n{tip}")

    # -- reading and writing ----------------------------------------------------------------------
    def _raw_value(self, param: Param) -> Any:
        editor = self.editors[param.name]
        if isinstance(editor, QSpinBox):
            text = editor.cleanText().strip()
            try:
                return int(text)
            except ValueError:
                return text
        if isinstance(editor, ScientificSpinBox):
            text = editor.cleanText().strip()
            try:
                return float(text)
            except ValueError:
                return text
        if isinstance(editor, QCheckBox):
            return editor.isChecked()
        if isinstance(editor, QComboBox):
            if editor.isEditable():  # showing a value that is not one of the choices
                index = editor.findText(editor.currentText())
                return editor.itemData(index) if index >= 0 else editor.currentText()
            return editor.currentData()
        if isinstance(editor, PathEdit):
            return editor.text().strip() or None
        assert isinstance(editor, QLineEdit)
        return editor.text()

    def values(self) -> dict[str, Any]:
        """The raw values the widgets show (not yet validated)."""
        return {param.name: self._raw_value(param) for param in self.params}

    def set_values(self, values: Mapping[str, Any]) -> None:
        """Show ``values`` (defaults for names not given). Values outside a field's range are
        shown as they are, so that :meth:`validated` reports them rather than clamping them."""
        for param in self.params:
            value = values.get(param.name, param.default)
            editor = self.editors[param.name]
            editor.blockSignals(True)
            try:
                if isinstance(editor, (QSpinBox, ScientificSpinBox)):
                    self._set_number(editor, param, value)
                elif isinstance(editor, QCheckBox):
                    editor.setChecked(bool(value))
                elif isinstance(editor, QComboBox):
                    index = next((i for i, c in enumerate(param.choices or ())
                                  if c == value or str(c) == str(value)), -1)
                    if index < 0:
                        editor.setEditable(True)  # show the unknown value; validation rejects it
                        editor.setEditText(str(value))
                    else:
                        editor.setEditable(False)
                        editor.setCurrentIndex(index)
                elif isinstance(editor, (PathEdit, QLineEdit)):
                    editor.setText("" if value is None else str(value))
            finally:
                editor.blockSignals(False)
        self.clear_error()
        for param in self.params:  # a value shown as given (out of range) is marked at once
            self.check_field(param.name)
        self.changed.emit()

    @staticmethod
    def _set_number(editor: QSpinBox | QDoubleSpinBox, param: Param, value: Any) -> None:
        try:
            number = float(value)
            inside = editor.minimum() <= number <= editor.maximum()
        except (TypeError, ValueError):
            inside = False
        if inside:
            editor.setValue(int(number) if isinstance(editor, QSpinBox) else number)
        else:
            editor.lineEdit().setText(str(value))

    def reset_defaults(self) -> None:
        self.set_values({})

    # -- validation ------------------------------------------------------------------------------
    def validated(self) -> dict[str, Any]:
        """The clean values, or :class:`ConfigError` after marking the bad field inline."""
        self.clear_error()
        raw = self.values()
        for param in self.params:
            value = raw[param.name]
            if value is None and param.type == "path":
                continue
            try:
                param.coerce(value)
            except ConfigError as exc:
                self._mark(param.name, field_problem(param, value) or str(exc))
                self.show_error(f"{label_for(param)}: {exc}")
                raise
        try:
            return self.validator(raw) if self.validator is not None else raw
        except ConfigError as exc:
            for name in self.editors:
                if repr(name) in str(exc) or f"{name} " in str(exc):
                    self._mark(name, str(exc))
            self.show_error(str(exc))
            raise

    def _mark(self, name: str, message: str) -> None:
        editor = self.editors[name]
        editor.setStyleSheet(_INVALID_STYLE)
        editor.setProperty("invalid", True)
        editor.setToolTip(f"{message}\n\n{self._tooltips[name]}")
        self.messages[name].setText(message)
        self.form_layout.setRowVisible(self.messages[name], True)

    def _unmark(self, name: str) -> None:
        editor = self.editors[name]
        if editor.property("invalid"):
            editor.setStyleSheet("")
            editor.setProperty("invalid", False)
            editor.setToolTip(self._tooltips[name])
        if self.form_layout.isRowVisible(self.messages[name]):
            self.messages[name].clear()
            self.form_layout.setRowVisible(self.messages[name], False)

    def show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(True)

    def clear_error(self) -> None:
        self.error_label.clear()
        self.error_label.setVisible(False)
        for name in self.editors:
            self._unmark(name)

    def error_text(self) -> str:
        """The message shown inline ("" when the form is valid or not yet checked)."""
        return "" if self.error_label.isHidden() else self.error_label.text()

    def set_read_only(self, read_only: bool) -> None:
        for editor in self.editors.values():
            editor.setEnabled(not read_only)


class ContributionPicker(QWidget):
    """Choose one contribution of a kind (a combo) and edit its parameters (its form).

    One form per contribution is kept, so switching back and forth keeps what was typed.
    """

    changed = Signal(str)  # the chosen id

    def __init__(self, kind: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = kind
        self.contributions: dict[str, Contribution] = {}
        self.forms: dict[str, ParamForm] = {}
        self.combo = QComboBox()
        self.combo.setObjectName(f"{kind}Combo")
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setStyleSheet("color: #5a5a5a;")
        self.stack = QStackedWidget()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo)
        layout.addWidget(self.description)
        layout.addWidget(self.stack)
        layout.addStretch(0)
        self.combo.currentIndexChanged.connect(self._on_index)

    def set_contributions(self, contributions: Sequence[Contribution]) -> None:
        """Offer ``contributions`` (keeps the current choice and typed values where possible)."""
        current = self.current_id()
        self.combo.blockSignals(True)
        self.combo.clear()
        while self.stack.count():
            widget = self.stack.widget(0)
            self.stack.removeWidget(widget)
            widget.deleteLater()
        old_values = {key: form.values() for key, form in self.forms.items()}
        self.contributions, self.forms = {}, {}
        for contribution in contributions:
            self.contributions[contribution.id] = contribution
            form = ParamForm.for_contribution(contribution)
            if contribution.id in old_values:
                form.set_values(old_values[contribution.id])
            self.forms[contribution.id] = form
            self.stack.addWidget(form)
            plugin = f" — plugin {contribution.plugin}" if contribution.plugin else ""
            self.combo.addItem(contribution.display_name, contribution.id)
            self.combo.setItemData(self.combo.count() - 1,
                                   f"{contribution.id}{plugin}\n{contribution.description}",
                                   Qt.ItemDataRole.ToolTipRole)
        self.combo.blockSignals(False)
        if current is None or not self.select(current):
            self._on_index(self.combo.currentIndex())

    def _on_index(self, index: int) -> None:
        contribution_id = self.combo.itemData(index)
        if contribution_id is None:
            self.description.clear()
            return
        contribution = self.contributions[contribution_id]
        current = self.forms[contribution_id]
        for form in self.forms.values():
            # The stack takes the height of the shown form only, not of the largest one.
            ignored = QSizePolicy.Policy.Ignored
            form.setSizePolicy(QSizePolicy.Policy.Preferred if form is current else ignored,
                               QSizePolicy.Policy.Preferred if form is current else ignored)
        self.stack.setCurrentWidget(current)
        self.stack.adjustSize()
        source = f"  [{contribution.id}, plugin {contribution.plugin}]" if contribution.plugin \
            else f"  [{contribution.id}]"
        self.description.setText(contribution.description + source)
        self.changed.emit(contribution_id)

    def current_id(self) -> str | None:
        return self.combo.currentData()

    def current_contribution(self) -> Contribution | None:
        current = self.current_id()
        return self.contributions.get(current) if current else None

    def form(self, contribution_id: str | None = None) -> ParamForm | None:
        return self.forms.get(contribution_id or self.current_id() or "")

    def select(self, contribution_id: str, values: Mapping[str, Any] | None = None) -> bool:
        """Choose ``contribution_id`` (and show ``values`` in its form); False if unknown."""
        index = self.combo.findData(contribution_id)
        if index < 0:
            return False
        if values is not None:
            self.forms[contribution_id].set_values(values)
        if index == self.combo.currentIndex():
            self._on_index(index)
        else:
            self.combo.setCurrentIndex(index)
        return True

    def validated(self) -> tuple[str, dict[str, Any]]:
        """(id, clean values) of the current choice; :class:`ConfigError` shown inline."""
        contribution_id = self.current_id()
        if contribution_id is None:
            raise ConfigError(f"no {self.kind} is available; check the Plugins page")
        form = self.forms[contribution_id]
        return contribution_id, form.validated()

    def state(self) -> dict[str, Any]:
        """What to remember between launches: the choice and each form's values."""
        return {"id": self.current_id(),
                "values": {key: form.values() for key, form in self.forms.items()}}

    def restore(self, state: Mapping[str, Any] | None) -> None:
        if not state:
            return
        for key, values in (state.get("values") or {}).items():
            if key in self.forms and isinstance(values, dict):
                known = {p.name for p in self.contributions[key].params}
                self.forms[key].set_values({k: v for k, v in values.items() if k in known})
        if state.get("id"):
            self.select(str(state["id"]))

    def set_read_only(self, read_only: bool) -> None:
        self.combo.setEnabled(not read_only)
        for form in self.forms.values():
            form.set_read_only(read_only)
