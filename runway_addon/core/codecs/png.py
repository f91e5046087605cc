"""Image bytes: a PNG writer and 16-bit reader of our own, and Pillow for the rest."""
from __future__ import annotations

import io
import struct
import warnings
import zlib
from typing import Optional

import numpy as np
from PIL import Image

from ..errors import CodecError
from .naming import _fail, describe
from .pixels import (MAX_PIXELS, _pil_to_array, check_pixels, convert_channels, to_bit_depth,
                     too_many_pixels)

# Measured with bench/bench_codecs.py: level 0 (stored rows, no deflate work) gives the
# fastest encode + decode for 1080p and 4K RGBA frames, as a data URI and as a shared file,
# at about 1.8x the bytes of level 1. Use level 1 (Sub filter + run-length deflate) where
# bytes cost more than CPU, e.g. a remote server.
DEFAULT_PNG_COMPRESS_LEVEL = 0
DEFAULT_JPEG_QUALITY = 95

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    _pillow_limit()
    try:
        with warnings.catch_warnings():
            # Above the limit Pillow warns (then our check_pixels, with the size, raises)
            # or, above twice the limit, raises DecompressionBombError itself.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                check_pixels(im.width, im.height, name)
                im.load()
                arr = _pil_to_array(im, name)
    except CodecError:
        raise
    except Image.DecompressionBombError as e:
        raise too_many_pixels(name, "image") from e
    except Exception as e:  # Pillow raises many kinds (OSError, SyntaxError, ValueError...)
        raise _fail(name, f"cannot decode the image ({describe(data)}): "
                          f"{type(e).__name__}: {e}") from e
    if arr.dtype == np.float32:  # a float TIFF and the like: best effort
        arr = to_bit_depth(arr, 16)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return _normalise_decoded(arr)


def _pillow_limit() -> None:
    """Pillow's own bomb limit (a warning above Image.MAX_IMAGE_PIXELS, an error above twice
    that) is lower than ours by default: raise it to ours so one limit holds for every
    format. Set before each decode, since it is process-wide and anyone may change it;
    check_pixels holds the limit when someone has raised or removed Pillow's."""
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS


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
            check_pixels(ihdr[0], ihdr[1], name, "PNG")  # before reading the pixel data
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
    if w == 0 or h == 0:
        raise _fail(name, f"PNG of {w}x{h} pixels is empty")
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
