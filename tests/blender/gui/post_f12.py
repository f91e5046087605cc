"""Run inside a windowed Blender 4.3.2 (tests/blender/test_gui_postprocess.py): render
with post-processing on, as an artist would, F12 first and then Ctrl+F12, and write what
happened to RESULT.json in the output folder, then let the screenshot be taken.

    blender --python post_f12.py -- OUT_DIR CACHE_DIR
"""
import json
import os
import sys
import threading

import bpy

PKG = "bl_ext.user_default.runway"
out_dir, cache = sys.argv[sys.argv.index("--") + 1:][:2]
record = {"threads": [], "steps": []}


def step(text):
    record["steps"].append(text)
    print("RW-STEP", text, flush=True)


@bpy.app.handlers.persistent
def note_thread(scene, *_):
    record["threads"].append(threading.current_thread() is threading.main_thread())


def setup():
    prefs = bpy.context.preferences
    prefs.view.render_display_type = "NONE"  # no extra window: the render stays in place
    prefs.addons[PKG].preferences.cache_folder = cache
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 2
    scene.cycles.use_denoising = False  # Debian's Blender has no OpenImageDenoise
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    scene.render.resolution_percentage = 100
    scene.render.filepath = os.path.join(out_dir, "frame_")
    scene.render.image_settings.file_format = "PNG"
    scene.frame_start, scene.frame_end = 1, 2
    props = sys.modules[PKG + ".blender.props"]
    s = props.settings(scene, "style-transfer")
    setattr(s, props.prop_id("in", "image", "src"), "CAMERA")
    post = scene.runway_post
    post.enabled, post.model, post.to_strip = True, "style-transfer", True
    bpy.app.handlers.render_post.append(note_thread)


def window_override():
    win = bpy.context.window_manager.windows[0]
    area = next(a for a in win.screen.areas if a.type == "VIEW_3D")
    return {"window": win, "screen": win.screen, "area": area,
            "region": next(r for r in area.regions if r.type == "WINDOW")}


state = {"phase": "start", "ticks": 0}


def tick():
    post = sys.modules[PKG + ".blender.postprocess"]
    state["ticks"] += 1
    if state["ticks"] > 1200:  # 120 s
        step("timed out")
        return finish()
    report = post.last_report()
    if state["phase"] == "start":
        setup()
        with bpy.context.temp_override(**window_override()):
            bpy.ops.render.render("INVOKE_DEFAULT")  # F12: a render job in the window
        state["phase"] = "f12"
        step("F12 started")
    elif state["phase"] == "f12" and report is not None and report.summary:
        record["f12"] = {"done": sorted(report.done), "failed": report.failed,
                         "summary": report.summary}
        step("F12 post-processed: " + report.summary)
        with bpy.context.temp_override(**window_override()):
            bpy.ops.render.render("INVOKE_DEFAULT", animation=True)  # Ctrl+F12
        state["phase"] = "anim"
    elif state["phase"] == "anim" and report is not None and report.summary and \
            report.frames and len(report.done) + len(report.failed) >= 2:
        record["anim"] = {"done": sorted(report.done), "failed": report.failed,
                          "summary": report.summary}
        step("Ctrl+F12 post-processed: " + report.summary)
        record["preview"] = list(bpy.data.images["Runway post: style-transfer"].size) \
            if "Runway post: style-transfer" in bpy.data.images else None
        return finish()
    return 0.1


def finish():
    with open(os.path.join(out_dir, "RESULT.json"), "w") as f:
        json.dump(record, f)
    with open(os.environ["RW_SCREENSHOT_READY"], "w") as f:
        f.write("ready\n")
    return None


bpy.app.timers.register(tick, first_interval=2.0)
