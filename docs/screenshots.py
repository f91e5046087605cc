"""Regenerate the README's screenshots (Run panel, directory, workspace, preferences) in a
real Blender 4.3.2 window.

Run from the repository root, as root (chroot, mounts), on Linux x86-64::

    python3 docs/screenshots.py                  # all of them
    python3 docs/screenshots.py before after     # some of them
    python3 docs/screenshots.py --no-build ...   # reuse dist/runway-0.1.0-linux_x64.zip

Names: ``before`` (docs/img/run_before.png), ``during`` (run_during.png), ``after``
(run_after.png), ``texture`` (texture_and_strip.png), ``directory`` (directory.png),
``workspace`` (workspace.png, a workspace with a model you added), ``preferences``
(preferences.png).

What it does, with the standard library and ``buildtools`` only:

1. ``python3 build.py dist`` (unless ``--no-build``) and the Debian root with Blender 4.3.2
   (``buildtools/debian_blender.py``; built once, cached under /var/cache/runway-for-blender/).
2. Installs the linux zip into a fresh, isolated Blender user folder
   (``install_extension``).
3. Per picture, starts Blender with a window under Xvfb in the root with
   ``docs/screenshot_run.py -- MODE`` (``screenshot(script_ready=True)``): the script builds a
   small scene, opens the Runway tab, starts the real model (local process runtime) and says
   when the picture may be taken.  The model's Python environments are the host's: the cache
   folder (default ``/root/.cache/runway-blender``, ``RUNWAY_SHOT_CACHE``) is bind-mounted
   into the root at the same path (read-write) and their base interpreter
   (``/root/.pyenv/versions/3.11.7``, ``RUNWAY_SHOT_PYTHON``; the venvs' ``bin/python``
   symlinks point there) read-only; the add-on's ``cache_folder`` preference is set to it.
   A missing environment is built there by the add-on itself (needs the package index).
4. Crops the window to the part the script names (``RW-CROP`` in Blender's log) with
   ImageMagick inside the root and writes ``docs/img/NAME.png``.

The full window and Blender's log of each picture stay in ``build/screenshots/``
(``NAME.full.png``, ``NAME.full.png.blender.log``): look there when a picture is wrong.
A Blender start takes 10-20 s; a run with a cold model adds its start (a few seconds).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from buildtools import debian_blender as db  # noqa: E402

ZIP = REPO / "dist" / "runway-0.1.0-linux_x64.zip"
SCRIPT = REPO / "docs" / "screenshot_run.py"
IMG = REPO / "docs" / "img"
WORK = REPO / "build" / "screenshots"
CACHE = Path(os.environ.get("RUNWAY_SHOT_CACHE", "/root/.cache/runway-blender"))
PYTHON = Path(os.environ.get("RUNWAY_SHOT_PYTHON", "/root/.pyenv/versions/3.11.7"))

# name -> (output file, window size)
SHOTS = {
    "before": ("run_before.png", "1600x1150"),
    "during": ("run_during.png", "1600x1150"),
    "after": ("run_after.png", "1600x1150"),
    "texture": ("texture_and_strip.png", "1600x1400"),
    "directory": ("directory.png", "1600x1500"),
    "workspace": ("workspace.png", "1600x1300"),
    "preferences": ("preferences.png", "1500x950"),
}


def crop(root: Path, full: Path, out: Path, geometry: str) -> None:
    """``convert FULL -crop GEOMETRY`` inside the root (ImageMagick is there)."""
    with tempfile.TemporaryDirectory(prefix="rw-crop-") as tmp:
        shutil.copyfile(full, Path(tmp) / "in.png")
        point = db.unique_mount_point("crop")
        r = db.run_in_root(["convert", f"{point}/in.png", "-crop", geometry, "+repage",
                            f"{point}/out.png"], root=root, binds={tmp: point}, timeout=120)
        if r.returncode != 0:
            raise SystemExit(f"crop failed: {r.stdout}{r.stderr}")
        shutil.copyfile(Path(tmp) / "out.png", out)


def shoot(root: Path, user: Path, name: str) -> bool:
    filename, size = SHOTS[name]
    full = WORK / f"{name}.full.png"
    full.unlink(missing_ok=True)
    t = time.monotonic()
    r = db.screenshot(
        root, SCRIPT, full, user, size=size, wait_s=0.5, script_ready=True,
        ready_timeout=240, timeout=420, args=[name, "--cache", str(CACHE)],
        binds={CACHE: str(CACHE)}, ro_binds={PYTHON: str(PYTHON)})
    log_path = Path(str(full) + ".blender.log")
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    for line in log.splitlines():
        if line.startswith("RW-STEP"):
            print(f"  {line}")
    problems = [line for line in log.splitlines()
                if re.search(r"Traceback|Error|error:", line) and "RW-STEP" not in line]
    for line in problems[:20]:
        print(f"  log: {line}")
    crops = re.findall(r"^RW-CROP (\d+) (\d+) (\d+) (\d+)$", log, re.M)
    missed = re.search(r"RW-STEP .*(missed the moment|error in)", log)
    if r.returncode != 0 or not full.exists() or not crops or missed:
        print(f"{name}: failed (rc={r.returncode}, picture={full.exists()}, "
              f"crop={bool(crops)}{', ' + missed.group(1) if missed else ''})\n"
              f"{r.stdout[-2000:]}{r.stderr[-2000:]}")
        return False
    x, y, w, h = crops[-1]
    crop(root, full, IMG / filename, f"{w}x{h}+{x}+{y}")
    print(f"{name}: docs/img/{filename} ({w}x{h}; {time.monotonic() - t:.0f} s; "
          f"full window and log in {full.parent.relative_to(REPO)})")
    return True


def keep_mount_point(root: Path, path: Path) -> None:
    """The folder in the root where ``path`` is mounted, made for good with a file in it.

    The model environments need their host paths, the same for every call: a mount point
    that a ``run_in_root`` call creates it also removes at its end, and removing a folder
    that is a mount point in another call's namespace (someone else's test, or the next
    picture) silently detaches that mount there.  A folder that is never empty is never
    removed."""
    target = root / path.relative_to("/")
    target.mkdir(parents=True, exist_ok=True)
    (target / ".runway-mount-point").touch()


def copy_zip(folder: Path, tries: int = 30) -> Path | None:
    """A checked copy of the linux zip: dist/ may be rebuilt (emptied, then filled) by
    someone else while the pictures are taken."""
    out = folder / ZIP.name
    for _ in range(tries):
        try:
            shutil.copyfile(ZIP, out)
            with zipfile.ZipFile(out) as z:
                if z.testzip() is None:
                    return out
        except (OSError, zipfile.BadZipFile):
            pass
        time.sleep(2)
    return None


def main(argv: list[str]) -> int:
    build = "--no-build" not in argv
    names = [a for a in argv if not a.startswith("--")] or list(SHOTS)
    unknown = [n for n in names if n not in SHOTS]
    if unknown:
        print(f"unknown picture(s) {unknown}; choose from {list(SHOTS)}", file=sys.stderr)
        return 2
    for path in (CACHE, PYTHON):
        if not path.is_dir():
            print(f"{path} is missing (see RUNWAY_SHOT_CACHE / RUNWAY_SHOT_PYTHON)",
                  file=sys.stderr)
            return 2
    if build:
        subprocess.run([sys.executable, "build.py", "dist"], cwd=REPO, check=True)
    root = db.ensure_root()
    for path in (CACHE, PYTHON):
        keep_mount_point(root, path)
    WORK.mkdir(parents=True, exist_ok=True)
    IMG.mkdir(parents=True, exist_ok=True)
    ok = True
    with tempfile.TemporaryDirectory(prefix="rw-shot-user-") as user, \
            tempfile.TemporaryDirectory(prefix="rw-shot-zip-") as zdir:
        zip_copy = copy_zip(Path(zdir))
        if zip_copy is None:
            print(f"no complete {ZIP}; run python3 build.py dist", file=sys.stderr)
            return 1
        r = db.install_extension(root, zip_copy, user)
        if r.returncode != 0:
            print(f"install failed:\n{r.stdout}{r.stderr}", file=sys.stderr)
            return 1
        for name in names:
            ok = shoot(root, Path(user), name) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
