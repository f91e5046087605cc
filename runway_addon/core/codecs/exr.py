"""OpenEXR, written and read here (no imaging library that handles EXR is needed).

``encode_exr``: scanline, 32-bit float channels, ZIP or no compression. ``read_exr``: a
minimal reader of scanline files, single- or multi-part, HALF or FLOAT channels,
compression NONE, ZIPS or ZIP (what OpenCV writes by default, and what the add-on asks
Blender to write for render passes): enough for a render's passes from Blender's
multilayer EXR and the denoise model's EXR output. Malformed files raise CodecError.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from ..errors import CodecError
from .naming import describe
from .pixels import check_pixels

_MAGIC = b"\x76\x2f\x31\x01"
_LINES_PER_CHUNK = {0: 1, 2: 1, 3: 16}  # NONE, ZIPS, ZIP
_DTYPES = {1: np.dtype("<f2"), 2: np.dtype("<f4"), 0: np.dtype("<u4")}


def _cstr(data: bytes, pos: int) -> tuple[str, int]:
    """A null-terminated name: UTF-8, as OpenEXR writes it (Blender's layer and pass
    names included); anything else is a broken header (UnicodeDecodeError, a ValueError)."""
    end = data.index(b"\0", pos)
    return data[pos:end].decode("utf-8"), end + 1


def _unzip(raw: bytes, size: int) -> bytes:
    """EXR's ZIP: deflate, then a byte delta predictor, then two interleaved halves."""
    # Never inflate past the size the header promises: a small chunk must not become gigabytes.
    d = np.frombuffer(zlib.decompressobj().decompress(raw, size + 1), np.uint8)
    if d.size != size:
        raise ValueError(f"EXR chunk inflates to {d.size} bytes, expected {size}")
    t = (np.cumsum(d.astype(np.int64) - 128) + 128) % 256  # undo the predictor
    t = t.astype(np.uint8)
    out = np.empty_like(t)
    half = (t.size + 1) // 2
    out[0::2], out[1::2] = t[:half], t[half:]
    return out.tobytes()


def read_exr(data: bytes) -> dict[str, np.ndarray]:
    """The channels of a scanline EXR as float32 HxW arrays (top row first), keyed
    by channel name."""
    try:
        return _read(data)
    except CodecError:
        raise
    except (ValueError, KeyError, IndexError, OverflowError, MemoryError, struct.error,
            zlib.error) as e:
        raise CodecError(f"cannot read the EXR file: {e}",
                         hint="Save it again as a scanline OpenEXR (ZIP or no compression).") from e


def _header(data: bytes, pos: int) -> tuple[dict, int]:
    """One header's attributes (channels, compression, dataWindow, type) and the
    position after its terminating null byte."""
    attrs: dict = {"channels": []}
    while data[pos] != 0:
        name, pos = _cstr(data, pos)
        _kind, pos = _cstr(data, pos)
        (size,) = struct.unpack_from("<i", data, pos)
        value = data[pos + 4:pos + 4 + size]
        pos += 4 + size
        if name == "channels":
            p = 0
            while value[p] != 0:
                ch, p = _cstr(value, p)
                ptype, _, xs, ys = struct.unpack_from("<iB3xii", value, p)
                if (xs, ys) != (1, 1):
                    raise ValueError("subsampled EXR channels are not supported")
                attrs["channels"].append((ch, _DTYPES[ptype]))
                p += 16
        elif name == "compression":
            attrs["compression"] = value[0]
        elif name == "dataWindow":
            attrs["window"] = struct.unpack("<iiii", value)
        elif name == "type":
            attrs["type"] = value.rstrip(b"\0").decode("latin-1")
        elif name == "chunkCount":
            (attrs["chunks"],) = struct.unpack("<i", value)
    return attrs, pos + 1


def _read(data: bytes) -> dict[str, np.ndarray]:
    if data[:4] != _MAGIC:
        raise ValueError("not an OpenEXR file")
    if data[5] & 0x0A:  # tiled or deep (long names only lengthen the strings)
        raise ValueError("only scanline EXR files are supported")
    multipart = bool(data[5] & 0x10)  # Blender 5 writes each layer of a multilayer file apart
    pos, parts = 8, []
    while True:
        attrs, pos = _header(data, pos)
        parts.append(attrs)
        if not multipart or data[pos] == 0:
            break
    if multipart:
        pos += 1  # the empty header that ends the list
    if not any(attrs["channels"] for attrs in parts):  # a missing or empty channel list
        raise ValueError("the EXR file has no channels")
    for attrs in parts:
        if attrs.get("type", "scanlineimage") != "scanlineimage":
            raise ValueError(f"EXR part type {attrs['type']!r} is not supported")
        if attrs.get("compression") not in _LINES_PER_CHUNK or "window" not in attrs:
            raise ValueError(f"EXR compression {attrs.get('compression')} is not supported")
        x0, y0, x1, y1 = attrs["window"]
        attrs["size"] = (x1 - x0 + 1, y1 - y0 + 1)
        if min(attrs["size"]) < 1:
            raise ValueError(f"the EXR data window {attrs['window']} holds no pixels")
        check_pixels(*attrs["size"], "EXR file", "EXR image")  # before any table or plane
        per_chunk = _LINES_PER_CHUNK[attrs["compression"]]
        n_chunks = attrs.get("chunks") or -(-attrs["size"][1] // per_chunk)
        attrs["offsets"] = struct.unpack_from(f"<{n_chunks}Q", data, pos)
        pos += 8 * n_chunks
    planes: dict[str, np.ndarray] = {}
    for index, attrs in enumerate(parts):
        planes.update(_read_part(data, attrs, index if multipart else None))
    return planes


def _read_part(data: bytes, attrs: dict, part: "int | None") -> dict[str, np.ndarray]:
    channels, compression = attrs["channels"], attrs["compression"]
    x0, y0, x1, y1 = attrs["window"]
    w, h = attrs["size"]
    per_chunk = _LINES_PER_CHUNK[compression]
    planes = {ch: np.empty((h, w), np.float32) for ch, _ in channels}
    line_bytes = sum(dt.itemsize for _, dt in channels) * w
    for off in attrs["offsets"]:
        if part is not None:  # multi-part chunks start with their part number
            (number,) = struct.unpack_from("<i", data, off)
            if number != part:
                raise ValueError(f"EXR chunk of part {number} in the table of part {part}")
            off += 4
        y, size = struct.unpack_from("<ii", data, off)
        lines = min(per_chunk, y1 - y + 1)
        raw = data[off + 8:off + 8 + size]
        expected = lines * line_bytes
        if compression != 0 and size < expected:
            raw = _unzip(raw, expected)
        p = 0
        for row in range(y - y0, y - y0 + lines):
            for ch, dt in channels:
                n = w * dt.itemsize
                planes[ch][row] = np.frombuffer(raw, dt, w, p)
                p += n
    return planes


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
