"""The main job: `build.py demo` as a user runs it, on a small render."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import ROOT

pytestmark = [pytest.mark.blender, pytest.mark.network, pytest.mark.slow]

LIST_IMAGES = """
import bpy, json, sys
bpy.ops.wm.open_mainfile(filepath=sys.argv[-1])
ed = bpy.context.scene.sequence_editor
strips = (ed.strips_all if hasattr(ed, "strips_all") else ed.sequences_all) if ed else []
sphere = bpy.data.objects["Sphere"].active_material.node_tree
print("IMAGES " + json.dumps({
    "images": {i.name: [list(i.size), bool(i.packed_file)] for i in bpy.data.images},
    "strips": {s.name: [s.type, int(s.frame_final_start), int(s.frame_final_duration)]
               for s in strips},
    "texture": [[n.image.name, [l.to_socket.name for l in n.outputs["Color"].links]]
                for n in sphere.nodes if n.type == "TEX_IMAGE" and n.image]}))
"""


def test_demo_renders_runs_real_models_through_job_files(linux_zip, tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ)
    env.pop("BLENDER_USER_RESOURCES", None)  # the demo isolates its own
    proc = subprocess.run([sys.executable, str(ROOT / "demo" / "main_job.py"), "--",
                           "--zip", str(linux_zip), "--out", str(out),
                           "--size", "160", "120", "--samples", "4", "--frames", "3"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "blender-user" / "extensions" / "user_default" / "runway").is_dir()

    # Post-processing: every frame rendered, and beside it its stylised version.
    for frame in (1, 2, 3):
        render = np.asarray(Image.open(out / "render" / f"frame_{frame:04d}.png"))
        styled = np.asarray(Image.open(out / "render" / f"frame_{frame:04d}_runway.png")
                            .convert("RGB"))
        assert render.shape[:2] == styled.shape[:2] == (120, 160)
        assert np.abs(styled.astype(float) - render[..., :3]).mean() > 10  # restyled
    # Upscaling of a post-processed frame into a file (and a strip).
    assert Image.open(out / "upscaled" / "stylised_x4_0001.png").size == (640, 480)
    matte = np.asarray(Image.open(out / "segmentation" / "hopper_matte.png"))
    assert matte.shape[:2] == (600, 512) and matte[150:330, 190:330].mean() > 200
    for name in ("style_texture", "upscale_file_strip", "segment_photo"):
        events = [json.loads(l)["event"] for l in
                  (out / f"{name}.log.jsonl").read_text().splitlines()]
        assert events[0] == "job" and "output" in events and events[-1] == "done", events

    listing = subprocess.run([sys.executable, "-c", LIST_IMAGES, str(out / "demo.blend")],
                             capture_output=True, text=True, env=env, timeout=300)
    line = [l for l in listing.stdout.splitlines() if l.startswith("IMAGES ")][-1]
    saved = json.loads(line[len("IMAGES "):])
    images = saved["images"]
    for name in ("Stylised render", "Hopper matte"):
        assert images[name][1], f"{name} is not packed into the .blend"
    # The style transfer went into the sphere's material, wired to Base Color.
    assert ["Stylised render", ["Base Color"]] in saved["texture"]
    strips = saved["strips"]
    assert strips["style-transfer post"] == ["IMAGE", 1, 3]  # the post-processed frames
    assert any(v[0] == "IMAGE" and k.startswith("upscale") for k, v in strips.items())
    steps = json.loads((out / "demo.json").read_text())["steps"]
    assert any("post-processed" in name for name, _ in steps)
