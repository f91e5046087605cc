"""Codecs: exact round trips where lossless, bounded error where lossy, and garbage
raising CodecError unless a stated per-type rule says what it decodes to. Real encoders
and decoders, no mocks."""
from __future__ import annotations

import base64
import io
import math
import os
import re
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from runway_addon.core import codecs
from runway_addon.core.codecs import colour, naming, pixels
from runway_addon.core.codecs import (FileValue, WireContext, decode_value, encode_value,
                                      image_from_blender, image_to_blender)
from runway_addon.core.errors import CodecError
from runway_addon.core.protocols.cog import cog_wire
from runway_addon.core.spec import (AnyField, ArrayField, BooleanField, CategoryField,
                                    FileField, ImageBoundingBoxField, ImageField,
                                    ImageLandmarksField, ImagePointField, IntegerField,
                                    NumberField, SecretField, SegmentationField, TextField,
                                    VectorField)

SLOW = settings(deadline=None, max_examples=40,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def images(dtype, channels):
    shape = st.tuples(st.integers(1, 24), st.integers(1, 24)).map(
        lambda hw: hw if channels == 0 else hw + (channels,))
    return hnp.arrays(dtype, shape, elements=st.integers(0, np.iinfo(dtype).max))


# --------------------------------------------------------------------------- images

@SLOW
@given(data=st.data(), dtype=st.sampled_from([np.uint8, np.uint16]),
       channels=st.sampled_from([1, 3, 4]), level=st.sampled_from([0, 1, 6]))
def test_png_round_trip_is_exact_for_8_and_16_bit_every_channel_count(data, dtype, channels,
                                                                      level):
    img = data.draw(images(dtype, channels))
    field = ImageField(name="im", channels=channels)
    ctx = WireContext(image_format="PNG", png_compress_level=level)
    wire = encode_value(field, img, ctx)
    assert wire.startswith("data:image/png;base64,")
    out = decode_value(field, wire, ctx)
    assert out.dtype == dtype and out.shape == img.shape
    np.testing.assert_array_equal(out, img)


@SLOW
@given(img=images(np.uint8, 0))
def test_hxw_grey_array_decodes_as_hxwx1(img):
    field = ImageField(name="im", channels=1)
    out = decode_value(field, encode_value(field, img))
    np.testing.assert_array_equal(out[:, :, 0], img)


def test_pillow_reads_our_16_bit_colour_png_and_we_read_pillows_png():
    img16 = np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3) * 1000
    data = codecs.encode_image_bytes(img16, "PNG", compress_level=1)
    with Image.open(io.BytesIO(data)) as im:  # a standard PNG: Pillow opens it (8-bit view)
        assert im.size == (5, 4)
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), (img16 >> 8).astype(np.uint8))
    rgba = np.random.default_rng(1).integers(0, 256, (30, 40, 4), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=9)
    np.testing.assert_array_equal(codecs.decode_image_bytes(buf.getvalue()), rgba)


def _png_with_filters(img: np.ndarray, kinds: np.ndarray) -> bytes:
    """A 16-bit PNG whose rows use the given filter types (0-4), filtered vectorised (the
    filter uses the original bytes, so no sequential dependency)."""
    h, w, c = img.shape
    bpp = 2 * c
    rows = img.astype(">u2").view(np.uint8).reshape(h, w * bpp).astype(np.int32)
    a = np.zeros_like(rows); a[:, bpp:] = rows[:, :-bpp]
    b = np.zeros_like(rows); b[1:] = rows[:-1]
    cc = np.zeros_like(rows); cc[1:, bpp:] = rows[:-1, :-bpp]
    p = a + b - cc
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - cc)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, cc))
    pred = np.stack([np.zeros_like(rows), a, b, (a + b) // 2, paeth])[kinds, np.arange(h)]
    filtered = ((rows - pred) & 255).astype(np.uint8)
    raw = np.concatenate([kinds.astype(np.uint8)[:, None], filtered], axis=1)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(body, zlib.crc32(kind)) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw.tobytes()))
            + chunk(b"IEND", b""))


@SLOW
@given(data=st.data(), channels=st.sampled_from([1, 2, 3, 4]),
       only_simple=st.booleans())
def test_16_bit_png_with_any_row_filters_decodes_exactly(data, channels, only_simple):
    img = data.draw(images(np.uint16, channels))
    top = 2 if only_simple else 4
    kinds = np.array(data.draw(st.lists(st.integers(0, top), min_size=img.shape[0],
                                        max_size=img.shape[0])))
    out = codecs.decode_image_bytes(_png_with_filters(img, kinds))
    expected = codecs.convert_channels(img, 4) if channels == 2 else img
    np.testing.assert_array_equal(out, expected)


def test_channel_conversion_rules():
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 7
    rgb_field = ImageField(name="im", channels=3)
    out = decode_value(rgb_field, encode_value(rgb_field, rgba))
    assert out.shape == (2, 3, 3) and (out[..., 0] == 200).all()  # alpha dropped
    grey = np.full((2, 3), 90, dtype=np.uint8)
    rgba_field = ImageField(name="im", channels=4)
    out = decode_value(rgba_field, encode_value(rgba_field, grey))
    assert (out[..., :3] == 90).all() and (out[..., 3] == 255).all()  # repeated, opaque
    grey_field = ImageField(name="im", channels=1)
    colour = np.zeros((1, 1, 3), dtype=np.uint8)
    colour[0, 0] = (255, 0, 0)
    out = decode_value(grey_field, encode_value(grey_field, colour))
    expected = np.asarray(Image.fromarray(colour, "RGB").convert("L"))  # Pillow's luminance
    assert out[0, 0, 0] == expected[0, 0]


@SLOW
@given(img=hnp.arrays(np.float32, st.tuples(st.integers(1, 16), st.integers(1, 16),
                                            st.just(4)),
                      elements=st.floats(-1, 2, width=32)))
def test_float_images_are_clipped_and_rounded_to_8_bit(img):
    field = ImageField(name="im", channels=4)
    out = decode_value(field, encode_value(field, img))
    np.testing.assert_array_equal(out, np.floor(np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))


def test_float_image_with_nan_becomes_black_not_an_error():
    img = np.full((2, 2, 3), np.nan, dtype=np.float32)
    field = ImageField(name="im")
    assert (decode_value(field, encode_value(field, img)) == 0).all()


def test_16_bit_forced_from_float_and_uint16_as_jpeg_becomes_8_bit():
    img = np.linspace(0, 1, 64 * 64 * 3, dtype=np.float32).reshape(64, 64, 3)
    field = ImageField(name="im")
    out = decode_value(field, encode_value(field, img, WireContext(image_bit_depth=16)))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, codecs.to_bit_depth(img, 16))
    img16 = codecs.to_bit_depth(img, 16)
    wire = encode_value(field, img16, WireContext(image_format="JPEG"))
    assert wire.startswith("data:image/jpeg;base64,")
    out = decode_value(field, wire)
    assert out.dtype == np.uint8
    assert np.abs(out.astype(int) - codecs.to_bit_depth(img16, 8)).mean() < 2


def test_jpeg_is_close_and_rgba_field_falls_back_to_png():
    y, x = np.mgrid[0:120, 0:160]
    img = np.stack([x * 255 // 159, y * 255 // 119, (x + y) * 255 // 278], axis=2).astype(np.uint8)
    field = ImageField(name="im", channels=3, default_format="JPEG")
    wire = encode_value(field, img)  # the field's default format
    assert wire.startswith("data:image/jpeg")
    out = decode_value(field, wire)
    assert np.abs(out.astype(int) - img).mean() < 2.0
    assert np.abs(out.astype(int) - img).max() < 40
    rgba = np.dstack([img, np.full(img.shape[:2], 128, np.uint8)])
    wire = encode_value(ImageField(name="im", channels=4), rgba, WireContext(image_format="JPEG"))
    assert wire.startswith("data:image/png")  # JPEG has no alpha: PNG keeps it


def test_pil_images_and_other_decodable_formats():
    rgb = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    field = ImageField(name="im")
    np.testing.assert_array_equal(decode_value(field, encode_value(field, Image.fromarray(rgb))), rgb)
    for fmt in ("BMP", "TIFF", "WEBP", "GIF"):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
        raw = base64.b64encode(buf.getvalue()).decode()
        for wire in (f"data:image/{fmt.lower()};base64,{raw}", raw):  # data URI and raw base64
            out = decode_value(field, wire)
            assert out.shape[:2] == (9, 7)
            if fmt != "GIF":  # GIF quantises to a palette
                np.testing.assert_array_equal(out[..., :3], rgb)


def test_raw_base64_jpeg_starting_with_slash_is_not_taken_for_a_path():
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="JPEG")
    raw = base64.b64encode(buf.getvalue()).decode()
    assert raw.startswith("/9j/")
    assert decode_value(ImageField(name="im"), raw).shape == (4, 4, 3)


def test_shared_folder_paths_for_cog_and_refusal_outside_it(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    img = np.random.default_rng(3).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    field = ImageField(name="../../evil\x00name", channels=4)
    ctx = cog_wire(shared_dir=str(shared))
    wire = encode_value(field, img, ctx)
    assert os.path.dirname(wire) == str(shared) and os.path.isfile(wire)
    assert encode_value(field, img, ctx) != wire  # unique names, nothing overwritten
    np.testing.assert_array_equal(decode_value(field, wire, ctx), img)
    outside = tmp_path / "secret.png"
    outside.write_bytes(open(wire, "rb").read())
    for bad in (str(outside), str(shared / ".." / "secret.png"), "file://" + str(outside)):
        with pytest.raises(CodecError, match="outside the shared folder"):
            decode_value(field, bad, ctx)
    # Runway images always travel as data URIs, shared folder or not.
    assert encode_value(field, img, WireContext(shared_dir=str(shared))).startswith("data:")


def test_urls_are_fetched_through_the_context():
    data = codecs.encode_image_bytes(np.full((3, 3, 3), 9, np.uint8))
    seen = []
    ctx = cog_wire(fetch=lambda url: seen.append(url) or data)
    out = decode_value(ImageField(name="im"), "https://example.invalid/a.png", ctx)
    assert seen == ["https://example.invalid/a.png"] and (out == 9).all()
    with pytest.raises(CodecError, match="no download function"):
        decode_value(ImageField(name="im"), "https://example.invalid/a.png", WireContext())

    def broken(url):
        raise TimeoutError("slow")
    with pytest.raises(CodecError, match="cannot download"):
        decode_value(ImageField(name="im"), "http://x/y.png", WireContext(fetch=broken))


# --------------------------------------------------------------------------- segmentation

SEG = SegmentationField(name="seg", labels=["sky", "tree", "road"],
                        label_to_id={"sky": 0, "tree": 3, "road": 7},
                        label_to_color={"sky": (0, 0, 255), "tree": (0, 255, 0),
                                        "road": (128, 128, 128)})


@SLOW
@given(data=st.data(), wire_kind=st.sampled_from(["ids", "colors"]))
def test_segmentation_ids_round_trip(data, wire_kind):
    shape = data.draw(st.tuples(st.integers(1, 20), st.integers(1, 20)))
    ids = data.draw(hnp.arrays(np.uint8, shape, elements=st.sampled_from([0, 3, 7])))
    wire = encode_value(SEG, ids, WireContext(segmentation_wire=wire_kind))
    assert wire.startswith("data:image/png;base64,")
    np.testing.assert_array_equal(decode_value(SEG, wire), ids)
    np.testing.assert_array_equal(decode_value(SEG, encode_value(SEG, ids[:, :, None])), ids)


def test_server_colour_map_maps_to_nearest_label():
    cmap = np.zeros((1, 4, 3), dtype=np.uint8)
    cmap[0] = [(10, 5, 240), (3, 250, 9), (120, 135, 127), (255, 255, 255)]
    wire = codecs.to_data_uri(codecs.encode_image_bytes(cmap), "image/png")
    assert decode_value(SEG, wire).tolist() == [[0, 3, 7, 7]]


def test_segmentation_without_colours_or_ids_uses_order_and_a_fixed_palette():
    field = SegmentationField(name="seg", labels=["a", "b", "c"])
    ids = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    wire = encode_value(field, ids, WireContext(segmentation_wire="colors"))
    np.testing.assert_array_equal(decode_value(field, wire), ids)
    assert len(set(codecs.label_colors(field).values())) == 3


def test_segmentation_unknown_ids_and_bad_values():
    with pytest.raises(CodecError, match="seg: label ids \\[5\\]"):
        encode_value(SEG, np.array([[0, 5]], dtype=np.uint8))
    with pytest.raises(CodecError, match="seg"):
        encode_value(SEG, np.zeros((2, 2), dtype=np.float32))


# --------------------------------------------------------------------------- geometry, scalars

coord = st.floats(0, 1, allow_nan=False)


@given(p=st.tuples(coord, coord))
def test_point_round_trip(p):
    field = ImagePointField(name="pt")
    assert decode_value(field, encode_value(field, p)) == list(p)


@given(a=st.tuples(coord, coord, coord, coord))
def test_box_round_trip_and_order(a):
    field = ImageBoundingBoxField(name="box")
    box = [min(a[0], a[2]), min(a[1], a[3]), max(a[0], a[2]), max(a[1], a[3])]
    if box[0] < box[2] and box[1] < box[3]:
        assert decode_value(field, encode_value(field, box)) == box
    else:
        with pytest.raises(CodecError, match="xmin < xmax"):
            encode_value(field, box)


@given(pts=st.lists(st.tuples(coord, coord), min_size=3, max_size=3))
def test_landmarks_round_trip(pts):
    field = ImageLandmarksField(name="lm", length=3)
    assert decode_value(field, encode_value(field, np.array(pts))) == [list(p) for p in pts]


@pytest.mark.parametrize("field,value,match", [
    (ImagePointField(name="pt"), [0.5, 1.5], "not normalised"),
    (ImagePointField(name="pt"), [0.5], "expected 2"),
    (ImageLandmarksField(name="lm", length=2), [[0.1, 0.1]], "expected 2"),
    (VectorField(name="z", length=3), [1, 2], "expected 3"),
    (VectorField(name="z", length=2), [1, float("nan")], "not a finite"),
    (NumberField(name="n"), float("nan"), "not a finite"),
    (NumberField(name="n"), 10 ** 400, "too large"),
    (NumberField(name="n"), True, "not a number"),
    (NumberField(name="n"), "1.5", "not a number"),
    (IntegerField(name="i"), 2.5, "not a whole number"),
    (BooleanField(name="b"), 1, "not true or false"),
    (TextField(name="t"), 5, "not text"),
    (CategoryField(name="c", choices=["a", 1]), "1", "not one of"),
    (CategoryField(name="c", choices=[1, 2]), True, "not one of"),
])
def test_encode_refuses_wrong_values_naming_the_field(field, value, match):
    with pytest.raises(CodecError, match=rf"^{field.name}(\[\d+\])?: .*{match}"):
        encode_value(field, value)


def test_scalars_and_passthrough_types():
    assert encode_value(IntegerField(name="i"), np.int64(3)) == 3
    assert encode_value(IntegerField(name="i"), 4.0) == 4
    assert encode_value(NumberField(name="n"), np.float32(0.5)) == 0.5
    assert encode_value(CategoryField(name="c", choices=["x", 2]), 2) == 2
    assert encode_value(VectorField(name="v", length=2), np.array([1, 2])) == [1.0, 2.0]
    assert encode_value(AnyField(name="a"), {"k": np.arange(2)}) == {"k": [0, 1]}
    assert decode_value(NumberField(name="n"), float("inf")) == float("inf")  # faithful
    assert decode_value(TextField(name="t"), "hi") == "hi"


def test_secret_is_passed_through_and_never_shown():
    field = SecretField(name="token")
    assert encode_value(field, "s3cr3t") == "s3cr3t"
    with pytest.raises(CodecError) as err:
        encode_value(field, b"s3cr3t-bytes")
    assert "s3cr3t" not in str(err.value)


def test_arrays_are_recursive_and_name_the_item():
    field = ArrayField(name="imgs", item=ImageField(name="image", channels=3))
    imgs = [np.full((2, 2, 3), i, np.uint8) for i in range(3)]
    out = decode_value(field, encode_value(field, imgs))
    assert all(np.array_equal(a, b) for a, b in zip(out, imgs))
    with pytest.raises(CodecError, match=r"^imgs\[1\]: "):
        encode_value(field, [imgs[0], "not an image"])
    stream = ArrayField(name="text", item=TextField(name="t"), iterator=True, concatenate=True)
    assert decode_value(stream, ["Hel", "lo"]) == "Hello"


# --------------------------------------------------------------------------- files

def test_files_for_cog_and_runway(tmp_path):
    src = tmp_path / "clip.wav"
    src.write_bytes(b"RIFF....WAVE")
    field = FileField(name="audio")
    wire = encode_value(field, str(src), cog_wire())
    assert wire.startswith("data:audio/") and wire.endswith(base64.b64encode(b"RIFF....WAVE").decode())
    back = decode_value(field, wire, cog_wire())
    assert isinstance(back, FileValue) and back.data == b"RIFF....WAVE"
    assert back.name.startswith("audio") and back.mime.startswith("audio/")
    shared = tmp_path / "shared"
    shared.mkdir()
    ctx = cog_wire(shared_dir=str(shared))
    path = encode_value(field, FileValue(name="../../x.wav", data=b"abc"), ctx)
    assert os.path.dirname(path) == str(shared) and open(path, "rb").read() == b"abc"
    assert encode_value(field, path, ctx) == os.path.realpath(path)  # already shared: no copy
    got = decode_value(field, path, ctx)
    assert got.path == os.path.realpath(path) and got.read_bytes() == b"abc"
    # Runway: paths inside the container and URLs pass through both ways.
    assert encode_value(field, "/models/ckpt.pth") == "/models/ckpt.pth"
    assert decode_value(field, "https://h/x.tar") == "https://h/x.tar"
    with pytest.raises(CodecError, match="does not exist"):
        encode_value(field, str(tmp_path / "missing.wav"), cog_wire())


def test_directories_and_file_contents_only_where_the_wire_carries_them(tmp_path):
    folder = FileField(name="folder", is_directory=True)
    assert encode_value(folder, str(tmp_path)) == str(tmp_path)  # Runway: the server's path
    with pytest.raises(CodecError, match="^folder: this model's file inputs cannot be dir"):
        encode_value(folder, FileValue(name="x", path=str(tmp_path)), cog_wire())
    with pytest.raises(CodecError, match="not file contents"):  # no shared folder to use
        encode_value(FileField(name="f"), FileValue(name="a.bin", data=b"abc"))
    path = encode_value(FileField(name="f"), FileValue(name="a.bin", data=b"abc"),
                        WireContext(shared_dir=str(tmp_path)))
    assert os.path.dirname(path) == str(tmp_path) and open(path, "rb").read() == b"abc"


def test_downloaded_file_names_are_sanitised_before_writing(tmp_path):
    ctx = cog_wire(fetch=lambda url: b"data")
    fv = decode_value(FileField(name="out"), "https://h/a/..%2F..%2Fetc%2Fpasswd", ctx)
    assert "/" not in fv.name and ".." not in fv.name
    path = fv.save(str(tmp_path))
    assert os.path.dirname(path) == str(tmp_path)
    assert fv.save(str(tmp_path)) != path  # never overwrites


@given(st.text(max_size=300))
def test_safe_filename_properties(name):
    safe = codecs.safe_filename(name)
    assert safe and len(safe) <= codecs.MAX_NAME_LENGTH
    assert "/" not in safe and "\\" not in safe and ".." not in safe
    assert safe not in (".", "..") and not any(ord(ch) < 32 or ord(ch) == 127 for ch in safe)


# Exact outcomes of the naming helpers: the property test above only checks what
# a name never contains, so each rule (and each cut) is pinned here.
@pytest.mark.parametrize("raw, safe", [
    ("dir/sub\\clip.txt", "clip.txt"),          # directory parts of either OS dropped
    ("e\u0301t\u00e9.png", "\u00e9t\u00e9.png"),  # NFC: one code point per letter
    ("a\u200bb\x00c\x7f.txt", "abc.txt"),        # control and format characters removed
    ('q<u>o:t"e|s?*.txt', "q_u_o_t_e_s__.txt"),  # characters Windows refuses replaced
    ("a...b..c", "a.b.c"),                       # no ".." anywhere
    ("  .name. ", "name"),                       # no leading/trailing dots or spaces
    ("", "file"), ("...", "file"), (None, "file"), (b"bytes.txt", "file"),
    ("CON", "_CON"), ("con.txt", "_con.txt"), ("Aux.tar.gz", "Aux.tar.gz"),
    ("PRN.x", "_PRN.x"), ("NUL", "_NUL"), ("COM1.log", "_COM1.log"), ("COM9", "_COM9"),
    ("LPT1", "_LPT1"), ("lpt9.txt", "_lpt9.txt"), ("COM0", "COM0"), ("LPT10", "LPT10"),
    ("CONSOLE", "CONSOLE"),
])
def test_safe_filename_exact_results(raw, safe):
    assert codecs.safe_filename(raw) == safe


def test_safe_filename_default_and_byte_limit_keeping_the_extension():
    assert codecs.safe_filename("", default="input") == "input"
    assert codecs.safe_filename(7, default="n") == "n"
    assert codecs.MAX_NAME_BYTES == codecs.MAX_NAME_LENGTH == 255
    assert codecs.safe_filename("a" * 255) == "a" * 255          # at the limit: unchanged
    assert codecs.safe_filename("a" * 256) == "a" * 255
    assert codecs.safe_filename("a" * 300 + ".png") == "a" * 251 + ".png"
    assert codecs.safe_filename("a" * 300 + "." + "b" * 16) == "a" * 238 + "." + "b" * 16
    # An extension over 16 bytes is no extension: the name is just cut.
    assert codecs.safe_filename("a" * 300 + "." + "b" * 17) == "a" * 255
    # Bytes, not characters: two-byte letters, never split, extension kept.
    assert codecs.safe_filename("\u00e9" * 200 + ".txt") == "\u00e9" * 125 + ".txt"
    assert codecs.safe_filename("\u00e9" * 130) == "\u00e9" * 127   # 254 bytes, not 255
    assert codecs.safe_filename("\u00e9" * 127 + "a") == "\u00e9" * 127 + "a"  # 255 bytes
    # A cut that ends in spaces or dots loses them.
    assert codecs.safe_filename("a" * 250 + " " * 9 + ".png") == "a" * 250 + ".png"
    assert codecs.safe_filename("a" * 249 + ". .." + "b" * 9 + ".png") == "a" * 249 + ".png"


def test_field_extension_from_runway_extension_or_cog_accept():
    ext = naming._field_extension
    assert ext(FileField(name="f", extension="png")) == ".png"
    assert ext(FileField(name="f", extension=" .TIFF ")) == ".TIFF"
    assert ext(FileField(name="f", extension="x" * 20)) == "." + "x" * 16
    assert ext(FileField(name="f", extension=". ", accept=".wav")) == ".wav"  # says nothing
    assert ext(FileField(name="f")) == ""
    assert ext(ImageField(name="f")) == ""
    assert ext(FileField(name="f", accept=" .WAV , audio/mpeg")) == ".wav"
    assert ext(FileField(name="f", accept="., image/*, audio/mpeg")) == ".mp3"
    assert ext(FileField(name="f", accept="AUDIO/MPEG")) == ".mp3"
    assert ext(FileField(name="f", accept="." + "y" * 20)) == "." + "y" * 16
    assert ext(FileField(name="f", accept="image/*,application/x-no-such-type")) == ""
    assert ext(ImageField(name="f", accept="image/png")) == ".png"
    # Bare bytes for a file input are named after the field with that extension.
    wire = encode_value(FileField(name="clip", extension="wav"), b"RIFF", cog_wire())
    assert wire.startswith("data:audio/")


def test_write_unique_names_modes_and_errors(tmp_path):
    first = naming.write_unique(str(tmp_path), "../a b?.bin", b"one")
    assert first == str(tmp_path / "a b_.bin") and open(first, "rb").read() == b"one"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(first).st_mode & 0o777 == 0o644 & ~umask
    second = naming.write_unique(str(tmp_path), "a b?.bin", b"two")
    assert re.fullmatch(r"[0-9a-f]{8}-a b_\.bin", os.path.basename(second))
    assert open(first, "rb").read() == b"one" and open(second, "rb").read() == b"two"
    missing = str(tmp_path / "no" / "such")
    with pytest.raises(CodecError, match=r"^cannot write '.*a\.bin': No such file or directory$"):
        naming.write_unique(missing, "a.bin", b"x")
    # Saving a FileValue: sanitised, under the name given or its own.
    fv = FileValue(name="x/../y.txt", data=b"y")
    assert fv.save(str(tmp_path)) == str(tmp_path / "y.txt")
    assert fv.save(str(tmp_path), name="z:.txt") == str(tmp_path / "z_.txt")
    assert open(tmp_path / "z_.txt", "rb").read() == b"y"


def test_file_value_reading_and_repr(tmp_path):
    with pytest.raises(CodecError, match=r"^file 'x' has neither data nor a path$"):
        FileValue(name="x").read_bytes()
    gone = str(tmp_path / "gone.bin")
    with pytest.raises(CodecError, match=r"^cannot read file '.*gone\.bin': No such file"):
        FileValue(name="g", path=gone).read_bytes()
    (tmp_path / "f.bin").write_bytes(b"disk")
    assert FileValue(name="f", path=str(tmp_path / "f.bin")).read_bytes() == b"disk"
    assert FileValue(name="f", data=b"", path=gone).read_bytes() == b""  # data first
    assert repr(FileValue("a.png", data=b"abc", mime="image/png")) == \
        "FileValue('a.png', 3 bytes, mime='image/png')"
    assert repr(FileValue("b", path="/p/b")) == "FileValue('b', path='/p/b', mime=None)"


class _BadRepr:
    def __repr__(self):
        raise RuntimeError("no")


def test_describe_names_values_without_dumping_them():
    assert naming.describe(np.zeros((2, 3), np.uint8)) == "array 2x3 uint8"
    assert naming.describe(np.array(1.5)) == "array scalar float64"
    assert naming.describe(Image.new("RGBA", (4, 2))) == "PIL image RGBA 4x2"
    assert naming.describe(b"abc") == "3 bytes"
    assert naming.describe(bytearray(5)) == "5 bytes"
    assert naming.describe(memoryview(b"ab")) == "2 bytes"
    assert naming.describe(FileValue(name="a.png", data=b"x")) == "file 'a.png'"
    assert naming.describe(_BadRepr()) == "<_BadRepr>"
    assert naming.describe("x" * 38) == "'" + "x" * 38 + "'"      # 40 characters: whole
    assert naming.describe("x" * 39) == "'" + "x" * 36 + "..."   # 41: cut to 40
    assert naming.describe(list(range(30)), 10) == "[0, 1, ..."


# --------------------------------------------------------------------------- Blender pixels

def _srgb_reference(x):  # float64 textbook formula
    x = np.asarray(x, dtype=np.float64)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.abs(x) ** (1 / 2.4) - 0.055)


@given(hnp.arrays(np.float32, st.integers(1, 200), elements=st.floats(0, 4, width=32)))
def test_srgb_transfer_matches_the_formula_and_inverts(x):
    enc = codecs.linear_to_srgb(x)
    assert enc.dtype == np.float32
    np.testing.assert_allclose(enc, _srgb_reference(x), rtol=2e-6, atol=2e-7)
    np.testing.assert_allclose(codecs.srgb_to_linear(enc), x, rtol=2e-5, atol=2e-7)


def test_srgb_known_values():
    np.testing.assert_allclose(codecs.linear_to_srgb(np.array([0, 0.0031308, 0.5, 1], np.float32)),
                               [0, 0.040449936, 0.7353569, 1.0], rtol=1e-6, atol=1e-7)


@SLOW
@given(data=st.data(), channels=st.sampled_from([1, 3, 4]))
def test_blender_pixels_round_trip_and_flip(data, channels):
    h, w = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12))
    img = data.draw(hnp.arrays(np.uint8, (h, w, channels)))
    flat, bw, bh = image_to_blender(img)
    assert (bw, bh) == (w, h) and flat.dtype == np.float32 and flat.size == w * h * 4
    blender = flat.reshape(h, w, 4)
    rgba = codecs.convert_channels(img, 4)
    # Blender's first row is the image's bottom row; values are linear there.
    np.testing.assert_allclose(blender[0, :, :3], codecs.srgb_to_linear(rgba[-1, :, :3] / 255),
                               rtol=1e-6)
    back = image_from_blender(flat, w, h)
    np.testing.assert_array_equal(codecs.to_bit_depth(back, 8), rgba)
    flat16, _, _ = image_to_blender(rgba.astype(np.uint16) * 257)
    np.testing.assert_allclose(flat16, flat, rtol=1e-6)


def test_byte_blender_images_are_only_flipped():
    img = np.random.default_rng(5).random((3, 4, 4), dtype=np.float32)
    flat = img[::-1].reshape(-1)  # as Blender would hold it
    np.testing.assert_array_equal(image_from_blender(flat, 4, 3, linear=False), img)
    out, w, h = image_to_blender(img, linear=False)
    np.testing.assert_array_equal(out, flat)
    with pytest.raises(CodecError, match="do not make a 4x4"):
        image_from_blender(flat, 4, 4)


def _srgb8_reference(linear):  # float64 textbook formula, clipped, rounded to 8 bits
    x = np.clip(np.asarray(linear, np.float64), 0, 1)
    return np.round(_srgb_reference(x) * 255)


def test_srgb_transfer_dtypes_cuts_and_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zeros and negatives never reach log()
        enc = codecs.linear_to_srgb([-1.0, 0.0, 0.5])
        dec = codecs.srgb_to_linear([-1.0, 0.0, 0.5])
    assert enc.dtype == dec.dtype == np.float32
    np.testing.assert_allclose(enc, [-12.92, 0, 0.7353569], rtol=1e-6)
    np.testing.assert_allclose(dec, [-1 / 12.92, 0, 0.21404114], rtol=1e-6)
    # At the cuts the linear segment is the one taken.
    cut = np.float32(0.0031308)
    assert codecs.linear_to_srgb(cut) == cut * np.float32(12.92)
    cut = np.float32(0.04045)
    assert codecs.srgb_to_linear(cut) == cut * np.float32(1 / 12.92)


def test_lookup_tables_match_the_formula(monkeypatch):
    # Built afresh here (the module caches them).
    monkeypatch.setattr(colour, "_LINEAR16_TO_SRGB8", None)
    monkeypatch.setattr(colour, "_LUT_CACHE", {})
    table = colour._linear16_to_srgb8()
    assert table.dtype == np.uint8 and table.shape == (65536,)
    diff = table.astype(np.int64) - _srgb8_reference(np.arange(65536) / 65535.0)
    assert np.abs(diff).max() <= 1 and np.count_nonzero(diff) <= 3  # float32 rounding only
    assert colour._linear16_to_srgb8() is table
    for levels in (256, 65536):
        lut = colour._srgb_to_linear_lut(levels)
        assert lut.dtype == np.float32 and lut.shape == (levels,)
        j = np.arange(levels) / (levels - 1)
        np.testing.assert_allclose(
            lut, np.where(j <= 0.04045, j / 12.92, ((j + 0.055) / 1.055) ** 2.4),
            rtol=2e-6, atol=1e-9)
        assert colour._srgb_to_linear_lut(levels) is lut
    assert set(colour._LUT_CACHE) == {256, 65536}


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_srgb8_from_blender_matches_the_float_path(channels):
    h, w = 3, 5
    rng = np.random.default_rng(channels)
    img = rng.uniform(-0.2, 1.2, (h, w, channels)).astype(np.float32)  # top-down, linear
    img[0, 0] = 0.0
    img[0, 1] = 1.0
    flat = img[::-1].reshape(-1)  # as Blender holds it
    out = codecs.srgb8_from_blender(flat, w, h, channels)
    assert out.dtype == np.uint8 and out.shape == (h, w, channels)
    colours = 3 if channels >= 3 else 1
    diff = out[..., :colours].astype(np.int64) - _srgb8_reference(img[..., :colours])
    assert np.abs(diff).max() <= 1
    assert (out[0, 0] == 0).all() and (out[0, 1] == 255).all()
    # Alpha is scaled straight to 8 bits, never colour-converted.
    np.testing.assert_array_equal(out[..., colours:],
                                  np.round(np.clip(img[..., colours:], 0, 1) * 255))
    # A byte image stores sRGB already: only clipped, rounded and flipped.
    raw = codecs.srgb8_from_blender(flat, w, h, channels, linear=False)
    np.testing.assert_array_equal(raw, np.floor(np.clip(img, 0, 1) * 255 + 0.5))


def test_srgb8_from_blender_known_values_and_refusals():
    px = np.array([0.18, 0.5, 1.0, 0.5,  0.0, 2.0, -1.0, 1.0], np.float32)  # 2x1 RGBA
    assert codecs.srgb8_from_blender(px, 2, 1).tolist() == [[[118, 188, 255, 128],
                                                              [0, 255, 0, 255]]]
    assert codecs.srgb8_from_blender(px, 2, 1, linear=False).tolist() == [[[46, 128, 255, 128],
                                                                           [0, 255, 0, 255]]]
    for w, h, c in ((2, 2, 4), (0, 1, 4), (1, 0, 4), (1, 1, 8), (2, 1, 0)):
        with pytest.raises(CodecError, match=rf"^pixels: 8 values do not make a {w}x{h} "
                                             rf"image with {c} channels$"):
            codecs.srgb8_from_blender(px, w, h, c)
    with pytest.raises(CodecError, match="^pixels: 0 values do not make a 0x3 image"):
        codecs.srgb8_from_blender([], 0, 3)
    with pytest.raises(CodecError, match="^pixels: 0 values do not make a 3x0 image"):
        codecs.srgb8_from_blender([], 3, 0)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_image_from_blender_converts_colour_and_keeps_alpha(channels):
    img = np.random.default_rng(channels).random((2, 3, channels), dtype=np.float32)
    flat = img[::-1].reshape(-1).astype(np.float64)  # any float type comes back float32
    out = image_from_blender(flat, 3, 2, channels)
    assert out.dtype == np.float32 and out.shape == (2, 3, channels)
    colours = 3 if channels >= 3 else 1
    np.testing.assert_allclose(out[..., :colours], _srgb_reference(img[..., :colours]),
                               rtol=2e-6, atol=2e-7)
    np.testing.assert_array_equal(out[..., colours:], img[..., colours:])
    raw = image_from_blender(flat, 3, 2, channels, linear=False)
    assert raw.dtype == np.float32
    np.testing.assert_array_equal(raw, img)


def test_image_from_blender_refusals():
    with pytest.raises(CodecError, match="^pixels are not numbers: "):
        image_from_blender(["red"], 1, 1, 1)
    for w, h, c in ((0, 3, 4), (3, 0, 4), (1, 1, 5), (1, 1, 0)):
        with pytest.raises(CodecError, match=rf"^pixels: 0 values do not make a {w}x{h} "
                                             rf"image with {c} channels$"):
            image_from_blender(np.zeros(0, np.float32), w, h, c)


def test_image_to_blender_float_images_and_refusals():
    img = np.array([[[0.5, 0.25, 1.0, 0.5]], [[0.0, 1.0, 0.04045, 0.25]]], np.float32)
    flat, w, h = image_to_blender(img)
    assert (w, h) == (1, 2) and flat.dtype == np.float32 and flat.shape == (8,)
    np.testing.assert_allclose(flat, [0, 1, 0.04045 / 12.92, 0.25,
                                      0.21404114, 0.05087609, 1, 0.5], rtol=1e-5)
    grey = image_to_blender(np.array([[[0.5]]], np.float32))[0]
    np.testing.assert_allclose(grey, [0.21404114] * 3 + [1], rtol=1e-5)
    with pytest.raises(CodecError, match="^image: "):
        image_to_blender("not an image")
    huge = np.broadcast_to(np.zeros(4, np.uint8), (1 << 15, 1 << 15, 4))  # a view: no memory
    with pytest.raises(CodecError, match=r"^image: .*pixels"):
        image_to_blender(huge)


# --------------------------------------------------------------------------- pixel arrays

def test_pil_modes_become_arrays_of_the_right_type():
    px = codecs.image_array
    rgba = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    for mode, arr in (("L", rgba[..., 0]), ("LA", rgba[..., :2]), ("RGB", rgba[..., :3]),
                      ("RGBA", rgba)):
        im = Image.fromarray(np.ascontiguousarray(arr))
        assert im.mode == mode
        got = px(im)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arr.reshape(2, 3, -1))
    i16 = Image.fromarray(np.array([[0, 40000]], np.uint16))
    got = px(i16)
    assert i16.mode == "I;16" and got.dtype == np.uint16 and got[..., 0].tolist() == [[0, 40000]]
    got = px(Image.fromarray(np.array([[-5, 300, 70000]], np.int32)))
    assert got.dtype == np.uint16 and got[..., 0].tolist() == [[0, 300, 65535]]
    got = px(Image.fromarray(np.array([[0, 1]], np.int32)))  # 0..1: a float image
    assert got.dtype == np.float32 and got[..., 0].tolist() == [[0.0, 1.0]]
    got = px(Image.fromarray(np.array([[0.25, 2.5]], np.float32)))
    assert got.dtype == np.float32 and got[..., 0].tolist() == [[0.25, 2.5]]
    got = px(Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1"))
    assert got.dtype == np.uint8 and got[..., 0].tolist() == [[0, 255]]
    pal = Image.new("P", (2, 1))
    pal.putdata([0, 1])
    pal.putpalette([10, 20, 30, 40, 50, 60])
    assert px(pal).tolist() == [[[10, 20, 30], [40, 50, 60]]]
    pal.info["transparency"] = 0
    assert px(pal).tolist() == [[[10, 20, 30, 0], [40, 50, 60, 255]]]
    assert px(Image.new("RGBa", (1, 1), (10, 20, 30, 255))).shape == (1, 1, 4)
    assert px(Image.new("PA", (1, 1))).shape == (1, 1, 4)
    assert px(Image.new("CMYK", (2, 1), (0, 0, 0, 0))).tolist() == [[[255] * 3] * 2]


def test_unreadable_pil_images_and_wrong_arrays_are_refused_naming_the_field():
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "PNG", compress_level=0)
    broken = Image.open(io.BytesIO(buf.getvalue()[:200]))
    with pytest.raises(CodecError, match=r"^im: cannot read pixels of PIL image RGB 64x64: \S"):
        codecs.image_array(broken, "im")
    with pytest.raises(CodecError, match=r"^image: 'abc' is not an image \(expected a numpy "
                                         r"array or a PIL image\)$"):
        codecs.image_array("abc")
    with pytest.raises(CodecError, match=r"^im: array 2x2x5 uint8 is not an image: expected "
                                         r"HxW, HxWx1, HxWx3 or HxWx4$"):
        codecs.image_array(np.zeros((2, 2, 5), np.uint8), "im")
    for shape in ((0, 3, 3), (3, 0, 3)):
        with pytest.raises(CodecError, match=rf"^im: array {shape[0]}x{shape[1]}x3 uint8 "
                                             r"is empty$"):
            codecs.image_array(np.zeros(shape, np.uint8), "im")
    with pytest.raises(CodecError, match=r"^im: array 1x1x3 int32: pixel type int32 is not "
                                         r"supported \(use uint8, uint16, or float32 in 0\.\.1\)$"):
        codecs.image_array(np.zeros((1, 1, 3), np.int32), "im")


def test_image_array_dtypes():
    assert codecs.image_array(np.array([[True, False]])).tolist() == [[[255], [0]]]
    f32 = np.zeros((1, 1, 3), np.float32)
    assert codecs.image_array(f32) is f32  # no copy
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # beyond float32 is inf, silently (clipped later)
        big = codecs.image_array(np.array([[1e300]]))
    assert big.dtype == np.float32 and np.isinf(big).all()


def test_pixel_limit_message():
    pixels.check_pixels(16384, 16384, "im")  # at the limit: fine
    with pytest.raises(CodecError, match=r"^im: image of 16384x16385 pixels is too large: the "
                                         r"limit is MAX_PIXELS = 268435456 pixels "
                                         r"\(16384x16384\)$"):
        pixels.check_pixels(16384, 16385, "im")
    with pytest.raises(CodecError, match="^im: frame of 1x268435457 pixels is too large"):
        pixels.check_pixels(1, 268435457, "im", "frame")


def test_channel_conversion_values():
    conv = codecs.convert_channels
    rgba = np.array([[[100, 50, 200, 7]]], np.uint8)
    assert conv(rgba, 1).tolist() == [[[82]]]  # 29.9 + 29.35 + 22.8, rounded
    assert conv(rgba, 2).tolist() == [[[82, 7]]]
    assert conv(np.array([[[250, 250, 251]]], np.uint8), 1).tolist() == [[[250]]]
    np.testing.assert_allclose(conv(np.array([[[0.1, 0.2, 0.3]]], np.float32), 1),
                               [[[0.1815]]], rtol=1e-6)  # floats are not rounded
    assert conv(np.array([[[9, 3]]], np.uint8), 4).tolist() == [[[9, 9, 9, 3]]]
    assert conv(np.array([[[9]]], np.uint16), 4).tolist() == [[[9, 9, 9, 65535]]]
    assert conv(np.array([[[9]]], np.uint8), 2).tolist() == [[[9, 255]]]
    assert conv(np.array([[[0.5]]], np.float32), 4).tolist() == [[[0.5, 0.5, 0.5, 1.0]]]
    assert conv(rgba, 3).tolist() == [[[100, 50, 200]]]


def test_bit_depth_values():
    assert codecs.to_bit_depth(np.array([0, 1, 255], np.uint8), 16).tolist() == [0, 257, 65535]
    assert codecs.to_bit_depth(np.array([0, 128, 129, 32767, 65535], np.uint16), 8).tolist() \
        == [0, 0, 1, 127, 255]
    f = np.array([np.nan, np.inf, -np.inf, 0.5, 2, -1, 0.2], np.float32)
    got8 = codecs.to_bit_depth(f, 8)
    assert got8.dtype == np.uint8 and got8.tolist() == [0, 255, 0, 128, 255, 0, 51]
    got16 = codecs.to_bit_depth(f, 16)
    assert got16.dtype == np.uint16 and got16.tolist() == [0, 65535, 0, 32768, 65535, 0, 13107]
    same = np.zeros(2, np.uint16)
    assert codecs.to_bit_depth(same, 16) is same
    with pytest.raises(CodecError, match=r"^bit depth 12 is not 8 or 16$"):
        codecs.to_bit_depth(same, 12)


# --------------------------------------------------------------------------- garbage

ALL_FIELDS = [
    ImageField(name="image"), TextField(name="text"), NumberField(name="number"),
    IntegerField(name="integer"), BooleanField(name="boolean"),
    CategoryField(name="category", choices=["a", "b"]), VectorField(name="vector", length=2),
    ArrayField(name="array", item=ImageField(name="image")), FileField(name="file"), SEG,
    ImagePointField(name="point"), ImageBoundingBoxField(name="box"),
    ImageLandmarksField(name="landmarks", length=2), SecretField(name="secret"),
    AnyField(name="any"),
]

garbage = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
    | st.binary(max_size=200)
    | st.sampled_from(["data:image/png;base64,!!!", "data:,", "data:image/png;base64,iVBORw0KGgo",
                       "http://", "/etc/passwd", "file:///etc/passwd", "\x00", "9" * 5000,
                       base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(50)).decode()])
    | hnp.arrays(st.sampled_from([np.uint8, np.int64, np.float64, np.bool_, np.complex64]),
                 hnp.array_shapes(min_dims=0, max_dims=4, max_side=5)),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5),
                                                                      children, max_size=3),
    max_leaves=10)


class Refused(Exception):
    """The value is garbage for this field and direction: a CodecError must come."""


class Same:
    """The codec hands the value back itself (a pass-through)."""

    def __init__(self, value):
        self.value = value


def _same(got, want) -> bool:
    """Equal in value and type, NaN equal to NaN, arrays element by element."""
    if isinstance(want, np.ndarray):
        return isinstance(got, np.ndarray) and got.dtype == want.dtype and \
            got.shape == want.shape and np.array_equal(got, want, equal_nan=want.dtype.kind in "fc")
    if type(got) is not type(want):
        return False
    if isinstance(want, float):
        return got == want or (math.isnan(got) and math.isnan(want))
    if isinstance(want, (list, tuple)):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want))
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    return got == want


def _real(v, finite=True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Refused
    try:
        out = float(v)
    except OverflowError:
        raise Refused from None
    if finite and not math.isfinite(out):
        raise Refused
    return out


def _reals(v, length=None, unit=False) -> list:
    if isinstance(v, np.ndarray):
        if v.ndim != 1:
            raise Refused
        v = v.tolist()
    if not isinstance(v, (list, tuple)) or (length is not None and len(v) != length):
        raise Refused
    out = [_real(x) for x in v]
    if unit and not all(0.0 <= x <= 1.0 for x in out):
        raise Refused
    return out


def _whole(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Refused
    if isinstance(v, float):
        if not math.isfinite(v) or not v.is_integer():
            raise Refused
        return int(v)
    return v


def _pixels(v) -> np.ndarray:
    """What an array must be to be an image, and the HxWxC array it is read as."""
    if not isinstance(v, np.ndarray) or v.ndim not in (2, 3):
        raise Refused
    a = v[:, :, None] if v.ndim == 2 else v
    if not 1 <= a.shape[2] <= 4 or 0 in a.shape[:2]:
        raise Refused
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * np.uint8(255)
    if a.dtype == np.float64:
        return a.astype(np.float32)
    raise Refused  # int64, complex64: no pixel type


def _decoded_image(v) -> np.ndarray:
    a = _pixels(v)
    if a.shape[2] == 2:  # grey + alpha is handed out as RGBA
        a = np.concatenate([a[..., :1]] * 3 + [a[..., 1:]], axis=2)
    return a


def _encoded_image(v):
    a = _pixels(v)

    def check(wire):  # a PNG data URI of the picture as three 8-bit channels
        back = decode_value(ImageField(name="back"), wire)
        assert back.shape == a.shape[:2] + (3,) and back.dtype == np.uint8
        if a.dtype == np.uint8 and a.shape[2] in (1, 3):
            assert np.array_equal(back, np.repeat(a, 3 // a.shape[2], axis=2))
    return check


def _label_ids(v) -> np.ndarray:
    if not isinstance(v, np.ndarray):
        raise Refused
    if v.ndim == 3 and v.shape[2] == 1:
        v = v[:, :, 0]
    if v.ndim == 3 and v.shape[2] in (3, 4) and v.dtype == np.uint8:
        return codecs.colors_to_label_ids(v, SEG)  # nearest colour: its own test
    if v.ndim != 2 or v.dtype.kind not in "ui" or v.size == 0:
        raise Refused
    return v


def _encoded_labels(v):
    ids = _label_ids(v)
    if ids.size == 0 or not set(np.unique(ids).tolist()) <= {0, 3, 7}:
        raise Refused  # an empty map, or ids outside the field's labels

    def check(wire):
        assert np.array_equal(decode_value(SEG, wire), ids)
    return check


def _data_of(want: bytes):
    def check(wire):
        assert codecs.parse_data_uri(wire)[0] == want
    return check


def _encoded_file(v, ctx):
    if isinstance(v, bytes):
        if ctx.files_as_paths:
            raise Refused  # contents, and no shared folder to put them in
        return _data_of(v)
    if not isinstance(v, str):
        raise Refused
    if ctx.files_as_paths or re.match(r"(?i)(https?|ftp|data):", v):
        return Same(v)  # a path the server opens, or a URL
    if not v or not os.path.isfile(v):
        raise Refused
    return _data_of(Path(v).read_bytes())  # an existing local file ("/etc/passwd") is sent


def _decoded_file(v, ctx):
    if isinstance(v, bytes):
        want = v
    elif not isinstance(v, str):
        raise Refused
    elif ctx.files_as_paths and not v.startswith("data:"):
        return Same(v)
    elif os.path.isabs(v) and not v.startswith("data:"):
        raise Refused  # a server's path outside the shared folder is never read
    elif not re.match(r"(?i)\s*(data|https?|file):", v) or v.strip()[:5].lower() == "file:":
        raise Refused
    elif v.strip()[:5].lower() == "data:":
        try:
            want = codecs.parse_data_uri(v.strip())[0]
        except CodecError:
            raise Refused from None
    else:
        want = b"not an image"  # what the context's fetch gives for any URL

    def check(got):
        assert isinstance(got, FileValue) and got.read_bytes() == want
    return check


def _plain(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _each(items, rule):
    if not isinstance(items, (list, tuple)):
        raise Refused
    checks = [rule(x) for x in items]

    def check(got):
        assert isinstance(got, list) and len(got) == len(checks)
        for g, c in zip(got, checks):
            c(g) if callable(c) else _check(g, c)
    return check


def _check(got, want):
    if isinstance(want, Same):
        assert got is want.value
    elif callable(want):
        want(got)
    else:
        assert _same(got, want), (got, want)


def expected(field, encoding: bool, v, ctx):
    """What ``field`` makes of garbage ``v``: a value, a Same, a check; Refused: an error."""
    t = field.type
    if t in ("text", "secret"):
        if isinstance(v, str):
            return Same(v)
        raise Refused
    if t == "boolean":
        if isinstance(v, bool):
            return v
        raise Refused
    if t == "number":
        return _real(v, finite=encoding)  # a model's inf or NaN output is kept
    if t == "integer":
        return _whole(v)
    if t == "category":
        if not encoding:
            return Same(v)  # outputs are not checked against the choices
        if isinstance(v, str) and v in ("a", "b"):
            return v
        raise Refused
    if t == "vector":
        return _reals(v, 2 if encoding else None)
    if t == "image_point":
        return _reals(v, 2, unit=encoding)
    if t == "image_bounding_box":
        box = _reals(v, 4, unit=encoding)
        if encoding and not (box[0] < box[2] and box[1] < box[3]):
            raise Refused
        return box
    if t == "image_landmarks":
        points = v.tolist() if isinstance(v, np.ndarray) else v
        if not isinstance(points, (list, tuple)) or (encoding and len(points) != 2):
            raise Refused
        return [_reals(p, 2, unit=encoding) for p in points]
    if t == "any":
        return _plain(v) if encoding else Same(v)
    if t == "image":
        return _encoded_image(v) if encoding else _decoded_image(v)
    if t == "array":  # of images
        if isinstance(v, np.ndarray):
            raise Refused
        return _each(v, _encoded_image if encoding else _decoded_image)
    if t == "segmentation":
        return _encoded_labels(v) if encoding else _label_ids(v)
    if t == "file":
        return _encoded_file(v, ctx) if encoding else _decoded_file(v, ctx)
    raise AssertionError(f"no rule for {t}")


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(ALL_FIELDS), value=garbage, paths=st.booleans(),
       bytes_as_paths=st.booleans(), directories=st.booleans())
def test_garbage_raises_codec_error_unless_it_is_a_value_of_the_type(field, value, paths,
                                                                     bytes_as_paths,
                                                                     directories):
    """Each field type's rule (``expected``) says which garbage is refused and what the
    rest decodes to; the codec must agree both ways, never succeeding on a refusal."""
    _agrees(field, value, WireContext(files_as_paths=paths, bytes_as_paths=bytes_as_paths,
                                      directories=directories,
                                      fetch=lambda url: b"not an image"))


def _agrees(field, value, ctx):
    for encoding, fn in ((True, encode_value), (False, decode_value)):
        try:
            want = expected(field, encoding, value, ctx)
        except Refused:
            with pytest.raises(CodecError) as err:
                fn(field, value, ctx)
            assert field.name in str(err.value)
            continue
        _check(fn(field, value, ctx), want)


_rng = np.random.default_rng(3)
# Values the random garbage seldom hits: each type's accepted forms and their near misses.
CHOSEN = [
    None, True, 0, 1, 2.0, 2.5, -1, 10 ** 400, float("nan"), float("inf"), "", "a", "c",
    b"", b"\x89PNG", "/etc/passwd", "README.md", "data:,", "data:text/plain,hi%20there",
    "DATA:,x", " data:;base64,aGk=", "data:image/png;base64,!!!", "http://host/out.png",
    "file:///etc/passwd", "/nonexistent/x.png", "ftp://host/f",
    [0.25, 0.5], [0.5, 0.25, 0.75, 1.0], [0.5, 0.25, 0.25, 1.0], [1.5, 0.5], [0.1, float("nan")],
    [[0.1, 0.2], [0.3, 0.4]], [[0.1, 0.2]], [[0.1, 2.0], [0.3, 0.4]], [], [True, 0.5],
    np.array([0.25, 0.75]), np.array([[0.1, 0.2], [0.3, 0.4]]), {"k": [1, np.array([2])]},
    _rng.integers(0, 256, (3, 4), dtype=np.uint8), _rng.integers(0, 256, (3, 4, 1), np.uint8),
    _rng.integers(0, 256, (3, 4, 2), dtype=np.uint8), _rng.integers(0, 256, (2, 3, 3), np.uint8),
    _rng.integers(0, 256, (2, 3, 4), dtype=np.uint8), np.zeros((0, 3, 3), np.uint8),
    _rng.random((2, 2, 3)), np.array([[0.5, np.nan]]), np.ones((2, 2), np.bool_),
    np.array([[0, 3], [7, 7]], np.int64), np.array([[0, 1]], np.int64),
    np.array([[-1, 0]], np.int64), np.zeros((2, 2, 5), np.uint8), np.zeros((2, 2), np.complex64),
    [_rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)], [np.zeros((2, 2), np.uint8), "x"],
]


@pytest.mark.parametrize("field", ALL_FIELDS, ids=lambda f: f.type)
def test_chosen_values_agree_with_each_types_rule(field):
    for paths in (False, True):
        ctx = WireContext(files_as_paths=paths, fetch=lambda url: b"not an image")
        for value in CHOSEN:
            _agrees(field, value, ctx)


@settings(deadline=None, max_examples=150)
@given(data=st.binary(min_size=0, max_size=400))
def test_random_and_truncated_image_bytes_raise_codec_error(data):
    good = codecs.encode_image_bytes(np.zeros((4, 4, 3), np.uint16), compress_level=1)
    for blob in (data, good[: len(data) % len(good)], good[:40] + data):
        for wire in (blob, base64.b64encode(blob).decode(), codecs.to_data_uri(blob, "image/png")):
            # Never an image made up from garbage (a silent 1x1 black picture), never
            # another exception: every one of these is refused, naming the field.
            with pytest.raises(CodecError, match="im"):
                decode_value(ImageField(name="im"), wire)


def test_core_never_imports_bpy():
    code = ("import sys, runway_addon.core.codecs, runway_addon.core.validation; "
            "assert 'bpy' not in sys.modules")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
