"""Results written as files: the path template, never overwriting, sidecars."""
from __future__ import annotations

import json
import mimetypes
import os
import re
import tempfile
from typing import Optional

import numpy as np

import bpy

from ...core import codecs
from ...core.jobfile import OUTPUT_FORMAT, OUTPUT_PATH
from .images import image_from_bytes
from .targets import Applied, OutputError, PreparedImage, RunInfo, Write
from .text import segment_ids, text_of
from .worker import as_file, as_prepared, file_kind


_EXT = {"PNG8": ".png", "PNG16": ".png", "EXR": ".exr", "JPEG": ".jpg"}
_PATH_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def result_path(template: str, run: RunInfo, output: str) -> tuple[str, bool]:
    """The template filled in and made absolute, without extension; True when it lies in
    the temporary folder because the .blend is not saved yet ('//' has no folder)."""
    values = {k: _PATH_UNSAFE.sub("_", str(v)) for k, v in
              (("model", run.model), ("output", output), ("run", run.run_id or "run"))}
    try:
        filled = (template or OUTPUT_PATH).format(
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


def write_result_file(w: Write, *, fmt: Optional[str] = None) -> tuple[str, str, str]:
    """Write the output to its file (+ sidecar). Returns (path, kind, note); kind is
    image, audio, video, text or file."""
    fmt = (fmt or w.target.file_format or OUTPUT_FORMAT).upper()
    base, in_temp = result_path(w.target.path, w.run, w.output)
    value = as_file(w.field, w.value)
    note = ""
    kind = "file"
    exr_bytes = None
    img = None
    if isinstance(value, codecs.FileValue):
        kind = file_kind(value)
        if kind == "exr":
            kind = "image"
            if fmt in ("EXR", "ASIS"):
                exr_bytes = value.read_bytes()
            else:
                img = _prepared_from_exr(value)
        elif kind == "image":
            img = as_prepared(w.output, w.field, value)
    elif isinstance(value, PreparedImage) or (
            isinstance(value, np.ndarray) and value.ndim >= 2) or \
            type(value).__module__.startswith("PIL"):
        img = as_prepared(w.output, w.field, value)
        kind = "image"
    if exr_bytes is not None:
        data, ext = exr_bytes, ".exr"
    elif img is not None:
        kind = "image"
        if getattr(w.field, "type", None) == "segmentation" and fmt == "ASIS":
            ids = segment_ids(w)
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
        text, is_json = text_of(w)
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
    temp = image_from_bytes("runway-exr-read", value.read_bytes())
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


def to_file(w: Write) -> list[Applied]:
    path, kind, note = write_result_file(w)
    return [Applied(w.output, "FILE", path, "file", f"{path}{note}")]
