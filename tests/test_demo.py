"""The main job: `build.py demo` as a user runs it, on a small render."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT

pytestmark = [pytest.mark.blender, pytest.mark.network, pytest.mark.slow]

LIST_IMAGES = """
import bpy, json, sys
bpy.ops.wm.open_mainfile(filepath=sys.argv[-1])
print("IMAGES " + json.dumps({i.name: [list(i.size), bool(i.packed_file)]
                              for i in bpy.data.images}))
"""


def test_demo_renders_runs_real_models_and_keeps_every_result(linux_zip, tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ)
    env.pop("BLENDER_USER_RESOURCES", None)  # the demo isolates its own
    proc = subprocess.run([sys.executable, str(ROOT / "demo" / "main_job.py"), "--",
                           "--zip", str(linux_zip), "--out", str(out),
                           "--size", "160", "120", "--samples", "4"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "blender-user" / "extensions" / "user_default" / "runway").is_dir()

    render = np.asarray(Image.open(out / "render.png"))
    styled = np.asarray(Image.open(out / "render_stylised.png").convert("RGB"))
    big = Image.open(out / "render_stylised_x4.png")
    assert render.shape[:2] == styled.shape[:2] == (120, 160)
    assert np.abs(styled.astype(float) - render[..., :3]).mean() > 10  # restyled
    assert big.size == (640, 480)  # 4x
    matte = np.asarray(Image.open(out / "hopper_matte.png"))
    assert matte.shape[:2] == (600, 512) and matte[150:330, 190:330].mean() > 200

    listing = subprocess.run([sys.executable, "-c", LIST_IMAGES, str(out / "demo.blend")],
                             capture_output=True, text=True, env=env, timeout=300)
    line = [l for l in listing.stdout.splitlines() if l.startswith("IMAGES ")][-1]
    images = json.loads(line[len("IMAGES "):])
    for name in ("Demo render", "render_stylised", "render_stylised_x4", "hopper_matte",
                 "hopper_cutout"):
        assert images[name][1], f"{name} is not packed into the .blend"
    assert images["render_stylised_x4"][0] == [640, 480]
    steps = json.loads((out / "demo.json").read_text())["steps"]
    assert any("environment" in name for name, _ in steps)
