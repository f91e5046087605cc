"""Render post-processing in the bpy module: the render handlers fire as Blender
fires them (``render(animation=True)`` is the ``-a`` path, ``render()`` the F12
path), every frame goes through the real identity model (gain 0.5, so a
processed pixel is half the original), and a failing frame is handled as the
setting says. The originals are never touched.
"""
from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np
import pytest
from PIL import Image

from tests.helpers import mod, wait_until

pytestmark = [pytest.mark.blender, pytest.mark.network, pytest.mark.slow]


GREYS = {1: 0.1, 2: 0.3, 3: 0.6}  # world colour (linear) per frame


def animated_scene(bpy, tmp_path, frames=(1, 3)):
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.render.resolution_x, scene.render.resolution_y = 24, 16
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(tmp_path / "render" / "frame_")
    scene.frame_start, scene.frame_end = frames
    world = bpy.data.worlds.new("W")
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True
    colour = world.node_tree.nodes["Background"].inputs["Color"]
    for frame, grey in GREYS.items():
        colour.default_value = (grey, grey, grey, 1.0)
        colour.keyframe_insert("default_value", frame=frame)
    scene.world = world
    bpy.ops.object.camera_add(location=(0, 0, 5))
    scene.camera = bpy.context.object
    return scene


def set_up_post(bpy, scene, **kw):
    props = mod("blender.props")
    s = props.settings(scene, "identity")
    setattr(s, props.prop_id("in", "image", "src"), "CAMERA")
    setattr(s, props.prop_id("in", "gain"), 0.5)
    post = scene.runway_post
    post.enabled, post.model = True, "identity"
    for k, v in kw.items():
        setattr(post, k, v)
    return s


def read(path):
    return np.asarray(Image.open(path).convert("RGBA"))


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_animation_render_every_frame_through_the_model(runway, tmp_path, monkeypatch):
    bpy = runway
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where frames are saved for the model
    scene = animated_scene(bpy, tmp_path)
    set_up_post(bpy, scene, to_strip=True)
    bpy.ops.render.render(animation=True)
    state = mod("blender.postprocess").last_report()
    assert sorted(state.done) == [1, 2, 3] and not state.failed, state.failed
    for frame in (1, 2, 3):
        original = tmp_path / "render" / f"frame_{frame:04d}.png"
        processed = tmp_path / "render" / f"frame_{frame:04d}_runway.png"
        assert original.is_file() and processed.is_file()
        o, p = read(original), read(processed)
        assert o.shape == p.shape == (16, 24, 4)
        # gain 0.5 on RGB; alpha untouched; the original is still the render
        assert np.abs(p[..., :3].astype(int) - o[..., :3] // 2).max() <= 1
        assert (p[..., 3] == o[..., 3]).all()
        assert state.done[frame] == [str(processed)]
    # Frames differ (the world colour is animated): each went through on its own.
    means = [read(tmp_path / "render" / f"frame_{f:04d}_runway.png")[..., 0].mean()
             for f in (1, 2, 3)]
    assert means[0] < means[1] < means[2]
    # One image-sequence strip of the processed frames, from frame 1.
    editor = scene.sequence_editor
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    [strip] = [s for s in strips if s.name.startswith("identity post")]
    assert strip.type == "IMAGE" and len(strip.elements) == 3
    assert int(strip.frame_final_start) == 1 and strip.frame_final_duration == 3
    assert [e.filename for e in strip.elements] == [f"frame_{f:04d}_runway.png"
                                                    for f in (1, 2, 3)]
    # The preview image shows the last frame.
    preview = bpy.data.images["Runway post: identity"]
    assert preview.size[:] == (24, 16)
    # Each frame was saved for the model in a folder of its own, removed after its run.
    assert not list(scratch.glob("runway-post-*"))


def test_originals_are_never_touched_and_reruns_number_their_results(runway, tmp_path):
    bpy = runway
    scene = animated_scene(bpy, tmp_path, frames=(1, 1))
    set_up_post(bpy, scene)
    bpy.ops.render.render(animation=True)
    original = tmp_path / "render" / "frame_0001.png"
    first = tmp_path / "render" / "frame_0001_runway.png"
    before = digest(first)
    bpy.ops.render.render(animation=True)
    again = tmp_path / "render" / "frame_0001_runway_001.png"
    assert again.is_file() and digest(first) == before  # the earlier result stays
    assert digest(original) != digest(first)


def test_f12_render_goes_through_the_model(runway, tmp_path):
    bpy = runway
    scene = animated_scene(bpy, tmp_path)
    scene.frame_set(2)
    set_up_post(bpy, scene)
    bpy.ops.render.render()  # F12: no frame file is written by Blender
    state = mod("blender.postprocess").last_report()
    assert sorted(state.done) == [2]
    processed = tmp_path / "render" / "frame_0002_runway.png"
    assert processed.is_file()
    assert not (tmp_path / "render" / "frame_0002.png").exists()


@pytest.mark.parametrize("policy,done,not_run", [("SKIP", [1, 3], []), ("STOP", [1], [3])])
def test_a_failing_frame_is_skipped_or_stops_post_processing(runway, tmp_path, policy, done,
                                                             not_run):
    bpy = runway
    props = mod("blender.props")
    scene = animated_scene(bpy, tmp_path)
    s = set_up_post(bpy, scene, on_failure=policy)
    gain = props.prop_id("in", "gain")
    for frame, value in ((1, 0.5), (2, 9.0), (3, 0.5)):  # frame 2: out of range
        setattr(s, gain, value)
        s.keyframe_insert(gain, frame=frame)
    bpy.ops.render.render(animation=True)
    state = mod("blender.postprocess").last_report()
    assert sorted(state.done) == done
    assert list(state.failed) == [2] and "gain" in state.failed[2]
    for frame in not_run:
        assert not (tmp_path / "render" / f"frame_{frame:04d}_runway.png").exists()
        assert (tmp_path / "render" / f"frame_{frame:04d}.png").exists()  # rendered anyway
    assert "failed" in state.summary and "frame 2" in state.summary


def test_disabled_post_processing_does_nothing(runway, tmp_path):
    bpy = runway
    scene = animated_scene(bpy, tmp_path, frames=(1, 1))
    set_up_post(bpy, scene, enabled=False)
    bpy.ops.render.render(animation=True)
    assert mod("blender.postprocess").last_report() is None
    assert sorted(os.listdir(tmp_path / "render")) == ["frame_0001.png"]


def test_gui_render_thread_path_results_land_through_the_timer(runway, tmp_path):
    """In a GUI render (F12, Ctrl+F12) Blender calls the handlers on its render thread
    and keeps firing timers on the main thread. Here a thread calls the handlers as
    Blender's render job does, and the main thread runs the engine's timer step: the
    handlers never write into Blender, the timer step does."""
    import threading

    bpy = runway
    post_mod, engine = mod("blender.postprocess"), mod("blender.engine")
    scene = animated_scene(bpy, tmp_path)
    scene.frame_set(3)
    bpy.ops.render.render()  # a Render Result to hand over, before post-processing is on
    set_up_post(bpy, scene)
    errors = []

    def render_job():
        try:
            post_mod.on_render_init(scene)
            post_mod.on_render_post(scene)
            post_mod.on_render_complete(scene)
        except Exception as e:  # noqa: BLE001 (reported by the assertion below)
            errors.append(e)

    t = threading.Thread(target=render_job)
    t.start()
    t.join(60)
    assert not errors, errors
    state = post_mod.last_report()
    assert state.pending and not state.done  # nothing was written from the render thread
    assert "Runway post: identity" not in bpy.data.images
    eng = engine.get()

    def stepped():
        eng.step()  # what bpy.app.timers does on the main thread
        return bool(state.summary)

    assert wait_until(stepped, 60, step=0.02), state.failed
    assert sorted(state.done) == [3], state.failed
    assert (tmp_path / "render" / "frame_0003_runway.png").is_file()
    assert bpy.data.images["Runway post: identity"].size[:] == (24, 16)


def test_a_render_pass_of_each_frame_feeds_the_model(runway, tmp_path):
    """An input set to 'Render pass' gets that pass of the frame just rendered (the
    pass enabled in the View Layer): a plane facing the camera has normal +Z."""
    bpy = runway
    props = mod("blender.props")
    scene = animated_scene(bpy, tmp_path, frames=(1, 1))
    bpy.ops.mesh.primitive_plane_add(size=40, location=(0, 0, 0))
    bpy.context.view_layer.use_pass_normal = True
    s = set_up_post(bpy, scene)
    setattr(s, props.prop_id("in", "image", "src"), "PASS")
    setattr(s, props.prop_id("in", "image", "pass"), "NORMAL")
    setattr(s, props.prop_id("in", "gain"), 1.0)
    bpy.ops.render.render(animation=True)
    state = mod("blender.postprocess").last_report()
    assert sorted(state.done) == [1], state.failed
    p = read(tmp_path / "render" / "frame_0001_runway.png")
    assert np.abs(p[8, 12, :3].astype(int) - (128, 128, 255)).max() <= 3, p[8, 12]
