"""ONNX in the window: the Runs page exports a run in the background (asking before it replaces
a file), the Sample page samples it on onnxruntime and shows the provider granted."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _wheel(widget, notches: int = -1) -> None:
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * notches), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_export_from_the_runs_page_then_sample_on_onnxruntime(qtbot, make_window, trained_run,
                                                              tmp_path, monkeypatch):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    run_dir = workspace / "digits-copy"
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns("samples", "onnx"))
    window = make_window(workspace=workspace)
    runs_view = window.runs_view
    qtbot.waitUntil(lambda: len(runs_view.runs) == 1, timeout=60_000)
    assert runs_view.select_path(str(run_dir))
    assert runs_view.export_button.isEnabled()
    assert runs_view.export_selected()
    assert not runs_view.export_button.isEnabled()  # one export at a time
    qtbot.waitUntil(lambda: runs_view._export_job is None, timeout=120_000)
    exported = run_dir / "onnx" / "step-00000006.onnx"
    assert exported.is_file(), runs_view.export_status.text()
    assert "exported step-00000006.onnx" in runs_view.export_status.text()
    assert "max |onnxruntime - PyTorch|" in runs_view.export_status.text()
    assert runs_view.export_button.isEnabled()
    # Never replaced without asking: declining leaves the file as it was.
    before = exported.stat().st_mtime_ns
    asked = []
    monkeypatch.setattr(runs_view, "confirm_overwrite", lambda path: asked.append(path) or False)
    assert not runs_view.export_selected()
    assert asked == [str(exported)] and exported.stat().st_mtime_ns == before

    # The Sample page samples it on onnxruntime and says which provider computed.
    view = window.sample_view
    view.select_run(str(run_dir))
    view.backend_combo.setCurrentIndex(view.backend_combo.findData("onnx"))
    view.sampler_picker.select("ddim", {"steps": 5})
    view.options.set_values({"num_samples": 3, "seed": 1})
    assert view.start()
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    outcome = view.outcome
    assert outcome is not None, view.status.text()
    assert outcome.metadata["backend"] == "onnx"
    assert outcome.metadata["onnx_provider"] == "CPUExecutionProvider"
    assert view.backend_label.text() == "Computing on onnx (CPUExecutionProvider)"
    assert "on onnx (CPUExecutionProvider)" in view.status.text()
    # Another run: the provider shown belonged to the previous one.
    view.select_run(str(trained_run))
    assert view.backend_label.text() == ""


def test_sampling_an_unexported_run_on_onnx_says_how_to_export(qtbot, make_window,
                                                               trained_conditional_run):
    window = make_window()
    view = window.sample_view
    view.select_run(str(trained_conditional_run))
    view.backend_combo.setCurrentIndex(view.backend_combo.findData("onnx"))
    view.sampler_picker.select("ddim", {"steps": 3})
    assert view.start()
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    assert view.outcome is None
    assert "export it first with 'diffstudio onnx export" in view.status.text()


def test_the_backend_field_ignores_the_wheel_until_clicked(qtbot, make_window):
    window = make_window()
    window.resize(1024, 700)
    window.show_page("Sample")
    combo = window.sample_view.backend_combo
    combo.setCurrentIndex(0)
    _wheel(combo)
    assert combo.currentIndex() == 0
