"""The one place that writes model results into Blender (main thread only).

Contract:

- ``targets_for(field)`` says where an output of a core.spec field may go (the ids of
  ``TARGETS``, the first being the default; ``NONE`` always last).
- ``prepare(outputs, fields)`` runs on the WORKER thread after a run and touches no bpy:
  image files (PNG, JPEG... the shelf's image outputs are files) are decoded and turned
  into the flat, bottom-up, float32 RGBA buffer that ``foreach_set`` takes, so the main
  thread does not decode or convert. ``apply`` is also correct on values that were not
  prepared (it then does that work itself).
- ``apply(outputs, fields, targets, run)`` writes each output to each of its targets and
  returns one ``Applied`` per write. One failing target never stops the others: the
  failures are collected and, when there are any, ONE ``OutputError`` is raised at the end
  carrying ``applied`` (what was written) and ``failures`` (``Applied`` with ``ok=False``
  and ``error``). It raises nothing but ``RunwayError`` subclasses.
- Nothing of the user's is overwritten unless the target says ``replace``: images, texts
  and objects get Blender's versioned names (.001), files get _001, _002...; strips go
  to a free channel.
- Every image, text, strip and object made here carries the run's provenance as the
  custom property ``runway`` (a JSON string); files get a ``<file>.runway.json`` sidecar.

Cost on the main thread: packing an image encodes it (177 ms for a 1080p 8-bit PNG), so
results are NOT packed when applied. A ``save_pre`` handler (``pack_results``) packs every
result image still only in memory when the .blend is saved, so results survive saving and
reopening. Applying a prepared 1920x1080 result to the Image Editor is then
``images.new`` + ``foreach_set``: median 16 ms (8-bit) and 14 ms (float) in bpy 5.0,
21 and 13 ms in bpy 4.2, on a shared 2-core machine; ``prepare`` spends 110-235 ms on the
worker, and an unprepared 8-bit PNG costs 145-170 ms in ``apply``. The pack at save
costs 165-220 ms per 1080p 8-bit image. EXRs the model sent are packed as they came
(Blender decodes them when shown). Results written to files (FILE, STRIP) live on disk.
"""
from __future__ import annotations

import datetime
import json
import math
import mimetypes
import os
import re
import tempfile
import threading
import wave
from dataclasses import dataclass, field as _field
from typing import Any, Optional

import numpy as np

import bpy

from ..core import codecs
from ..core.errors import RunwayError
from .images import DATA_COLORSPACES as _DATA_COLORSPACES

PROP = "runway"  # custom property holding the provenance JSON

TARGETS = (
    ("IMAGE_EDITOR", "Image Editor",
     "A new image, shown in an open Image Editor (kept in the .blend)"),
    ("TEXTURE", "Material texture",
     "An Image Texture node in the active object's active material, wired to a socket"),
    ("STRIP", "Sequencer strip",
     "An image or sound strip at the current frame on a free channel (the file is "
     "written next to the .blend)"),
    ("FILE", "File", "A file in the chosen format, with a .runway.json sidecar"),
    ("TEXT", "Text datablock", "The text, or JSON for structured results"),
    ("OVERLAY", "Overlay image",
     "The input image with the boxes, points, landmarks or segmentation drawn over it"),
    ("OBJECTS", "Objects",
     "Empties at the points and landmarks, mesh edges and box outlines, in camera space "
     "when the input was a camera render"),
    ("NONE", "Nothing", "Do not keep this output"),
)
TARGET_IDS = tuple(t[0] for t in TARGETS)

FILE_FORMATS = (
    ("PNG8", "PNG 8-bit", "8 bits per channel PNG"),
    ("PNG16", "PNG 16-bit", "16 bits per channel PNG (keeps the precision of deep results)"),
    ("EXR", "OpenEXR", "Linear float OpenEXR (as it came when the model sent EXR)"),
    ("JPEG", "JPEG", "8-bit JPEG, no alpha"),
    ("ASIS", "As it came", "The bytes exactly as the model sent them (e.g. WAV)"),
)

# Words in an output's name that say its pixels are data, not colour.
_DATA_WORDS = {"matte", "mattes", "mask", "masks", "alpha", "depth", "normal", "normals",
               "disparity", "segmentation", "ids", "labels", "id"}
_STRUCTURED = ("image_point", "image_bounding_box", "image_landmarks")
_IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".tga", ".exr",
               ".hdr"}
_AUDIO_EXTS = {".wav", ".mp3", ".ogg", ".flac", ".aac", ".m4a", ".opus"}
_VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".webm", ".avi"}
_MAX_ID_NAME = 63  # bytes Blender keeps of an ID name


class OutputError(RunwayError):
    """A result that could not be written where its target said.

    Raised once at the end of ``apply`` when any target failed: ``applied`` holds the
    writes that worked, ``failures`` the ones that did not (``Applied`` with ``error``)."""

    def __init__(self, message: str, *, hint: str = "", details: str = "",
                 applied: Optional[list] = None, failures: Optional[list] = None):
        super().__init__(message, hint=hint, details=details)
        self.applied = list(applied or [])
        self.failures = list(failures or [])


@dataclass
class Target:
    """Where one output goes: plain values gathered on the main thread at submit."""

    target: str
    name: str = ""
    replace: bool = False
    path: str = "//runway/{model}_{output}_{frame:04d}"
    file_format: str = "PNG8"
    socket: str = "Base Color"
    colorspace: str = ""
    frame_start: Optional[int] = None
    channel: int = 0


@dataclass
class RunInfo:
    """What the engine knows about the run (main-thread plain values)."""

    model: str
    version: str = ""
    runtime: str = ""
    command: str = ""
    options: dict = _field(default_factory=dict)
    inputs: dict = _field(default_factory=dict)
    run_id: str = ""
    predict_time: Optional[float] = None
    time: float = 0.0
    frame: int = 0
    scene: str = ""
    input_image: Any = None
    camera: str = ""


@dataclass
class Applied:
    """One write of one output to one target. ``name``: the datablock's name, or the
    file's path for FILE. ``kind``: image, texture, strip, sound, file, text, overlay,
    objects."""

    output: str
    target: str
    name: str = ""
    kind: str = ""
    message: str = ""
    ok: bool = True
    error: Optional[RunwayError] = None


@dataclass(repr=False)
class PreparedImage:
    """An image result ready for Blender. ``array``: HxWxC top-down (uint8, uint16 or
    float32, sRGB-encoded or data). ``pixels``: the flat bottom-up float32 RGBA buffer for
    ``foreach_set``, computed for ``pixels_linear`` (float images of colour store linear
    light; byte images and data store the values as they are). ``source``: the value the
    model sent (a FileValue), so files can be copied exactly. ``data``: the pixels are
    data (a matte, normals, depth, label colours): Non-Color."""

    array: np.ndarray
    source: Any = None
    data: bool = False
    pixels: Optional[np.ndarray] = None
    pixels_linear: bool = False
    ids: Optional[np.ndarray] = None  # segmentation: the label ids the colours show

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def is_float(self) -> bool:
        """16-bit and float results go to float images (no precision lost)."""
        return self.array.dtype != np.uint8

    def blender_pixels(self, linear: bool) -> np.ndarray:
        if self.pixels is None or self.pixels_linear != linear:
            self.pixels, _, _ = codecs.image_to_blender(self.array, linear=linear)
            self.pixels_linear = linear
        return self.pixels

    def __repr__(self) -> str:
        return f"PreparedImage({codecs.describe(self.array)}, data={self.data})"


# --------------------------------------------------------------------------- targets per type

def targets_for(field) -> list[str]:
    """Target ids that fit a core.spec output field; the first is the default."""
    kind = getattr(field, "type", "any")
    if kind == "array":
        item = getattr(field, "item", None)
        item_kind = getattr(item, "type", "any")
        if item_kind in _STRUCTURED:
            out = ["OVERLAY", "OBJECTS", "TEXT", "FILE"]
        elif item_kind == "image":
            out = ["IMAGE_EDITOR", "TEXTURE", "STRIP", "FILE"]
        else:
            out = ["TEXT", "FILE"]
    elif kind == "image":
        out = ["IMAGE_EDITOR", "TEXTURE", "STRIP", "FILE"]
    elif kind == "file":
        media = getattr(field, "media", "any")
        out = {"image": ["IMAGE_EDITOR", "TEXTURE", "STRIP", "FILE"],
               "audio": ["STRIP", "FILE"],
               "video": ["STRIP", "FILE"],
               "text": ["TEXT", "FILE"]}.get(media, ["IMAGE_EDITOR", "TEXTURE", "STRIP",
                                                     "FILE"])
    elif kind in _STRUCTURED:
        out = ["OVERLAY", "OBJECTS", "TEXT", "FILE"]
    elif kind == "segmentation":
        out = ["IMAGE_EDITOR", "TEXTURE", "OVERLAY", "FILE", "TEXT"]
    elif kind == "secret":
        out = []
    else:  # text, number, integer, boolean, category, vector, any
        out = ["TEXT", "FILE"]
    return out + ["NONE"]


# --------------------------------------------------------------------------- provenance

_SECRET_KEY = re.compile(r"(?i)token|secret|password|passwd|api[_-]?key|authori[sz]ation")


def _plain(value: Any, depth: int = 0) -> Any:
    """JSON-safe, short: arrays and bytes are described, never dumped."""
    if depth > 20:
        return codecs.describe(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return _plain(value.item(), depth + 1)
    if hasattr(value, "get_secret_value"):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()
                if not _SECRET_KEY.search(str(k))}
    if isinstance(value, (list, tuple)):
        if len(value) > 64:
            return codecs.describe(value, 80)
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, codecs.FileValue):
        return value.path or value.name
    return codecs.describe(value, 200)


def provenance(run: RunInfo, output: str) -> dict:
    """The record stored on each result: what made it (never a token or secret)."""
    when = datetime.datetime.fromtimestamp(run.time or 0, tz=datetime.timezone.utc)
    return {
        "model": run.model, "version": run.version, "runtime": run.runtime,
        "command": run.command, "output": output,
        "options": _plain(dict(run.options or {})),
        "inputs": _plain(dict(run.inputs or {})),
        "run_id": run.run_id, "predict_time": run.predict_time,
        "time": run.time, "time_utc": when.isoformat(timespec="seconds"),
        "frame": run.frame, "scene": run.scene, "camera": run.camera,
    }


def _stamp(owner, record: dict) -> None:
    owner[PROP] = json.dumps(record, sort_keys=True)


# --------------------------------------------------------------------------- prepare (worker)

def prepare(outputs: dict, fields: dict) -> dict:
    """Worker thread, no bpy: decode image files and build the Blender pixel buffers.
    Values it cannot decode are passed on unchanged (``apply`` reports them)."""
    out = {}
    for name, value in outputs.items():
        f = fields.get(name)
        try:
            out[name] = _prepare_value(name, f, value)
        except RunwayError:
            out[name] = value
    return out


def _prepare_value(name: str, f, value: Any) -> Any:
    kind = getattr(f, "type", None)
    if isinstance(value, list) and kind == "array" and \
            getattr(getattr(f, "item", None), "type", None) in ("image", "file"):
        return [_prepare_value(name, f.item, v) for v in value]
    prepared = _as_prepared(name, f, value)
    if prepared is None:
        return value
    prepared.blender_pixels(_auto_linear(prepared))
    return prepared


def _auto_linear(img: PreparedImage) -> bool:
    return img.is_float and not img.data


def _file_kind(value: codecs.FileValue) -> str:
    mime = (value.mime or mimetypes.guess_type(value.name or "")[0] or "").lower()
    ext = os.path.splitext(value.name or value.path or "")[1].lower()
    if "exr" in mime or ext == ".exr":
        return "exr"
    if mime.startswith("image/") or ext in _IMAGE_EXTS:
        return "image"
    if mime.startswith("audio/") or ext in _AUDIO_EXTS:
        return "audio"
    if mime.startswith("video/") or ext in _VIDEO_EXTS:
        return "video"
    if mime.startswith("text/") or mime == "application/json" or ext in (".txt", ".json"):
        return "text"
    return "file"


def _is_data_name(output: str) -> bool:
    words = set(re.split(r"[^a-z0-9]+", output.lower()))
    return bool(words & _DATA_WORDS)


def _as_file(f, value: Any) -> Any:
    """A file output given as a local path (Runway protocol) -> FileValue."""
    if getattr(f, "type", None) == "file" and isinstance(value, str) and os.path.isfile(value):
        return codecs.FileValue(name=os.path.basename(value), path=value,
                                mime=mimetypes.guess_type(value)[0])
    return value


def _as_prepared(name: str, f, value: Any) -> Optional[PreparedImage]:
    """An image-like value -> PreparedImage; None when it is not one Pillow can read
    (EXR files go through Blender in ``apply``)."""
    if isinstance(value, PreparedImage):
        return value
    kind = getattr(f, "type", None)
    value = _as_file(f, value)
    if kind == "segmentation" and isinstance(value, np.ndarray):
        ids = codecs.segmentation_ids(f, value)
        return PreparedImage(_label_colour_map(f, ids), data=True, ids=ids)
    if isinstance(value, codecs.FileValue):
        if _file_kind(value) != "image":
            return None
        arr = codecs.decode_image_bytes(value.read_bytes(), name)
        return PreparedImage(arr, source=value, data=_is_data_name(name))
    if isinstance(value, np.ndarray) or type(value).__module__.startswith("PIL"):
        if kind not in (None, "image", "any", "file"):
            return None
        return PreparedImage(codecs.image_array(value, name), data=_is_data_name(name))
    return None


def _label_colour_map(f, ids: np.ndarray) -> np.ndarray:
    ids = codecs.segmentation_ids(f, ids)
    colours = codecs.label_colors(f)
    known = codecs.label_ids(f)
    top = max(int(ids.max(initial=0)), max(known.values(), default=0))
    lut = np.zeros((top + 1, 3), dtype=np.uint8)
    for label, i in known.items():
        lut[i] = colours[label]
    return lut[np.clip(ids, 0, top)]


# --------------------------------------------------------------------------- apply

@dataclass
class _Write:
    output: str
    field: Any
    value: Any
    target: Target
    run: RunInfo
    record: dict

    @property
    def name(self) -> str:
        return self.target.name or f"{self.run.model} {self.output}"


def apply(outputs: dict, fields: dict, targets: dict, run: RunInfo) -> list[Applied]:
    """Write each output to each of its targets (main thread). See the module's contract."""
    if threading.current_thread() is not threading.main_thread():
        raise OutputError("results can only be written into Blender on the main thread",
                          hint="Call outputs.apply from the engine's timer step.")
    ensure_save_handler()
    done: list[Applied] = []
    failed: list[Applied] = []
    for output, chosen in targets.items():
        for target in chosen or ():
            if target.target == "NONE":
                continue
            try:
                if output not in outputs:
                    raise OutputError(f"the model sent no value for {output!r}",
                                      hint="Check the model's logs.")
                if target.target not in _WRITERS:
                    raise OutputError(f"unknown output target {target.target!r}",
                                      hint="Choose one of " + ", ".join(TARGET_IDS) + ".")
                w = _Write(output, fields.get(output), outputs[output], target, run,
                           provenance(run, output))
                done.extend(_WRITERS[target.target](w))
            except RunwayError as e:
                failed.append(_failure(output, target, e))
            except Exception as e:  # bpy raises RuntimeError/TypeError: make them ours
                err = OutputError(f"{output} -> {target.target}: {type(e).__name__}: {e}",
                                  hint="This is a bug in Runway for Blender; please report it.")
                failed.append(_failure(output, target, err))
    if failed:
        first = failed[0].error
        message = "; ".join(f.message for f in failed)
        raise OutputError(message, hint=getattr(first, "hint", ""), applied=done,
                          failures=failed)
    return done


def _failure(output: str, target: Target, e: RunwayError) -> Applied:
    return Applied(output, target.target, target.name, "", f"{output}: {e.message}",
                   ok=False, error=e)


def _scene(run: RunInfo):
    return (bpy.data.scenes.get(run.scene) if run.scene else None) or bpy.context.scene


def _id_name(name: str) -> str:
    data = name.encode("utf-8")[:_MAX_ID_NAME]
    return data.decode("utf-8", "ignore") or "Runway"


# --------------------------------------------------------------------------- images

def _image_values(w: _Write) -> list[tuple[str, Any]]:
    """(name, PreparedImage | EXR FileValue) for an image-like output; lists get numbers."""
    value = w.value
    if isinstance(value, list) and getattr(w.field, "type", None) == "array":
        item = getattr(w.field, "item", None)
        return [(f"{w.name} {i + 1}", _image_of(w.output, item, v))
                for i, v in enumerate(value)]
    return [(w.name, _image_of(w.output, w.field, value))]


def _image_of(output: str, f, value: Any):
    value = _as_file(f, value)
    if isinstance(value, codecs.FileValue):
        kind = _file_kind(value)
        if kind == "exr":
            return value
        if kind != "image":
            raise OutputError(f"{output} is {kind} ({value.name}), not an image",
                              hint=_hint_for_kind(kind))
    prepared = _as_prepared(output, f, value)
    if prepared is None:
        raise OutputError(f"{output} is {codecs.describe(value)}, not an image",
                          hint="Send this output to a Text datablock or a File.")
    return prepared


def _hint_for_kind(kind: str) -> str:
    if kind in ("audio", "video"):
        return "Send it to a Sequencer strip or a File."
    if kind == "text":
        return "Send it to a Text datablock or a File."
    return "Send it to a File."


def _colour_plan(img: PreparedImage, colorspace: str, *, data_default: bool = False):
    """(data, linear) for writing ``img``: data pixels are stored as they are."""
    if colorspace:
        data = colorspace in _DATA_COLORSPACES
    else:
        data = img.data or data_default
    return data, img.is_float and not data


def _write_image(img, name: str, target: Target, *, data_default: bool = False):
    """A Blender image holding ``img`` (PreparedImage or EXR FileValue): a new one
    (versioned name), or the image called ``name`` updated in place when replacing."""
    if isinstance(img, codecs.FileValue):
        return _write_exr_image(img, name, target)
    data, linear = _colour_plan(img, target.colorspace, data_default=data_default)
    pixels = img.blender_pixels(linear)
    w, h, use_float = img.width, img.height, img.is_float
    existing = bpy.data.images.get(name) if target.replace else None
    if existing is not None and existing.library is None:
        image = existing
        _reshape(image, w, h, use_float)
        _set_colorspace(image, data, use_float, target.colorspace)
    else:
        image = bpy.data.images.new(_id_name(name), width=w, height=h, alpha=True,
                                    float_buffer=use_float, is_data=data)
        if not data and not use_float and target.colorspace:
            _set_colorspace(image, data, use_float, target.colorspace)
    image.pixels.foreach_set(pixels)
    image.update()
    return image


def _reshape(image, w: int, h: int, use_float: bool) -> None:
    if tuple(image.size) == (w, h) and image.is_float == use_float and image.channels == 4:
        return
    # A generated buffer of the new size and depth (a packed or file image is left as
    # a datablock; its file is never written: the save handler packs the new pixels).
    if image.source != "GENERATED":
        image.source = "GENERATED"
    image.generated_width, image.generated_height = w, h
    image.use_generated_float = use_float


def _linear_colorspace(image) -> str:
    names = {i.identifier for i in
             image.colorspace_settings.bl_rna.properties["name"].enum_items}
    for name in ("Linear Rec.709", "Linear", "scene_linear"):
        if name in names:
            return name
    return image.colorspace_settings.name


def _set_colorspace(image, data: bool, use_float: bool, wanted: str) -> None:
    if data:
        name = wanted if wanted in _DATA_COLORSPACES else "Non-Color"
    elif use_float:
        name = _linear_colorspace(image)  # float buffers hold linear light
    else:
        name = wanted or "sRGB"
    if image.colorspace_settings.name != name:
        image.colorspace_settings.name = name


def _write_exr_image(value: codecs.FileValue, name: str, target: Target):
    """An EXR the model sent: packed as it came; Blender decodes it when shown."""
    data = value.read_bytes()
    if target.replace and bpy.data.images.get(name) is not None:
        temp = _image_from_bytes("runway-temp", data)
        try:
            w, h = temp.size
            buf = np.empty(w * h * 4, dtype=np.float32)
            if temp.channels != 4:
                raise OutputError(f"{value.name}: {temp.channels}-channel EXR",
                                  hint="Replace is possible for RGBA EXRs only; turn Replace off.")
            temp.pixels.foreach_get(buf)
        finally:
            bpy.data.images.remove(temp)
        image = bpy.data.images[name]
        _reshape(image, w, h, True)
        _set_colorspace(image, target.colorspace in _DATA_COLORSPACES, True,
                        target.colorspace)
        image.pixels.foreach_set(buf)
        image.update()
        return image
    image = _image_from_bytes(name, data)
    if target.colorspace:
        image.colorspace_settings.name = target.colorspace
    return image


def _image_from_bytes(name: str, data: bytes):
    """An image packed from a file's bytes (an EXR), decoded by Blender when used."""
    # Made as a float image: it keeps the linear colour space a byte image would have
    # as sRGB (an EXR read as sRGB is "linearised" a second time: 0.25 became 0.05).
    image = bpy.data.images.new(_id_name(name), width=1, height=1, float_buffer=True)
    image.pack(data=data, data_len=len(data))
    image.source = "FILE"
    if image.is_float and image.colorspace_settings.name != _linear_colorspace(image):
        image.colorspace_settings.name = _linear_colorspace(image)
    if image.size[0] == 0:
        bpy.data.images.remove(image)
        raise OutputError(f"Blender cannot read the image {name!r}",
                          hint="Send this output to a File instead.")
    return image


def _editor_screens():
    wm = getattr(bpy.context, "window_manager", None)
    return [win.screen for win in (wm.windows if wm else ()) if win.screen]


def show_in_image_editor(image, screens=None) -> bool:
    """Show ``image`` in one open Image Editor: one already showing an earlier version of
    it, else the first whose image is not pinned. False when none is open."""
    base = re.sub(r"\.\d{3}$", "", image.name)
    spaces = []
    for screen in _editor_screens() if screens is None else screens:
        for area in screen.areas:
            if area.type == "IMAGE_EDITOR":
                space = next((s for s in area.spaces if s.type == "IMAGE_EDITOR"), None)
                if space is not None and not space.use_image_pin:
                    spaces.append((area, space))
    if not spaces:
        return False
    same = [s for s in spaces if s[1].image is not None
            and re.sub(r"\.\d{3}$", "", s[1].image.name) == base]
    area, space = (same or spaces)[0]
    space.image = image
    area.tag_redraw()
    return True


def _to_image_editor(w: _Write) -> list[Applied]:
    out = []
    for name, img in _image_values(w):
        image = _write_image(img, name, w.target)
        image.use_fake_user = True  # kept in the .blend even while nothing uses it
        _stamp(image, w.record)
        shown = show_in_image_editor(image)
        out.append(Applied(w.output, "IMAGE_EDITOR", image.name, "image",
                           f"{image.name}: {_size(image)}"
                           + ("" if shown else " (no Image Editor is open to show it)")))
    return out


def _size(image) -> str:
    w, h = image.size
    return f"{w}x{h} {'float' if image.is_float else '8-bit'} " \
           f"{image.colorspace_settings.name}"


# --------------------------------------------------------------------------- texture

_COLOUR_SOCKETS = ("RGBA",)


def _active_object(scene):
    view_layer = bpy.context.view_layer if bpy.context.scene == scene else \
        scene.view_layers[0]
    return view_layer.objects.active


def _material_of(obj, name: str):
    """The active material of ``obj``; a new one (with nodes) when it has none."""
    mat = obj.active_material
    if mat is not None:
        _use_nodes(mat)
        return mat, False
    mat = bpy.data.materials.new(_id_name(name))
    _use_nodes(mat)
    if len(obj.material_slots) == 0:
        obj.data.materials.append(mat)
    else:
        obj.material_slots[obj.active_material_index].material = mat
    return mat, True


def _use_nodes(mat) -> None:
    # 5.0 always uses nodes (the switch is deprecated, to go in 6.0).
    if bpy.app.version < (5, 0, 0) and not mat.use_nodes:
        mat.use_nodes = True


def _shader_node(tree):
    """The Principled BSDF (the one the output uses first), else the output's shader."""
    outputs = [n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"]
    active = [n for n in outputs if n.is_active_output] or outputs
    for out in active:
        surface = out.inputs.get("Surface")
        if surface is not None and surface.is_linked:
            node = surface.links[0].from_node
            if node.type == "BSDF_PRINCIPLED":
                return node
    principled = [n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"]
    if principled:
        return principled[0]
    for out in active:
        surface = out.inputs.get("Surface")
        if surface is not None and surface.is_linked:
            return surface.links[0].from_node
    node = tree.nodes.new("ShaderNodeBsdfPrincipled")
    out = active[0] if active else tree.nodes.new("ShaderNodeOutputMaterial")
    node.location = (out.location.x - 300, out.location.y)
    tree.links.new(node.outputs[0], out.inputs["Surface"])
    return node


def _to_texture(w: _Write) -> list[Applied]:
    scene = _scene(w.run)
    obj = _active_object(scene)
    if obj is None:
        raise OutputError("there is no active object to put the texture on",
                          hint="Select the object whose material should get the texture.")
    if not hasattr(obj.data, "materials"):
        raise OutputError(f"{obj.name} ({obj.type.lower()}) cannot have a material",
                          hint="Make a mesh (or curve, text...) the active object.")
    (name, img), *_ = _image_values(w)
    mat, created = _material_of(obj, name)
    tree = mat.node_tree
    shader = _shader_node(tree)
    socket = shader.inputs.get(w.target.socket)
    if socket is None:
        names = ", ".join(s.name for s in shader.inputs if s.enabled)
        raise OutputError(f"{shader.name} in {mat.name} has no input {w.target.socket!r}",
                          hint=f"Choose one of: {names}.")
    # Colour goes to colour sockets; anything else (roughness, normal...) is data.
    image = _write_image(img, name, w.target,
                         data_default=socket.type not in _COLOUR_SOCKETS)
    _stamp(image, w.record)
    node = None
    feeder = socket.links[0].from_node if socket.is_linked else None
    if feeder is not None and feeder.type == "NORMAL_MAP" and feeder.get(PROP) and \
            feeder.inputs["Color"].is_linked:
        feeder = feeder.inputs["Color"].links[0].from_node
    if feeder is not None and feeder.type == "TEX_IMAGE" and feeder.get(PROP):
        node = feeder  # ours from an earlier run: update it
    if node is None:
        node = tree.nodes.new("ShaderNodeTexImage")
        node.location = (shader.location.x - 320, shader.location.y)
        node.label = f"Runway: {w.output}"
        if socket.name == "Normal" and socket.type == "VECTOR":
            normal_map = tree.nodes.new("ShaderNodeNormalMap")
            normal_map[PROP] = w.record["model"]
            normal_map.location = (shader.location.x - 160, node.location.y)
            node.location.x -= 160
            tree.links.new(node.outputs["Color"], normal_map.inputs["Color"])
            tree.links.new(normal_map.outputs["Normal"], socket)
        else:
            tree.links.new(node.outputs["Color"], socket)
    node.image = image
    node[PROP] = json.dumps(w.record, sort_keys=True)
    tree.nodes.active = node
    return [Applied(w.output, "TEXTURE", image.name, "texture",
                    f"{image.name} -> {mat.name}: {shader.name}.{socket.name}"
                    + (" (new material)" if created else ""))]


# --------------------------------------------------------------------------- files

_EXT = {"PNG8": ".png", "PNG16": ".png", "EXR": ".exr", "JPEG": ".jpg"}
_PATH_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def result_path(template: str, run: RunInfo, output: str) -> tuple[str, bool]:
    """The template filled in and made absolute, without extension; True when it lies in
    the temporary folder because the .blend is not saved yet ('//' has no folder)."""
    values = {k: _PATH_UNSAFE.sub("_", str(v)) for k, v in
              (("model", run.model), ("output", output), ("run", run.run_id or "run"))}
    try:
        filled = (template or "//runway/{model}_{output}_{frame:04d}").format(
            frame=int(run.frame), **values)
    except (KeyError, IndexError, ValueError) as e:
        raise OutputError(f"the path template {template!r} is broken: {e}",
                          hint="Use {model}, {output}, {frame} (e.g. {frame:04d}) and {run}.")
    in_temp = False
    if filled.startswith("//") or not os.path.isabs(filled):
        rest = filled[2:] if filled.startswith("//") else filled
        if bpy.data.filepath:
            filled = bpy.path.abspath("//" + rest)
        else:
            filled = os.path.join(tempfile.gettempdir(), "runway-blender", rest)
            in_temp = True
    return os.path.normpath(filled), in_temp


def _claim(base: str, ext: str, replace: bool) -> str:
    """Create the file (empty) and return its path: ``base+ext`` or, when that (or its
    sidecar) exists and not replacing, ``base_001+ext``, ``base_002+ext``..."""
    folder = os.path.dirname(base)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the folder {folder}: {e.strerror or e}",
                          hint="Choose another output path.")
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0)
    for n in range(10000):
        path = base + ext if n == 0 else f"{base}_{n:03d}{ext}"
        if replace:
            fd = os.open(path, flags | os.O_TRUNC, 0o644)
        else:
            if os.path.exists(path + ".runway.json"):
                continue
            try:
                fd = os.open(path, flags | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
        os.close(fd)
        return path
    raise OutputError(f"no free file name for {base}{ext}", hint="Clean up the folder.")


def _png_depth(data: bytes) -> Optional[int]:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25:
        return data[24]
    return None


def _image_file_bytes(img: PreparedImage, fmt: str) -> tuple[Optional[bytes], str]:
    """(bytes, extension) of ``img`` in ``fmt``."""
    src = img.source.read_bytes() if isinstance(img.source, codecs.FileValue) else None
    if fmt == "ASIS":
        if src is not None:
            ext = os.path.splitext(img.source.name)[1] or \
                (mimetypes.guess_extension(img.source.mime or "") or ".png")
            return src, ext.lower()
        fmt = "PNG8" if img.array.dtype == np.uint8 else "PNG16"
    if fmt in ("PNG8", "PNG16"):
        depth = 8 if fmt == "PNG8" else 16
        if src is not None and _png_depth(src) == depth:
            return src, ".png"  # already what was asked: copied, not re-encoded
        arr = codecs.to_bit_depth(img.array, depth)
        return codecs.encode_image_bytes(arr, "PNG", compress_level=1), ".png"
    if fmt == "JPEG":
        if src is not None and src[:3] == b"\xff\xd8\xff":
            return src, ".jpg"
        arr = codecs.to_bit_depth(img.array, 8)
        arr = codecs.convert_channels(arr, 1 if arr.shape[2] in (1, 2) else 3)
        return codecs.encode_image_bytes(arr, "JPEG"), ".jpg"
    if fmt == "EXR":
        return _exr_bytes(img), ".exr"
    raise OutputError(f"unknown file format {fmt!r}",
                      hint="Choose PNG8, PNG16, EXR, JPEG or ASIS.")


def _exr_bytes(img: PreparedImage) -> bytes:
    """Linear float OpenEXR (the data as it is for data results)."""
    pixels = img.blender_pixels(not img.data)  # linear light, or the data values
    top_down = pixels.reshape(img.height, img.width, 4)[::-1]
    return codecs.encode_exr(top_down)


def _write_bytes(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}",
                          hint="Choose another output path.")


# Types mimetypes does not map to an extension on every Python (audio/wav: None on 3.11).
_EXTENSIONS = {"audio/wav": ".wav", "audio/wave": ".wav", "audio/x-wav": ".wav",
               "audio/mpeg": ".mp3", "audio/ogg": ".ogg", "audio/flac": ".flac",
               "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp",
               "image/x-exr": ".exr", "video/mp4": ".mp4", "application/json": ".json",
               "text/plain": ".txt"}


def _extension_for(mime) -> str:
    mime = (mime or "").split(";")[0].strip().lower()
    return _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ""


def _write_result_file(w: _Write, *, fmt: Optional[str] = None) -> tuple[str, str, str]:
    """Write the output to its file (+ sidecar). Returns (path, kind, note); kind is
    image, audio, video, text or file."""
    fmt = (fmt or w.target.file_format or "PNG8").upper()
    base, in_temp = result_path(w.target.path, w.run, w.output)
    value = _as_file(w.field, w.value)
    note = ""
    kind = "file"
    exr_bytes = None
    img = None
    if isinstance(value, codecs.FileValue):
        kind = _file_kind(value)
        if kind == "exr":
            kind = "image"
            if fmt in ("EXR", "ASIS"):
                exr_bytes = value.read_bytes()
            else:
                img = _prepared_from_exr(value)
        elif kind == "image":
            img = _as_prepared(w.output, w.field, value)
    elif isinstance(value, PreparedImage) or (
            isinstance(value, np.ndarray) and value.ndim >= 2) or \
            type(value).__module__.startswith("PIL"):
        img = _as_prepared(w.output, w.field, value)
        kind = "image"
    if exr_bytes is not None:
        data, ext = exr_bytes, ".exr"
    elif img is not None:
        kind = "image"
        if getattr(w.field, "type", None) == "segmentation" and fmt == "ASIS":
            ids = _seg_ids(w)
            arr = ids.astype(np.uint8 if ids.max(initial=0) <= 255 else np.uint16)[:, :, None]
            data, ext = codecs.encode_image_bytes(arr, "PNG", compress_level=1), ".png"
        else:
            data, ext = _image_file_bytes(img, fmt)
    elif isinstance(value, codecs.FileValue):
        data = value.read_bytes()
        ext = os.path.splitext(value.name)[1].lower() or _extension_for(value.mime)
        if fmt != "ASIS":
            note = f" (a {kind} file: written as it came, {fmt} applies to images)"
    else:
        text, is_json = _text_of(w)
        data, ext = text.encode("utf-8"), (".json" if is_json else ".txt")
    if ext and base.lower().endswith(ext):
        base = base[: -len(ext)]
    path = _claim(base, ext, w.target.replace)
    _write_bytes(path, data)
    _write_bytes(path + ".runway.json",
                 json.dumps(w.record, indent=2, sort_keys=True).encode("utf-8"))
    if in_temp:
        note += " (in the temporary folder: the .blend is not saved yet, so '//' has " \
                "no folder; save the .blend to write results next to it)"
    return path, kind, note


def _prepared_from_exr(value: codecs.FileValue) -> PreparedImage:
    """An EXR's pixels through Blender (Pillow does not read EXR)."""
    temp = _image_from_bytes("runway-exr-read", value.read_bytes())
    try:
        w, h = temp.size
        c = temp.channels
        buf = np.empty(w * h * c, dtype=np.float32)
        temp.pixels.foreach_get(buf)
    finally:
        bpy.data.images.remove(temp)
    arr = codecs.image_from_blender(buf, w, h, c, linear=True)
    arr = np.clip(arr, 0.0, 1.0)  # the encoded display values, for 8/16-bit formats
    return PreparedImage(arr.astype(np.float32), source=value)


def _to_file(w: _Write) -> list[Applied]:
    path, kind, note = _write_result_file(w)
    return [Applied(w.output, "FILE", path, "file", f"{path}{note}")]


# --------------------------------------------------------------------------- strips

def strips(editor):
    """The sequencer's top-level strips: ``strips`` in 5.0+, ``sequences`` in 4.2."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def free_channel(collection, start: int, end: int, wanted: int = 0) -> int:
    """The first channel (from ``wanted`` or 1) with no strip overlapping [start, end)."""
    taken = {s.channel for s in collection
             if s.frame_final_start < end and start < s.frame_final_end}
    channel = max(1, wanted or 1)
    while channel in taken:
        channel += 1
    if channel > 128:
        raise OutputError(f"no free sequencer channel at frame {start}",
                          hint="Choose another start frame.")
    return channel


def _sound_frames(path: str, scene) -> int:
    fps = scene.render.fps / (scene.render.fps_base or 1.0)
    try:
        with wave.open(path, "rb") as f:
            seconds = f.getnframes() / float(f.getframerate())
    except (wave.Error, EOFError, OSError):
        return 1
    return max(1, math.ceil(seconds * fps))


def _blend_relative(path: str) -> str:
    if not bpy.data.filepath:
        return path
    try:
        return bpy.path.relpath(path)
    except ValueError:  # another drive
        return path


def _to_strip(w: _Write) -> list[Applied]:
    scene = _scene(w.run)
    value = _as_file(w.field, w.value)
    fmt = w.target.file_format
    if isinstance(value, codecs.FileValue) and _file_kind(value) in ("audio", "video"):
        fmt = "ASIS"
    elif fmt == "ASIS" and isinstance(value, codecs.FileValue) and \
            _file_kind(value) == "exr":
        fmt = "EXR"
    path, kind, note = _write_result_file(w, fmt=fmt)
    if kind not in ("image", "audio", "video"):
        raise OutputError(f"{w.output} is {kind}, not an image or sound; it was written "
                          f"to {path}", hint="Send it to a Text datablock or a File.")
    editor = scene.sequence_editor or scene.sequence_editor_create()
    coll = strips(editor)
    start = scene.frame_current if w.target.frame_start is None else int(w.target.frame_start)
    length = _sound_frames(path, scene) if kind == "audio" else 1
    channel = free_channel(coll, start, start + length, w.target.channel)
    name = _id_name(w.name)
    try:
        if kind == "image":
            strip = coll.new_image(name, path, channel, start)
        elif kind == "audio":
            strip = coll.new_sound(name, path, channel, start)
        else:
            strip = coll.new_movie(name, path, channel, start)
    except RuntimeError as e:
        raise OutputError(f"Blender could not make a {kind} strip: {e}".rstrip(),
                          hint=f"The file was written to {path}; add it by hand.")
    if strip.channel != channel:  # never sit on someone else's strip
        strip.channel = free_channel([s for s in coll if s != strip],
                                     strip.frame_final_start, strip.frame_final_end, channel)
    rel = _blend_relative(path)
    if kind == "image":
        strip.directory = os.path.dirname(rel) + ("/" if not rel.endswith("/") else "")
    elif kind == "audio" and strip.sound is not None:
        strip.sound.filepath = rel
        strip.sound[PROP] = json.dumps(w.record, sort_keys=True)
    _stamp(strip, w.record)
    return [Applied(w.output, "STRIP", strip.name, "sound" if kind == "audio" else "strip",
                    f"{strip.name}: channel {strip.channel}, frame {strip.frame_final_start}"
                    f", {path}{note}")]


def add_image_sequence(scene, files: list, frame_start: int, name: str):
    """One image strip holding ``files`` (one per frame, in order, all in one folder)
    at ``frame_start`` on a free channel: post-processed frames as a sequence."""
    if not files:
        raise OutputError("no files for an image sequence")
    folders = {os.path.dirname(f) for f in files}
    if len(folders) != 1:
        raise OutputError("the frames are in several folders; a strip needs one",
                          hint="Write post-processed frames into one folder.")
    editor = scene.sequence_editor or scene.sequence_editor_create()
    coll = strips(editor)
    channel = free_channel(coll, frame_start, frame_start + len(files))
    try:
        strip = coll.new_image(_id_name(name), files[0], channel, frame_start)
        for path in files[1:]:
            strip.elements.append(os.path.basename(path))
    except RuntimeError as e:
        raise OutputError(f"Blender could not make an image strip: {e}".rstrip())
    if strip.channel != channel:
        strip.channel = free_channel([s for s in coll if s != strip],
                                     strip.frame_final_start, strip.frame_final_end, channel)
    rel = _blend_relative(files[0])
    strip.directory = os.path.dirname(rel) + "/"
    strip[PROP] = json.dumps({"files": len(files), "frame_start": frame_start})
    return strip


# --------------------------------------------------------------------------- text

def _text_of(w: _Write) -> tuple[str, bool]:
    """(text, is_json) of a value for a Text datablock or a text file."""
    value = _as_file(w.field, w.value)
    ftype = getattr(w.field, "type", None)
    if isinstance(value, str):
        return value, False
    if isinstance(value, codecs.FileValue):
        if _file_kind(value) != "text":
            raise OutputError(f"{w.output} is a {_file_kind(value)} file, not text",
                              hint=_hint_for_kind(_file_kind(value)))
        try:
            return value.read_bytes().decode("utf-8"), value.name.endswith(".json")
        except UnicodeDecodeError as e:
            raise OutputError(f"{value.name} is not UTF-8 text: {e}",
                              hint="Send it to a File.")
    if ftype == "segmentation" and isinstance(value, (np.ndarray, PreparedImage)):
        return json.dumps(_segmentation_summary(w.field, _seg_ids(w)), indent=2), True
    if isinstance(value, (PreparedImage, np.ndarray)):
        raise OutputError(f"{w.output} is an image, not text",
                          hint="Send it to the Image Editor or a File.")
    return json.dumps(_jsonable(value), indent=2), True


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, codecs.FileValue):
        return value.path or value.name
    return value


def _seg_ids(w: _Write) -> np.ndarray:
    value = w.value
    if isinstance(value, PreparedImage):
        if value.ids is None:
            raise OutputError(f"{w.output} holds no label ids", hint="Send it to an image.")
        return value.ids
    return codecs.segmentation_ids(w.field, value)


def _segmentation_summary(f, value: np.ndarray) -> dict:
    ids = codecs.segmentation_ids(f, value)
    counts = np.bincount(ids.ravel().astype(np.int64))
    total = int(ids.size)
    labels = {}
    for label, i in codecs.label_ids(f).items():
        n = int(counts[i]) if i < counts.size else 0
        labels[label] = {"id": i, "pixels": n, "fraction": round(n / total, 6)}
    return {"width": int(ids.shape[1]), "height": int(ids.shape[0]), "labels": labels}


def _to_text(w: _Write) -> list[Applied]:
    text, is_json = _text_of(w)
    existing = bpy.data.texts.get(w.name) if w.target.replace else None
    block = existing if existing is not None and existing.library is None else \
        bpy.data.texts.new(_id_name(w.name))
    block.from_string(text)
    _stamp(block, w.record)
    return [Applied(w.output, "TEXT", block.name, "text",
                    f"{block.name}: {len(text)} characters" + (" of JSON" if is_json else ""))]


# --------------------------------------------------------------------------- structured

@dataclass
class Shape:
    """Boxes, points and landmarks of one item, normalised 0..1, origin top left."""

    points: list = _field(default_factory=list)  # [(x, y)]
    labels: list = _field(default_factory=list)  # one per point ('' when none)
    connections: list = _field(default_factory=list)  # [(i, j)]
    boxes: list = _field(default_factory=list)  # [(x0, y0, x1, y1)]


def shapes_of(f, value: Any, name: str = "output") -> list[Shape]:
    """A structured output -> one Shape per item (array items each make one)."""
    kind = getattr(f, "type", None)
    if kind == "array":
        if not isinstance(value, (list, tuple)):
            raise OutputError(f"{name} is {codecs.describe(value)}, not a list",
                              hint="Send it to a Text datablock.")
        out = []
        for v in value:
            out.extend(shapes_of(f.item, v, name))
        return out
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if kind == "image_bounding_box":
        x0, y0, x1, y1 = (float(v) for v in value)
        return [Shape(boxes=[(x0, y0, x1, y1)])]
    if kind == "image_point":
        x, y = (float(v) for v in value)
        return [Shape(points=[(x, y)], labels=[""])]
    if kind == "image_landmarks":
        points = [(float(p[0]), float(p[1])) for p in value]
        labels = list(getattr(f, "labels", None) or [])
        labels = [labels[i] if i < len(labels) else str(i) for i in range(len(points))]
        conns = [(a, b) for a, b in (getattr(f, "connections", None) or [])
                 if a < len(points) and b < len(points)]
        return [Shape(points=points, labels=labels, connections=conns)]
    raise OutputError(f"{name} ({kind}) holds no boxes, points or landmarks",
                      hint="Send it to a Text datablock or a File.")


_PALETTE = ((255, 64, 64), (64, 200, 255), (255, 210, 40), (120, 255, 90), (255, 90, 220),
            (255, 150, 40), (150, 120, 255), (40, 255, 200))


def _input_rgba8(value: Any) -> Optional[np.ndarray]:
    if value is None:
        return None
    if isinstance(value, PreparedImage):
        value = value.array
    if isinstance(value, codecs.FileValue):
        value = codecs.decode_image_bytes(value.read_bytes(), "input")
    arr = codecs.image_array(value, "input image")
    return codecs.convert_channels(codecs.to_bit_depth(arr, 8), 4)


def draw_overlay(base: np.ndarray, shapes: list[Shape]) -> np.ndarray:
    """Boxes, connections and points drawn over an HxWx4 uint8 image (a copy)."""
    from PIL import Image, ImageDraw
    h, w = base.shape[:2]
    im = Image.fromarray(np.ascontiguousarray(base), "RGBA")
    draw = ImageDraw.Draw(im)
    width = max(2, round(min(w, h) / 200))
    radius = max(2, round(min(w, h) / 120))
    for k, shape in enumerate(shapes):
        colour = _PALETTE[k % len(_PALETTE)] + (255,)

        def px(p):
            return (p[0] * (w - 1), p[1] * (h - 1))
        for x0, y0, x1, y1 in shape.boxes:
            a, b = px((min(x0, x1), min(y0, y1))), px((max(x0, x1), max(y0, y1)))
            draw.rectangle([a, b], outline=colour, width=width)
        for i, j in shape.connections:
            draw.line([px(shape.points[i]), px(shape.points[j])], fill=colour, width=width)
        for p in shape.points:
            x, y = px(p)
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour,
                         outline=(0, 0, 0, 255))
    return np.asarray(im).copy()


def blend_segmentation(base: np.ndarray, f, ids: np.ndarray, opacity: float = 0.5):
    """Label colours blended over an HxWx4 uint8 image; the default (background) label
    is left clear."""
    ids = codecs.segmentation_ids(f, ids)
    h, w = base.shape[:2]
    if ids.shape != (h, w):  # nearest neighbour onto the input's size
        ys = (np.arange(h) * ids.shape[0] // h).clip(0, ids.shape[0] - 1)
        xs = (np.arange(w) * ids.shape[1] // w).clip(0, ids.shape[1] - 1)
        ids = ids[ys][:, xs]
    colours = codecs.label_colors(f)
    known = codecs.label_ids(f)
    background = known.get(f.default_label) if f.default_label else None
    out = base.copy()
    rgb = out[..., :3].astype(np.float32)
    for label, i in known.items():
        if i == background:
            continue
        mask = ids == i
        if mask.any():
            rgb[mask] = rgb[mask] * (1 - opacity) + np.float32(colours[label]) * opacity
    out[..., :3] = np.rint(rgb).astype(np.uint8)
    return out


def _to_overlay(w: _Write) -> list[Applied]:
    base = _input_rgba8(w.run.input_image)
    note = ""
    ftype = getattr(w.field, "type", None)
    if ftype == "segmentation":
        ids = _seg_ids(w)
        if base is None:
            base = np.zeros(ids.shape + (4,), np.uint8)
            base[..., 3] = 255
            note = " (no input image: drawn over black)"
        pixels = blend_segmentation(base, w.field, ids)
        count = len(np.unique(ids))
        what = f"{count} labels"
    else:
        shapes = shapes_of(w.field, w.value, w.output)
        if base is None:
            base = np.full((512, 512, 4), 40, np.uint8)
            base[..., 3] = 255
            note = " (no input image: drawn on a 512x512 canvas)"
        pixels = draw_overlay(base, shapes)
        what = f"{sum(len(s.points) for s in shapes)} points, " \
               f"{sum(len(s.boxes) for s in shapes)} boxes"
    name = w.target.name or f"{w.run.model} {w.output} overlay"
    image = _write_image(PreparedImage(pixels), name, w.target)
    image.use_fake_user = True
    _stamp(image, w.record)
    show_in_image_editor(image)
    return [Applied(w.output, "OVERLAY", image.name, "overlay",
                    f"{image.name}: {what}{note}")]


def _placement(w: _Write, scene):
    """(root matrix, map (x, y) -> local Vector, unit size, note)."""
    from mathutils import Matrix, Vector
    cam = bpy.data.objects.get(w.run.camera) if w.run.camera else None
    if cam is not None and cam.type == "CAMERA":
        # The evaluated camera: its matrix as drawn and rendered (the depsgraph is
        # current after the render the input came from; else this evaluates it).
        cam = cam.evaluated_get(bpy.context.evaluated_depsgraph_get())
        tr, br, bl, tl = (Vector(v) for v in cam.data.view_frame(scene=scene))
        right, down = tr - tl, bl - tl

        def local(p):
            return tl + right * p[0] + down * p[1]
        return cam.matrix_world.copy(), local, down.length, f" (in the view of {cam.name})"
    aspect = 1.0
    base = w.run.input_image
    if isinstance(base, PreparedImage):
        base = base.array
    if isinstance(base, np.ndarray) and base.ndim >= 2 and base.shape[0]:
        aspect = base.shape[1] / base.shape[0]
    note = " (no camera: on the XZ plane, 1 unit high)"
    if w.run.camera:
        note = f" (camera {w.run.camera!r} not found: on the XZ plane)"

    def local(p):
        return Vector(((p[0] - 0.5) * aspect, 0.0, 0.5 - p[1]))
    return Matrix.Identity(4), local, 1.0, note


def _to_objects(w: _Write) -> list[Applied]:
    scene = _scene(w.run)
    shapes = shapes_of(w.field, w.value, w.output)
    matrix, local, unit, note = _placement(w, scene)
    coll = scene.collection
    stamp = json.dumps(w.record, sort_keys=True)
    root_name = w.name + (f" {w.run.run_id[:8]}" if w.run.run_id and not w.target.name
                          else "")
    root = bpy.data.objects.new(_id_name(root_name), None)
    root.empty_display_type = "PLAIN_AXES"
    root.empty_display_size = unit * 0.1
    root.matrix_world = matrix
    root[PROP] = stamp
    coll.objects.link(root)
    made = 1
    many = len(shapes) > 1
    for k, shape in enumerate(shapes):
        prefix = f"{k + 1} " if many else ""
        for i, (p, label) in enumerate(zip(shape.points, shape.labels)):
            empty = bpy.data.objects.new(_id_name(prefix + (label or f"point {i}")), None)
            empty.empty_display_type = "SPHERE"
            empty.empty_display_size = unit * 0.01
            empty.parent = root
            empty.location = local(p)
            empty[PROP] = stamp
            empty["runway_label"] = label
            coll.objects.link(empty)
            made += 1
        if shape.connections:
            mesh = bpy.data.meshes.new(_id_name(f"{prefix}{w.output} connections"))
            mesh.from_pydata([tuple(local(p)) for p in shape.points],
                             [tuple(c) for c in shape.connections], [])
            obj = bpy.data.objects.new(mesh.name, mesh)
            obj.parent = root
            obj[PROP] = stamp
            coll.objects.link(obj)
            made += 1
        for j, (x0, y0, x1, y1) in enumerate(shape.boxes):
            corners = [local((x0, y0)), local((x1, y0)), local((x1, y1)), local((x0, y1))]
            mesh = bpy.data.meshes.new(_id_name(f"{prefix}box"))
            mesh.from_pydata([tuple(c) for c in corners], [(0, 1), (1, 2), (2, 3), (3, 0)],
                             [])
            obj = bpy.data.objects.new(mesh.name, mesh)
            obj.parent = root
            obj[PROP] = stamp
            coll.objects.link(obj)
            made += 1
    return [Applied(w.output, "OBJECTS", root.name, "objects",
                    f"{root.name}: {made} objects{note}")]


_WRITERS = {
    "IMAGE_EDITOR": _to_image_editor,
    "TEXTURE": _to_texture,
    "STRIP": _to_strip,
    "FILE": _to_file,
    "TEXT": _to_text,
    "OVERLAY": _to_overlay,
    "OBJECTS": _to_objects,
}


# --------------------------------------------------------------------------- saving

@bpy.app.handlers.persistent
def pack_results(*_args) -> None:
    """save_pre: pack every result image whose pixels live only in memory (generated, or
    changed in place by a replace), so the .blend keeps them. Packing costs what
    encoding costs (177 ms for a 1080p PNG): paid when saving, not when applying."""
    for image in bpy.data.images:
        if image.library is not None or image.get(PROP) is None:
            continue
        if image.is_dirty or (image.source == "GENERATED" and image.packed_file is None):
            try:
                image.pack()
            except RuntimeError as e:  # a save must go on; say what was not kept
                print(f"Runway: could not pack the result image {image.name!r}: {e}",
                      flush=True)


def ensure_save_handler() -> None:
    """Install ``pack_results`` once (an add-on reload leaves older copies: replaced)."""
    handlers = bpy.app.handlers.save_pre
    for h in list(handlers):
        if getattr(h, "__name__", "") == "pack_results" and h is not pack_results and \
                getattr(h, "__module__", "") == __name__:
            handlers.remove(h)
    if pack_results not in handlers:
        handlers.append(pack_results)


def register() -> None:
    ensure_save_handler()


def unregister() -> None:
    handlers = bpy.app.handlers.save_pre
    for h in list(handlers):
        if getattr(h, "__name__", "") == "pack_results" and \
                getattr(h, "__module__", "") == __name__:
            handlers.remove(h)
