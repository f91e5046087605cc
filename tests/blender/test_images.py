"""Pixels between Blender images and core values, in real Blender."""
import numpy as np
import pytest

from tests.helpers import ADDON_PKG

pytestmark = pytest.mark.blender


@pytest.fixture
def images(blender):
    return __import__(ADDON_PKG + ".blender.images", fromlist=["_"])


def gradient(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = x * 255 // (w - 1)
    img[..., 1] = y * 255 // (h - 1)
    img[..., 2] = 40
    img[..., 3] = 255
    img[0, 0] = (255, 0, 0, 255)  # a marker in the top-left corner
    return img


def test_byte_image_round_trip_is_exact_and_upright(images, blender):
    src = gradient()
    image = images.array_to_image(src, "roundtrip")
    assert tuple(image.size) == (64, 48) and not image.is_float and image.packed_file
    # Blender stores rows bottom-up: the top-left marker is in the last row there.
    raw = np.empty(64 * 48 * 4, np.float32)
    image.pixels.foreach_get(raw)
    assert np.allclose(raw.reshape(48, 64, 4)[-1, 0], (1, 0, 0, 1))
    back = images.image_to_array(image)
    assert np.array_equal(np.round(back * 255).astype(np.uint8), src)


def test_sixteen_bit_goes_to_a_linear_float_image(images):
    src = (gradient().astype(np.uint16) * 257)
    image = images.array_to_image(src, "deep")
    assert image.is_float
    raw = np.empty(64 * 48 * 4, np.float32)
    image.pixels.foreach_get(raw)
    # Mid-grey sRGB 0.5 is about 0.214 in linear light.
    mid = images.codecs.srgb_to_linear(np.float32(0.5))
    assert abs(float(mid) - 0.214) < 0.001
    back = images.image_to_array(image)
    assert np.abs(back - src / 65535.0).max() < 1e-4


def test_existing_image_is_never_overwritten(images, blender):
    first = images.array_to_image(gradient(), "mine")
    first_pixels = images.image_to_array(first).copy()
    second = images.array_to_image(np.zeros((8, 8, 3), np.uint8), "mine")
    assert second.name != first.name
    assert np.array_equal(images.image_to_array(first), first_pixels)


def test_packed_result_survives_save_and_reload(images, blender, tmp_path):
    images.array_to_image(gradient(), "kept")
    path = tmp_path / "kept.blend"
    blender.ops.wm.save_as_mainfile(filepath=str(path))
    blender.ops.wm.open_mainfile(filepath=str(path))
    back = images.image_to_array(blender.data.images["kept"])
    assert np.array_equal(np.round(back * 255).astype(np.uint8), gradient())
