"""Sampling from the window: live x_t / predicted x_0 frames stream in (throttled), a job can
be cancelled, results are saved with the engine, samplers are compared, and 2-D runs draw
particles."""

from __future__ import annotations

import numpy as np

from diffstudio.app.sources import ModelSource
from diffstudio.gui.sampling_jobs import SampleJob, SampleRequest
from diffstudio.gui.workers import Mailbox


def _sample_view(window, run_dir):
    view = window.sample_view
    view.select_run(str(run_dir))
    assert view.current_run() == str(run_dir.resolve())
    return view


def test_sampling_streams_live_frames_and_saves(qtbot, make_window, trained_run):
    window = make_window()
    view = _sample_view(window, trained_run)
    view.sampler_picker.select("ddim", {"steps": 40})
    view.options.set_values({"num_samples": 4, "seed": 3, "strip_steps": 5})
    assert view.start()
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    outcome = view.outcome
    assert outcome is not None and outcome.samples.shape == (4, 1, 8, 8)
    assert view.frames_painted >= 1
    assert view.x_view.image() is not None and view.x0_view.image() is not None
    # The strip keeps 5 chosen steps of the first sample, from the noisiest to the last.
    assert [frame.index for frame in outcome.trajectory] == [0, 10, 20, 29, 39]
    assert outcome.trajectory[0].x.shape == (1, 8, 8)
    assert view.strip_view.image() is not None
    # Throttled by time: at most 10 frames a second (the default) reach the view, never one
    # per step queued up; the last step's frame is always sent.
    seconds = outcome.result.seconds
    assert outcome.frames_sent <= 10 * seconds + 2
    assert outcome.frames_sent + outcome.frames_skipped >= 40
    assert outcome.result.network_evaluations == 40
    assert "40 network evaluations" in view.status.text()

    assert view.save_button.isEnabled()
    view.save()
    qtbot.waitUntil(lambda: any("Saved 4 samples" in n.message
                                for n in window.notifications.items), timeout=60_000)
    folders = list((trained_run / "samples").iterdir())
    saved = max(folders, key=lambda p: p.stat().st_mtime)
    assert len(list(saved.glob("sample-*.png"))) == 4
    assert (saved / "samples.npz").is_file() and (saved / "grid.png").is_file()


def test_sampling_can_be_cancelled_within_a_step(qtbot, make_window, trained_run):
    window = make_window()
    view = _sample_view(window, trained_run)
    view.sampler_picker.select("ddpm", {"steps": 1000})
    view.options.set_values({"num_samples": 2})
    assert view.start()
    job = view.job
    qtbot.waitUntil(lambda: view.frames_painted >= 1, timeout=120_000)
    # The status bar follows the job with the terminal's words for its progress and ETA.
    qtbot.waitUntil(lambda: job.last_progress is not None
                    and "Sampling: sample " in window.busy_label.text(), timeout=30_000)
    assert "/1000 steps" in window.busy_label.text()
    view.cancel_button.click()
    qtbot.waitUntil(lambda: view.job is None, timeout=60_000)
    qtbot.waitUntil(lambda: window.busy_label.text() == "Ready.", timeout=30_000)
    assert job.outcome == "cancelled"
    assert view.outcome is None and not view.save_button.isEnabled()
    assert "Cancelled" in view.status.text()


def test_sample_job_keeps_only_the_newest_frame(qtbot, trained_run, registry):
    """Without anyone taking frames, the mailbox holds one: skipped frames are not queued."""
    request = SampleRequest(ModelSource(run=str(trained_run)), sampler="ddim",
                            params={"steps": 30}, num_samples=2, live=True, max_fps=1e9)
    job = SampleJob(request, registry=registry)
    outcomes = []
    job.succeeded.connect(outcomes.append)
    with qtbot.waitSignal(job.finished, timeout=120_000):
        job.start()
    assert job.outcome == "succeeded"
    assert outcomes[0].frames_sent == 30  # no time throttle here: every step made a frame ...
    frame = job.take_frame()
    assert frame is not None and frame.index == 29  # ... but only the newest is kept
    assert job.take_frame() is None
    box: Mailbox[int] = Mailbox()
    assert box.put(1) and not box.put(2) and box.take() == 2 and box.replaced == 1


def test_compare_runs_samplers_on_identical_noise(qtbot, make_window, trained_run):
    window = make_window()
    view = _sample_view(window, trained_run)
    view.sampler_picker.form("ddim").set_values({"steps": 10})
    view.sampler_picker.form("ddpm").set_values({"steps": 20})
    view.options.set_values({"num_samples": 3, "seed": 7})
    assert view.compare.start()
    qtbot.waitUntil(lambda: view.compare.job is None, timeout=120_000)
    titles = view.compare.captions()
    assert len(titles) == 2
    assert any(t.startswith("ddim: 10 network evaluations") for t in titles), titles
    assert any(t.startswith("ddpm: 20 network evaluations") for t in titles), titles


def test_points_run_draws_particles_over_the_density(qtbot, make_window, trained_points_run):
    window = make_window()
    view = _sample_view(window, trained_points_run)
    view.sampler_picker.select("ddim", {"steps": 20})
    view.options.set_values({"num_samples": 200, "batch_size": 200})
    assert view.start()
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    assert view.live_stack.currentIndex() == 1
    assert view.summary.kind == "points" and view.summary.density is not None
    assert view.x_particles.updates >= 2
    x, _ = view.x_particles.particles.getData()
    assert len(x) == 200 and np.all(np.isfinite(x))


def test_class_conditional_runs_sample_a_class_with_guidance(qtbot, make_window, trained_run,
                                                             trained_conditional_run):
    """The class box is live only for a class-conditional run; gamma = 1 costs one network
    evaluation per step (the conditional model), gamma > 1 two (classifier-free guidance), and
    the saved samples carry the class and gamma."""
    window = make_window()
    view = _sample_view(window, trained_run)
    assert not view.class_box.isEnabled() and view.class_combo.count() == 1
    view = _sample_view(window, trained_conditional_run)
    assert view.class_box.isEnabled()
    assert [view.class_combo.itemData(i) for i in range(view.class_combo.count())] == \
        [None, *range(10)]
    assert not view.guidance_spin.isEnabled()  # nothing to guide without a class
    view.sampler_picker.select("ddim", {"steps": 5})
    view.options.set_values({"num_samples": 3, "live_view": False})
    evaluations = {}
    for gamma in (1.0, 3.0):
        view.class_combo.setCurrentIndex(view.class_combo.findData(7))
        assert view.guidance_spin.isEnabled()
        view.guidance_spin.setValue(gamma)
        assert view.start()
        qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
        result = view.outcome.result
        evaluations[gamma] = result.network_evaluations
        assert result.guidance == gamma and list(result.class_labels) == [7, 7, 7]
    assert evaluations == {1.0: 5, 3.0: 10}
    view.save()
    qtbot.waitUntil(lambda: any("Saved 3 samples" in n.message
                                for n in window.notifications.items), timeout=60_000)
    from diffstudio.engine.pngmeta import read_png_metadata

    saved = max((trained_conditional_run / "samples").iterdir(), key=lambda p: p.stat().st_mtime)
    meta = read_png_metadata(next(saved.glob("sample-*.png")))
    assert meta["class_label"] == 7 and meta["guidance"] == 3.0


def test_a_pretrained_diffusers_folder_samples_from_the_window(qtbot, make_window, tmp_path):
    """A DDPMPipeline folder (as save_pretrained or 'hf download' writes it) samples through the
    same samplers; samples are saved under the workspace; a wrong folder is one message."""
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    folder = tmp_path / "tiny-ddpm"
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=50)).save_pretrained(
        folder)
    window = make_window()
    view = window.sample_view
    view.from_pretrained.setChecked(True)
    assert not view.sample_button.isEnabled()  # nothing chosen yet
    assert not view.class_box.isEnabled()
    view.pretrained_edit.setText(str(folder))
    assert view.sample_button.isEnabled()
    assert not view.compare.compare_button.isEnabled()  # comparing works on runs
    view.sampler_picker.select("ddim", {"steps": 5})
    view.options.set_values({"num_samples": 3, "live_view": True})
    assert view.start()
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    outcome = view.outcome
    assert outcome is not None, view.status.text()
    assert outcome.samples.shape == (3, 1, 8, 8) and outcome.result.network_evaluations == 5
    assert outcome.metadata["pretrained"] == str(folder)
    assert outcome.metadata["scheduler"] == "DDPMScheduler"
    view.save()
    qtbot.waitUntil(lambda: any("Saved 3 samples" in n.message
                                for n in window.notifications.items), timeout=60_000)
    saved = list((window.studio.workspace / "pretrained-samples").iterdir())
    assert len(saved) == 1 and saved[0].name.startswith("tiny-ddpm-ddim-")
    assert len(list(saved[0].glob("sample-*.png"))) == 3
    # A folder that is not a model: one message, and the page carries on.
    view.pretrained_edit.setText(str(tmp_path / "nowhere"))
    assert view.start()
    qtbot.waitUntil(lambda: view.job is None, timeout=60_000)
    assert "not found" in window.notifications.items[-1].message
    assert view.sample_button.isEnabled()
    state = view.state()
    assert state["source"] == "pretrained" and state["pretrained"].endswith("nowhere")


def test_a_points_run_shows_the_values_the_data_suggests(qtbot, make_window, trained_points_run):
    """Issue 17: the form left at its defaults samples with the data's suggestions, and the
    page says which value is used and why."""
    window = make_window()
    view = _sample_view(window, trained_points_run)
    view.sampler_picker.select("annealed-langevin", {"steps_per_level": 2})
    view.options.set_values({"num_samples": 50, "batch_size": 50})
    request = view.build_request()
    assert "step_lr" not in request.params and request.params["steps_per_level"] == 2
    assert view.start()
    qtbot.waitUntil(lambda: view.job is None, timeout=120_000)
    assert "step_lr = " in view.used_values.text() and "sigma_min²" in view.used_values.text()


def test_unset_fields_say_what_sampling_will_give_them(qtbot, make_window, trained_points_run,
                                                       trained_run):
    """Issue 17: before sampling, each field left at its default says below it the value the
    run's data suggests and why; the field itself keeps the schema default, and hints of one
    run or sampler never stay on for another."""
    window = make_window()
    view = _sample_view(window, trained_points_run)
    view.sampler_picker.select("annealed-langevin")
    form = view.sampler_picker.form("annealed-langevin")
    qtbot.waitUntil(lambda: form.field_hint("step_lr") != "", timeout=60_000)
    assert "sigma_min²" in form.field_hint("step_lr") and form.field_hint("step_lr").startswith(
        "uses ")
    assert form.field_hint("sigma_max") and "from data" in form.field_hint("sigma_max")
    default = next(p.default for p in form.params if p.name == "step_lr")
    assert form.values()["step_lr"] == default  # shown, never written into the field
    view.sampler_picker.select("ddpm")
    assert form.field_hint("step_lr") == ""  # cleared with the change of sampler
    view.sampler_picker.select("annealed-langevin")
    assert form.field_hint("step_lr")  # known for this run: shown again at once
    view.select_run(str(trained_run))  # a digits run: the data suggests nothing here
    assert form.field_hint("step_lr") == ""
    qtbot.waitUntil(lambda: "sampler-hints" not in window.studio.jobs, timeout=60_000)
    assert form.field_hint("step_lr") == ""
