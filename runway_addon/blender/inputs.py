"""The one place that reads Blender data for a model, on the main thread, into
plain values (or Deferred values the worker finishes).

The main thread only copies what it must (a render, an image's float buffer, a
path); decoding files and colour conversion happen on the worker through
``Deferred``. A camera render is Blender's own render and blocks like F12 does.

Sources per input type (the Run panel offers only those that fit):
image: camera render, render pass, image datablock, the active material's image
texture, the current frame of an image strip, a file; text: typed, a Text
datablock, a file; everything else: the widget's value.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

import bpy

from ..core import codecs, render_passes
from ..core.errors import RunwayError
from ..core.exr import read_exr
from ..core.jobs.job import Deferred
from . import images, props


class InputError(RunwayError):
    """A model input that cannot be read from Blender; ``field`` names it."""

    def __init__(self, field: str, message: str, *, hint: str = ""):
        super().__init__(f"{field}: {message}", hint=hint)
        self.field = field


@dataclass
class Gathered:
    """What a run will send: values, a description of each source (provenance;
    never a secret), and whether the scene camera was rendered."""

    values: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    camera: str = ""
    overlay_input: Optional[str] = None  # the image input structured outputs refer to
    scratch: list = field(default_factory=list)  # temporary folders the run owns

    def discard(self) -> None:
        """Remove the temporary folders: for a run that will not be queued."""
        for folder in self.scratch:
            shutil.rmtree(folder, ignore_errors=True)
        self.scratch.clear()


# ------------------------------------------------------------------ worker-side readers

def read_image_file(path: str) -> np.ndarray:
    """An image file -> array (worker thread). EXR through core.exr, the rest Pillow."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise codecs.CodecError(f"cannot read {path!r}: {e.strerror or e}") from e
    if data[:4] == b"\x76\x2f\x31\x01":
        planes = read_exr(data)
        names = [c for c in "RGBA" if c in planes] or sorted(planes)[:4]
        if not names or not planes[names[0]].size:  # never np.dstack's bare ValueError
            raise codecs.CodecError(f"{os.path.basename(path)}: the EXR file holds no pixels")
        img = np.dstack([planes[c] for c in names]).astype(np.float32)
        img[..., :min(3, img.shape[2])] = codecs.linear_to_srgb(
            np.clip(img[..., :min(3, img.shape[2])], 0, 1))
        return img
    return codecs.decode_image_bytes(data, os.path.basename(path))


# ------------------------------------------------------------------ main-thread readers

def image_pixels(image, what: str) -> Deferred:
    """An image datablock's pixels copied out (foreach_get); converted on the worker."""
    try:
        buf = images.read_pixels(image)
    except codecs.CodecError as e:
        raise InputError(what, e.message,
                         hint="Is its file missing? For a render, choose 'Camera render'.")
    width, height = image.size
    linear = images.stores_linear(image)
    if image.is_float and image.colorspace_settings.name in images.DATA_COLORSPACES:
        # Data (normals, depth) may hold more than 8 bits: the float path keeps them.
        return Deferred(codecs.image_from_blender, buf, width, height, image.channels, False,
                        describe=f"image {image.name}")
    return Deferred(codecs.srgb8_from_blender, buf, width, height, image.channels, linear,
                    describe=f"image {image.name}")


def active_texture_image(context, what: str):
    obj = context.object if hasattr(context, "object") else None
    obj = obj or context.view_layer.objects.active
    mat = obj.active_material if obj is not None else None
    if mat is None or mat.node_tree is None:
        raise InputError(what, "the active object has no material with nodes",
                         hint="Select an object whose material has an Image Texture node.")
    nodes = mat.node_tree.nodes
    active = nodes.active
    if active is not None and active.type == "TEX_IMAGE" and active.image is not None:
        return active.image
    for node in nodes:
        if node.type == "TEX_IMAGE" and node.image is not None:
            return node.image
    raise InputError(what, f"material {mat.name!r} has no Image Texture node with an image",
                     hint="Add one, or pick the image itself as the source.")


def all_strips(scene):
    """Every strip of the scene: ``sequences_all`` in 4.x, ``strips_all`` in 5.0+."""
    ed = scene.sequence_editor
    if ed is None:
        return []
    return ed.strips_all if hasattr(ed, "strips_all") else ed.sequences_all


def strip_frame_path(scene, name: str, what: str) -> str:
    strip = next((s for s in all_strips(scene) if s.name == name), None)
    if strip is None:
        raise InputError(what, f"there is no strip named {name!r}" if name else
                         "no strip chosen", hint="Pick an image strip of the sequencer.")
    if strip.type != "IMAGE":
        raise InputError(what, f"strip {name!r} is a {strip.type.lower()} strip",
                         hint="Only image strips (single images or image sequences) can be "
                              "read; render movies to an image sequence first.")
    elements = strip.elements
    if not len(elements):
        raise InputError(what, f"strip {name!r} has no images")
    offset = scene.frame_current - int(strip.frame_start)
    index = max(0, min(len(elements) - 1, offset))
    return bpy.path.abspath(os.path.join(strip.directory, elements[index].filename))


def save_render_result(scene, folder: str, stem: str, passes: bool) -> tuple[str, str]:
    """The Render Result as files the worker can read: ``<stem>.png`` as the artist
    sees it (view transform applied), and with ``passes`` a multilayer
    ``<stem>.exr`` holding every enabled pass. The scene's output settings are
    put back as they were. Works in render_post and render_complete, GUI or -b."""
    result = bpy.data.images.get("Render Result")
    if result is None:
        raise InputError("render", "there is no render result",
                         hint="Render the scene first.")
    settings = scene.render.image_settings
    # Blender 5.0 moved "multilayer" from the file format to a media type.
    has_media = hasattr(settings, "media_type")
    saved = (settings.media_type if has_media else None, settings.file_format,
             settings.color_depth, settings.exr_codec)
    png, exr = os.path.join(folder, stem + ".png"), ""
    try:
        if has_media:
            settings.media_type = "IMAGE"
        settings.file_format, settings.color_depth = "PNG", "8"
        result.save_render(png, scene=scene)
        if passes:
            if has_media:
                settings.media_type = "MULTI_LAYER_IMAGE"
            settings.file_format, settings.color_depth = "OPEN_EXR_MULTILAYER", "32"
            settings.exr_codec = "ZIP"
            exr = os.path.join(folder, stem + ".exr")
            result.save_render(exr, scene=scene)
    finally:
        if has_media:
            settings.media_type = saved[0]
        settings.file_format, settings.color_depth = saved[1], saved[2]
        if settings.file_format in ("OPEN_EXR", "OPEN_EXR_MULTILAYER"):
            settings.exr_codec = saved[3]
    return png, exr


class _Render:
    """One render of the scene camera per run, whatever number of inputs use it,
    with the passes the inputs asked for enabled for it."""

    def __init__(self, scene, scratch: list):
        self.scene = scene
        self.scratch = scratch  # the folder it renders into is added here
        self.png: Optional[str] = None
        self.exr: Optional[str] = None
        self.passes: set = set()

    def ensure(self, what: str) -> None:
        if self.png is not None:
            return
        scene = self.scene
        if scene.camera is None:
            raise InputError(what, f"scene {scene.name!r} has no camera",
                             hint="Add a camera and make it the scene's camera.")
        layer = bpy.context.view_layer
        flags = {"DIFFUSE_COLOR": "use_pass_diffuse_color", "NORMAL": "use_pass_normal",
                 "DEPTH": "use_pass_z", "MIST": "use_pass_mist"}
        saved_flags = {f: getattr(layer, f) for p, f in flags.items() if p in self.passes}
        # With strips in the scene's sequencer Blender renders those instead of the
        # camera (a post-processing strip would come back as the "camera render").
        saved_sequencer = scene.render.use_sequencer
        try:
            for f in saved_flags:
                setattr(layer, f, True)
            scene.render.use_sequencer = False
            bpy.ops.render.render(write_still=False)
            folder = tempfile.mkdtemp(prefix="runway-render-")
            self.scratch.append(folder)
            self.png, self.exr = save_render_result(scene, folder, "camera", bool(self.passes))
        except RuntimeError as e:  # bpy reports render errors as RuntimeError
            raise InputError(what, f"the render failed: {e}") from e
        finally:
            scene.render.use_sequencer = saved_sequencer
            for f, v in saved_flags.items():
                setattr(layer, f, v)


@dataclass
class Source:
    """Where one input comes from, as plain values: what the Run panel's pickers say
    (``from_settings``) and what a job file says (``from_job``) meet here, so one
    reader serves both. ``kind``: render, pass, image, texture, strip, text, file,
    value."""

    kind: str  # also render_file / pass_file: a frame already rendered (post-processing)
    pass_id: str = "COMBINED"
    image: str = ""  # image datablock name
    strip: str = ""
    text: str = ""  # Text datablock name
    path: str = ""
    value: Any = None


_PANEL_KINDS = {"CAMERA": "render", "PASS": "pass", "IMAGE": "image", "TEXTURE": "texture",
                "STRIP": "strip", "FILE": "file", "TEXT": "text", "TYPED": "value"}


def from_settings(mp: props.ModelProps, s) -> dict:
    """The Run panel's choices for every input of the model's command."""
    out = {}
    for f in mp.command.inputs:
        pid = props.prop_id
        if f.type in ("image", "text"):
            src = getattr(s, pid("in", f.name, "src"))
            if src == "NONE":
                continue
            kind = _PANEL_KINDS[src]
            img = getattr(s, pid("in", f.name, "image"), None) if f.type == "image" else None
            txt = getattr(s, pid("in", f.name, "text"), None) if f.type == "text" else None
            out[f.name] = Source(
                kind, pass_id=getattr(s, pid("in", f.name, "pass"), "COMBINED"),
                image=img.name if img is not None else "",
                strip=getattr(s, pid("in", f.name, "strip"), ""),
                text=txt.name if txt is not None else "",
                path=getattr(s, pid("in", f.name, "file"), ""),
                value=getattr(s, pid("in", f.name)) if f.type == "text" else None)
        elif f.type != "secret":  # a secret never comes from the .blend
            value = props.value_of(mp, s, "in", f)
            if f.type == "file":
                if value:
                    out[f.name] = Source("file", path=value)
            elif value is not None:
                out[f.name] = Source("value", value=value)
    return out


def from_job(job_inputs: dict) -> dict:
    """A job file's inputs (core.jobfile.InputSource) as Sources."""
    return {name: Source(i.source, pass_id=i.pass_ or "COMBINED", image=i.image or "",
                         strip=i.strip or "", text=i.text or "", path=i.path or "",
                         value=i.value) for name, i in job_inputs.items()}


def gather(context, command, sources: dict) -> Gathered:
    """Read every input of ``command`` from Blender as ``sources`` say (main thread).
    Inputs without a source are left out (the model's default applies)."""
    scene = context.scene
    out = Gathered()
    try:
        _gather(context, scene, command, sources, out)
    except BaseException:
        out.discard()
        raise
    return out


def _gather(context, scene, command, sources: dict, out: Gathered) -> None:
    render = _Render(scene, out.scratch)
    fields = {f.name: f for f in command.inputs}
    for name in sources:
        if name not in fields:
            raise InputError(name, f"the model has no input {name!r}",
                             hint=f"Its inputs: {', '.join(fields) or 'none'}.")
    # Which passes are wanted, so a single render writes them all.
    render.passes = {src.pass_id for src in sources.values() if src.kind == "pass"}
    for f in command.inputs:
        src = sources.get(f.name)
        if src is None:
            continue
        if f.type == "image" and src.kind not in ("value",):
            value, described = _image_input(context, scene, src, render, f.label)
            if out.overlay_input is None:
                out.overlay_input = f.name
            if src.kind in ("render", "pass", "render_file", "pass_file") and scene.camera:
                out.camera = scene.camera.name
        else:
            value, described = _plain_input(f, src, f.label)
        out.values[f.name] = value
        out.sources[f.name] = described


def _image_input(context, scene, src: Source, render, what):
    frame = scene.frame_current
    if src.kind == "render":
        render.ensure(what)
        return Deferred(read_image_file, render.png, describe="camera render"), \
            {"source": "render", "camera": scene.camera.name, "frame": frame}
    if src.kind == "pass":
        render.ensure(what)  # gather() listed every pass before the render: the EXR has it
        return Deferred(render_passes.read_pass, render.exr, src.pass_id,
                        describe=f"{src.pass_id} pass"), \
            {"source": "pass", "pass": src.pass_id, "camera": scene.camera.name, "frame": frame}
    if src.kind == "render_file":  # post-processing: the frame Blender just rendered
        return Deferred(read_image_file, src.path, describe=f"frame {frame}"), \
            {"source": "render", "camera": scene.camera.name if scene.camera else "",
             "frame": frame}
    if src.kind == "pass_file":
        return Deferred(render_passes.read_pass, src.path, src.pass_id,
                        describe=f"{src.pass_id} pass of frame {frame}"), \
            {"source": "pass", "pass": src.pass_id, "frame": frame,
             "camera": scene.camera.name if scene.camera else ""}
    if src.kind == "image":
        image = bpy.data.images.get(src.image) if src.image else None
        if image is None:
            raise InputError(what, f"there is no image {src.image!r}" if src.image else
                             "no image chosen", hint="Pick an image, or another source.")
        return image_pixels(image, what), {"source": "image", "image": image.name}
    if src.kind == "texture":
        image = active_texture_image(context, what)
        return image_pixels(image, what), {"source": "texture", "image": image.name}
    if src.kind == "strip":
        path = strip_frame_path(scene, src.strip, what)
        return Deferred(read_image_file, path, describe=f"strip {src.strip}"), \
            {"source": "strip", "strip": src.strip, "frame": frame, "path": path}
    if src.kind == "file":
        path = bpy.path.abspath(src.path)
        if not path or not os.path.isfile(path):
            raise InputError(what, f"file {path!r} does not exist" if path else "no file chosen")
        return Deferred(read_image_file, path, describe=os.path.basename(path)), \
            {"source": "file", "path": path}
    raise InputError(what, f"an image cannot come from {src.kind!r}",
                     hint="Use render, pass, image, texture, strip or file.")


def _plain_input(f, src: Source, what):
    if src.kind == "text":
        text = bpy.data.texts.get(src.text) if src.text else None
        if text is None:
            raise InputError(what, f"there is no Text datablock {src.text!r}" if src.text
                             else "no Text datablock chosen",
                             hint="Pick one in the Text Editor's list, or type the text.")
        return text.as_string(), {"source": "text", "text": text.name}
    if src.kind == "file":
        path = bpy.path.abspath(src.path)
        if not path or not os.path.isfile(path):
            raise InputError(what, f"file {path!r} does not exist" if path else "no file chosen")
        if f.type != "text":
            return path, {"source": "file", "path": path}  # files travel as paths
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read(), {"source": "file", "path": path}
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(what, f"cannot read {path!r} as text: {e}") from e
    if src.kind == "value":
        return src.value, {"source": "value", "value": src.value}
    raise InputError(what, f"this input cannot come from {src.kind!r}",
                     hint="Use a value, a Text datablock or a file.")
