"""The Evaluate page: an evaluation runs in the background with progress and shows FID@N with
N; copies of training images are flagged and highlighted in the retrieval grid; the comparison
table and its FID-vs-evaluations plot gather the results and export them; missing weights give
one message and the window carries on; an evaluation can be cancelled.

A randomly initialised Inception at 96 px keeps these fast (the pipeline, not FID values: the
numbers are checked against pytorch-fid in tests/evaluation).
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch

from diffstudio.gui.eval_jobs import EvalRequest

FAST = dict(weights="random", resize_to=96, inception_batch_size=16)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op and one BLAS thread (as tests/evaluation): on a busy 2-core machine two
    spin-waiting threads make the Inception several times slower."""
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    torch.set_num_threads(previous)


def _finish(qtbot, view) -> None:
    qtbot.waitUntil(lambda: view.job is None, timeout=180_000)


def _digits(registry) -> torch.Tensor:
    from diffstudio.engine.components import build_dataset

    return build_dataset(registry, "digits", {}).data


def test_run_evaluation_shows_fid_at_n_and_feeds_the_comparison(qtbot, make_window,
                                                               trained_run, tmp_path):
    window = make_window()
    view = window.evaluate_view
    window.show_page("Evaluate")
    view.select_run(str(trained_run))
    seen = []
    request = EvalRequest(location=view.current_run(), sampler="ddim",
                          sampler_params={"steps": 3}, num_samples=12, reference_limit=60,
                          metrics=("fid", "kid", "retrieval", "memorization"),
                          cache_dir=str(tmp_path / "cache"), **FAST)
    assert view.start(request)
    view.job.progress_ready.connect(lambda: seen.append(view.last_progress))
    assert view.cancel_button.isEnabled() and not view.evaluate_button.isEnabled()
    _finish(qtbot, view)
    outcome = view.outcome
    assert outcome is not None, view.stage_label.text()
    assert view.last_progress is not None  # progress reached the page
    text = view.metrics_label.text()
    assert "FID@12" in text and "N = 12 generated, 60 reference" in text
    assert "fewer than 2048" in text  # the small-N warning is shown, not hidden
    assert "KID" in text and "memorisation" in text
    assert outcome.path is not None and outcome.path.parent == trained_run / "evaluations"
    # The completion is announced in the bar, with where the results went.
    assert "Evaluated 12 samples" in window.notification_area.latest_text()
    assert str(outcome.path) in window.notifications.items[-1].message

    # The retrieval grid: every sample, then its 5 neighbours, nearest first.
    assert set(outcome.retrieval) == {"inception", "pixel"}
    assert view.space_combo.count() == 2
    assert view.grid.order() == list(range(12)) and view.grid.k == 5
    found = outcome.retrieval[view.space_combo.currentData()]
    assert np.all(np.diff(found.distances, axis=1) >= 0)
    first = int(found.indices[0, 0])
    assert f"#{first}" in view.grid.tooltip_for(0, 1)
    reference = _digits(window.studio.registry)
    assert np.array_equal(outcome.neighbour_image(first), reference[first].numpy())
    view.sort_combo.setCurrentIndex(view.sort_combo.findData("distance"))
    nearest = found.distances[:, 0]
    assert list(nearest[view.grid.order()]) == sorted(nearest)

    # The comparison tab picks the new result up: one row, one plotted series.
    qtbot.waitUntil(lambda: len(view.comparison.rows) == 1 and view.comparison.job is None,
                    timeout=60_000)
    row = view.comparison.rows[0]
    assert (row.sampler, row.steps, row.network_evaluations, row.n) == ("ddim", 3, 3, 12)
    assert view.comparison.table.rowCount() == 1
    assert "@12 *" in view.comparison.table.item(0, 6).text()  # random weights: marked
    assert view.comparison.series_count() == 1
    out_csv = view.comparison.export(str(tmp_path / "table.csv"))
    out_md = view.comparison.export(str(tmp_path / "table.md"))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "table.csv").read_text())))
    assert out_csv and out_md and rows[0]["sampler"] == "ddim" and rows[0]["n"] == "12"
    assert "| ddim |" in (tmp_path / "table.md").read_text()
    # Exporting over an existing file without the dialog's consent is refused, not done.
    assert view.comparison.export(str(tmp_path / "table.csv")) is None
    assert "already exists" in window.notifications.items[-1].message


def test_copies_of_training_images_are_flagged_and_highlighted(qtbot, make_window, tmp_path):
    window = make_window()
    view = window.evaluate_view
    reference = _digits(window.studio.registry)
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand((4, *reference.shape[1:]), generator=generator) * 2 - 1
    copies = reference[[5, 17, 300, 901]]
    folder = tmp_path / "samples"
    folder.mkdir()
    samples = torch.cat([noise[:2], copies, noise[2:]]).numpy()
    np.savez(folder / "samples.npz", samples=samples, seeds=np.arange(8))
    request = EvalRequest(location=str(folder), reference="digits",
                          metrics=("retrieval", "memorization"),
                          cache_dir=str(tmp_path / "cache"), **FAST)
    assert view.start(request)
    _finish(qtbot, view)
    outcome = view.outcome
    assert outcome is not None, view.stage_label.text()
    assert outcome.flagged == [2, 3, 4, 5]  # the four copies, and nothing else
    pixel = outcome.retrieval["pixel"]
    assert list(pixel.indices[2:6, 0]) == [5, 17, 300, 901]
    assert np.allclose(pixel.distances[2:6, 0], 0.0)
    assert "4 of 8 samples flagged" in view.metrics_label.text()
    assert "Flagged samples: 2, 3, 4, 5" in view.metrics_label.text()
    view.space_combo.setCurrentIndex(view.space_combo.findData("pixel"))
    view.show_combo.setCurrentIndex(view.show_combo.findData("flagged"))
    assert view.grid.order() == [2, 3, 4, 5]
    assert "flagged" in view.grid.tooltip_for(2, 0)
    assert "not flagged" in view.grid.tooltip_for(0, 0)
    view.tabs.setCurrentIndex(1)
    image = view.grid.grab().toImage()
    shade = image.pixelColor(2, view.grid.row_height() // 2)  # left margin of the first row
    assert (shade.red(), shade.green(), shade.blue()) == (253, 226, 224)  # highlighted
    assert (folder / next(p.name for p in folder.glob("evaluation-*.json"))).is_file()


def test_missing_weights_give_one_message_and_the_window_carries_on(qtbot, make_window,
                                                                    trained_run, tmp_path,
                                                                    monkeypatch):
    monkeypatch.delenv("DIFFSTUDIO_FID_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty hub cache
    window = make_window()
    view = window.evaluate_view
    view.select_run(str(trained_run))
    view.download_box.setChecked(False)
    assert "Not found" in view.weights_status.text()
    assert "torch-home" in view.weights_status.text()  # says where to put the file
    from diffstudio.engine.evaluation import describe_fid_weights

    assert view.weights_status.text() == describe_fid_weights("", download=False).message
    assert view.start(EvalRequest(location=view.current_run(), download=False,
                                  num_samples=4, cache_dir=str(tmp_path / "cache")))
    _finish(qtbot, view)
    assert view.outcome is None
    message = window.notifications.items[-1].message
    assert message.startswith("Evaluation failed") and "pt_inception" in message
    assert "torch-home" in message
    assert view.evaluate_button.isEnabled()
    # A file that is not there: named in the one message.
    view.weights_edit.setText(str(tmp_path / "nope.pth"))
    assert "No file at" in view.weights_status.text()
    assert view.start(EvalRequest(location=view.current_run(),
                                  weights=str(tmp_path / "nope.pth"), num_samples=4))
    _finish(qtbot, view)
    assert "nope.pth" in window.notifications.items[-1].message


def test_an_evaluation_can_be_cancelled(qtbot, make_window, trained_run, tmp_path):
    window = make_window()
    view = window.evaluate_view
    view.select_run(str(trained_run))
    assert view.start(EvalRequest(location=view.current_run(), sampler="ddpm",
                                  sampler_params={"steps": 1000}, num_samples=64,
                                  cache_dir=str(tmp_path / "cache"), **FAST))
    qtbot.waitUntil(lambda: view.last_progress is not None
                    and view.last_progress.stage == "generate", timeout=120_000)
    view.cancel()
    _finish(qtbot, view)
    assert view.outcome is None and view.stage_label.text().startswith("Cancelled")
    assert not list((trained_run / "evaluations").glob("ddpm-*.json"))


def test_bad_settings_are_said_and_the_choices_are_remembered(qtbot, make_window, trained_run):
    window = make_window()
    view = window.evaluate_view
    view.from_folder.setChecked(True)
    assert not view.start()  # no folder chosen
    assert "choose a samples folder" in window.notifications.items[-1].message
    view.from_run.setChecked(True)
    view.select_run(str(trained_run))
    view.metric_boxes["density_coverage"].setChecked(True)
    view.options.set_values({"num_samples": 300})
    state = view.state()
    window.close()
    again = make_window()
    again.evaluate_view.restore(state)
    assert again.evaluate_view.current_run() == str(trained_run.resolve())
    assert again.evaluate_view.metric_boxes["density_coverage"].isChecked()
    assert again.evaluate_view.options.values()["num_samples"] == 300


def test_the_comparison_table_sorts_numbers_as_numbers(qtbot):
    """Sorting calls the items' __lt__ from C++; a call back into QTableWidgetItem.__lt__
    recursed until the stack overflowed (it crashed the window with two rows)."""
    from PySide6.QtCore import Qt

    from diffstudio.engine.evaluation import ComparisonRow
    from diffstudio.gui.settings import Preferences, open_settings
    from diffstudio.gui.studio import Studio
    from diffstudio.gui.views.comparison_panel import COLUMNS, ComparisonPanel

    def row(name, evaluations, fid):
        return ComparisonRow(name, "unet", "linear", "ddim", evaluations, evaluations, 256, fid,
                             0.01, 0.001, 60.0, 1.0, True, f"/results/{name}.json")

    panel = ComparisonPanel(Studio(Preferences(open_settings())))
    qtbot.addWidget(panel)
    panel.set_rows([row("b", 100, 9.5), row("a", 10, 40.0), row("c", 1000, None),
                    row("d", 50, 12.25)])
    panel.table.sortItems(COLUMNS.index("NFE"), Qt.SortOrder.AscendingOrder)
    assert [r.network_evaluations for r in panel.rows_in_view()] == [10, 50, 100, 1000]
    panel.table.sortItems(COLUMNS.index("FID@N"), Qt.SortOrder.AscendingOrder)
    assert [r.run for r in panel.rows_in_view()] == ["b", "d", "a", "c"]  # no FID last
    panel.table.sortItems(COLUMNS.index("Run"), Qt.SortOrder.DescendingOrder)
    assert [r.run for r in panel.rows_in_view()] == ["d", "c", "b", "a"]
    assert panel.series_count() == 3  # one line per run and sampler with a FID


def test_a_step_sweep_fills_the_fid_against_evaluations_plot(qtbot, make_window, trained_run,
                                                             tmp_path):
    import dataclasses

    from diffstudio.errors import ConfigError

    window = make_window()
    view = window.evaluate_view
    view.select_run(str(trained_run))
    view.sampler_picker.select("ddim", {"steps": 50})
    view.random_box.setChecked(True)
    for name, box in view.metric_boxes.items():
        box.setChecked(name in ("fid", "kid"))
    small = {"num_samples": 8, "reference_limit": 40}  # set_values resets the others
    view.options.set_values({**small, "step_sweep": "x, 2"})
    with pytest.raises(ConfigError, match="whole numbers"):
        view.build_request()
    view.options.set_values({**small, "step_sweep": "2, 5000"})
    with pytest.raises(ConfigError, match="the run has 1000 timesteps"):
        view.build_request()  # said before anything runs, not after the first evaluations
    view.options.set_values({**small, "step_sweep": "2; 4, 2"})
    request = view.build_request()
    assert request.num_samples == 8
    assert request.step_sweep == (2, 4)
    assert [params["steps"] for params in request.evaluations()] == [2, 4]
    request = dataclasses.replace(request, resize_to=96, inception_batch_size=16,
                                  cache_dir=str(tmp_path / "cache"))
    assert view.start(request)
    job, labels = view.job, []
    job.progress_ready.connect(lambda: labels.append(view.stage_label.text()))
    _finish(qtbot, view)
    assert job.sweep_status.startswith("Evaluation 2 of 2 (ddim, 4 steps)")
    assert any(text.startswith("Evaluation 1 of 2 (ddim, 2 steps) · ") for text in labels)
    outcome = view.outcome
    assert outcome is not None, view.stage_label.text()
    assert len(outcome.paths) == 2 and outcome.path == outcome.paths[-1]
    assert outcome.result.source["network_evaluations"] == 4  # the last one is shown
    assert view.tabs.currentIndex() == 2 and "2 evaluations" in view.stage_label.text()
    qtbot.waitUntil(lambda: view.comparison.job is None and len(view.comparison.rows) >= 2,
                    timeout=60_000)
    evaluations = sorted(r.network_evaluations for r in view.comparison.rows
                         if r.result_file in {str(p) for p in outcome.paths})
    assert evaluations == [2, 4]
    assert view.comparison.series_count() >= 1
    view.comparison.set_rows(list(reversed(view.comparison.rows)))  # in any order read
    shown = [row.network_evaluations for row in view.comparison.rows_in_view()]
    assert shown == [2, 4]  # one run and sampler: the sweep reads top to bottom
    # A sampler without steps, or a folder, cannot be swept: said before anything runs.
    view.sampler_picker.select("annealed-langevin")
    with pytest.raises(ConfigError, match="no 'steps' parameter"):
        view.build_request()
    view.from_folder.setChecked(True)
    view.folder_edit.setText(str(tmp_path))
    with pytest.raises(ConfigError, match="samples a run"):
        view.build_request()


def test_a_first_large_reference_encoding_is_announced_and_can_be_made_smaller(
        qtbot, make_window, trained_run, tmp_path, monkeypatch):
    """The first evaluation against a reference set says how many images it encodes and how
    long that takes, and offers a subset; pressing it restarts on the subset."""
    from diffstudio.gui.views import evaluate_view as module

    monkeypatch.setattr(module, "REFERENCE_OFFER", 40)  # digits has 1,797: "large" here
    window = make_window()
    view = window.evaluate_view
    window.show_page("Evaluate")
    view.select_run(str(trained_run))
    request = EvalRequest(location=view.current_run(), sampler="ddim",
                          sampler_params={"steps": 2}, num_samples=8, reference_limit=0,
                          metrics=("fid",), cache_dir=str(tmp_path / "cache"), **FAST)
    assert view.start(request)
    notes: list[str] = []
    view.job.progress_ready.connect(lambda: notes.append(view.reference_note.text()))
    qtbot.waitUntil(lambda: view.reference_row.isVisible()
                    and "left at the rate so far" in view.reference_note.text(),
                    timeout=120_000)
    assert "encoding 1,797 reference images with Inception once" in view.reference_note.text()
    assert "ETA" in view.stage_label.text()
    assert view.smaller_button.isVisible()
    first = view.job
    qtbot.mouseClick(view.smaller_button, module.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.job is not None and view.job is not first, timeout=60_000)
    assert view.options.values()["reference_limit"] == 40  # the form says what runs
    _finish(qtbot, view)
    assert view.outcome is not None, view.stage_label.text()
    assert "N = 8 generated, 40 reference" in view.metrics_label.text()
    assert not view.reference_row.isVisible()
    # A repeat reads the cache: no announcement this time.
    notes.clear()
    import dataclasses

    assert view.start(dataclasses.replace(request, reference_limit=40))
    view.job.progress_ready.connect(lambda: notes.append(view.reference_note.text()))
    _finish(qtbot, view)
    assert view.outcome is not None and notes and not any(notes), notes
