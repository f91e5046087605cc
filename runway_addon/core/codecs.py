"""Python values <-> wire values, for every field type, in one place.

Python side (what the rest of the add-on hands in and gets back):

- image: numpy array HxW, HxWx1, HxWx3 or HxWx4 (uint8, uint16, or float32 in 0..1),
  top-down rows, sRGB-encoded display values; or a PIL image. Decoded images are
  HxWxC top-down uint8 or uint16 arrays (the wire's bit depth), C in 1, 3, 4.
- segmentation: HxW integer label-id array (an RGB colour map is accepted on input).
- file: ``FileValue`` (or a local path string when encoding).
- points, boxes, landmarks, vectors: lists of floats.

This module is also the only place that knows Blender images are bottom-up, linear
float RGBA (``image_from_blender`` / ``image_to_blender``). Numpy and Pillow only.
Every failure is a ``CodecError`` naming the field.
"""
from __future__ import annotations

import base64
import binascii
import colorsys
import io
import math
import mimetypes
import os
import re
import struct
import unicodedata
import uuid
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import unquote, unquote_to_bytes, urlsplit

import numpy as np
from PIL import Image

from .errors import CodecError, RunwayError

# Measured with bench/bench_codecs.py: level 0 (stored rows, no deflate work) gives the
# fastest encode + decode for 1080p and 4K RGBA frames, as a data URI and as a shared file,
# at about 1.8x the bytes of level 1. Use level 1 (Sub filter + run-length deflate) where
# bytes cost more than CPU, e.g. a remote server.
DEFAULT_PNG_COMPRESS_LEVEL = 0
DEFAULT_JPEG_QUALITY = 95
# File names: at most this many bytes in UTF-8 (the limit of ext4, APFS, NTFS
# components), extension kept. MAX_NAME_LENGTH is the same limit (kept for callers).
MAX_NAME_BYTES = 255
MAX_NAME_LENGTH = MAX_NAME_BYTES
# Refuse to decode more than this many pixels (a decompression bomb guard; 16k x 16k).
MAX_PIXELS = 16384 * 16384

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class WireContext:
    """How values travel for one request."""

    protocol: str = "runway"  # "runway" | "cog"
    image_format: Optional[str] = None  # "PNG" | "JPEG"; None: field default, else PNG
    # Cog only: write images/files here and send bare paths (no base64).
    shared_dir: Optional[str] = None
    fetch: Optional[Callable[[str], bytes]] = None  # downloads http(s) URLs in outputs
    png_compress_level: int = DEFAULT_PNG_COMPRESS_LEVEL
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    # 8 or 16 forces a PNG bit depth; None: 16 for uint16 values, 8 otherwise.
    image_bit_depth: Optional[int] = None
    # Segmentation inputs: "ids" (1-channel label-id PNG, exact) or "colors" (RGB map).
    segmentation_wire: str = "ids"


@dataclass(repr=False)
class FileValue:
    """A file: its bytes in memory (``data``) or on disk (``path``)."""

    name: str
    data: Optional[bytes] = None
    path: Optional[str] = None
    mime: Optional[str] = None

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            raise CodecError(f"file {self.name!r} has neither data nor a path")
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except OSError as e:
            raise CodecError(f"cannot read file {self.path!r}: {e.strerror or e}") from e

    def save(self, directory: str, name: Optional[str] = None) -> str:
        """Write into ``directory`` under a sanitised, not yet used name; return the path."""
        return write_unique(directory, safe_filename(name or self.name), self.read_bytes())

    def __repr__(self) -> str:
        where = f"{len(self.data)} bytes" if self.data is not None else f"path={self.path!r}"
        return f"FileValue({self.name!r}, {where}, mime={self.mime!r})"


# --------------------------------------------------------------------------- names

_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
             *(f"LPT{i}" for i in range(1, 10))}
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')


def safe_filename(name: Any, default: str = "file") -> str:
    """A file name safe to create on any OS, from a name a server (or anyone) chose:
    no directory parts, no "..", no control or reserved characters, at most
    MAX_NAME_LENGTH characters with the extension kept."""
    name = unicodedata.normalize("NFC", str(name)) if isinstance(name, str) else ""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_CHARS.sub("_", name)
    name = re.sub(r"\.{2,}", ".", name).strip(" .")
    if not name:
        name = default
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if stem.upper() in _RESERVED:
        name = "_" + name
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        ext = _cut_bytes(ext, 16) if len(ext.encode("utf-8")) <= 16 else ""
        keep = MAX_NAME_BYTES - (len(ext.encode("utf-8")) + 1 if ext else 0)
        base = name[:-(len(ext) + 1)] if ext and name.endswith("." + ext) else name
        name = (_cut_bytes(base, keep).rstrip(" .") or default) + ("." + ext if ext else "")
    return name


def _cut_bytes(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that is at most ``limit`` bytes in UTF-8,
    never splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def _field_extension(field) -> str:
    """The extension a file field asks for: Runway's ``extension``, else the first
    ``.ext`` or MIME type in a Cog ``accept`` list ("" when it says nothing)."""
    ext = getattr(field, "extension", None)
    if isinstance(ext, str) and ext.strip(". "):
        return "." + ext.strip().lstrip(".")[:16]
    accept = getattr(field, "accept", None) or ""
    for part in str(accept).split(","):
        part = part.strip().lower()
        if part.startswith(".") and len(part) > 1:
            return part[:17]
        if "/" in part and not part.endswith("/*"):
            guessed = mimetypes.guess_extension(part)
            if guessed:
                return guessed
    return ""


def write_unique(directory: str, name: str, data: bytes) -> str:
    """Create ``directory/name`` (never overwriting: a random prefix is added when taken)."""
    name = safe_filename(name)
    for attempt in range(20):
        candidate = name if attempt == 0 else safe_filename(f"{uuid.uuid4().hex[:8]}-{name}")
        path = os.path.join(directory, candidate)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o644)
        except FileExistsError:
            continue
        except OSError as e:
            raise CodecError(f"cannot write {path!r}: {e.strerror or e}") from e
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path
    raise CodecError(f"cannot find a free file name for {name!r} in {directory!r}")


# --------------------------------------------------------------------------- describing values

def describe(value: Any, limit: int = 40) -> str:
    """A short, safe description of a value for messages (never dumps big data)."""
    if isinstance(value, np.ndarray):
        return f"array {'x'.join(map(str, value.shape)) or 'scalar'} {value.dtype}"
    if isinstance(value, Image.Image):
        return f"PIL image {value.mode} {value.width}x{value.height}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"{len(value)} bytes"
    if isinstance(value, FileValue):
        return f"file {value.name!r}"
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not break an error message
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(name: str, message: str) -> CodecError:
    return CodecError(f"{name}: {message}")


# --------------------------------------------------------------------------- images: arrays

def image_array(value: Any, name: str = "image") -> np.ndarray:
    """The value as an HxWxC array (C 1..4) of dtype uint8, uint16 or float32."""
    if isinstance(value, Image.Image):
        arr = _pil_to_array(value, name)
    elif isinstance(value, np.ndarray):
        arr = value
    else:
        raise _fail(name, f"{describe(value)} is not an image (expected a numpy array "
                          "or a PIL image)")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or not 1 <= arr.shape[2] <= 4:
        raise _fail(name, f"{describe(arr)} is not an image: expected HxW, HxWx1, HxWx3 or "
                          "HxWx4")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise _fail(name, f"{describe(arr)} is empty")
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "u" and size in (1, 2):
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * np.uint8(255)
    if kind == "f":
        with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf, then clipped
            return arr.astype(np.float32, copy=False)
    raise _fail(name, f"{describe(arr)}: pixel type {arr.dtype} is not supported "
                      "(use uint8, uint16, or float32 in 0..1)")


def _pil_to_array(im: Image.Image, name: str) -> np.ndarray:
    try:
        mode = im.mode
        if mode in ("L", "LA", "RGB", "RGBA"):
            return np.asarray(im)
        if mode.startswith("I;16"):
            return np.asarray(im).astype(np.uint16)
        if mode in ("I", "F"):
            arr = np.asarray(im)
            if mode == "F" or arr.max(initial=0) <= 1:
                return arr.astype(np.float32)
            return np.clip(arr, 0, 65535).astype(np.uint16)
        if mode == "1":
            return np.asarray(im.convert("L"))
        has_alpha = "A" in mode or "a" in mode or "transparency" in im.info
        return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    except CodecError:
        raise
    except Exception as e:
        raise _fail(name, f"cannot read pixels of {describe(im)}: {e}") from e


def _full_scale(dtype: np.dtype):
    if dtype == np.uint8:
        return 255
    if dtype == np.uint16:
        return 65535
    return 1.0


def convert_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """HxWxC (C 1..4) to HxWx``channels``: grey is repeated, colour to grey uses the
    ITU-R 601 weights Pillow uses, alpha is dropped or added opaque."""
    c = img.shape[2]
    if c == channels:
        return img
    colour = img[..., :3] if c >= 3 else img[..., :1]
    alpha = img[..., c - 1:] if c in (2, 4) else None
    if channels == 1 or channels == 2:
        if colour.shape[2] == 3:
            rgb = colour.astype(np.float32)
            grey = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
            if img.dtype != np.float32:
                grey = np.rint(grey)
            colour = grey.astype(img.dtype)[..., None]
        parts = [colour]
    else:
        if colour.shape[2] == 1:
            colour = np.repeat(colour, 3, axis=2)
        parts = [colour]
    if channels in (2, 4):
        if alpha is None:
            alpha = np.full(img.shape[:2] + (1,), _full_scale(img.dtype), dtype=img.dtype)
        parts.append(alpha)
    return np.concatenate(parts, axis=2) if len(parts) > 1 else np.ascontiguousarray(parts[0])


def to_bit_depth(img: np.ndarray, depth: int) -> np.ndarray:
    """uint8 (depth 8) or uint16 (depth 16); floats are clipped to 0..1, NaN becomes 0."""
    if depth not in (8, 16):
        raise CodecError(f"bit depth {depth!r} is not 8 or 16")
    target = np.uint8 if depth == 8 else np.uint16
    if img.dtype == target:
        return img
    if img.dtype == np.uint8:  # 8 -> 16: 255 maps to 65535 exactly
        return img.astype(np.uint16) * np.uint16(257)
    if img.dtype == np.uint16:  # 16 -> 8, rounded; inverse of the line above
        return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    scale = np.float32(255 if depth == 8 else 65535)
    out = np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(out, 0.0, 1.0, out=out)
    out *= scale
    out += np.float32(0.5)
    return out.astype(target)


# --------------------------------------------------------------------------- images: bytes

def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)) & 0xFFFFFFFF))


def _png_write(img: np.ndarray, level: int) -> bytes:
    """PNG of an HxWxC uint8/uint16 array, written here rather than by Pillow because
    Pillow cannot write 16-bit colour and its adaptive filtering is slow. Level 0 stores
    the rows as they are; higher levels use the Sub filter (one vectorised subtraction)
    and zlib, with run-length matching at level 1: bench/bench_codecs.py measured that
    faster AND smaller than zlib level 1 on renders."""
    level = int(min(max(level, 0), 9))
    h, w, c = img.shape
    depth = 16 if img.dtype == np.uint16 else 8
    bpp = c * (depth // 8)
    row_bytes = w * bpp
    src = np.ascontiguousarray(img.astype(">u2", copy=False) if depth == 16 else img)
    rows = src.view(np.uint8).reshape(h, row_bytes)
    raw = np.empty((h, row_bytes + 1), dtype=np.uint8)
    if level == 0:
        raw[:, 0] = 0
        raw[:, 1:] = rows
    else:  # Sub: each byte minus the same byte of the pixel to its left, mod 256
        raw[:, 0] = 1
        raw[:, 1:bpp + 1] = rows[:, :bpp]
        np.subtract(rows[:, bpp:], rows[:, :-bpp], out=raw[:, bpp + 1:])
    strategy = zlib.Z_RLE if level == 1 else zlib.Z_DEFAULT_STRATEGY
    packer = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
    idat = packer.compress(raw.data) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, depth, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    return (_PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def encode_image_bytes(img: np.ndarray, fmt: str = "PNG", *,
                       compress_level: int = DEFAULT_PNG_COMPRESS_LEVEL,
                       quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """Encode an HxWxC uint8/uint16 array (JPEG: uint8, 1 or 3 channels)."""
    if fmt == "PNG":
        return _png_write(img, compress_level)
    if fmt == "JPEG":
        buf = io.BytesIO()
        _pil_from_array(img).save(buf, format="JPEG", quality=int(quality))
        return buf.getvalue()
    raise CodecError(f"image format {fmt!r} is not PNG or JPEG")


def _pil_from_array(img: np.ndarray) -> Image.Image:
    c = img.shape[2]
    arr = img[:, :, 0] if c == 1 else img
    return Image.fromarray(np.ascontiguousarray(arr), mode={1: "L", 2: "LA", 3: "RGB",
                                                              4: "RGBA"}[c])


def decode_image_bytes(data: bytes, name: str = "image") -> np.ndarray:
    """Any image Pillow reads -> HxWxC (C 1, 3, 4) uint8 or uint16 array, top-down.
    16-bit PNGs keep their 16 bits (Pillow would drop 8 of them for colour)."""
    if data[:8] == _PNG_SIGNATURE and len(data) > 33 and data[24] == 16:
        arr = _png_read(bytes(data), name)
        if arr is not None:
            return _normalise_decoded(arr)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise CodecError(f"{name}: image of {im.width}x{im.height} is too large")
                im.load()
                arr = _pil_to_array(im, name)
    except CodecError:
        raise
    except Exception as e:  # Pillow raises many kinds (OSError, SyntaxError, ValueError...)
        raise _fail(name, f"cannot decode the image ({describe(data)}): "
                          f"{type(e).__name__}: {e}") from e
    if arr.dtype == np.float32:  # a float TIFF and the like: best effort
        arr = to_bit_depth(arr, 16)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return _normalise_decoded(arr)


def _normalise_decoded(arr: np.ndarray) -> np.ndarray:
    if arr.shape[2] == 2:  # grey + alpha: hand out RGBA, the shape everyone handles
        arr = convert_channels(arr, 4)
    return np.ascontiguousarray(arr)


def _png_read(data: bytes, name: str) -> Optional[np.ndarray]:
    """Decode a non-interlaced 16-bit PNG exactly; None lets Pillow try (interlaced)."""
    pos, idat, ihdr = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = data[pos + 8 + length:pos + 12 + length]
        if len(body) != length or len(crc) != 4 or \
                struct.unpack(">I", crc)[0] != zlib.crc32(body, zlib.crc32(kind)) & 0xFFFFFFFF:
            raise _fail(name, "broken PNG (truncated or bad checksum)")
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if ihdr is None or not idat:
        raise _fail(name, "broken PNG (no header or no pixel data)")
    w, h, depth, colour_type, _, _, interlace = ihdr
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour_type)
    if depth != 16 or channels is None or interlace:
        return None
    if w == 0 or h == 0 or w * h > MAX_PIXELS:
        raise _fail(name, f"PNG of {w}x{h} pixels is empty or too large")
    bpp = 2 * channels
    expected = h * (1 + w * bpp)
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(b"".join(idat), expected + 1)
    except zlib.error as e:
        raise _fail(name, f"broken PNG data: {e}") from e
    if len(raw) != expected:
        raise _fail(name, "broken PNG (pixel data has the wrong size)")
    rows = _png_unfilter(np.frombuffer(raw, dtype=np.uint8).reshape(h, 1 + w * bpp), bpp, name)
    return rows.view(">u2").reshape(h, w, channels).astype(np.uint16)


def _png_unfilter(data: np.ndarray, bpp: int, name: str) -> np.ndarray:
    """Undo PNG row filters, vectorised: whole rows for None/Sub/Up, and an anti-diagonal
    wavefront when Average/Paeth appear (each pixel needs its left and upper neighbours,
    which all lie on the previous diagonals)."""
    kinds, rows = data[:, 0], data[:, 1:]
    if kinds.max() > 4:
        raise _fail(name, f"broken PNG (unknown row filter {int(kinds.max())})")
    if not kinds.any():
        return rows
    h, stride = rows.shape
    if (kinds == 1).all():  # what our own writer makes: one cumsum for the whole image
        return np.cumsum(rows.reshape(h, -1, bpp), axis=1, dtype=np.uint8).reshape(h, stride)
    if kinds.max() <= 2:
        out = np.empty_like(rows)
        prev = np.zeros(stride, dtype=np.uint8)
        for y in range(h):  # a loop over rows; each row is one numpy operation
            k = kinds[y]
            if k == 0:
                cur = rows[y]
            elif k == 1:  # uint8 cumsum wraps mod 256, as PNG arithmetic does
                cur = np.cumsum(rows[y].reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
            else:
                cur = rows[y] + prev
            out[y] = cur
            prev = out[y]
        return out
    w = stride // bpp
    filt = rows.reshape(h, w, bpp).astype(np.int16)
    rec = np.zeros((h + 1, w + 1, bpp), dtype=np.int16)  # zero border: row -1, column -1
    for d in range(h + w - 1):
        ys = np.arange(max(0, d - w + 1), min(h, d + 1))
        xs = d - ys
        a, b, c = rec[ys + 1, xs], rec[ys, xs + 1], rec[ys, xs]
        k = kinds[ys][:, None]
        pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = np.select([k == 1, k == 2, k == 3, k == 4], [a, b, (a + b) >> 1, paeth], 0)
        rec[ys + 1, xs + 1] = (filt[ys, xs] + pred) & 255
    return rec[1:, 1:].astype(np.uint8).reshape(h, stride)


# --------------------------------------------------------------------------- wire strings

def to_data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _b64decode(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    # Be lenient about what servers do: line breaks, URL-safe alphabet, lost padding.
    cleaned = "".join(text.split()).replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _fail(name, f"broken base64 data ({describe(text)}): {e}") from e


def parse_data_uri(uri: str, name: str = "value") -> tuple[bytes, str]:
    """``data:<mime>[;params][;base64],<payload>`` -> (bytes, mime)."""
    comma = uri.find(",", 0, 1024)
    if not uri.startswith("data:") or comma < 0:
        raise _fail(name, f"{describe(uri)} is not a data URI")
    params = uri[5:comma].split(";")
    mime = params[0].strip().lower() or "text/plain"
    payload = uri[comma + 1:]
    if "base64" in (p.strip().lower() for p in params[1:]):
        return _b64decode(payload, name), mime
    try:
        return unquote_to_bytes(payload), mime
    except Exception as e:
        raise _fail(name, f"broken data URI: {e}") from e


def _inside(path: str, directory: str) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([real, root]) == root


def _read_server_path(path: str, ctx: WireContext, name: str) -> bytes:
    """A bare path in a server's answer is read only inside the shared folder: a server
    must not make the add-on read arbitrary local files."""
    if not ctx.shared_dir or not _inside(path, ctx.shared_dir):
        raise _fail(name, f"the server answered with the path {describe(path)}, which is "
                          "outside the shared folder; refusing to read it")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise _fail(name, f"cannot read {describe(path)}: {e.strerror or e}") from e


def _fetch(url: str, ctx: WireContext, name: str) -> bytes:
    if ctx.fetch is None:
        raise _fail(name, f"the output is a URL ({describe(url, 80)}) and no download "
                          "function was given")
    try:
        data = ctx.fetch(url)
    except RunwayError:
        raise
    except Exception as e:
        raise _fail(name, f"cannot download {describe(url, 80)}: {e}") from e
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _fail(name, f"downloading {describe(url, 80)} gave {describe(data)}, not bytes")
    return bytes(data)


def _wire_bytes(wire: Any, ctx: WireContext, name: str) -> tuple[bytes, Optional[str],
                                                                  Optional[str]]:
    """A wire value that carries a file -> (bytes, mime or None, a name or None)."""
    if isinstance(wire, (bytes, bytearray, memoryview)):
        return bytes(wire), None, None
    if not isinstance(wire, str):
        raise _fail(name, f"{describe(wire)} is not a data URI, URL, path or base64 string")
    text = wire.strip()
    if not text:
        raise _fail(name, "the value is empty")
    if text[:5].lower() == "data:":
        data, mime = parse_data_uri(text, name)
        return data, mime, None
    scheme = text.split(":", 1)[0].lower() if ":" in text[:10] else ""
    if scheme in ("http", "https"):
        return _fetch(text, ctx, name), None, _name_from_url(text)
    if scheme == "file":
        path = unquote(urlsplit(text).path)
        return _read_server_path(path, ctx, name), None, os.path.basename(path)
    # A raw base64 JPEG starts with "/9j/": look for a real file before guessing base64.
    if len(text) < 4096 and os.path.isabs(text) and os.path.isfile(text):
        return _read_server_path(text, ctx, name), None, os.path.basename(text)
    return _b64decode(text, name), None, None


def _name_from_url(url: str) -> Optional[str]:
    try:
        return unquote(urlsplit(url).path).rsplit("/", 1)[-1] or None
    except ValueError:
        return None


def _send_bytes(data: bytes, mime: str, suffix: str, ctx: WireContext, name: str,
                filename: Optional[str] = None) -> str:
    """Bytes -> a bare path in the shared folder (Cog, when set), else a data URI."""
    if ctx.protocol == "cog" and ctx.shared_dir:
        base = safe_filename(filename or (safe_filename(name, "input") + suffix))
        return write_unique(ctx.shared_dir, f"{uuid.uuid4().hex[:12]}-{base}", data)
    return to_data_uri(data, mime)


# --------------------------------------------------------------------------- images: fields

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
        return _normalise_decoded(image_array(wire, name))
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
        if ctx.protocol != "cog" or re.match(r"(?i)(https?|ftp|data):", value):
            return value  # Runway: a path inside the container or a URL; Cog: a URL
        if not value:
            raise _fail(name, "the file path is empty")
        value = FileValue(name=os.path.basename(value), path=value)
    if not isinstance(value, FileValue):
        raise _fail(name, f"{describe(value)} is not a file path or FileValue")
    if field.is_directory and ctx.protocol == "cog":
        raise _fail(name, "Cog inputs cannot be directories")
    if value.data is None and value.path is not None:
        if ctx.protocol != "cog":
            return value.path
        if not os.path.isfile(value.path):
            raise _fail(name, f"file {value.path!r} does not exist")
        if ctx.shared_dir and _inside(value.path, ctx.shared_dir):
            return os.path.realpath(value.path)  # already where the server can see it
    if ctx.protocol != "cog" and not ctx.shared_dir:
        raise _fail(name, "a Runway model takes a path or URL here, not file contents")
    data = value.read_bytes()
    mime = value.mime or mimetypes.guess_type(value.name)[0] or "application/octet-stream"
    if ctx.protocol != "cog":  # Runway with a shared folder: a path it can open
        return write_unique(ctx.shared_dir, f"{uuid.uuid4().hex[:12]}-{value.name}", data)
    return _send_bytes(data, mime, "", ctx, name, filename=value.name)


def _decode_file(field, wire: Any, ctx: WireContext, name: str) -> Any:
    if ctx.protocol != "cog" and isinstance(wire, str) and not wire.startswith("data:"):
        return wire  # Runway: a path inside the container or a URL, passed through
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


# --------------------------------------------------------------------------- OpenEXR

def encode_exr(img: np.ndarray, *, compress: bool = True) -> bytes:
    """A scanline OpenEXR of an HxWxC (C 1..4) array of LINEAR values, top row first:
    32-bit float channels (Y for grey, R G B, A), ZIP compression (16 rows a chunk) or
    none. No colour-space tag, so readers take it as scene linear. Written here, not by
    Blender: Blender's ``Image.save`` converts colour images on the way (4.2 wrote
    128/255 for a linear 0.2158, 5.0 wrote 1.52) and tags Non-Color ones as data."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    if h == 0 or w == 0 or not 1 <= c <= 4:
        raise CodecError(f"cannot write {describe(img)} as OpenEXR")
    names = {1: ["Y"], 2: ["Y", "A"], 3: ["R", "G", "B"], 4: ["R", "G", "B", "A"]}[c]
    order = sorted(range(c), key=lambda i: names[i])  # EXR stores channels by name

    def attr(name: str, kind: str, value: bytes) -> bytes:
        return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) \
            + value

    chlist = b"".join(names[i].encode() + b"\0" + struct.pack("<iB3xii", 2, 0, 1, 1)
                      for i in order) + b"\0"
    window = struct.pack("<iiii", 0, 0, w - 1, h - 1)
    lines = 16 if compress else 1
    header = (b"\x76\x2f\x31\x01" + struct.pack("<i", 2)
              + attr("channels", "chlist", chlist)
              + attr("compression", "compression", bytes([3 if compress else 0]))
              + attr("dataWindow", "box2i", window) + attr("displayWindow", "box2i", window)
              + attr("lineOrder", "lineOrder", b"\0")
              + attr("pixelAspectRatio", "float", struct.pack("<f", 1.0))
              + attr("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0))
              + attr("screenWindowWidth", "float", struct.pack("<f", 1.0)) + b"\0")
    # Rows of channel-planar little-endian floats: (h, c, w).
    planar = np.ascontiguousarray(img[:, :, order].transpose(0, 2, 1)).astype("<f4")
    chunks = []
    for y in range(0, h, lines):
        raw = planar[y:y + lines].tobytes()
        if compress:  # EXR ZIP: split even/odd bytes, byte deltas (+128), deflate
            b = np.frombuffer(raw, np.uint8)
            t = np.concatenate([b[0::2], b[1::2]])
            d = np.empty_like(t)
            d[0] = t[0]
            d[1:] = np.diff(t) + np.uint8(128)  # uint8 arithmetic wraps mod 256
            packed = zlib.compress(d.tobytes(), 1)
            if len(packed) < len(raw):  # else the chunk is stored raw, as EXR says
                raw = packed
        chunks.append(struct.pack("<ii", y, len(raw)) + raw)
    offset = len(header) + 8 * len(chunks)
    table = []
    for chunk in chunks:
        table.append(struct.pack("<Q", offset))
        offset += len(chunk)
    return header + b"".join(table) + b"".join(chunks)


# --------------------------------------------------------------------------- Blender pixels

_SRGB_CUT_LINEAR = np.float32(0.0031308)
_SRGB_CUT_ENCODED = np.float32(0.04045)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """The exact piecewise sRGB encoding (IEC 61966-2-1), float32, vectorised.
    Values above 1 follow the power curve; negatives follow the linear segment."""
    x = np.asarray(x, dtype=np.float32)
    # 1.055 * x^(1/2.4) - 0.055 as exp(log(x)/2.4 + log(1.055)) - 0.055: numpy's float32
    # exp/log are SIMD-vectorised, its power is not (3x slower here).
    out = np.array(x)  # a copy that stays an array even for a scalar
    np.maximum(out, _SRGB_CUT_LINEAR, out=out)
    np.log(out, out=out)
    out *= np.float32(1 / 2.4)
    out += np.float32(math.log(1.055))
    np.exp(out, out=out)
    out -= np.float32(0.055)
    low = x <= _SRGB_CUT_LINEAR
    if low.any():
        out[low] = x[low] * np.float32(12.92)
    return out


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Inverse of ``linear_to_srgb``, float32, vectorised."""
    x = np.asarray(x, dtype=np.float32)
    out = np.array(x)
    np.maximum(out, _SRGB_CUT_ENCODED, out=out)
    out += np.float32(0.055)
    np.log(out, out=out)
    out -= np.float32(math.log(1.055))
    out *= np.float32(2.4)
    np.exp(out, out=out)
    low = x <= _SRGB_CUT_ENCODED
    if low.any():
        out[low] = x[low] * np.float32(1 / 12.92)
    return out


_LUT_CACHE: dict[int, np.ndarray] = {}


def _srgb_to_linear_lut(levels: int) -> np.ndarray:
    """sRGB code value -> linear float, for uint8 (256) and uint16 (65536) images."""
    lut = _LUT_CACHE.get(levels)
    if lut is None:
        lut = _LUT_CACHE[levels] = srgb_to_linear(
            np.arange(levels, dtype=np.float32) / np.float32(levels - 1))
    return lut


def _colour_channels(c: int) -> int:
    return 3 if c >= 3 else 1  # the rest is alpha


def image_from_blender(pixels: np.ndarray, width: int, height: int, channels: int = 4,
                       linear: bool = True) -> np.ndarray:
    """Blender pixels (flat float32, bottom-up rows, linear unless ``linear=False``) ->
    HxWxC float32 top-down sRGB-encoded. Alpha is copied untouched."""
    try:
        flat = np.asarray(pixels, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as e:
        raise CodecError(f"Blender pixels are not numbers: {e}") from e
    if width <= 0 or height <= 0 or channels not in (1, 2, 3, 4) or \
            flat.size != width * height * channels:
        raise CodecError(f"Blender pixels: {flat.size} values do not make a {width}x{height} "
                         f"image with {channels} channels")
    img = flat.reshape(height, width, channels)[::-1]  # bottom-up -> top-down (a view)
    if not linear:
        return np.ascontiguousarray(img)
    # Converting all channels of the contiguous block is faster than a strided colour-only
    # view; alpha is put back afterwards.
    out = linear_to_srgb(np.ascontiguousarray(img))
    k = _colour_channels(channels)
    out[..., k:] = img[..., k:]
    return out


# Linear 0..1 quantised to 16 bits, then one table lookup to 8-bit sRGB: within one
# 8-bit level of the float path (the steps of 1/65535 are finer than sRGB's darkest).
_LINEAR16_TO_SRGB8: Optional[np.ndarray] = None


def _linear16_to_srgb8() -> np.ndarray:
    global _LINEAR16_TO_SRGB8
    if _LINEAR16_TO_SRGB8 is None:
        x = np.arange(65536, dtype=np.float64) / 65535.0
        _LINEAR16_TO_SRGB8 = np.round(linear_to_srgb(x.astype(np.float32)) * 255.0) \
            .astype(np.uint8)
    return _LINEAR16_TO_SRGB8


def srgb8_from_blender(pixels: np.ndarray, width: int, height: int, channels: int = 4,
                       linear: bool = True) -> np.ndarray:
    """Blender pixels (flat float32, bottom-up, linear unless ``linear=False``) ->
    HxWxC uint8 top-down sRGB: what an 8-bit model input needs, in two passes over
    the frame (quantise, look up) instead of a float conversion and a second
    rounding. Alpha is scaled, never colour-converted."""
    flat = np.asarray(pixels, dtype=np.float32).reshape(-1)
    if width <= 0 or height <= 0 or channels not in (1, 2, 3, 4) or \
            flat.size != width * height * channels:
        raise CodecError(f"Blender pixels: {flat.size} values do not make a {width}x{height} "
                         f"image with {channels} channels")
    img = flat.reshape(height, width, channels)[::-1]  # a view; rows are copied below
    scale = np.float32(65535.0 if linear else 255.0)
    q = np.empty((height, width, channels), np.float32)
    np.multiply(img, scale, out=q)
    np.clip(q, 0.0, scale, out=q)
    q += np.float32(0.5)
    if not linear:
        return q.astype(np.uint8)
    idx = q.astype(np.uint16)
    out = _linear16_to_srgb8()[idx]
    k = _colour_channels(channels)
    if k < channels:  # alpha: straight 8-bit
        out[..., k:] = (idx[..., k:].astype(np.uint32) * 255 + 32767) // 65535
    return out


def image_to_blender(image: Any, linear: bool = True) -> tuple[np.ndarray, int, int]:
    """An image value -> (flat float32 RGBA bottom-up, width, height) for
    ``image.pixels.foreach_set``. ``linear=False``: the Blender image is a byte image that
    stores sRGB values, so only the rows are flipped."""
    img = convert_channels(image_array(image, "image"), 4)
    h, w = img.shape[:2]
    flipped = img[::-1]  # a view: the table lookups below write the rows in Blender's order
    if img.dtype == np.float32:
        out = np.ascontiguousarray(flipped)
        if linear:
            out[..., :3] = srgb_to_linear(out[..., :3])
        return out.reshape(-1), w, h
    levels = 256 if img.dtype == np.uint8 else 65536
    scale = np.arange(levels, dtype=np.float32) / np.float32(levels - 1)
    out = scale[flipped]  # one gather: every channel scaled to 0..1, rows flipped
    if linear:
        out[..., :3] = _srgb_to_linear_lut(levels)[flipped[..., :3]]
    return out.reshape(-1), w, h
