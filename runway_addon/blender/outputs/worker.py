"""Worker-side preparation of results (touches no bpy): image files decoded into the
flat, bottom-up float32 RGBA buffers ``foreach_set`` takes."""
from __future__ import annotations

import mimetypes
import os
import re
from typing import Any, Optional

import numpy as np

from ...core import codecs
from ...core.errors import RunwayError
from .targets import AUDIO_EXTS, DATA_WORDS, IMAGE_EXTS, PreparedImage, VIDEO_EXTS


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
    prepared = as_prepared(name, f, value)
    if prepared is None:
        return value
    prepared.blender_pixels(_auto_linear(prepared))
    return prepared


def _auto_linear(img: PreparedImage) -> bool:
    return img.is_float and not img.data


def file_kind(value: codecs.FileValue) -> str:
    mime = (value.mime or mimetypes.guess_type(value.name or "")[0] or "").lower()
    ext = os.path.splitext(value.name or value.path or "")[1].lower()
    if "exr" in mime or ext == ".exr":
        return "exr"
    if mime.startswith("image/") or ext in IMAGE_EXTS:
        return "image"
    if mime.startswith("audio/") or ext in AUDIO_EXTS:
        return "audio"
    if mime.startswith("video/") or ext in VIDEO_EXTS:
        return "video"
    if mime.startswith("text/") or mime == "application/json" or ext in (".txt", ".json"):
        return "text"
    return "file"


def _is_data_name(output: str) -> bool:
    words = set(re.split(r"[^a-z0-9]+", output.lower()))
    return bool(words & DATA_WORDS)


def as_file(f, value: Any) -> Any:
    """A file output given as a local path (Runway protocol) -> FileValue."""
    if getattr(f, "type", None) == "file" and isinstance(value, str) and os.path.isfile(value):
        return codecs.FileValue(name=os.path.basename(value), path=value,
                                mime=mimetypes.guess_type(value)[0])
    return value


def as_prepared(name: str, f, value: Any) -> Optional[PreparedImage]:
    """An image-like value -> PreparedImage; None when it is not one Pillow can read
    (EXR files go through Blender in ``apply``)."""
    if isinstance(value, PreparedImage):
        return value
    kind = getattr(f, "type", None)
    value = as_file(f, value)
    if kind == "segmentation" and isinstance(value, np.ndarray):
        ids = codecs.segmentation_ids(f, value)
        return PreparedImage(_label_colour_map(f, ids), data=True, ids=ids)
    if isinstance(value, codecs.FileValue):
        if file_kind(value) != "image":
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
