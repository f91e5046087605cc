"""Running models from Blender (real bpy, real Cog servers): widgets from the spec,
every input source through the identity test model with exact pixels, options
refused before sending, cancel, a server error reaching the report, warm reuse,
the UI driver's timer step, and sessions stopped when another file loads.

The identity and echo test models (tests/model_servers/process) join the built-in shelf
in the catalog for these tests; their environments live in the shared cache.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from runway_addon.core.runtimes.process import process_start_time
from tests.helpers import byte_image, known_pixels, mod, pixels_top_down, wait_until

pytestmark = [pytest.mark.blender, pytest.mark.network, pytest.mark.slow]


def settings(bpy, name):
    return mod("blender.props").settings(bpy.context.scene, name)


def run(bpy, name, **kw):
    """bpy.ops.runway.run as a script calls it; an ERROR report raises RuntimeError
    there, which is kept as the result's words."""
    try:
        result = bpy.ops.runway.run(model=name, **kw)
    except RuntimeError as e:
        result = {"CANCELLED", str(e)}
    status = mod("blender.engine").get().status[name]
    return result, status


def cancelled(result) -> str:
    assert "CANCELLED" in result, result
    return " ".join(r for r in result if r != "CANCELLED")


def result_image(bpy, status):
    images = [a for a in status.applied if a.target == "IMAGE_EDITOR"]
    assert images, status.applied
    return bpy.data.images[images[-1].name]


# ------------------------------------------------------------------ widgets


def test_widgets_follow_each_models_spec(runway):
    bpy = runway
    props = mod("blender.props")
    s = settings(bpy, "style-transfer")
    rna = s.bl_rna.properties
    strength = rna[props.prop_id("in", "strength")]
    assert strength.type == "FLOAT" and (strength.soft_min, strength.soft_max) == (0.0, 1.0)
    mp = props.model("style-transfer")
    style = mp.command.input("style")
    items = [i.name for i in rna[props.prop_id("in", "style")].enum_items]
    assert items == [str(c) for c in style.choices]
    assert props.value_of(mp, s, "in", style) == style.default
    src = rna[props.prop_id("in", "image", "src")]
    assert [i.identifier for i in src.enum_items] == ["CAMERA", "PASS", "IMAGE", "TEXTURE",
                                                      "STRIP", "FILE"]
    # An optional image input can be left out, and is by default.
    assert getattr(s, props.prop_id("in", "style_image", "src")) == "NONE"
    targets = rna[props.prop_id("out", "output", "targets")]
    assert targets.is_enum_flag and "IMAGE_EDITOR" in [i.identifier for i in targets.enum_items]
    # Text inputs offer typed text, a Text datablock and a file.
    tts = settings(bpy, "text-to-speech").bl_rna.properties
    assert [i.identifier for i in tts[props.prop_id("in", "text", "src")].enum_items] == \
        ["TYPED", "TEXT", "FILE"]


# ------------------------------------------------------------------ sources


def test_image_datablock_comes_back_pixel_exact_and_upright(runway):
    bpy = runway
    props = mod("blender.props")
    sent = known_pixels()
    image = byte_image(bpy, "my picture", sent)
    s = settings(bpy, "identity")
    setattr(s, props.prop_id("in", "image", "src"), "IMAGE")
    setattr(s, props.prop_id("in", "image", "image"), image)
    result, status = run(bpy, "identity")
    assert result == {"FINISHED"}, status.error
    out = result_image(bpy, status)
    assert out.name != "my picture" and out.size[:] == (8, 6)
    back = np.round(pixels_top_down(out) * 255).astype(np.uint8)
    np.testing.assert_array_equal(back, sent)
    assert tuple(back[0, 0]) == (255, 0, 0, 255)  # top-left stays top-left
    # The user's image is untouched.
    np.testing.assert_array_equal(np.round(pixels_top_down(image) * 255).astype(np.uint8), sent)


def test_float_image_is_sent_as_srgb(runway):
    bpy = runway
    props = mod("blender.props")
    image = bpy.data.images.new("linear", width=4, height=4, alpha=True, float_buffer=True)
    image.pixels.foreach_set(np.tile(np.float32([0.2158605, 0.0, 1.0, 1.0]), 16))
    s = settings(bpy, "identity")
    setattr(s, props.prop_id("in", "image", "src"), "IMAGE")
    setattr(s, props.prop_id("in", "image", "image"), image)
    result, status = run(bpy, "identity")
    assert result == {"FINISHED"}, status.error
    back = pixels_top_down(result_image(bpy, status))
    # Linear 0.2159 is sRGB 128/255: what the model saw, and what an 8-bit result holds.
    assert abs(back[0, 0, 0] - 128 / 255) < 1.5 / 255 and back[0, 0, 2] > 0.99


def test_non_colour_images_reach_the_model_as_stored(runway):
    """Data images (a denoiser's albedo and normals) are values, not light: whatever
    the buffer, Non-Color and Raw reach the model unconverted (0.2 as 51, never the
    sRGB encoding 124), from an image datablock and from a material texture."""
    bpy = runway
    props = mod("blender.props")
    s = settings(bpy, "identity")
    stored = np.float32([0.2, 0.5, 0.8, 1.0])
    expect = [51, 128, 204, 255]  # round(v * 255)
    bpy.ops.mesh.primitive_plane_add()
    mat = bpy.data.materials.new("data")
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    bpy.context.view_layer.objects.active.data.materials.append(mat)
    # Blender 4 lists Raw too; from Blender 5 Non-Color is the only data colour space.
    named = [i.identifier for i in bpy.types.ColorManagedInputColorspaceSettings.bl_rna
             .properties["name"].enum_items]
    spaces = [c for c in ("Non-Color", "Raw") if c in named]
    assert "Non-Color" in spaces
    for colorspace in spaces:
        for float_buffer in (True, False):
            image = bpy.data.images.new(f"{colorspace} {float_buffer}", width=4, height=2,
                                        alpha=True, float_buffer=float_buffer)
            image.colorspace_settings.name = colorspace
            image.pixels.foreach_set(np.tile(stored, 8))
            node.image = image
            for source in ("IMAGE", "TEXTURE"):
                setattr(s, props.prop_id("in", "image", "src"), source)
                setattr(s, props.prop_id("in", "image", "image"), image)
                result, status = run(bpy, "identity")
                assert result == {"FINISHED"}, status.error
                back = np.round(pixels_top_down(result_image(bpy, status)) * 255)
                assert back.reshape(-1, 4).tolist() == [expect] * 8, \
                    (colorspace, float_buffer, source, back[0, 0])


def test_an_image_with_no_pixels_is_refused_naming_it(runway):
    """An image whose file is missing has no pixels (Blender reports 0x0): the run is
    refused before anything starts, saying which image and why, never a crash."""
    bpy = runway
    props = mod("blender.props")
    missing = bpy.data.images.new("gone", 4, 4)
    missing.source = "FILE"
    missing.filepath = "/nonexistent/runway-gone.png"
    assert tuple(missing.size) == (0, 0)
    s = settings(bpy, "identity")
    setattr(s, props.prop_id("in", "image", "src"), "IMAGE")
    setattr(s, props.prop_id("in", "image", "image"), missing)
    result, status = run(bpy, "identity")
    words = cancelled(result)
    assert "image 'gone' has no pixels (a render result or a missing file?)" in words and \
        "Is its file missing?" in words, words
    assert mod("blender.engine").get().session_of("identity") is None  # nothing started


def test_material_texture_file_and_strip_sources(runway, tmp_path):
    bpy = runway
    props = mod("blender.props")
    s = settings(bpy, "identity")
    src = props.prop_id("in", "image", "src")
    # The active object's material texture.
    sent = known_pixels()
    image = byte_image(bpy, "texture", sent)
    bpy.ops.mesh.primitive_plane_add()
    mat = bpy.data.materials.new("M")
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.image = image
    bpy.context.view_layer.objects.active.data.materials.append(mat)
    setattr(s, src, "TEXTURE")
    result, status = run(bpy, "identity")
    assert result == {"FINISHED"}, status.error
    np.testing.assert_array_equal(
        np.round(pixels_top_down(result_image(bpy, status)) * 255).astype(np.uint8), sent)
    # A file on disk.
    from PIL import Image
    path = tmp_path / "in.png"
    Image.fromarray(sent).save(path)
    setattr(s, src, "FILE")
    setattr(s, props.prop_id("in", "image", "file"), str(path))
    result, status = run(bpy, "identity")
    assert result == {"FINISHED"}, status.error
    np.testing.assert_array_equal(
        np.round(pixels_top_down(result_image(bpy, status)) * 255).astype(np.uint8), sent)
    # The current frame of an image-sequence strip: frame 11 is the second image.
    frames = []
    for i, colour in enumerate([(10, 20, 30, 255), (200, 100, 50, 255)]):
        p = tmp_path / f"seq_{i:04d}.png"
        Image.fromarray(np.full((4, 4, 4), colour, np.uint8)).save(p)
        frames.append(p)
    scene = bpy.context.scene
    ed = scene.sequence_editor_create()
    strips = ed.strips if hasattr(ed, "strips") else ed.sequences
    strip = strips.new_image("shots", str(frames[0]), 1, 10)
    strip.elements.append(frames[1].name)
    scene.frame_current = 11
    setattr(s, src, "STRIP")
    setattr(s, props.prop_id("in", "image", "strip"), strip.name)
    result, status = run(bpy, "identity")
    assert result == {"FINISHED"}, status.error
    back = np.round(pixels_top_down(result_image(bpy, status)) * 255).astype(np.uint8)
    assert tuple(back[0, 0]) == (200, 100, 50, 255)


def _camera_scene(bpy):
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.device = "CPU"
    scene.render.resolution_x, scene.render.resolution_y = 32, 24
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    world = bpy.data.worlds.new("W")
    if bpy.app.version < (5, 0, 0):  # always nodes from 5.0 (the setter is deprecated)
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.2158605, 0.2158605,
                                                                         0.2158605, 1)
    scene.world = world
    bpy.ops.object.camera_add(location=(0, 0, 5), rotation=(0, 0, 0))
    scene.camera = bpy.context.object
    return scene


def test_camera_render_and_a_render_pass(runway, tmp_path, monkeypatch):
    bpy = runway
    props = mod("blender.props")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the renders are saved
    _camera_scene(bpy)
    # A plane filling the view, facing the camera: its normal is +Z.
    bpy.ops.mesh.primitive_plane_add(size=40, location=(0, 0, 0))
    # A strip in the sequencer (a red image) must not replace the camera's view.
    from PIL import Image
    red = Path(tempfile.mkdtemp()) / "red.png"
    Image.fromarray(np.full((24, 32, 3), (255, 0, 0), np.uint8)).save(red)
    ed = bpy.context.scene.sequence_editor_create()
    (ed.strips if hasattr(ed, "strips") else ed.sequences).new_image("red", str(red), 1, 1)
    s = settings(bpy, "identity")
    setattr(s, props.prop_id("in", "image", "src"), "CAMERA")
    result, status = run(bpy, "identity")
    assert result == {"FINISHED"}, status.error
    out = result_image(bpy, status)
    assert out.size[:] == (32, 24)
    seen = pixels_top_down(out)[0, 0, :3]
    assert abs(seen[0] - seen[1]) < 0.05, seen  # the grey world, not the red strip
    assert bpy.context.scene.render.use_sequencer  # the scene's own setting is back
    # Source description (provenance) names the camera.
    setattr(s, props.prop_id("in", "image", "src"), "PASS")
    setattr(s, props.prop_id("in", "image", "pass"), "NORMAL")
    result, status = run(bpy, "identity")
    assert result == {"FINISHED"}, status.error
    back = pixels_top_down(result_image(bpy, status))
    # Normal (0, 0, 1) encodes as (0.5, 0.5, 1.0).
    centre = back[12, 16, :3]
    assert np.allclose(centre, (0.5, 0.5, 1.0), atol=0.02), centre
    # Each run rendered into a folder of its own, removed when the run ended.
    assert not list(tmp_path.glob("runway-render-*"))


def test_text_datablock_source_and_text_output(runway):
    bpy = runway
    props = mod("blender.props")
    s = settings(bpy, "echo")
    text = bpy.data.texts.new("lines")
    text.from_string("hello from a Text")
    setattr(s, props.prop_id("in", "text", "src"), "TEXT")
    setattr(s, props.prop_id("in", "text", "text"), text)
    setattr(s, props.prop_id("in", "repeat"), 2)
    result, status = run(bpy, "echo")
    assert result == {"FINISHED"}, status.error
    [made] = [a for a in status.applied if a.target == "TEXT"]
    assert bpy.data.texts[made.name].as_string().strip() == "hello from a Text" * 2


# ------------------------------------------------------------------ refusals and failures


def test_out_of_range_option_is_refused_before_sending_naming_the_field(runway):
    bpy = runway
    props = mod("blender.props")
    engine = mod("blender.engine")
    s = settings(bpy, "identity")
    setattr(s, props.prop_id("in", "image", "src"), "IMAGE")
    setattr(s, props.prop_id("in", "image", "image"), byte_image(bpy, "x", known_pixels()))
    setattr(s, props.prop_id("in", "gain"), 9.0)  # typed past the slider's soft maximum 4
    with pytest.raises(mod("core.errors").SpecValidationError, match="gain"):
        engine.get().submit(bpy.context, "identity")
    result, _ = run(bpy, "identity")
    assert "gain: 9.0 is above the maximum 4.0" in cancelled(result)
    ref = mod("core.jobs").ModelRef.from_card(props.model("identity").card)
    assert engine.get().queue.pool.start_count(ref) == 0  # nothing was started or sent


def test_licence_not_cleared_needs_confirmation(runway):
    bpy = runway
    s = settings(bpy, "text-to-speech")
    assert not s.licence_confirmed
    result, _ = run(bpy, "text-to-speech")
    assert "commercial use" in cancelled(result)
    assert not mod("blender.engine").get().runs  # nothing queued


def test_server_error_reaches_the_report_and_the_panel(runway):
    bpy = runway
    props = mod("blender.props")
    s = settings(bpy, "identity")
    setattr(s, props.prop_id("in", "image", "src"), "IMAGE")
    setattr(s, props.prop_id("in", "image", "image"), byte_image(bpy, "x", known_pixels()))
    setattr(s, props.prop_id("in", "crash"), True)
    result, status = run(bpy, "identity")
    assert status.error is not None and status.error.message
    assert status.error.message in cancelled(result)  # the report carries the error
    assert not [a for a in status.applied if a.target == "IMAGE_EDITOR" and
                a.name in bpy.data.images and status.runs]


def test_ui_driver_cancel_warm_reuse_and_file_load_stops_sessions(runway):
    """The UI path without a window: submit, then the timer step (called directly,
    as bpy.app.timers would) drains events; the step never waits for the run."""
    bpy = runway
    props = mod("blender.props")
    engine = mod("blender.engine")
    jobs = mod("core.jobs")
    s = settings(bpy, "identity")
    setattr(s, props.prop_id("in", "image", "src"), "IMAGE")
    setattr(s, props.prop_id("in", "image", "image"), byte_image(bpy, "x", known_pixels()))
    eng = engine.get()
    # A first run starts the model.
    handle = eng.submit(bpy.context, "identity")
    assert wait_until(lambda: (eng.step(), handle.finished.is_set())[1], 120, 0.05)
    eng.step()
    assert handle.state is jobs.JobState.DONE
    ref = jobs.ModelRef.from_card(props.model("identity").card)
    assert eng.queue.pool.start_count(ref) == 1
    # A long run: each step returns while the model works (it does not wait for it).
    setattr(s, props.prop_id("in", "delay"), 20.0)
    long = eng.submit(bpy.context, "identity")
    assert wait_until(lambda: (eng.step(), long.state is jobs.JobState.RUNNING)[1], 30, 0.05)
    for _ in range(20):
        eng.step()
    # A step that waited for the model would have seen the 20 s run end.
    assert not long.finished.is_set() and long.state is jobs.JobState.RUNNING
    bpy.ops.runway.cancel(model="identity")
    assert wait_until(lambda: (eng.step(), long.finished.is_set())[1], 15, 0.05)
    eng.step()
    assert long.state is jobs.JobState.CANCELLED
    assert eng.status["identity"].message.endswith("cancelled")
    # Warm: the next run did not start the model again.
    setattr(s, props.prop_id("in", "delay"), 0.0)
    again = eng.submit(bpy.context, "identity")
    eng.wait([again], timeout=60)
    assert again.state is jobs.JobState.DONE and eng.queue.pool.start_count(ref) == 1
    pid = eng.session_of("identity").session.pid
    assert process_start_time(pid) is not None
    # Loading another file stops every session of this one.
    bpy.ops.wm.read_homefile(use_factory_startup=True, use_empty=True)
    assert wait_until(lambda: process_start_time(pid) is None, 15)
    assert engine.current() is None


def test_scripts_start_and_stop_sessions_and_read_logs(runway):
    bpy = runway
    engine = mod("blender.engine")
    assert bpy.ops.runway.session_start(model="echo") == {"FINISHED"}
    entry = engine.get().session_of("echo")
    assert entry is not None and entry.state.value == "running"
    assert bpy.ops.runway.show_logs(model="echo") == {"FINISHED"}
    log = bpy.data.texts["Runway log: echo"].as_string()
    assert "# server" in log and "(not running)" not in log
    pid = entry.session.pid
    assert bpy.ops.runway.session_stop(model="echo") == {"FINISHED"}
    engine.get().queue.pool.join(15)
    assert process_start_time(pid) is None and engine.get().session_of("echo") is None


def test_status_bar_shows_runs_in_flight_and_panels_draw(runway, capfd):
    """The status bar item and every Run sub-panel, drawn into Blender's own layout in
    the 3D View's sidebar, with and without a run in flight."""
    import types
    from tests.blender.test_panels_draw import Drawn, draw_panel, real_layout
    bpy = runway
    panels, engine, props = mod("blender.panels"), mod("blender.engine"), mod("blender.props")
    s = settings(bpy, "identity")
    setattr(s, props.prop_id("in", "image", "src"), "IMAGE")
    setattr(s, props.prop_id("in", "image", "image"), byte_image(bpy, "x", known_pixels()))
    setattr(s, props.prop_id("in", "delay"), 5.0)
    eng = engine.get()
    handle = eng.submit(bpy.context, "identity")
    assert wait_until(lambda: (eng.step(), eng.status["identity"].state == "running")[1],
                      60, 0.05)
    directory = mod("blender.directory")
    d = bpy.context.window_manager.runway_directory
    directory.sync_entries(d)
    d.active = [m.name for m in d.models].index("identity")
    capfd.readouterr()
    drawn = {cls.__name__: draw_panel(bpy, cls, capfd)[0]
             for cls in (panels.RUNWAY_PT_run, panels.RUNWAY_PT_run_inputs,
                         panels.RUNWAY_PT_run_outputs)}
    run_panel = drawn["RUNWAY_PT_run"]
    assert "Session: running" in run_panel.texts, run_panel
    assert any("running" in t for t in run_panel.texts if t != "Session: running")
    # Busy: Run Again and Cancel, both for this model.
    assert "Run Again" in run_panel.texts and "runway.cancel" in run_panel.operators
    assert "Output" in drawn["RUNWAY_PT_run_outputs"].texts, drawn
    assert props.prop_id("in", "delay") in drawn["RUNWAY_PT_run_inputs"].props

    def status_bar():
        bar = types.SimpleNamespace(layout=real_layout(bpy))
        panels.draw_status_bar(bar, bpy.context)
        return Drawn(bar.layout)
    busy = status_bar()
    assert any(t.startswith("Runway: ") and "running" in t for t in busy.texts), busy
    handle.cancel()
    eng.wait([handle], timeout=30)
    assert status_bar().items == []  # nothing in flight: nothing in the status bar


def test_run_again_reproduces_a_result_and_its_job_exports(runway, tmp_path):
    """A result's provenance names what made it: Run Again gives the same pixels (a
    deterministic model) as a new image, and the exported job file loads and runs."""
    import json
    bpy = runway
    props = mod("blender.props")
    s = settings(bpy, "identity")
    setattr(s, props.prop_id("in", "image", "src"), "IMAGE")
    setattr(s, props.prop_id("in", "image", "image"), byte_image(bpy, "source", known_pixels()))
    setattr(s, props.prop_id("in", "gain"), 0.5)
    result, status = run(bpy, "identity")
    assert result == {"FINISHED"}, status.error
    first = result_image(bpy, status)
    record = json.loads(first["runway"])
    assert record["model"] == "identity" and record["inputs"]["image"] == \
        {"source": "image", "image": "source"} and record["options"] == {}
    setattr(s, props.prop_id("in", "gain"), 1.0)  # the panel changed since: no matter
    assert bpy.ops.runway.run_again(kind="image", name=first.name) == {"FINISHED"}
    again = result_image(bpy, mod("blender.engine").get().status["identity"])
    assert again.name != first.name
    np.testing.assert_array_equal(pixels_top_down(again), pixels_top_down(first))
    path = tmp_path / "again.job.json"
    assert bpy.ops.runway.export_result_job(kind="image", name=first.name,
                                            filepath=str(path)) == {"FINISHED"}
    job = json.loads(path.read_text())
    assert job["model"] == {"catalog": "identity"} and job["outputs"] == \
        {"output": [{"target": "IMAGE_EDITOR"}]}
    assert job["inputs"]["gain"] == {"source": "value", "value": 0.5}
    assert bpy.ops.runway.run_job(filepath=str(path)) == {"FINISHED"}
    # Something no model made cannot run again, and says why.
    with pytest.raises(RuntimeError, match="not made by a model"):
        bpy.ops.runway.run_again(kind="image", name="source")
