"""Exports: PNG copies keep both text chunks, the contact sheet, the self-contained HTML page
(escaped metadata, no network), the zip, hostile names, no overwrite, no half-written zip."""

from __future__ import annotations

import base64
import errno
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffstudio.app import run_job
from diffstudio.app.export import ExportRequest, collect_samples, export
from diffstudio.engine import export as files
from diffstudio.engine.pngmeta import write_png
from diffstudio.errors import ConfigError

HOSTILE = '"><img src=x onerror=alert(1)>'
SCRIPT = "<script>alert('x')</script>"


def make_samples(folder: Path, count: int = 4, run: str = "/ws/run-a", sampler: str = "ddim"):
    for seed in range(count):
        meta = {"run": run, "checkpoint": "step-00000008", "sampler": sampler,
                "sampler_params": {"steps": 10, "note": SCRIPT}, "steps": 10, "seed": seed,
                "network_evaluations": 10, "backend": HOSTILE, "init_noise": False}
        image = np.random.default_rng(seed).uniform(-1, 1, (1, 8, 8))
        write_png(folder / f"sample-{seed:06d}.png", image, meta)
    write_png(folder / "grid.png", np.zeros((1, 8, 8)), {"kind": "grid"})
    return folder


@pytest.fixture
def samples(tmp_path):
    return make_samples(tmp_path / "run-a" / "samples" / "ddim-1")


def job(sources, out, fmt, **options):
    return run_job(export(ExportRequest(sources=[str(s) for s in sources], out=str(out),
                                        format=fmt, **options)))


def test_png_copies_keep_both_text_chunks(samples, tmp_path):
    outcome = job([samples], tmp_path / "out", "png")
    assert outcome.count == 4 and len(outcome.files) == 4  # grid.png is not a sample
    for written in outcome.files:
        assert written.parent == tmp_path / "out"
        with Image.open(written) as picture:
            assert "diffstudio" in picture.text and "parameters" in picture.text
    original = samples / "sample-000002.png"
    copy = next(f for f in outcome.files if f.name.endswith("sample-000002.png"))
    assert copy.read_bytes() == original.read_bytes()


def test_a_run_folder_exports_its_samples_and_filters_apply(tmp_path):
    run = tmp_path / "run-a"
    make_samples(run / "samples" / "ddim-1", 3)
    make_samples(run / "samples" / "ddpm-1", 2, sampler="ddpm")
    (run / "config.json").write_text("{}")
    outcome = job([run], tmp_path / "out", "png", filters=["sampler=ddpm"])
    assert outcome.count == 2
    with pytest.raises(ConfigError, match="no sample matches"):
        job([run], tmp_path / "none", "png", filters=["seed=99"])


def test_contact_sheet_has_one_enlarged_tile_per_sample(samples, tmp_path):
    outcome = job([samples], tmp_path / "out", "sheet", columns=2)
    [sheet] = outcome.files
    assert sheet.name == files.SHEET_NAME
    with Image.open(sheet) as picture:
        cell, pad, caption = 128, 4, 14
        assert picture.size == (2 * (cell + pad) + pad, 2 * (cell + caption + pad) + pad)
        tile = np.asarray(picture.convert("L"))[pad : pad + cell, pad : pad + cell]
    with Image.open(samples / "sample-000000.png") as original:
        np.testing.assert_array_equal(tile, np.kron(np.asarray(original),
                                                    np.ones((16, 16), np.uint8)))
    bare = job([samples], tmp_path / "bare", "sheet", columns=4, captions=False)
    with Image.open(bare.files[0]) as picture:
        assert picture.size == (4 * 132 + 4, 132 + 4)


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.srcs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def test_html_gallery_is_self_contained_and_escapes_every_value(samples, tmp_path):
    (samples.parent / HOSTILE.replace("/", "_")).mkdir()
    outcome = job([samples], tmp_path / "out", "html", title=SCRIPT)
    page = outcome.files[0].read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "<img src=x" not in page
    parser = _Collector()
    parser.feed(page)
    assert [tag for tag, _ in parser.tags].count("img") == 4
    assert not [a for tag, a in parser.tags if tag == "img" and "onerror" in a]
    text = "".join(parser.text)
    assert SCRIPT in text and HOSTILE in text  # shown as text
    for src in parser.srcs:  # every image inline, decodable, nothing fetched
        assert src.startswith("data:image/png;base64,")
        Image.open(__import__("io").BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert not re.search(r"(src|href)=\"(https?:|//|file:)", page)
    assert "default-src 'none'" in page


def test_zip_holds_the_copies_the_sheet_and_the_page(samples, tmp_path):
    outcome = job([samples], tmp_path / "out", "zip")
    with zipfile.ZipFile(outcome.files[0]) as archive:
        names = archive.namelist()
        assert files.SHEET_NAME in names and files.HTML_NAME in names
        pngs = [n for n in names if n.startswith("png/")]
        assert len(pngs) == 4 and archive.testzip() is None
        with Image.open(archive.open(pngs[0])) as picture:
            assert "diffstudio" in picture.text


def test_a_full_disk_leaves_no_half_written_zip(samples, tmp_path, monkeypatch):
    real = zipfile.ZipFile.writestr
    calls = []

    def failing(self, name, data, *args, **kwargs):
        calls.append(name)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="No space"):
        job([samples], out, "zip")
    assert list(out.iterdir()) == []  # neither gallery.zip nor its temporary file


def test_hostile_names_stay_inside_the_folder(tmp_path):
    evil = tmp_path / "src" / "a" / "samples" / "x"
    make_samples(evil, 2, run="/somewhere/../../../etc/passwd")
    records = collect_samples([evil])
    records[0].run, records[0].folder = "../../x", "a/../../b"
    records[1].run, records[1].folder = "/abs/..", ".."
    out = tmp_path / "out"
    outcome = run_job(export(ExportRequest(sources=["-"], out=str(out), format="png"),
                             records=records))
    for written in outcome.files:
        assert written.parent == out.resolve() and not written.name.startswith(".")
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["out", "src"]
    assert files.safe_component("../../x") == "x"
    assert files.safe_component("a/b") == "a_b"
    assert files.safe_component("..") == "_"
    with pytest.raises(ConfigError, match="outside"):
        files.inside(out, "../escape.png")


def test_export_refuses_to_overwrite_unless_asked(samples, tmp_path):
    out = tmp_path / "out"
    job([samples], out, "html")
    before = (out / files.HTML_NAME).read_bytes()
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        job([samples], out, "html")
    assert (out / files.HTML_NAME).read_bytes() == before
    job([samples], out, "html", overwrite=True, title="again")
    assert (out / files.HTML_NAME).read_bytes() != before


def test_a_png_without_metadata_exports_with_unknown_parameters(tmp_path):
    Image.new("RGB", (16, 16), (0, 200, 0)).save(tmp_path / "plain.png")
    events = list(export(ExportRequest(sources=[str(tmp_path / "plain.png")],
                                       out=str(tmp_path / "out"), format="html")))
    notes = [e.text for e in events if type(e).__name__ == "Note"]
    assert notes and "unknown parameters" in notes[0]
    page = (tmp_path / "out" / files.HTML_NAME).read_text()
    assert "unknown parameters" in page


def test_bad_requests_say_what_to_fix(samples, tmp_path):
    with pytest.raises(ConfigError, match="unknown export format"):
        ExportRequest(sources=[str(samples)], out=str(tmp_path), format="gif").validate()
    with pytest.raises(ConfigError, match="does not exist"):
        job([tmp_path / "missing"], tmp_path / "out", "png")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ConfigError, match="not a PNG"):
        job([tmp_path / "notes.txt"], tmp_path / "out", "png")
    with pytest.raises(ConfigError, match="is a file"):
        job([samples], tmp_path / "notes.txt", "png")
