"""The window's forms as a daily tool: the wheel scrolls the page instead of changing the field
under the pointer, fields that do not apply are disabled, the action buttons stay in view."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QScrollArea, QWidget


def _wheel(widget: QWidget, notches: int = -1) -> None:
    """A wheel turn (down for negative ``notches``) with the pointer over ``widget``."""
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * notches), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def _scroll_area_of(widget: QWidget) -> QScrollArea:
    parent = widget.parentWidget()
    while not isinstance(parent, QScrollArea):
        parent = parent.parentWidget()
    return parent


def _value(widget: QWidget) -> object:
    return widget.currentIndex() if hasattr(widget, "currentIndex") else widget.value()


def test_the_wheel_scrolls_the_page_not_the_field_under_the_pointer(qtbot, make_window):
    window = make_window()
    window.resize(1024, 700)
    fields = {
        "Evaluate": window.evaluate_view.options.editors["reference_limit"],  # the 0 -> 9 case
        "Train": window.train_view.form.editors["batch_size"],
        "Sample": window.sample_view.options.editors["num_samples"],
        "Model & schedule": window.model_view.network_picker.combo,
    }
    for page, field in fields.items():
        window.show_page(page)
        qtbot.waitExposed(window)
        area = _scroll_area_of(field)
        area.ensureWidgetVisible(field)
        bar = area.verticalScrollBar()
        bar.setValue(bar.minimum())
        before, scrolled_from = _value(field), bar.value()
        assert field.focusPolicy() == Qt.FocusPolicy.StrongFocus, page  # no focus by wheel
        assert not field.hasFocus()
        _wheel(field, -1)
        _wheel(field, -1)
        assert _value(field) == before, f"{page}: the wheel changed an unfocused field"
        assert not field.hasFocus()
        if bar.maximum() > bar.minimum():
            assert bar.value() > scrolled_from, f"{page}: the page did not scroll"
    # Clicked into, a field takes the wheel as usual.
    field = fields["Evaluate"]
    window.show_page("Evaluate")
    field.setFocus()
    qtbot.waitUntil(field.hasFocus)
    _wheel(field, 1)
    assert field.value() == 1


def test_sliders_and_toolbar_fields_are_guarded_too(qtbot, make_window):
    window = make_window()
    slider = window.model_view.t_slider  # not in a scroll area: the wheel does nothing
    window.show_page("Model & schedule")
    before = slider.value()
    _wheel(slider, 3)
    assert slider.value() == before
    threads = window.threads_spin
    before = threads.value()
    _wheel(threads, -1)
    assert threads.value() == before


def test_a_failed_dataset_load_leaves_no_old_preview_and_its_error_goes(qtbot, make_window,
                                                                        tmp_path):
    window = make_window()
    view = window.data_view
    qtbot.waitUntil(lambda: view.preview is not None, timeout=120_000)
    assert view.images.caption()
    view.picker.select("image-folder", {"root": str(tmp_path / "no-such-folder")})
    assert view.info.text() == ""  # the digits description is gone with the choice
    assert view.load()
    qtbot.waitUntil(lambda: "Could not load" in view.info.text(), timeout=120_000)
    assert view.images.caption() == ""  # not the digits' "the first 64 of 1,797"
    view.picker.select("digits")
    assert "Could not load" not in view.info.text()


def test_no_field_anywhere_takes_the_wheel_unfocused(qtbot, make_window):
    """Every spin box, combo box and slider of every page, the toolbar and the Preferences
    dialog (the new ones among them: Gallery, Experiments, Plugins, the 2-D lab): a wheel turn
    over it, unfocused, leaves its value as it was."""
    from PySide6.QtWidgets import QAbstractSlider, QAbstractSpinBox, QComboBox, QScrollBar

    from diffstudio.gui.preferences_dialog import PreferencesDialog

    window = make_window()
    dialog = PreferencesDialog(window)
    checked = 0
    for root in (window, dialog):
        for kind in (QAbstractSpinBox, QComboBox, QAbstractSlider):
            for field in root.findChildren(kind):
                if isinstance(field, QScrollBar) or not field.isEnabled():
                    continue
                if hasattr(field, "count") and field.count() < 2:
                    continue  # a combo with one entry cannot change
                field.clearFocus()
                before = _value(field)
                _wheel(field, -1)
                _wheel(field, 1)
                _wheel(field, 1)
                assert _value(field) == before, (type(field).__name__, field.objectName(),
                                                 field.parentWidget())
                checked += 1
    assert checked > 40  # the pages' forms, the toolbar, the lab, the dialog
    dialog.deleteLater()
