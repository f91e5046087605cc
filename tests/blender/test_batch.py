"""Job files through real bpy and real models: ``bpy.ops.runway.run_job`` renders each
frame with Cycles and writes the model's results with the frame in their names; a
failing frame is skipped or stops the job as the file says, and the operator fails
either way; an invalid job starts nothing; the JSON-lines log has every step; an
exported job reproduces a run by hand; ``save_blend`` keeps the results; the example
jobs fit their shelf models and a few run as they are.

The identity and echo test models (tests/model_servers/process) join the shelf; their
environments, like the shelf's, live in the shared cache.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import ROOT, byte_image, known_pixels, mod, pixels_top_down

pytestmark = [pytest.mark.blender, pytest.mark.network, pytest.mark.slow]

EXAMPLES = sorted((ROOT / "examples" / "jobs").glob("*.json"))
# sRGB 8-bit colours of the world, one per frame (the render is the world alone).
FRAME_COLOURS = {1: (200, 40, 40), 2: (40, 200, 40), 3: (40, 40, 200)}


def linear(c8: int) -> float:
    c = c8 / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def camera_scene(bpy, tmp_path: Path, size=(32, 24)):
    """A saved .blend: Cycles, 1 sample, 32x24 (or ``size``), no dither, the world's colour keyed
    per frame (FRAME_COLOURS), a camera looking at nothing."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.device = "CPU"
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.dither_intensity = 0.0
    scene.cycles.use_denoising = False
    scene.view_settings.view_transform = "Standard"
    scene.frame_start, scene.frame_end = 1, 3
    world = bpy.data.worlds.new("W")
    if bpy.app.version < (5, 0, 0):  # always nodes from 5.0 (the setter is deprecated)
        world.use_nodes = True
    colour = world.node_tree.nodes["Background"].inputs["Color"]
    for frame, rgb in FRAME_COLOURS.items():
        colour.default_value = (*map(linear, rgb), 1.0)
        colour.keyframe_insert("default_value", frame=frame)
    scene.world = world
    bpy.ops.object.camera_add(location=(0, 0, 5), rotation=(0, 0, 0))
    scene.camera = bpy.context.object
    scene.frame_set(1)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    return scene


def write_job(tmp_path: Path, name: str, **data) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"version": 1, **data}), encoding="utf-8")
    return path


def run_job(bpy, path, **kw):
    """The operator as a script calls it: FINISHED, or the ERROR report's words."""
    try:
        return bpy.ops.runway.run_job(filepath=str(path), **kw), ""
    except RuntimeError as e:
        return {"CANCELLED"}, str(e)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def rgb_of(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


def start_count(name: str) -> int:
    jobs = mod("core.jobs")
    card = mod("blender.directory").get_catalog().get(name)
    eng = mod("blender.engine").get()
    return eng.queue.pool.start_count(jobs.ModelRef.from_card(card))


def identity_render_job(out: Path, **kw) -> dict:
    return {"model": {"catalog": "identity"}, "runtime": "LOCAL_PROCESS",
            "inputs": {"image": {"source": "render"}},
            "outputs": {"output": [{"target": "FILE", "path": str(out / "id_{frame:04d}")}]},
            "frames": "1-3", **kw}


# ------------------------------------------------------------------ renders to files


def test_three_rendered_frames_become_three_files_with_their_pixels(runway, tmp_path):
    bpy = runway
    camera_scene(bpy, tmp_path)
    out = tmp_path / "out"
    job = write_job(tmp_path, "job.json", **identity_render_job(out))
    log = tmp_path / "log.jsonl"
    result, words = run_job(bpy, job, log=str(log))
    assert result == {"FINISHED"}, words
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["id_0001.png", "id_0002.png", "id_0003.png"]
    for frame, rgb in FRAME_COLOURS.items():
        px = rgb_of(out / f"id_{frame:04d}.png")
        assert px.shape == (24, 32, 4)
        # Every pixel is that frame's world colour (8-bit sRGB), opaque.
        assert np.abs(px[..., :3].astype(int) - rgb).max() <= 2, (frame, px[0, 0])
        assert (px[..., 3] == 255).all()
        side = json.loads((out / f"id_{frame:04d}.png.runway.json").read_text())
        assert side["frame"] == frame and side["model"] == "identity", side
    # One session served every frame; the scene is back where it was not required,
    # but the log holds one line per step, in order, each parseable JSON.
    assert start_count("identity") == 1
    lines = read_log(log)
    events = [line["event"] for line in lines]
    assert events[0] == "job" and events[-1] == "done"
    assert lines[0]["frames"] == [1, 2, 3] and lines[0]["model"] == "identity"
    assert lines[-1]["ok"] is True and lines[-1]["done"] == [1, 2, 3]
    for frame in (1, 2, 3):
        mine = [line["event"] for line in lines if line.get("frame") == frame]
        assert mine[0] == "submitted" and "running" in mine, mine
        assert mine[-2:] == ["output", "frame"], mine
        [written] = [line for line in lines if line["event"] == "output" and
                     line["frame"] == frame]
        assert written["target"] == "FILE" and written["ok"] is True
        assert written["name"] == str(out / f"id_{frame:04d}.png")
    assert "starting" in events  # the session's start is logged (frame 1)
    assert all(line["t"] >= 0 for line in lines)
    assert [line["t"] for line in lines] == sorted(line["t"] for line in lines)


def test_frames_argument_overrides_the_job_and_a_bad_one_is_refused(runway, tmp_path):
    bpy = runway
    camera_scene(bpy, tmp_path)
    out = tmp_path / "out"
    job = write_job(tmp_path, "job.json", **identity_render_job(out))
    result, words = run_job(bpy, job, frames="3,1")
    assert result == {"FINISHED"}, words
    assert sorted(p.name for p in out.glob("*.png")) == ["id_0001.png", "id_0003.png"]
    assert np.abs(rgb_of(out / "id_0003.png")[0, 0, :3].astype(int) -
                  FRAME_COLOURS[3]).max() <= 2
    result, words = run_job(bpy, job, frames="3-1")
    assert result == {"CANCELLED"} and "frames: range 3-1 goes backwards" in words, words


# ------------------------------------------------------------------ failures


def echo_scene(bpy, tmp_path: Path, crash_on: int):
    """A Text datablock whose words change per frame (a frame_change handler); on
    ``crash_on`` they make the echo model's worker die mid-run."""
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    text = bpy.data.texts.new("Line")

    def per_frame(scene, *_):
        f = scene.frame_current
        bpy.data.texts["Line"].from_string("crash the worker" if f == crash_on
                                           else f"frame {f}")

    bpy.app.handlers.frame_change_post.append(per_frame)
    return text, per_frame


def run_echo_crashing_on_2(bpy, tmp_path: Path, frames: str, on_failure: str):
    """The echo job over ``frames`` (files in tmp_path/out, Text datablocks "Echo"),
    its worker dying on frame 2: the result, words and log path of run_with_handler."""
    _, handler = echo_scene(bpy, tmp_path, crash_on=2)
    out = tmp_path / "out"
    return run_with_handler(
        bpy, tmp_path, handler, model={"catalog": "echo"}, runtime="LOCAL_PROCESS",
        inputs={"text": {"source": "text", "text": "Line"}, "repeat": 2},
        outputs={"output": [{"target": "FILE", "path": str(out / "echo_{frame:04d}")},
                            {"target": "TEXT", "name": "Echo"}]},
        frames=frames, on_failure=on_failure)


def run_with_handler(bpy, tmp_path: Path, handler, **data):
    """Write the job and run it with an event log; the frame handler (``echo_scene``,
    ``image_gone_on``) comes off however the run ends. The result, words and log path."""
    log = tmp_path / "log.jsonl"
    try:
        result, words = run_job(bpy, write_job(tmp_path, "job.json", **data), log=str(log))
    finally:
        bpy.app.handlers.frame_change_post.remove(handler)
    return result, words, log


def test_skip_finishes_the_other_frames_and_the_job_fails(runway, tmp_path):
    bpy = runway
    out = tmp_path / "out"
    result, words, log = run_echo_crashing_on_2(bpy, tmp_path, "1-4", "skip")
    assert result == {"CANCELLED"}, result
    assert "job failed: 3/4 frames done" in words and "frame 2" in words, words
    assert sorted(p.name for p in out.glob("*.txt")) == \
        ["echo_0001.txt", "echo_0003.txt", "echo_0004.txt"]
    for f in (1, 3, 4):
        assert (out / f"echo_{f:04d}.txt").read_text() == f"frame {f}" * 2
    lines = read_log(log)
    [error] = [line for line in lines if line["event"] == "error"]
    assert error["frame"] == 2 and error["message"], error
    assert lines[-1]["event"] == "done" and lines[-1]["ok"] is False
    assert lines[-1]["failed"] == [2] and lines[-1]["done"] == [1, 3, 4]
    # Three Text datablocks were made (one per frame done), none for frame 2.
    assert sorted(t.as_string().strip() for t in bpy.data.texts if t.name.startswith("Echo")) \
        == ["frame 1frame 1", "frame 3frame 3", "frame 4frame 4"]


def test_stop_runs_no_frame_after_the_failing_one(runway, tmp_path):
    """The model fails on frame 2: frame 1 is kept, no frame after 3 is even read
    (frame 3, read while the model worked on 2, is cancelled unless it was already
    done), and the job fails."""
    bpy = runway
    out = tmp_path / "out"
    result, words, log = run_echo_crashing_on_2(bpy, tmp_path, "1-5", "stop")
    assert result == {"CANCELLED"}, result
    assert "frame 2" in words and "not run" in words, words
    lines = read_log(log)
    end = lines[-1]
    assert end["failed"] == [2] and end["ok"] is False
    assert end["done"] in ([1], [1, 3]), end
    assert sorted(end["done"] + end["not_run"]) == [1, 3, 4, 5], end
    assert sorted(p.name for p in out.glob("*.txt")) == \
        [f"echo_{f:04d}.txt" for f in end["done"]]
    submitted = [line["frame"] for line in lines if line["event"] == "submitted"]
    assert submitted == [1, 2, 3], submitted
    [stopped] = [line for line in lines if line["event"] == "stopped"]
    assert stopped["not_run"] == [4, 5]


def image_gone_on(bpy, frame: int):
    """Image "Pic" (known pixels) that is renamed away on ``frame``: reading the
    input fails there, before the model."""
    sent = known_pixels()
    byte_image(bpy, "Pic", sent)

    def per_frame(scene, *_):
        img = bpy.data.images.get("Pic")
        if scene.frame_current == frame and img is not None:
            img.name = "Gone"
        elif scene.frame_current != frame and img is None:
            bpy.data.images["Gone"].name = "Pic"

    bpy.app.handlers.frame_change_post.append(per_frame)
    return sent, per_frame


@pytest.mark.parametrize("on_failure, files", [
    ("skip", ["p_0001.png", "p_0003.png", "p_0004.png"]),
    ("stop", ["p_0001.png"]),
])
def test_a_frame_whose_input_cannot_be_read(runway, tmp_path, on_failure, files):
    """A failure before the model (the image is gone on frame 2) fails that frame:
    skip goes on with 3 and 4; stop reads no frame after it."""
    bpy = runway
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    sent, handler = image_gone_on(bpy, 2)
    out = tmp_path / "out"
    result, words, log = run_with_handler(
        bpy, tmp_path, handler, model={"catalog": "identity"},
        inputs={"image": {"source": "image", "image": "Pic"}},
        outputs={"output": {"target": "FILE", "path": str(out / "p_{frame:04d}")}},
        frames="1-4", on_failure=on_failure)
    assert result == {"CANCELLED"} and "frame 2" in words and "Pic" in words, words
    assert sorted(p.name for p in out.glob("*.png")) == files
    for name in files:
        np.testing.assert_array_equal(rgb_of(out / name), sent)
    lines = read_log(log)
    submitted = [line["frame"] for line in lines if line["event"] == "submitted"]
    assert submitted == ([1, 3, 4] if on_failure == "skip" else [1])
    assert lines[-1]["failed"] == [2]


@pytest.mark.parametrize("data, words", [
    ({"frames": "a-b"}, "frames: 'a-b' is not a frame or range"),
    ({"inputs": {"picture": {"source": "render"}}}, "inputs.picture: the model has no input"),
    ({"inputs": {"image": {"source": "render"}, "gain": 9.0}}, "inputs.gain:"),
    ({"inputs": {"image": {"source": "value", "value": "x"}}},
     "inputs.image: an image cannot come from 'value'"),
    ({"outputs": {"result": [{"target": "FILE"}]}}, "outputs.result: the model has no output"),
    ({"outputs": {"output": [{"target": "OBJECTS"}]}},
     "outputs.output.0.target: output (file) cannot go to OBJECTS"),
    ({"options": {"speed": 1}}, "options.speed: the model has no option"),
    ({"model": {"catalog": "no-such-model"}}, "model.catalog: no model 'no-such-model'"),
    ({"model": {"catalog": "identity"}, "bogus": True}, "bogus: Extra inputs"),
    ({"command": "train"}, "command:"),
])
def test_an_invalid_job_starts_nothing(runway, tmp_path, data, words):
    bpy = runway
    camera_scene(bpy, tmp_path)
    out = tmp_path / "out"
    log = tmp_path / "log.jsonl"
    job = write_job(tmp_path, "job.json", **{**identity_render_job(out), **data})
    result, message = run_job(bpy, job, log=str(log))
    assert result == {"CANCELLED"} and words in message, message
    assert start_count("identity") == 0
    assert not out.exists()
    # The log says why, and nothing else: the checks come before the first render.
    [line] = read_log(log)
    assert line["event"] == "refused" and words in line["message"], line
    field = words.split(":")[0]
    assert line["field"].startswith(field), line


def test_render_without_a_camera_is_refused_first(runway, tmp_path):
    bpy = runway
    camera_scene(bpy, tmp_path)
    bpy.context.scene.camera = None
    job = write_job(tmp_path, "job.json", **identity_render_job(tmp_path / "out"))
    result, words = run_job(bpy, job)
    assert result == {"CANCELLED"} and "inputs: a render needs a camera" in words, words
    assert start_count("identity") == 0


def test_missing_job_file_and_broken_json(runway, tmp_path):
    bpy = runway
    result, words = run_job(bpy, tmp_path / "nope.json")
    assert result == {"CANCELLED"} and "cannot read the job file" in words
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    result, words = run_job(bpy, bad)
    assert result == {"CANCELLED"} and "bad.json is not JSON" in words


# ------------------------------------------------------------------ export, save


def test_exported_job_reproduces_a_run_by_hand(runway, tmp_path):
    bpy = runway
    props = mod("blender.props")
    camera_scene(bpy, tmp_path)
    sent = known_pixels()
    byte_image(bpy, "Pic", sent)
    s = props.settings(bpy.context.scene, "identity")
    setattr(s, props.prop_id("in", "image", "src"), "IMAGE")
    setattr(s, props.prop_id("in", "image", "image"), bpy.data.images["Pic"])
    setattr(s, props.prop_id("in", "gain"), 0.5)
    setattr(s, props.prop_id("out", "output", "targets"), {"FILE"})
    setattr(s, props.prop_id("out", "output", "path"), str(tmp_path / "hand" / "x_{frame:04d}"))
    assert bpy.ops.runway.run(model="identity") == {"FINISHED"}
    [by_hand] = (tmp_path / "hand").glob("*.png")
    exported = tmp_path / "identity.job.json"
    assert bpy.ops.runway.export_job(model="identity", filepath=str(exported)) == {"FINISHED"}
    data = json.loads(exported.read_text())
    assert data["model"] == {"catalog": "identity"}
    assert data["inputs"]["image"] == {"source": "image", "image": "Pic"}
    assert data["inputs"]["gain"]["value"] == 0.5
    assert [t["target"] for t in data["outputs"]["output"]] == ["FILE"]
    # The same job from the file, written elsewhere: the same pixels.
    data["outputs"]["output"][0]["path"] = str(tmp_path / "job" / "x_{frame:04d}")
    exported.write_text(json.dumps(data))
    result, words = run_job(bpy, exported)
    assert result == {"FINISHED"}, words
    [by_job] = (tmp_path / "job").glob("*.png")
    assert by_job.name == by_hand.name == "x_0001.png"
    np.testing.assert_array_equal(rgb_of(by_job), rgb_of(by_hand))
    halved = sent.copy()
    halved[..., :3] = (sent[..., :3].astype(np.float32) * 0.5).astype(np.uint8)
    np.testing.assert_array_equal(rgb_of(by_job), halved)


def test_style_transfer_job_saves_a_blend_holding_the_result(runway, tmp_path):
    """A real shelf model on a render; save_blend with a path writes a copy that,
    opened again, has the result image and its pixels."""
    bpy = runway
    camera_scene(bpy, tmp_path, size=(64, 48))  # style transfer wants 32 px or more
    bpy.ops.mesh.primitive_monkey_add(location=(0, 0, 0))
    saved = tmp_path / "saved" / "copy.blend"
    job = write_job(tmp_path, "job.json", model={"catalog": "style-transfer"},
                    runtime="LOCAL_PROCESS",
                    inputs={"image": {"source": "render"}, "style": 3, "max_size": 64},
                    outputs={"output": [{"target": "IMAGE_EDITOR", "name": "Styled"}]},
                    frames="2", save_blend=str(saved))
    result, words = run_job(bpy, job)
    assert result == {"FINISHED"}, words
    styled = bpy.data.images["Styled"]
    assert tuple(styled.size) == (64, 48)
    before = pixels_top_down(styled).copy()
    # Not the render itself: a styled picture, not the flat world colour.
    assert np.ptp(before[..., :3]) > 0.05
    assert saved.is_file()
    assert bpy.data.filepath == str(tmp_path / "scene.blend")  # a copy, not a save-as
    bpy.ops.wm.open_mainfile(filepath=str(saved))
    reopened = bpy.data.images["Styled"]
    assert reopened.packed_file is not None
    assert json.loads(reopened["runway"])["model"] == "style-transfer"
    np.testing.assert_allclose(pixels_top_down(reopened), before, atol=1 / 255)


# ------------------------------------------------------------------ examples


def example_scene(bpy, tmp_path):
    """A camera scene with what the examples name: image "Photo", Text "Script", a
    strip "Frames", photo.jpg next to the .blend, an active object with an image
    texture."""
    scene = camera_scene(bpy, tmp_path)
    photo = ROOT / "models" / "testdata" / "grace_hopper.jpg"
    (tmp_path / "photo.jpg").write_bytes(photo.read_bytes())
    bpy.data.images.load(str(photo)).name = "Photo"
    bpy.data.texts.new("Script").from_string("Hello.")
    ed = scene.sequence_editor_create()
    strips = ed.strips if hasattr(ed, "strips") else ed.sequences
    strips.new_image("Frames", str(photo), channel=1, frame_start=1)
    bpy.ops.mesh.primitive_plane_add()
    return scene


def test_every_example_fits_its_shelf_model(runway, tmp_path):
    bpy = runway
    batch, jobfile = mod("blender.batch"), mod("core.jobfile")
    example_scene(bpy, tmp_path)
    for path in EXAMPLES:
        job = jobfile.load(path)
        _model, spec, card = batch.resolve_model(job.model)
        assert Path(card.folder).parent == mod("core.catalog").builtin_models_dir(), path.name
        batch.check(bpy.context, job, spec, spec.command(job.command))  # raises if not


@pytest.mark.parametrize("name, frames, expect", [
    ("render-style-transfer-file.json", "1-2", ["styled_0001.png", "styled_0002.png"]),
    ("value-tts-strip.json", "", ["hello_0001.wav"]),
    ("render-pose-objects.json", "1", []),
])
def test_cheap_examples_run_as_they_are(runway, tmp_path, name, frames, expect):
    bpy = runway
    camera_scene(bpy, tmp_path, size=(64, 48))
    log = tmp_path / "log.jsonl"
    result, words = run_job(bpy, ROOT / "examples" / "jobs" / name, frames=frames,
                            log=str(log))
    assert result == {"FINISHED"}, words
    written = sorted(p.name for p in (tmp_path / "runway").glob("*")
                     if not p.name.endswith(".runway.json")) \
        if (tmp_path / "runway").exists() else []
    assert [w.rsplit(".", 1)[0] for w in written] == [e.rsplit(".", 1)[0] for e in expect]
    lines = read_log(log)
    assert lines[-1]["ok"] is True
    outs = [(line["output"], line["target"]) for line in lines if line["event"] == "output"]
    job = json.loads((ROOT / "examples" / "jobs" / name).read_text())
    assert sorted(set(outs)) == sorted({(o, t["target"]) for o, ts in job["outputs"].items()
                                       for t in ts})
    if name.startswith("value-tts"):
        ed = bpy.context.scene.sequence_editor
        [strip] = [s for s in getattr(ed, "strips_all", None) or ed.sequences_all
                   if s.type == "SOUND"]
        assert strip.frame_final_duration > 1
        [wav] = [p for p in (tmp_path / "runway").glob("hello_0001*")
                 if not p.name.endswith(".runway.json")]
        with open(wav, "rb") as f:
            head = f.read(12)
        assert head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    if name.startswith("render-pose"):
        assert "Pose" in bpy.data.objects and "Pose visibility" in bpy.data.texts
    assert written == expect  # a WAV keeps its extension even when sent without a name
