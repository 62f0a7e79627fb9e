"""``diffstudio export``: each format from the command line, filters, one-line refusals."""

from __future__ import annotations

import zipfile

import numpy as np

from diffstudio.cli import main
from diffstudio.engine.pngmeta import write_png


def make(folder, count=3):
    for seed in range(count):
        write_png(folder / f"sample-{seed:06d}.png", np.full((1, 4, 4), seed / 4 - 0.5),
                  {"sampler": "ddim" if seed else "ddpm", "seed": seed, "steps": 5,
                   "run": "/ws/r", "sampler_params": {"steps": 5}})
    return folder


def test_export_formats_filters_and_overwrite(tmp_path, capsys):
    samples = make(tmp_path / "s")
    out = tmp_path / "out"
    assert main(["export", str(samples), "--format", "zip", "--out", str(out), "--quiet"]) == 0
    assert "3 samples exported as zip" in capsys.readouterr().out
    with zipfile.ZipFile(out / "gallery.zip") as archive:
        assert len([n for n in archive.namelist() if n.startswith("png/")]) == 3

    assert main(["export", str(samples), "--format", "zip", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists; pass --overwrite" in err[0]
    assert main(["export", str(samples), "--format", "zip", "--out", str(out), "--quiet",
                 "--overwrite"]) == 0

    assert main(["export", str(samples / "sample-000001.png"), str(samples), "--out",
                 str(tmp_path / "png"), "--filter", "sampler=ddim", "--quiet"]) == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 2  # each file once
    for fmt, name in (("sheet", "contact-sheet.png"), ("html", "gallery.html")):
        assert main(["export", str(samples), "--format", fmt, "--out", str(out), "--quiet"]) == 0
        assert (out / name).is_file()


def test_export_bad_input_is_one_line(tmp_path, capsys):
    samples = make(tmp_path / "s")
    cases = [
        (["export", str(samples), "--out", str(tmp_path / "o"), "--filter", "seed=x"],
         "not a valid seed"),
        (["export", str(samples), "--out", str(tmp_path / "o"), "--filter", "hue=1"],
         "unknown key"),
        (["export", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], "does not exist"),
        (["export", str(samples), "--out", str(tmp_path / "o"), "--format", "gif"],
         "invalid choice"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


def test_export_filters_by_the_gallery_s_stars(tmp_path, capsys):
    from diffstudio.engine.sample_index import SampleIndex

    workspace = tmp_path / "ws"
    samples = make(workspace / "run" / "samples" / "ddim-1")
    index = SampleIndex(workspace)
    index.scan()
    index.set_starred([samples / "sample-000002.png"], True)
    assert main(["export", str(workspace / "run" / "samples"), "--out", str(tmp_path / "o"),
                 "--filter", "starred=yes", "--quiet"]) == 0
    assert [p.name for p in (tmp_path / "o").glob("*.png")] == ["r__ddim-1__sample-000002.png"]
