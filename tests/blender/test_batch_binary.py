"""Job files in the real Blender 4.3.2 binary (Debian 13 root, see test_real_binary.py):
``blender -b scene.blend --python-exit-code 1 --python-expr "...run_job(...)"`` exits 0
when every frame succeeded, and ``blender -b -c runway run-job scene.blend job.json``
exits non-zero with a one-line reason when a frame failed, the good frames written.

The local-process runtime runs the shelf's style-transfer model from the host's
shared environment cache: /root/.cache/runway-blender and the Python it was made
with are bind-mounted at the same paths, and the add-on's cache_folder points there.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from buildtools import debian_blender

pytestmark = [
    pytest.mark.blender,
    pytest.mark.network,
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux (chroot)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mount)"),
    pytest.mark.skipif(shutil.which("chroot") is None, reason="needs chroot"),
]

CACHE = Path("/root/.cache/runway-blender")
PYTHON_HOME = Path(os.path.realpath(sys.base_prefix))  # what the environments link to

SETUP = """
import bpy
prefs = bpy.context.preferences.addons["bl_ext.user_default.runway"].preferences
prefs.cache_folder = {cache!r}
bpy.ops.wm.save_userpref()
bpy.ops.wm.read_homefile(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 1
scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = 64, 48
scene.render.resolution_percentage = 100
scene.frame_start, scene.frame_end = 1, 2
world = bpy.data.worlds.new("W")
world.use_nodes = True
world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.3, 0.1, 0.05, 1)
scene.world = world
bpy.ops.object.camera_add(location=(0, 0, 6), rotation=(0, 0, 0))
scene.camera = bpy.context.object
bpy.ops.mesh.primitive_monkey_add()
# A two-image strip: frame 1 a picture, frame 2 a broken file.
ed = scene.sequence_editor_create()
strip = ed.sequences.new_image("Frames", {work!r} + "/good.png", channel=1, frame_start=1)
strip.elements.append("bad.png")
bpy.ops.wm.save_as_mainfile(filepath={work!r} + "/scene.blend")
print("SETUP OK", bpy.app.version_string)
"""


@pytest.fixture(scope="module")
def blender_root():
    return debian_blender.ensure_root()


@pytest.fixture(scope="module")
def world(blender_root, linux_zip, tmp_path_factory):
    """The extension installed and enabled, the preferences' cache folder set, and
    scene.blend made by the binary itself, all under one work folder."""
    if not any((CACHE / "model-envs").glob("py3.11-*")):
        pytest.fail(f"no model environments under {CACHE}: run tests/blender/test_batch.py "
                    "first (it makes style-transfer's)")
    base = tmp_path_factory.mktemp("batch-binary")
    user, work = base / "user", base / "work"
    work.mkdir()
    inst = debian_blender.install_extension(blender_root, linux_zip, user)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    y, x = np.mgrid[0:48, 0:64]
    Image.fromarray(np.dstack([x * 4, y * 5, np.full_like(x, 90)]).astype(np.uint8)).save(
        work / "good.png")
    (work / "bad.png").write_bytes(b"not a picture")
    point = debian_blender.unique_mount_point("batch")
    w = {"root": blender_root, "user": user, "work": work, "point": point,
         "work_in": f"{point}/work"}
    (work / "setup.py").write_text(SETUP.format(cache=str(CACHE), work=w["work_in"]))
    proc = blender(w, ["-b", "--python-exit-code", "1", "--python",
                       f"{w['work_in']}/setup.py"])
    assert proc.returncode == 0 and "SETUP OK 4.3" in proc.stdout, \
        proc.stdout[-3000:] + proc.stderr[-3000:]
    return w


def blender(w, args, timeout=300):
    env = debian_blender.user_env(f"{w['point']}/user")
    return debian_blender.run_in_root(
        ["blender", *args], root=w["root"],
        binds={w["user"]: f"{w['point']}/user", w["work"]: w["work_in"], CACHE: str(CACHE)},
        ro_binds={PYTHON_HOME: str(PYTHON_HOME)}, env=env, timeout=timeout,
        cwd_in_root=w["work_in"])


def write_job(w, name, **data):
    job = {"version": 1, "model": {"catalog": "style-transfer"}, "runtime": "LOCAL_PROCESS",
           "frames": "1-2", **data}
    (w["work"] / name).write_text(json.dumps(job))
    return name


def test_operator_in_python_expr_exits_0_when_every_frame_succeeds(world):
    w = world
    job = write_job(w, "ok.json", inputs={"image": {"source": "render"}, "style": 3},
                    outputs={"output": [{"target": "FILE", "path": "//ok/s_{frame:04d}"}]})
    proc = blender(w, ["-b", "scene.blend", "--python-exit-code", "1", "--python-expr",
                       f"import bpy; bpy.ops.runway.run_job(filepath={job!r}, "
                       "log='ok.jsonl')"])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    made = sorted(p.name for p in (w["work"] / "ok").glob("*.png"))
    assert made == ["s_0001.png", "s_0002.png"]
    for name in made:
        with Image.open(w["work"] / "ok" / name) as im:
            assert im.size == (64, 48)
            assert np.ptp(np.asarray(im.convert("RGB"))) > 20  # a styled picture
    lines = [json.loads(x) for x in (w["work"] / "ok.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "job" and lines[-1] == {**lines[-1], "event": "done",
                                                        "ok": True, "done": [1, 2]}
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_command_exits_non_zero_with_a_one_line_reason(world):
    w = world
    job = write_job(w, "fail.json", inputs={"image": {"source": "strip", "strip": "Frames"}},
                    outputs={"output": [{"target": "FILE", "path": "//fail/s_{frame:04d}"}]},
                    on_failure="skip")
    proc = blender(w, ["-b", "-c", "runway", "run-job", "scene.blend", job,
                       "--log", "fail.jsonl"])
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]
    reasons = [line for line in proc.stderr.splitlines() if line.startswith("Runway: failed")]
    assert len(reasons) == 1, proc.stderr[-3000:]
    assert "1/2 frames done" in reasons[0] and "frame 2" in reasons[0], reasons
    # Frame 1 (the good picture) went through; frame 2 (the broken file) did not.
    assert sorted(p.name for p in (w["work"] / "fail").glob("*.png")) == ["s_0001.png"]
    lines = [json.loads(x) for x in (w["work"] / "fail.jsonl").read_text().splitlines()]
    assert lines[-1]["failed"] == [2] and lines[-1]["done"] == [1]
    # An invalid job file: refused, exit 2, before anything starts.
    (w["work"] / "bad.json").write_text(json.dumps({"model": {"catalog": "style-transfer"},
                                                    "frames": "3-1"}))
    bad = blender(w, ["-b", "-c", "runway", "run-job", "scene.blend", "bad.json"])
    assert bad.returncode == 2, bad.stdout[-2000:] + bad.stderr[-2000:]
    assert "Runway: error: bad.json: frames: range 3-1 goes backwards" in bad.stderr
