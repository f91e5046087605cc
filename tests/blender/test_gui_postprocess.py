"""Render post-processing in a real Blender 4.3.2 window (Xvfb): F12 and Ctrl+F12 as an
artist presses them. The render handlers run on Blender's render thread there; the
results must still land (files beside the renders, the strip, the preview image),
written by the engine's timer on the main thread."""
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.blender, pytest.mark.slow, pytest.mark.network]

CACHE = Path("/root/.cache/runway-blender")
PYTHON = Path("/root/.pyenv/versions/3.11.7")


def _screenshots_module():
    spec = importlib.util.spec_from_file_location("runway_screenshots",
                                                  ROOT / "docs" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_f12_and_ctrl_f12_in_a_window_post_process_every_frame(linux_zip, tmp_path):
    if not (CACHE.is_dir() and PYTHON.is_dir()):
        pytest.fail(f"the model environments ({CACHE}) and their Python ({PYTHON}) must "
                    "exist: the shelf tests build them", pytrace=False)
    from buildtools import debian_blender as db
    shots = _screenshots_module()
    root = db.ensure_root()
    for path in (CACHE, PYTHON):
        shots.keep_mount_point(root, path)
    out = Path(tempfile.mkdtemp(prefix="rw-gui-post-"))
    user = tmp_path / "user"
    zip_copy = tmp_path / linux_zip.name
    shutil.copyfile(linux_zip, zip_copy)
    r = db.install_extension(root, zip_copy, user)
    assert r.returncode == 0, r.stdout + r.stderr
    shot = tmp_path / "window.png"
    try:
        r = db.screenshot(root, ROOT / "tests" / "blender" / "gui" / "post_f12.py", shot, user,
                          size="1280x800", wait_s=0.5, script_ready=True, ready_timeout=200,
                          timeout=300, args=["/rw-gui-out", str(CACHE)],
                          binds={CACHE: str(CACHE), out: "/rw-gui-out"},
                          ro_binds={PYTHON: str(PYTHON)})
        log = Path(str(shot) + ".blender.log")
        text = log.read_text(errors="replace") if log.exists() else ""
        assert (out / "RESULT.json").exists(), r.stdout[-2000:] + r.stderr[-2000:] + text[-4000:]
        result = json.loads((out / "RESULT.json").read_text())
        assert "timed out" not in result["steps"], text[-4000:]
        # The handlers ran off the main thread (Blender's render job), every time.
        assert result["threads"] and not any(result["threads"]), result["threads"]
        # F12: one frame, no file of Blender's own, its processed file beside where it would be.
        assert result["f12"]["done"] == [1] and not result["f12"]["failed"], result
        assert (out / "frame_0001_runway.png").is_file()
        # Ctrl+F12: frames 1 and 2 rendered by Blender and processed beside them.
        assert result["anim"]["done"] == [1, 2] and not result["anim"]["failed"], result
        for frame in (1, 2):
            assert (out / f"frame_{frame:04d}.png").is_file()
        assert (out / "frame_0002_runway.png").is_file()
        assert result["preview"] == [64, 48]
    finally:
        shutil.rmtree(out, ignore_errors=True)
