"""The Flamenco job type (farm/flamenco/runway-blender.js) compiled under node with Flamenco
Manager's globals stubbed (tests/farm/flamenco_harness.js): one task per chunk, each one
``blender-render`` command whose arguments run the chunk's frames, for both modes.
Flamenco itself cannot be installed here (no package; its Go modules are unreachable).
The Python the command hands Blender is compiled here (syntax), and is the same code as
the Open Job Description template's embedded scripts, which run in real Blender in
test_openjd.py.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPILER = ROOT / "farm" / "flamenco" / "runway-blender.js"
HARNESS = Path(__file__).with_name("flamenco_harness.js")
NODE = shutil.which("node") or "/usr/bin/node"

pytestmark = pytest.mark.skipif(not Path(NODE).exists(), reason="needs node")


def compile_job(**settings) -> dict:
    job = {"name": "shot", "settings": {"blendfile": "/jobs/shot.blend", **settings}}
    proc = subprocess.run([NODE, str(HARNESS), str(COMPILER), json.dumps(job)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def commands(compiled) -> list[dict]:
    out = []
    for task in compiled["tasks"]:
        assert task["type"] == "blender" and len(task["commands"]) == 1, task
        cmd = task["commands"][0]
        assert cmd["type"] == "blender-render"
        out.append(cmd["parameters"])
    return out


def test_job_type_settings():
    jt = compile_job(frames="1", chunk_size=1)["job_type"]
    assert jt["label"] == "Runway for Blender"
    keys = {s["key"]: s for s in jt["settings"]}
    assert set(keys) == {"frames", "chunk_size", "job_file", "addon_module", "blendfile"}
    assert keys["frames"]["required"] and keys["blendfile"]["required"]
    assert keys["addon_module"]["default"] == "bl_ext.system.runway"
    assert keys["chunk_size"]["type"] == "int32"


def test_job_file_chunks_run_run_job_on_their_frames():
    compiled = compile_job(frames="1-4,6,9-12", chunk_size=3, job_file="/jobs/shot.json")
    assert [t["name"] for t in compiled["tasks"]] == \
        ["runway-1-3", "runway-4,6,9", "runway-10-12"]
    for params, chunk in zip(commands(compiled), ("1-3", "4,6,9", "10-12")):
        assert params["exe"] == "{blender}" and params["exeArgs"] == "{blenderArgs}"
        assert params["argsBefore"] == ["--addons", "bl_ext.system.runway"]
        assert params["blendfile"] == "/jobs/shot.blend"
        args = params["args"]
        assert args[:3] == ["--python-exit-code", "1", "--python-expr"]
        assert "bpy.ops.runway.run_job(filepath=job, frames=frames)" in args[3]
        assert args[4:] == ["--", "/jobs/shot.json", chunk, "bl_ext.system.runway"]
        compile(args[3], "<run_job>", "exec")


def test_render_chunks_in_blender_notation_with_the_post_processing_check():
    compiled = compile_job(frames="1-5, 8", chunk_size=2, addon_module="bl_ext.user_default.runway")
    params = commands(compiled)
    assert [p["args"][4] for p in params] == ["--render-frame"] * 3
    assert [p["args"][5] for p in params] == ["1..2", "3..4", "5,8"]  # non-contiguous chunk
    for p in params:
        assert p["argsBefore"] == ["--addons", "bl_ext.user_default.runway"]
        args = p["args"]
        assert args[:3] == ["--python-exit-code", "1", "--python-expr"]
        assert args[6] == "--python-expr" and args[8:] == ["--", "bl_ext.user_default.runway"]
        watch, check = args[3], args[7]
        assert "render_complete.append" in watch and "sys.exit(1)" in check
        compile(watch, "<watch>", "exec")
        compile(check, "<check>", "exec")


def test_the_same_scripts_as_the_openjd_template():
    """The Flamenco one-liners and the OpenJD template's embedded scripts say the same
    things (the template's run in real Blender in test_openjd.py)."""
    template = (ROOT / "farm" / "openjd" / "runway-blender.yaml").read_text()
    compiled = compile_job(frames="1", chunk_size=1, job_file="/j.json")
    run_job = commands(compiled)[0]["args"][3]
    for needle in ("bpy.ops.runway.run_job(filepath=job, frames=frames)",
                   "except RuntimeError as e:", ".blender.engine", "sys.exit(1)"):
        assert needle in run_job and needle.replace("'", '"') in template.replace("'", '"')
    watch = commands(compile_job(frames="1", chunk_size=1))[0]["args"][3]
    for needle in ("post.last_report()", "state.plan is None", "state.failed", "not state.done",
                   "render_cancel.append"):
        assert needle in watch and needle in template
