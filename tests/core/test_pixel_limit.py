"""One pixel limit (codecs.MAX_PIXELS) for every image path: our PNG reader, Pillow's
formats, data URIs, the EXR reader and image_to_blender refuse a too-large header with
the same CodecError, before allocating the image (tracemalloc sees numpy's allocations)."""
from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from runway_addon.core import codecs
from runway_addon.core.codecs import decode_value, image_to_blender, read_exr
from runway_addon.core.errors import CodecError
from runway_addon.core.spec import ImageField

LIMIT = f"the limit is MAX_PIXELS = {codecs.MAX_PIXELS} pixels"
SIDE = 20000  # 20000x20000 is over the limit but under twice it (Pillow's own error)


def refused(fn) -> str:
    """fn raises the pixel-limit CodecError and allocates under 8 MB on the way."""
    tracemalloc.start()
    try:
        with pytest.raises(CodecError) as caught:
            fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert LIMIT in message and "too large" in message
    assert peak < 8 * 2 ** 20, f"{peak} bytes allocated before refusing"
    return message


def png_header(width: int, height: int, depth: int) -> bytes:
    """A PNG whose header claims width x height, with a little real pixel data."""
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


def jpeg_header(width: int, height: int) -> bytes:
    """A real 8x8 JPEG with its frame header (SOF0) claiming width x height."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def exr_header(width: int, height: int) -> bytes:
    """A real EXR (our writer) with its dataWindow claiming width x height."""
    data = bytearray(codecs.encode_exr(np.zeros((2, 2, 3), np.float32)))
    at = data.index(b"dataWindow\0box2i\0") + len(b"dataWindow\0box2i\0") + 4
    data[at:at + 16] = struct.pack("<iiii", 0, 0, width - 1, height - 1)
    return bytes(data)


@pytest.mark.parametrize("depth", [16, 8])  # 16: our own reader; 8: Pillow's
def test_a_too_large_png_header_is_refused(depth):
    message = refused(lambda: codecs.decode_image_bytes(png_header(SIDE, SIDE, depth)))
    assert message.startswith("image: ") and f"{SIDE}x{SIDE}" in message
    refused(lambda: codecs.decode_image_bytes(png_header(100000, 100000, depth)))


def test_a_too_large_jpeg_header_is_refused():
    message = refused(lambda: codecs.decode_image_bytes(jpeg_header(SIDE, SIDE), "photo"))
    assert message.startswith("photo: ") and f"{SIDE}x{SIDE}" in message  # Pillow read it
    refused(lambda: codecs.decode_image_bytes(jpeg_header(65000, 65000)))  # Pillow's own error


def test_the_limit_holds_whatever_pillow_was_set_to(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # another library lowered it
    assert codecs.decode_image_bytes(codecs.encode_image_bytes(
        np.zeros((100, 100, 3), np.uint8), "JPEG")).shape == (100, 100, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # or removed it
    refused(lambda: codecs.decode_image_bytes(jpeg_header(SIDE, SIDE)))


def test_a_too_large_image_in_a_data_uri_or_an_array_is_refused():
    field = ImageField(name="im")
    uri = codecs.to_data_uri(png_header(SIDE, SIDE, 16), "image/png")
    assert refused(lambda: decode_value(field, uri)).startswith("im: ")
    huge = np.broadcast_to(np.zeros(4, np.uint8), (SIDE, SIDE, 4))  # a view: no memory
    assert refused(lambda: decode_value(field, huge)).startswith("im: ")
    refused(lambda: image_to_blender(huge))


def test_a_too_large_exr_header_is_refused():
    assert read_exr(exr_header(2, 2))["R"].shape == (2, 2)  # the patch itself is sound
    message = refused(lambda: read_exr(exr_header(SIDE, SIDE)))
    assert f"EXR image of {SIDE}x{SIDE} pixels" in message


def test_exr_headers_that_are_not_utf8_or_are_garbage_raise_codec_error():
    good = codecs.encode_exr(np.zeros((2, 2, 3), np.float32))
    bad = good.replace(b"lineOrder\0lineOrder\0", b"lineOrder\xff\0lineOrder\0")
    with pytest.raises(CodecError, match="cannot read the EXR file"):
        read_exr(bad)


@settings(deadline=None, max_examples=300)
@given(data=st.data())
def test_mutated_exr_files_only_ever_raise_codec_error(data):
    img = np.arange(20 * 17 * 3, dtype=np.float32).reshape(20, 17, 3)
    blob = bytearray(codecs.encode_exr(img, compress=data.draw(st.booleans())))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(blob) - 1))
        if data.draw(st.booleans()):
            blob[at] = data.draw(st.integers(0, 255))
        else:
            blob = blob[:at] + data.draw(st.binary(max_size=8)) + blob[at:]
    try:
        planes = read_exr(bytes(blob))
    except CodecError:
        return
    # A flipped pixel byte can still make a valid file: then it reads as one, planes
    # of one size, float32, never a half-read header (a lost channel list is refused).
    assert planes and len({p.shape for p in planes.values()}) == 1
    assert all(p.dtype == np.float32 and p.ndim == 2 and p.size for p in planes.values())


def channel_list(blob: bytes, value: "bytes | None") -> bytes:
    """Our EXR with its channel list replaced by ``value`` (None: the attribute renamed,
    so the header has none). The chunks shift, but nothing past the header is read."""
    head = b"channels\0chlist\0"
    at = blob.index(head)
    (size,) = struct.unpack_from("<i", blob, at + len(head))
    end = at + len(head) + 4 + size
    if value is None:
        return blob[:at] + b"chanxels" + blob[at + 8:]
    return blob[:at] + head + struct.pack("<i", len(value)) + value + blob[end:]


@pytest.mark.parametrize("value", [None, b"\0"], ids=["no channel list", "an empty one"])
def test_an_exr_with_no_channels_is_a_codec_error(value):
    good = codecs.encode_exr(np.zeros((2, 2, 3), np.float32))
    assert sorted(read_exr(good)) == ["B", "G", "R"]
    with pytest.raises(CodecError) as err:
        read_exr(channel_list(good, value))
    assert err.value.message == "cannot read the EXR file: the EXR file has no channels"
    assert err.value.hint.startswith("Save it again as a scanline OpenEXR")


def test_an_exr_whose_data_window_holds_no_pixels_is_a_codec_error():
    data = bytearray(codecs.encode_exr(np.zeros((2, 2, 3), np.float32)))
    at = data.index(b"dataWindow\0box2i\0") + len(b"dataWindow\0box2i\0") + 4
    data[at:at + 16] = struct.pack("<iiii", 0, 0, -1, 1)  # 0 wide, 2 high
    with pytest.raises(CodecError) as err:
        read_exr(bytes(data))
    assert err.value.message == ("cannot read the EXR file: the EXR data window "
                                 "(0, 0, -1, 1) holds no pixels")
