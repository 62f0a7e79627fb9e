"""Build the frozen onedir application with PyInstaller, measure it, and self-test the result.

    python packaging/build_bundle.py [--dist dist] [--work build/pyinstaller] [--no-selftest]

(``make bundle`` installs PyInstaller and runs this.) Run it with the Python of an environment
where diffstudio and its dependencies are installed (``make`` makes one) and, for a small
bundle, the CPU build of torch; the spec takes diffstudio's code from this tree. It prints, and writes to ``<dist>/diffstudio-bundle.json``, the build time,
the folder's size and file count, and the self-test's result; the exit status is non-zero when
the build or the self-test fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "diffstudio.spec"


def folder_size(folder: Path) -> tuple[int, int]:
    """Bytes and files under ``folder`` (links not followed)."""
    total = files = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
            files += 1
    return total, files


def warnings_about_the_environment() -> list[str]:
    notes = []
    torch_spec = importlib.util.find_spec("torch")
    if torch_spec and torch_spec.origin:
        version_file = Path(torch_spec.origin).parent / "version.py"
        text = version_file.read_text(encoding="utf-8") if version_file.is_file() else ""
        if "cuda = None" not in text and "cuda: Optional[str] = None" not in text:
            notes.append("this torch is a CUDA build: the bundle will carry its NVIDIA libraries "
                         "(about 3 GB more); for a CPU bundle install torch from "
                         "https://download.pytorch.org/whl/cpu first")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", default=str(ROOT / "dist"), help="where the bundle goes")
    parser.add_argument("--work", default=str(ROOT / "build" / "pyinstaller"),
                        help="PyInstaller's work folder")
    parser.add_argument("--no-selftest", action="store_true", help="skip the self-test")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("PyInstaller") is None:
        print("build_bundle: PyInstaller is not installed: pip install 'pyinstaller>=6.10' "
              "(make bundle does it)", file=sys.stderr)
        return 2
    for note in warnings_about_the_environment():
        print(f"build_bundle: note: {note}", file=sys.stderr)
    dist = Path(args.dist)
    started = time.perf_counter()
    build = subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level",
                            "WARN", "--distpath", str(dist), "--workpath", args.work, str(SPEC)],
                           cwd=ROOT, check=False)
    build_s = time.perf_counter() - started
    if build.returncode != 0:
        print(f"build_bundle: PyInstaller failed (exit {build.returncode}) after {build_s:.0f} s",
              file=sys.stderr)
        return 1
    folder = dist / "diffstudio"
    size, files = folder_size(folder)
    import PyInstaller

    report: dict[str, object] = {
        "folder": str(folder), "bytes": size, "files": files, "build_seconds": round(build_s),
        "platform": platform.platform(), "python": platform.python_version(),
        "pyinstaller": PyInstaller.__version__,
    }
    print(f"build_bundle: {folder}: {size / 1e9:.2f} GB in {files} files, built in "
          f"{build_s:.0f} s")
    status = 0
    if not args.no_selftest:
        executable = folder / ("diffstudio.exe" if os.name == "nt" else "diffstudio")
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        env.pop("PYTHONPATH", None)
        started = time.perf_counter()
        test = subprocess.run([str(executable), "--selftest"], env=env, check=False,
                              cwd=dist, timeout=1800)
        report["selftest_seconds"] = round(time.perf_counter() - started, 1)
        report["selftest"] = "passed" if test.returncode == 0 else f"failed ({test.returncode})"
        print(f"build_bundle: self-test of the bundle {report['selftest']} in "
              f"{report['selftest_seconds']} s")
        status = 0 if test.returncode == 0 else 1
    (dist / "diffstudio-bundle.json").write_text(json.dumps(report, indent=2) + "\n",
                                                 encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
