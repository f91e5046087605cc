"""Per-type encoders and decoders: a Python value <-> its wire form, for each field type."""
from __future__ import annotations

import colorsys
import math
import mimetypes
import os
import re
import uuid
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

from ..errors import CodecError, RunwayError
from .naming import FileValue, _fail, _field_extension, describe, safe_filename, write_unique
from .pixels import _pil_to_array, check_pixels, convert_channels, image_array, to_bit_depth
from .png import _normalise_decoded, decode_image_bytes, encode_image_bytes
from .transport import WireContext, _inside, _read_server_path, _send_bytes, _wire_bytes

def _image_format(field, ctx: WireContext) -> str:
    fmt = (ctx.image_format or getattr(field, "default_format", None) or "PNG")
    fmt = str(fmt).upper()
    fmt = "JPEG" if fmt == "JPG" else fmt
    if fmt not in ("PNG", "JPEG"):
        raise _fail(field.name, f"image format {fmt!r} is not PNG or JPEG")
    return fmt


def _encode_image(field, value: Any, ctx: WireContext, name: str) -> str:
    img = convert_channels(image_array(value, name), field.channels)
    fmt = _image_format(field, ctx)
    if fmt == "JPEG" and field.channels == 4:
        fmt = "PNG"  # JPEG has no alpha and this field wants it
    depth = ctx.image_bit_depth or (16 if img.dtype == np.uint16 else 8)
    if fmt == "JPEG":
        depth = 8
    img = to_bit_depth(img, depth)
    try:
        data = encode_image_bytes(img, fmt, compress_level=ctx.png_compress_level,
                                  quality=ctx.jpeg_quality)
    except CodecError as e:
        raise _fail(name, e.message) from e
    except Exception as e:
        raise _fail(name, f"cannot encode the image as {fmt}: {e}") from e
    mime, suffix = ("image/png", ".png") if fmt == "PNG" else ("image/jpeg", ".jpg")
    return _send_bytes(data, mime, suffix, ctx, name)


def _decode_image(field, wire: Any, ctx: WireContext, name: str) -> np.ndarray:
    if isinstance(wire, (np.ndarray, Image.Image)):  # a server library handed back pixels
        img = image_array(wire, name)
        check_pixels(img.shape[1], img.shape[0], name)
        return _normalise_decoded(img)
    data, _, _ = _wire_bytes(wire, ctx, name)
    return decode_image_bytes(data, name)


# --------------------------------------------------------------------------- segmentation

def label_ids(field) -> dict[str, int]:
    """label -> id; the SDK numbers labels in order when no map is given."""
    return dict(field.label_to_id) or {label: i for i, label in enumerate(field.labels)}


def label_colors(field) -> dict[str, tuple[int, int, int]]:
    """label -> RGB; labels without a colour get a fixed, well spread one."""
    colours = {}
    for label, i in label_ids(field).items():
        if label in field.label_to_color:
            colours[label] = tuple(int(v) for v in field.label_to_color[label])[:3]
        else:  # golden-ratio hue walk: distinct, deterministic colours
            r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.7, 0.95)
            colours[label] = (round(r * 255), round(g * 255), round(b * 255))
    return colours


def colors_to_label_ids(rgb: np.ndarray, field) -> np.ndarray:
    """HxWx3 colour map -> HxW label ids, each pixel taking the label of the NEAREST colour.
    Distances are computed once per distinct colour, not per pixel."""
    ids = label_ids(field)
    colours = label_colors(field)
    labels = list(ids)
    palette = np.array([colours[label] for label in labels], dtype=np.int32)
    label_id = np.array([ids[label] for label in labels], dtype=np.int64)
    rgb = np.ascontiguousarray(rgb[..., :3]).astype(np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    unique, inverse = np.unique(packed.ravel(), return_inverse=True)
    ucol = np.stack([(unique >> 16) & 255, (unique >> 8) & 255, unique & 255], axis=1)
    dist = ((ucol[:, None, :].astype(np.int64) - palette[None, :, :]) ** 2).sum(axis=2)
    nearest = label_id[np.argmin(dist, axis=1)]
    return nearest[inverse].reshape(packed.shape).astype(_id_dtype(field))


def _id_dtype(field) -> type:
    top = max(label_ids(field).values(), default=0)
    return np.uint8 if top <= 255 else (np.uint16 if top <= 65535 else np.int32)


def segmentation_ids(field, value: Any, name: Optional[str] = None) -> np.ndarray:
    """A segmentation value -> HxW label ids. Integer HxW/HxWx1 arrays (or PIL L/I images)
    are ids; HxWx3/HxWx4 uint8 arrays (or PIL RGB/RGBA) are colour maps."""
    name = name or field.name
    if isinstance(value, Image.Image):
        value = _pil_to_array(value, name)
    if not isinstance(value, np.ndarray):
        raise _fail(name, f"{describe(value)} is not a label-id array")
    if value.ndim == 3 and value.shape[2] == 1:
        value = value[:, :, 0]
    if value.ndim == 3 and value.shape[2] in (3, 4) and value.dtype == np.uint8:
        return colors_to_label_ids(value, field)
    if value.ndim != 2 or value.dtype.kind not in "ui" or value.size == 0:
        raise _fail(name, f"{describe(value)} is not an HxW integer label-id array")
    return value


def _encode_segmentation(field, value: Any, ctx: WireContext, name: str) -> str:
    ids = segmentation_ids(field, value, name)
    known = label_ids(field)
    present = np.unique(ids)
    unknown = np.setdiff1d(present, np.array(sorted(known.values()), dtype=np.int64))
    if unknown.size:
        raise _fail(name, f"label ids {describe(unknown.tolist())} are not among the field's "
                          f"labels {describe(known)}")
    if ctx.segmentation_wire == "colors" or int(present.max()) > 255:
        colours = label_colors(field)
        lut = np.zeros((int(present.max()) + 1, 3), dtype=np.uint8)
        for label, i in known.items():
            if i <= present.max():
                lut[i] = colours[label]
        img = lut[ids]
    else:
        img = ids.astype(np.uint8)[:, :, None]
    data = encode_image_bytes(img, "PNG", compress_level=ctx.png_compress_level)
    return _send_bytes(data, "image/png", ".png", ctx, name)


def _decode_segmentation(field, wire: Any, ctx: WireContext, name: str) -> np.ndarray:
    if isinstance(wire, (np.ndarray, Image.Image)):
        return segmentation_ids(field, wire, name)
    data, _, _ = _wire_bytes(wire, ctx, name)
    img = decode_image_bytes(data, name)
    if img.shape[2] == 1:
        return img[:, :, 0].astype(_id_dtype(field))
    return colors_to_label_ids(to_bit_depth(img, 8), field)


# --------------------------------------------------------------------------- scalars

def _number(value: Any, name: str, *, integer: bool = False, finite: bool = True):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise _fail(name, f"{describe(value)} is not a number")
    if isinstance(value, np.number):
        value = value.item()
    if isinstance(value, complex):
        raise _fail(name, f"{describe(value)} is not a real number")
    if integer:
        if isinstance(value, float):
            if not math.isfinite(value) or not value.is_integer():
                raise _fail(name, f"{describe(value)} is not a whole number")
            value = int(value)
        return value
    try:
        out = float(value)
    except OverflowError:
        raise _fail(name, f"{describe(value)} is too large for a number") from None
    if finite and not math.isfinite(out):
        raise _fail(name, f"{describe(value)} is not a finite number")
    return out


def _numbers(value: Any, name: str, length: Optional[int] = None) -> list[float]:
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise _fail(name, f"{describe(value)} is not a flat list of numbers")
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise _fail(name, f"{describe(value)} is not a list of numbers")
    if length is not None and len(value) != length:
        raise _fail(name, f"{describe(value)} has {len(value)} numbers, expected {length}")
    return [_number(v, f"{name}[{i}]") for i, v in enumerate(value)]


def _normalised(value: Any, name: str, length: int) -> list[float]:
    out = _numbers(value, name, length)
    for i, v in enumerate(out):
        if not 0.0 <= v <= 1.0:
            raise _fail(name, f"{name}[{i}] = {v!r} is not normalised to 0..1")
    return out


def _box(value: Any, name: str, *, strict: bool) -> list[float]:
    box = _normalised(value, name, 4) if strict else _numbers(value, name, 4)
    if strict and not (box[0] < box[2] and box[1] < box[3]):
        raise _fail(name, f"{describe(box)} needs xmin < xmax and ymin < ymax")
    return box


def _landmarks(field, value: Any, name: str, *, strict: bool) -> list[list[float]]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise _fail(name, f"{describe(value)} is not a list of [x, y] points")
    if strict and field.length and len(value) != field.length:
        raise _fail(name, f"{len(value)} landmarks, expected {field.length}")
    conv = _normalised if strict else (lambda v, n, k: _numbers(v, n, k))
    return [conv(p, f"{name}[{i}]", 2) for i, p in enumerate(value)]


def _jsonable(value: Any, depth: int = 0) -> Any:
    """numpy scalars/arrays inside an ``any`` value -> plain JSON types."""
    if depth > 50:
        return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v, depth + 1) for k, v in value.items()}
    return value


def _choice(field, value: Any, name: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    for choice in field.choices:
        same_kind = isinstance(choice, str) == isinstance(value, str) and \
            not isinstance(value, bool)
        if same_kind and choice == value:
            return choice
    raise _fail(name, f"{describe(value)} is not one of {describe(field.choices, 80)}")


# --------------------------------------------------------------------------- files

def _encode_file(field, value: Any, ctx: WireContext, name: str) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        # Bare bytes have no name: take the extension the field asks for.
        value = FileValue(name=safe_filename(safe_filename(name, "input")
                                             + _field_extension(field)), data=bytes(value))
    if isinstance(value, str):
        if ctx.files_as_paths or re.match(r"(?i)(https?|ftp|data):", value):
            return value  # a path the server opens (inside its container) or a URL
        if not value:
            raise _fail(name, "the file path is empty")
        value = FileValue(name=os.path.basename(value), path=value)
    if not isinstance(value, FileValue):
        raise _fail(name, f"{describe(value)} is not a file path or FileValue")
    if field.is_directory and not ctx.directories:
        raise _fail(name, "this model's file inputs cannot be directories")
    if value.data is None and value.path is not None:
        if ctx.files_as_paths:
            return value.path
        if not os.path.isfile(value.path):
            raise _fail(name, f"file {value.path!r} does not exist")
        if ctx.shared_dir and _inside(value.path, ctx.shared_dir):
            return os.path.realpath(value.path)  # already where the server can see it
    if ctx.files_as_paths and not ctx.shared_dir:
        raise _fail(name, "this model takes a path or URL here, not file contents "
                          "(there is no shared folder to put them in)")
    data = value.read_bytes()
    mime = value.mime or mimetypes.guess_type(value.name)[0] or "application/octet-stream"
    if ctx.files_as_paths:  # with a shared folder: a path the server can open
        return write_unique(ctx.shared_dir, f"{uuid.uuid4().hex[:12]}-{value.name}", data)
    return _send_bytes(data, mime, "", ctx, name, filename=value.name)


def _decode_file(field, wire: Any, ctx: WireContext, name: str) -> Any:
    if ctx.files_as_paths and isinstance(wire, str) and not wire.startswith("data:"):
        return wire  # a path inside the server's container or a URL, passed through
    if isinstance(wire, str) and os.path.isabs(wire) and not wire.startswith("data:"):
        if not ctx.shared_dir or not _inside(wire, ctx.shared_dir):
            _read_server_path(wire, ctx, name)  # raises with the reason
        if not os.path.isfile(wire):
            raise _fail(name, f"the server's file {describe(wire)} does not exist")
        return FileValue(name=safe_filename(os.path.basename(wire), name),
                         path=os.path.realpath(wire), mime=mimetypes.guess_type(wire)[0])
    if isinstance(wire, str) and not re.match(r"(?i)\s*(data|https?|file):", wire):
        raise _fail(name, f"{describe(wire)} is not a data URI, URL or absolute path")
    data, mime, wire_name = _wire_bytes(wire, ctx, name)
    if wire_name:
        fname = safe_filename(wire_name, safe_filename(name, "output"))
    else:
        ext = (mimetypes.guess_extension(mime) or "") if mime else ""
        fname = safe_filename(safe_filename(name, "output") + ext)
    return FileValue(name=fname, data=data, mime=mime or mimetypes.guess_type(fname)[0])


# --------------------------------------------------------------------------- dispatch

def encode_value(field, value: Any, ctx: Optional[WireContext] = None) -> Any:
    """A Python value -> its wire form for ``field``. Raises CodecError."""
    return _encode(field, value, ctx or WireContext(), field.name)


def decode_value(field, wire: Any, ctx: Optional[WireContext] = None) -> Any:
    """A wire value -> its Python form for ``field``. Raises CodecError.
    Decoding is strict about shapes and lenient about ranges (a model's 1.0001 is kept)."""
    return _decode(field, wire, ctx or WireContext(), field.name)


def _guard(fn, field, value, ctx, name):
    try:
        return fn(field, value, ctx, name)
    except RunwayError:
        raise
    except (MemoryError, RecursionError) as e:
        raise _fail(name, f"value too large or too deep: {type(e).__name__}") from e
    except Exception as e:  # garbage must only ever become a CodecError
        raise _fail(name, f"cannot convert {describe(value)}: {type(e).__name__}: {e}") from e


def _encode(field, value, ctx, name):
    return _guard(_ENCODERS.get(field.type, _unknown), field, value, ctx, name)


def _decode(field, wire, ctx, name):
    return _guard(_DECODERS.get(field.type, _unknown), field, wire, ctx, name)


def _unknown(field, value, ctx, name):
    raise _fail(name, f"unknown field type {getattr(field, 'type', None)!r}")


def _text(field, value, ctx, name):
    if not isinstance(value, str):
        raise _fail(name, f"{describe(value)} is not text")
    return value


def _secret(field, value, ctx, name):
    if hasattr(value, "get_secret_value"):  # pydantic SecretStr and the like
        value = value.get_secret_value()
    if not isinstance(value, str):
        raise _fail(name, f"the secret is a {type(value).__name__}, not text")
    return value


def _boolean(field, value, ctx, name):
    if not isinstance(value, (bool, np.bool_)):
        raise _fail(name, f"{describe(value)} is not true or false")
    return bool(value)


def _encode_array(field, value, ctx, name):
    if isinstance(value, np.ndarray) and field.item.type not in ("image", "segmentation"):
        value = list(value)
    if not isinstance(value, (list, tuple)):
        raise _fail(name, f"{describe(value)} is not a list")
    return [_encode(field.item, v, ctx, f"{name}[{i}]") for i, v in enumerate(value)]


def _decode_array(field, wire, ctx, name):
    if not isinstance(wire, (list, tuple)):
        raise _fail(name, f"{describe(wire)} is not a list")
    items = [_decode(field.item, v, ctx, f"{name}[{i}]") for i, v in enumerate(wire)]
    if field.concatenate and all(isinstance(v, str) for v in items):
        return "".join(items)  # a Cog text stream: the tokens make one text
    return items


_ENCODERS: dict[str, Callable] = {
    "image": _encode_image,
    "text": _text,
    "number": lambda f, v, c, n: _number(v, n),
    "integer": lambda f, v, c, n: _number(v, n, integer=True),
    "boolean": _boolean,
    "category": lambda f, v, c, n: _choice(f, v, n),
    "vector": lambda f, v, c, n: _numbers(v, n, f.length),
    "array": _encode_array,
    "file": _encode_file,
    "segmentation": _encode_segmentation,
    "image_point": lambda f, v, c, n: _normalised(v, n, 2),
    "image_bounding_box": lambda f, v, c, n: _box(v, n, strict=True),
    "image_landmarks": lambda f, v, c, n: _landmarks(f, v, n, strict=True),
    "secret": _secret,
    "any": lambda f, v, c, n: _jsonable(v),
}

_DECODERS: dict[str, Callable] = {
    "image": _decode_image,
    "text": _text,
    "number": lambda f, v, c, n: _number(v, n, finite=False),
    "integer": lambda f, v, c, n: _number(v, n, integer=True),
    "boolean": _boolean,
    "category": lambda f, v, c, n: v.item() if isinstance(v, np.generic) else v,
    "vector": lambda f, v, c, n: _numbers(v, n),
    "array": _decode_array,
    "file": _decode_file,
    "segmentation": _decode_segmentation,
    "image_point": lambda f, v, c, n: _numbers(v, n, 2),
    "image_bounding_box": lambda f, v, c, n: _box(v, n, strict=False),
    "image_landmarks": lambda f, v, c, n: _landmarks(f, v, n, strict=False),
    "secret": _secret,
    "any": lambda f, v, c, n: v,
}
