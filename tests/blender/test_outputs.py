"""Model results written into Blender by blender.outputs, in real Blender: every target
end to end, with known pixel values, and what survives saving and reopening."""
import io
import json
import os
import struct
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import mod

pytestmark = pytest.mark.blender

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"

# sRGB code value 128 in linear light (IEC 61966-2-1).
LINEAR_128 = ((128 / 255 + 0.055) / 1.055) ** 2.4  # 0.21586


@pytest.fixture
def out(blender):
    return mod("blender.outputs")


@pytest.fixture
def codecs(blender):
    return mod("core.codecs")


@pytest.fixture
def spec(blender):
    return mod("core.spec")


def run_info(out, **kw):
    base = dict(model="test-model", version="1.2", runtime="process", command="predict",
                options={"strength": 0.5, "api_token": "secret-token-123"},
                inputs={"image": "render of camera Camera"}, run_id="run-abc123",
                predict_time=0.25, time=1_700_000_000.0, frame=7)
    base.update(kw)
    return out.RunInfo(**base)


def raw(image) -> np.ndarray:
    """Blender's own buffer: HxWx4, bottom row first."""
    w, h = image.size
    buf = np.empty(w * h * image.channels, np.float32)
    image.pixels.foreach_get(buf)
    return buf.reshape(h, w, image.channels)


def marked(h=6, w=8, dtype=np.uint8):
    """Mid-grey 128 with a red top-left pixel and a blue bottom-right one."""
    img = np.full((h, w, 3), 128, np.uint8)
    img[0, 0] = (255, 0, 0)
    img[-1, -1] = (0, 0, 255)
    if dtype == np.uint16:
        return img.astype(np.uint16) * 257
    if dtype == np.float32:
        return img.astype(np.float32) / 255
    return img


def png(codecs, arr):
    return codecs.FileValue("result.png", data=codecs.encode_image_bytes(arr, "PNG"),
                            mime="image/png")


def one(out, value, field, target, run=None, name="output"):
    applied = out.apply({name: value}, {name: field}, {name: [target]},
                        run or run_info(out))
    assert len(applied) == 1 and applied[0].ok
    return applied[0]


def read_png_header(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h, depth, colour = struct.unpack(">IIBB", data[16:26])
    return w, h, depth, colour


# ------------------------------------------------------------------ targets per type

def test_every_shelf_output_gets_targets_that_fit(out, blender):
    cog = mod("core.protocols.cog")
    seen = {}
    for schema in sorted(MODELS.glob("*/.cog/openapi_schema.json")):
        command = cog.spec_from_openapi(json.loads(schema.read_text())).command()
        for f in command.outputs:
            targets = out.targets_for(f)
            assert targets and targets[-1] == "NONE"
            assert set(targets) <= set(out.TARGET_IDS)
            seen[(schema.parts[-3], f.name)] = targets
    assert seen[("face-detection", "boxes")][:2] == ["OVERLAY", "OBJECTS"]
    assert seen[("face-detection", "keypoints")][:2] == ["OVERLAY", "OBJECTS"]
    assert seen[("face-detection", "scores")][0] == "TEXT"
    assert seen[("pose", "landmarks")] == ["OVERLAY", "OBJECTS", "TEXT", "FILE", "NONE"]
    assert seen[("person-segmentation", "segmentation")][0] == "IMAGE_EDITOR"
    assert "OVERLAY" in seen[("person-segmentation", "segmentation")]
    # Cog says only "a file": an image or a sound at run time, so both kinds fit.
    assert seen[("text-to-speech", "output")][:4] == ["IMAGE_EDITOR", "TEXTURE", "STRIP",
                                                      "FILE"]
    assert [t[0] for t in out.TARGETS] == list(out.TARGET_IDS)


# ------------------------------------------------------------------ Image Editor

def test_byte_result_lands_upright_in_an_srgb_byte_image(out, blender):
    applied = one(out, marked(), spec_image(), out.Target("IMAGE_EDITOR"))
    image = blender.data.images[applied.name]
    assert applied.name == "test-model output" and applied.kind == "image"
    assert not image.is_float and image.colorspace_settings.name == "sRGB"
    px = raw(image)
    assert np.allclose(px[-1, 0], (1, 0, 0, 1))  # top-left of the picture: last row here
    assert np.allclose(px[0, -1], (0, 0, 1, 1))
    assert abs(px[2, 3, 0] - 128 / 255) < 1e-6  # a byte image keeps the sRGB code value
    assert image.use_fake_user and image.packed_file is None  # packed when saved


def spec_image():
    return mod("core.spec").ImageField(name="output")


def test_deep_and_float_results_go_to_linear_float_images(out, codecs, blender):
    for value in (png(codecs, marked(dtype=np.uint16)), marked(dtype=np.float32)):
        image = blender.data.images[one(out, value, spec_image(),
                                        out.Target("IMAGE_EDITOR")).name]
        assert image.is_float and image.colorspace_settings.name.startswith("Linear")
        px = raw(image)
        assert abs(px[2, 3, 0] - LINEAR_128) < 1e-4
        assert np.allclose(px[-1, 0], (1, 0, 0, 1), atol=1e-5)


def test_prepare_decodes_on_the_worker_and_gives_the_same_pixels(out, codecs, blender):
    f = mod("core.spec").FileField(name="output")
    value = png(codecs, marked())
    prepared = out.prepare({"output": value, "n": 3}, {"output": f})
    p = prepared["output"]
    assert isinstance(p, out.PreparedImage) and prepared["n"] == 3
    assert p.pixels is not None and p.pixels.dtype == np.float32
    assert p.pixels.size == 6 * 8 * 4 and p.source is value
    a = blender.data.images[one(out, p, f, out.Target("IMAGE_EDITOR")).name]
    b = blender.data.images[one(out, value, f, out.Target("IMAGE_EDITOR")).name]
    assert a != b and np.array_equal(raw(a), raw(b))


def test_an_existing_image_is_kept_unless_replace_then_updated_in_place(out, blender):
    mine = blender.data.images.new("test-model output", 4, 4)
    mine.pixels.foreach_set(np.full(64, 64 / 255, np.float32))
    made = one(out, marked(), spec_image(), out.Target("IMAGE_EDITOR"))
    assert made.name == "test-model output.001"
    assert np.allclose(raw(mine), 64 / 255) and tuple(mine.size) == (4, 4)
    pointer = mine.as_pointer()
    replaced = one(out, marked(dtype=np.uint16), spec_image(),
                   out.Target("IMAGE_EDITOR", replace=True))
    image = blender.data.images[replaced.name]
    assert replaced.name == "test-model output" and image.as_pointer() == pointer
    assert tuple(image.size) == (8, 6) and image.is_float
    assert abs(raw(image)[2, 3, 0] - LINEAR_128) < 1e-4


def test_the_result_is_shown_in_an_open_image_editor(out, blender):
    # The bpy module has no windows: hand over a screen of the startup file (the UV
    # Editing workspace has an Image Editor).
    screen = next(s for s in blender.data.screens
                  if any(a.type == "IMAGE_EDITOR" for a in s.areas))
    area = next(a for a in screen.areas if a.type == "IMAGE_EDITOR")
    space = next(s for s in area.spaces if s.type == "IMAGE_EDITOR")
    image = blender.data.images.new("shown", 2, 2)
    assert out.show_in_image_editor(image, [screen])
    assert space.image == image
    space.use_image_pin = True
    other = blender.data.images.new("other", 2, 2)
    assert not out.show_in_image_editor(other, [screen])  # a pinned editor keeps its image
    assert space.image == image


# ------------------------------------------------------------------ texture

def active_cube(blender, name="Cube"):
    mesh = blender.data.meshes.new(name)
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    obj = blender.data.objects.new(name, mesh)
    blender.context.scene.collection.objects.link(obj)
    blender.context.view_layer.objects.active = obj
    return obj


def test_a_matte_becomes_a_non_color_texture_wired_to_the_socket(out, codecs, blender):
    obj = active_cube(blender)
    f = mod("core.spec").FileField(name="matte")
    matte = np.zeros((6, 8), np.uint8)
    matte[:3] = 200  # the top half
    value = out.prepare({"matte": png(codecs, matte[:, :, None])}, {"matte": f})["matte"]
    applied = one(out, value, f, out.Target("TEXTURE", socket="Base Color"), name="matte")
    mat = obj.active_material
    assert mat is not None and "(new material)" in applied.message
    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    link = bsdf.inputs["Base Color"].links[0]
    node = link.from_node
    assert node.type == "TEX_IMAGE" and link.from_socket.name == "Color"
    image = node.image
    assert image.name == applied.name and image.colorspace_settings.name == "Non-Color"
    px = raw(image)
    assert np.allclose(px[-1, :, 0], 200 / 255) and np.allclose(px[0, :, 0], 0)
    assert json.loads(image["runway"])["output"] == "matte"
    # A second run updates the same node with a new image; the first image is intact.
    count = len(mat.node_tree.nodes)
    again = one(out, value, f, out.Target("TEXTURE"), name="matte")
    assert len(mat.node_tree.nodes) == count
    assert bsdf.inputs["Base Color"].links[0].from_node.image.name == again.name
    assert again.name != image.name and np.allclose(raw(image)[-1, :, 0], 200 / 255)


def test_a_colour_texture_is_srgb_and_the_users_node_is_kept(out, blender):
    obj = active_cube(blender)
    mat = blender.data.materials.new("Mine")
    if blender.app.version < (5, 0):
        mat.use_nodes = True
    obj.data.materials.append(mat)
    tree = mat.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    users = tree.nodes.new("ShaderNodeTexImage")
    users.image = blender.data.images.new("users texture", 2, 2)
    tree.links.new(users.outputs["Color"], bsdf.inputs["Base Color"])
    applied = one(out, marked(), spec_image(), out.Target("TEXTURE"))
    assert obj.active_material == mat
    node = bsdf.inputs["Base Color"].links[0].from_node
    assert node != users and node.image.name == applied.name
    assert node.image.colorspace_settings.name == "sRGB"
    assert users.image.name == "users texture" and users.name in tree.nodes
    # Roughness is data: the same picture goes there as Non-Color.
    rough = one(out, marked(), spec_image(), out.Target("TEXTURE", socket="Roughness"))
    assert blender.data.images[rough.name].colorspace_settings.name == "Non-Color"
    assert bsdf.inputs["Roughness"].links[0].from_node.image.name == rough.name


def test_texture_without_an_active_object_fails_but_the_other_targets_are_written(
        out, blender):
    blender.context.view_layer.objects.active = None
    targets = [out.Target("TEXTURE"), out.Target("IMAGE_EDITOR")]
    with pytest.raises(out.OutputError) as info:
        out.apply({"output": marked()}, {"output": spec_image()}, {"output": targets},
                  run_info(out))
    err = info.value
    assert "no active object" in err.message and "Select the object" in err.hint
    assert [a.target for a in err.applied] == ["IMAGE_EDITOR"]
    assert [a.target for a in err.failures] == ["TEXTURE"] and not err.failures[0].ok
    assert err.applied[0].name in blender.data.images


# ------------------------------------------------------------------ files

def test_files_in_each_format_and_bit_depth_with_a_sidecar(out, codecs, blender, tmp_path):
    template = str(tmp_path / "{model}_{output}_{frame:04d}")
    value = marked()
    paths = {}
    for fmt in ("PNG8", "PNG16", "EXR", "JPEG"):
        applied = one(out, value, spec_image(),
                      out.Target("FILE", path=template, file_format=fmt))
        paths[fmt] = Path(applied.name)
        assert paths[fmt].is_file()
        side = json.loads(Path(applied.name + ".runway.json").read_text())
        assert side["model"] == "test-model" and side["run_id"] == "run-abc123"
        assert side["options"] == {"strength": 0.5}  # the token never leaves
    assert paths["PNG8"].name == "test-model_output_0007.png"
    assert read_png_header(paths["PNG8"])[:3] == (8, 6, 8)
    assert paths["PNG16"].name == "test-model_output_0007_001.png"  # never overwritten
    assert read_png_header(paths["PNG16"])[:3] == (8, 6, 16)
    deep = codecs.decode_image_bytes(paths["PNG16"].read_bytes())
    assert deep.dtype == np.uint16 and deep[0, 0, 0] == 65535 and deep[2, 3, 0] == 128 * 257
    assert paths["EXR"].read_bytes()[:4] == b"\x76\x2f\x31\x01"
    exr = blender.data.images.load(str(paths["EXR"]))
    assert exr.is_float and exr.file_format == "OPEN_EXR"
    assert exr.colorspace_settings.name.startswith("Linear")  # colour, not data
    px = raw(exr)
    assert abs(px[2, 3, 0] - LINEAR_128) < 1e-3  # linear light in the EXR
    assert np.allclose(px[-1, 0, :3], (1, 0, 0), atol=1e-3)  # still upright
    assert paths["JPEG"].read_bytes()[:3] == b"\xff\xd8\xff"
    assert paths["JPEG"].name.endswith(".jpg")


def test_a_file_is_never_overwritten_unless_replace(out, blender, tmp_path):
    mine = tmp_path / "result.png"
    mine.write_bytes(b"the user's own file")
    template = str(tmp_path / "result")
    first = one(out, marked(), spec_image(), out.Target("FILE", path=template))
    second = one(out, marked(), spec_image(), out.Target("FILE", path=template))
    assert mine.read_bytes() == b"the user's own file"
    assert Path(first.name).name == "result_001.png"
    assert Path(second.name).name == "result_002.png"
    replaced = one(out, marked(), spec_image(),
                   out.Target("FILE", path=template, replace=True))
    assert replaced.name == str(mine) and mine.read_bytes()[:4] == b"\x89PNG"


def wav_bytes(seconds=1.0, rate=22050):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        t = np.arange(int(seconds * rate)) / rate
        f.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
    return buf.getvalue()


def test_sixteen_bit_png_and_exr_and_wav_are_copied_as_they_came(out, codecs, blender,
                                                                 tmp_path):
    f = mod("core.spec").FileField(name="output")
    deep = png(codecs, marked(dtype=np.uint16))
    exr = codecs.FileValue("denoised.exr", data=b"\x76\x2f\x31\x01" + b"exr body",
                           mime="image/x-exr")
    speech = codecs.FileValue("speech.wav", data=wav_bytes(), mime="audio/wav")
    for value, fmt, ext in ((deep, "PNG16", ".png"), (exr, "EXR", ".exr"),
                            (speech, "ASIS", ".wav"), (speech, "PNG8", ".wav")):
        applied = one(out, value, f, out.Target("FILE", path=str(tmp_path / "x"),
                                                file_format=fmt))
        assert applied.name.endswith(ext)
        assert Path(applied.name).read_bytes() == value.data


# ------------------------------------------------------------------ strips

def save_blend(blender, tmp_path):
    path = tmp_path / "scene.blend"
    blender.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def test_image_strip_at_the_frame_on_a_free_channel_next_to_the_blend(out, codecs,
                                                                      blender, tmp_path):
    save_blend(blender, tmp_path)
    scene = blender.context.scene
    editor = scene.sequence_editor_create()
    users = tmp_path / "users.png"
    users.write_bytes(codecs.encode_image_bytes(marked(), "PNG"))
    strips = out.strips(editor)
    strips.new_image("users strip", str(users), 1, 10)
    strips.new_image("users later strip", str(users), 2, 30)  # not at frame 10
    applied = one(out, marked(), spec_image(), out.Target("STRIP", frame_start=10))
    strip = strips[applied.name]
    assert strip.frame_final_start == 10 and strip.channel == 2
    assert strip.type == "IMAGE"
    assert json.loads(strip["runway"])["run_id"] == "run-abc123"
    path = Path(blender.path.abspath(strip.directory)) / strip.elements[0].filename
    assert path.is_file() and path.parent == tmp_path / "runway"
    assert path.name == "test-model_output_0007.png"
    assert strip.directory.startswith("//")  # relative to the .blend
    assert codecs.decode_image_bytes(path.read_bytes())[0, 0].tolist() == [255, 0, 0]
    # The user's strips did not move.
    assert strips["users strip"].channel == 1 and strips["users later strip"].channel == 2
    # A channel asked for but taken: the next free one above it.
    again = one(out, marked(), spec_image(), out.Target("STRIP", frame_start=10, channel=1))
    assert strips[again.name].channel == 3


def test_strip_of_an_unsaved_blend_is_written_to_the_temp_folder(out, blender):
    assert not blender.data.filepath
    scene = blender.context.scene
    scene.frame_current = 4
    applied = one(out, marked(), spec_image(), out.Target("STRIP"))
    assert "temporary folder" in applied.message
    strip = out.strips(scene.sequence_editor)[applied.name]
    assert strip.frame_final_start == 4 and strip.channel == 1
    path = Path(strip.directory) / strip.elements[0].filename
    assert path.is_file()


def test_audio_becomes_a_sound_strip(out, codecs, blender, tmp_path):
    save_blend(blender, tmp_path)
    scene = blender.context.scene
    scene.render.fps = 24
    f = mod("core.spec").FileField(name="output")
    speech = codecs.FileValue("speech.wav", data=wav_bytes(1.0), mime="audio/wav")
    run = run_info(out, model="text-to-speech")
    if blender.app.version < (4, 3):
        # The bpy module of 4.2 is built without audio: the strip fails, the file stays.
        with pytest.raises(out.OutputError, match="Audaspace") as info:
            out.apply({"output": speech}, {"output": f}, {"output": [out.Target("STRIP")]},
                      run)
        assert "written to" in info.value.hint
        assert (tmp_path / "runway" / "text-to-speech_output_0007.wav").read_bytes() == \
            speech.data
        return
    applied = one(out, speech, f, out.Target("STRIP", frame_start=1), run=run)
    strip = out.strips(scene.sequence_editor)[applied.name]
    assert strip.type == "SOUND" and applied.kind == "sound"
    assert strip.frame_final_start == 1 and strip.frame_final_end == 25  # 1 s at 24 fps
    assert Path(blender.path.abspath(strip.sound.filepath)).read_bytes() == speech.data


# ------------------------------------------------------------------ text

def test_structured_results_become_valid_json_text(out, spec, blender):
    boxes = spec.ArrayField(name="boxes", item=spec.ImageBoundingBoxField(name="box"))
    value = [[0.1, 0.2, 0.5, 0.6], [0.5, 0.5, 0.9, 0.95]]
    applied = one(out, value, boxes, out.Target("TEXT"), name="boxes")
    text = blender.data.texts[applied.name]
    assert json.loads(text.as_string()) == value
    assert json.loads(text["runway"])["output"] == "boxes"
    words = one(out, "hello world", spec.TextField(name="caption"), out.Target("TEXT"),
                name="caption")
    assert blender.data.texts[words.name].as_string() == "hello world"
    # Kept, then replaced when asked.
    again = one(out, [], boxes, out.Target("TEXT"), name="boxes")
    assert again.name != applied.name and json.loads(text.as_string()) == value
    one(out, [], boxes, out.Target("TEXT", replace=True), name="boxes")
    assert json.loads(text.as_string()) == []


# ------------------------------------------------------------------ overlays

def grey_input(h=100, w=200):
    return np.full((h, w, 3), 100, np.uint8)


def test_overlay_draws_boxes_and_landmarks_over_the_input(out, spec, blender):
    boxes = spec.ArrayField(name="boxes", item=spec.ImageBoundingBoxField(name="box"))
    run = run_info(out, input_image=grey_input())
    applied = one(out, [[0.25, 0.2, 0.75, 0.8]], boxes, out.Target("OVERLAY"), run=run,
                  name="boxes")
    image = blender.data.images[applied.name]
    assert tuple(image.size) == (200, 100) and "overlay" in applied.name
    top = raw(image)[::-1]  # top-down again
    assert np.allclose(top[50, 100, :3], 100 / 255)  # inside the box: the input
    assert np.allclose(top[5, 5, :3], 100 / 255)  # outside the box: the input
    edge = top[20, 60:140, :3]  # the box's top edge at y 0.2 * 99
    assert (np.abs(edge - 100 / 255).max(axis=1) > 0.2).all()
    pose = spec.ImageLandmarksField(name="pose", length=2, labels=["a", "b"],
                                    connections=[(0, 1)])
    lm = one(out, [[0.1, 0.5], [0.9, 0.5]], pose, out.Target("OVERLAY"), run=run,
             name="pose")
    top = raw(blender.data.images[lm.name])[::-1]
    row = top[50, 30:170, :3]  # the connection: a line between the two landmarks
    assert (np.abs(row - 100 / 255).max(axis=1) > 0.2).all()
    assert np.allclose(top[10, 100, :3], 100 / 255)


def test_segmentation_overlay_blends_label_colours_over_the_input(out, spec, blender):
    seg = spec.SegmentationField(name="segmentation", labels=["background", "person"],
                                 default_label="background",
                                 label_to_id={"background": 0, "person": 1},
                                 label_to_color={"background": (0, 0, 0),
                                                 "person": (255, 255, 255)})
    ids = np.zeros((50, 100), np.uint8)
    ids[:, 50:] = 1  # the right half is a person (at half the input's size)
    run = run_info(out, input_image=grey_input())
    applied = one(out, ids, seg, out.Target("OVERLAY"), run=run, name="segmentation")
    top = raw(blender.data.images[applied.name])[::-1]
    assert np.allclose(top[:, :100, :3], 100 / 255)  # background: the input as it was
    assert np.allclose(top[:, 100:, :3], round(100 * 0.5 + 255 * 0.5) / 255)
    # The same output as an image: its label colours, Non-Color (ids are data).
    shown = one(out, out.prepare({"segmentation": ids}, {"segmentation": seg})
                ["segmentation"], seg, out.Target("IMAGE_EDITOR"), name="segmentation")
    image = blender.data.images[shown.name]
    assert image.colorspace_settings.name == "Non-Color"
    assert np.allclose(raw(image)[:, 60, :3], 1) and np.allclose(raw(image)[:, 10, :3], 0)
    text = one(out, ids, seg, out.Target("TEXT"), name="segmentation")
    summary = json.loads(blender.data.texts[text.name].as_string())
    assert summary["labels"]["person"] == {"id": 1, "pixels": 2500, "fraction": 0.5}


# ------------------------------------------------------------------ objects

def pose_field(spec):
    return spec.ImageLandmarksField(name="landmarks", length=3,
                                    labels=["nose", "left_eye", "right_eye"],
                                    connections=[(0, 1), (0, 2)])


POINTS = [[0.5, 0.5], [0.25, 0.1], [0.75, 0.1]]


def test_landmarks_become_empties_on_the_xz_plane(out, spec, blender):
    applied = one(out, POINTS, pose_field(spec), out.Target("OBJECTS"), name="landmarks")
    root = blender.data.objects[applied.name]
    assert root.type == "EMPTY" and json.loads(root["runway"])["model"] == "test-model"
    kids = {o.name: o for o in root.children}
    assert {"nose", "left_eye", "right_eye"} <= set(kids)
    assert tuple(kids["nose"].location) == pytest.approx((0, 0, 0))
    assert tuple(kids["left_eye"].location) == pytest.approx((-0.25, 0, 0.4))
    assert tuple(kids["right_eye"].location) == pytest.approx((0.25, 0, 0.4))
    mesh = next(o for o in root.children if o.type == "MESH").data
    assert len(mesh.vertices) == 3
    assert sorted(tuple(sorted(e.vertices)) for e in mesh.edges) == [(0, 1), (0, 2)]
    assert all("runway" in o for o in root.children)


def test_landmarks_sit_where_the_camera_sees_them(out, spec, blender):
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Euler, Vector
    scene = blender.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 640, 360
    cam = blender.data.objects.new("Shot", blender.data.cameras.new("Shot"))
    scene.collection.objects.link(cam)
    cam.location = (3, -6, 2)
    cam.rotation_euler = Euler((1.2, 0.0, 0.4))
    scene.camera = cam
    run = run_info(out, camera="Shot", scene=scene.name)
    applied = one(out, POINTS, pose_field(spec), out.Target("OBJECTS"), run=run,
                  name="landmarks")
    blender.context.view_layer.update()
    root = blender.data.objects[applied.name]
    assert "in the view of Shot" in applied.message
    kids = {o.get("runway_label"): o for o in root.children if o.type == "EMPTY"}
    for (x, y), label in zip(POINTS, ["nose", "left_eye", "right_eye"]):
        world = kids[label].matrix_world.translation
        view = world_to_camera_view(scene, cam, world)
        assert view.x == pytest.approx(x, abs=1e-5) and view.y == pytest.approx(1 - y, abs=1e-5)
        assert view.z > 0  # in front of the camera
        assert (world - Vector(cam.location)).length > 0.1


def test_face_boxes_become_rectangles(out, spec, blender):
    boxes = spec.ArrayField(name="boxes", item=spec.ImageBoundingBoxField(name="box"))
    applied = one(out, [[0.2, 0.1, 0.6, 0.5]], boxes, out.Target("OBJECTS"), name="boxes")
    root = blender.data.objects[applied.name]
    (rect,) = [o for o in root.children if o.type == "MESH"]
    corners = sorted((round(v.co.x, 5), round(v.co.z, 5)) for v in rect.data.vertices)
    assert corners == [(-0.3, 0.0), (-0.3, 0.4), (0.1, 0.0), (0.1, 0.4)]
    assert len(rect.data.edges) == 4


# ------------------------------------------------------------------ save and reopen

def test_results_and_provenance_survive_save_and_reopen(out, spec, codecs, blender,
                                                        tmp_path):
    run = run_info(out)
    fields = {"byte": spec_image(), "deep": spec_image(), "caption": spec.TextField(
        name="caption"), "landmarks": pose_field(spec)}
    values = out.prepare({"byte": marked(), "deep": png(codecs, marked(dtype=np.uint16)),
                          "caption": "a caption", "landmarks": POINTS}, fields)
    targets = {"byte": [out.Target("IMAGE_EDITOR")], "deep": [out.Target("IMAGE_EDITOR")],
               "caption": [out.Target("TEXT")], "landmarks": [out.Target("OBJECTS")]}
    applied = {a.output: a.name for a in out.apply(values, fields, targets, run)}
    assert all(blender.data.images[applied[k]].packed_file is None for k in ("byte", "deep"))
    path = tmp_path / "results.blend"
    blender.ops.wm.save_as_mainfile(filepath=str(path))
    blender.ops.wm.read_homefile(use_factory_startup=True, use_empty=True)
    assert applied["byte"] not in blender.data.images
    blender.ops.wm.open_mainfile(filepath=str(path))
    byte = blender.data.images[applied["byte"]]
    deep = blender.data.images[applied["deep"]]
    assert byte.packed_file and deep.packed_file and deep.is_float and not byte.is_float
    assert np.allclose(raw(byte)[-1, 0], (1, 0, 0, 1)) and \
        abs(raw(byte)[2, 3, 0] - 128 / 255) < 1e-6
    assert abs(raw(deep)[2, 3, 0] - LINEAR_128) < 1e-4
    for owner in (byte, deep, blender.data.texts[applied["caption"]],
                  blender.data.objects[applied["landmarks"]]):
        record = json.loads(owner["runway"])
        assert record["run_id"] == "run-abc123" and record["predict_time"] == 0.25
        assert record["model"] == "test-model" and record["command"] == "predict"
        assert record["inputs"] == {"image": "render of camera Camera"}
        assert "secret-token-123" not in owner["runway"]
    assert blender.data.texts[applied["caption"]].as_string() == "a caption"
    assert b"secret-token-123" not in path.read_bytes()


def test_apply_refuses_other_threads(out, blender):
    import threading
    caught = []

    def work():
        try:
            out.apply({}, {}, {}, run_info(out))
        except out.OutputError as e:
            caught.append(e)
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert caught and "main thread" in caught[0].message


# ------------------------------------------------------------------ a real shelf model

@pytest.mark.network
@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_face_detection_results_land_as_overlay_objects_text_and_file(out, blender,
                                                                      tmp_path):
    from PIL import Image
    process = mod("core.runtimes.process")
    photo = np.asarray(Image.open(MODELS / "testdata" / "grace_hopper.jpg").convert("RGB"))
    session = process.ProcessSession(MODELS / "face-detection",
                                     env_root=process.default_cache_dir() / "model-envs")
    try:
        session.start()
        with session.client() as client:
            result = client.run({"image": photo})
            fields = {f.name: f for f in client.spec().command().outputs}
    finally:
        session.stop()
    values = out.prepare(result.outputs, fields)
    assert isinstance(values["annotated"], out.PreparedImage)
    (box,) = values["boxes"]
    run = run_info(out, model="face-detection", input_image=photo)
    targets = {"boxes": [out.Target("OVERLAY"), out.Target("OBJECTS")],
               "keypoints": [out.Target("OBJECTS"), out.Target("TEXT")],
               "scores": [out.Target("TEXT")],
               "annotated": [out.Target("IMAGE_EDITOR"),
                             out.Target("FILE", path=str(tmp_path / "{output}"),
                                        file_format="ASIS")]}
    applied = out.apply(values, fields, targets, run)
    by = {(a.output, a.target): a for a in applied}
    assert len(applied) == 7
    # The overlay has the box's outline where the model found the face.
    overlay = raw(blender.data.images[by["boxes", "OVERLAY"].name])[::-1]
    h, w = photo.shape[:2]
    x0, y0, x1, y1 = box
    top_edge = overlay[round(y0 * (h - 1)), round(x0 * w) + 5:round(x1 * w) - 5, :3]
    assert np.abs(top_edge * 255 - photo[round(y0 * (h - 1)), round(x0 * w) + 5:
                                         round(x1 * w) - 5] / 1.0).max() > 60
    # The six keypoints as empties inside the face's rectangle, on the XZ plane.
    root = blender.data.objects[by["keypoints", "OBJECTS"].name]
    aspect = w / h
    kps = [o for o in root.children if o.type == "EMPTY"]
    assert {o["runway_label"] for o in kps} == set(fields["keypoints"].item.labels)
    for o in kps:
        u, v = o.location.x / aspect + 0.5, 0.5 - o.location.z
        assert x0 <= u <= x1 and y0 <= v <= y1, o.name
    scores = json.loads(blender.data.texts[by["scores", "TEXT"].name].as_string())
    assert scores == result.outputs["scores"] and scores[0] > 0.5
    kp_text = json.loads(blender.data.texts[by["keypoints", "TEXT"].name].as_string())
    assert kp_text == result.outputs["keypoints"]
    annotated = blender.data.images[by["annotated", "IMAGE_EDITOR"].name]
    assert tuple(annotated.size) == (w, h)
    assert Path(by["annotated", "FILE"].name).read_bytes() == \
        result.outputs["annotated"].read_bytes()


def test_an_exr_from_the_model_is_kept_linear_and_exact(out, codecs, blender, tmp_path):
    """denoise's EXR output: Pillow cannot read EXR, Blender does (packed as it came)."""
    h, w = 6, 8
    linear = np.zeros((h, w, 4), np.float32)
    linear[..., :3] = 0.25
    linear[..., 3] = 1
    linear[0, 0, :3] = (2.5, 0, 0)  # top-left, brighter than white: kept
    data = codecs.encode_exr(linear)
    assert data[:4] == b"\x76\x2f\x31\x01"
    f = mod("core.spec").FileField(name="output")
    value = codecs.FileValue("denoised.exr", data=data, mime="image/x-exr")
    assert out.prepare({"output": value}, {"output": f})["output"] is value
    shown = one(out, value, f, out.Target("IMAGE_EDITOR"))
    image = blender.data.images[shown.name]
    assert image.is_float and image.packed_file and image.file_format == "OPEN_EXR"
    assert np.allclose(raw(image)[::-1], linear)
    assert json.loads(image["runway"])["output"] == "output"
    # As a 16-bit PNG: sRGB-encoded, upright, clipped at white.
    png16 = one(out, value, f, out.Target("FILE", path=str(tmp_path / "d"),
                                          file_format="PNG16"))
    deep = codecs.decode_image_bytes(Path(png16.name).read_bytes())
    assert deep.dtype == np.uint16 and deep[0, 0, :3].tolist() == [65535, 0, 0]
    # Linear 0.25 is sRGB 1.055 * 0.25 ** (1 / 2.4) - 0.055 = 0.537099 (IEC 61966-2-1),
    # written out here rather than taken from the codec under test.
    assert abs(int(deep[3, 3, 1]) - 0.5370987 * 65535) <= 1
    # Replacing an image with an EXR keeps the datablock and takes the new pixels.
    pointer = image.as_pointer()
    linear[..., 1] = 0.5
    again = one(out, codecs.FileValue("d.exr", data=codecs.encode_exr(linear)), f,
                out.Target("IMAGE_EDITOR", name=image.name, replace=True))
    assert blender.data.images[again.name].as_pointer() == pointer
    assert np.allclose(raw(image)[::-1][..., 1], 0.5)
