"""Results as Blender images: colour spaces, EXRs as sent, the Image Editor target."""
from __future__ import annotations

import re
from typing import Any

import numpy as np

import bpy

from ...core import codecs
from ..images import DATA_COLORSPACES as _DATA_COLORSPACES
from .record import stamp
from .targets import Applied, id_name, OutputError, PreparedImage, Target, Write
from .worker import as_file, as_prepared, file_kind


def image_values(w: Write) -> list[tuple[str, Any]]:
    """(name, PreparedImage | EXR FileValue) for an image-like output; lists get numbers."""
    value = w.value
    if isinstance(value, list) and getattr(w.field, "type", None) == "array":
        item = getattr(w.field, "item", None)
        return [(f"{w.name} {i + 1}", _image_of(w.output, item, v))
                for i, v in enumerate(value)]
    return [(w.name, _image_of(w.output, w.field, value))]


def _image_of(output: str, f, value: Any):
    value = as_file(f, value)
    if isinstance(value, codecs.FileValue):
        kind = file_kind(value)
        if kind == "exr":
            return value
        if kind != "image":
            raise OutputError(f"{output} is {kind} ({value.name}), not an image",
                              hint=hint_for_kind(kind))
    prepared = as_prepared(output, f, value)
    if prepared is None:
        raise OutputError(f"{output} is {codecs.describe(value)}, not an image",
                          hint="Send this output to a Text datablock or a File.")
    return prepared


def hint_for_kind(kind: str) -> str:
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


def write_image(img, name: str, target: Target, *, data_default: bool = False):
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
        image = bpy.data.images.new(id_name(name), width=w, height=h, alpha=True,
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
        temp = image_from_bytes("runway-temp", data)
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
    image = image_from_bytes(name, data)
    if target.colorspace:
        image.colorspace_settings.name = target.colorspace
    return image


def image_from_bytes(name: str, data: bytes):
    """An image packed from a file's bytes (an EXR), decoded by Blender when used."""
    # Made as a float image: it keeps the linear colour space a byte image would have
    # as sRGB (an EXR read as sRGB is "linearised" a second time: 0.25 became 0.05).
    image = bpy.data.images.new(id_name(name), width=1, height=1, float_buffer=True)
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


def to_image_editor(w: Write) -> list[Applied]:
    out = []
    for name, img in image_values(w):
        image = write_image(img, name, w.target)
        image.use_fake_user = True  # kept in the .blend even while nothing uses it
        stamp(image, w.record)
        shown = show_in_image_editor(image)
        out.append(Applied(w.output, "IMAGE_EDITOR", image.name, "image",
                           f"{image.name}: {_size(image)}"
                           + ("" if shown else " (no Image Editor is open to show it)")))
    return out


def _size(image) -> str:
    w, h = image.size
    return f"{w}x{h} {'float' if image.is_float else '8-bit'} " \
           f"{image.colorspace_settings.name}"
