"""Pixels between Blender images and core values, in real Blender.

The module under test is the package's own ``runway_addon.blender.images`` (it needs
bpy, not the installed extension), so a change to it, or a planted mutant from
``build.py mutate``, is what these tests see.
"""
import numpy as np
import pytest

from runway_addon.core.errors import CodecError

pytestmark = pytest.mark.blender


@pytest.fixture
def bpy():
    import bpy
    bpy.ops.wm.read_homefile(use_factory_startup=True, use_empty=True)
    return bpy


@pytest.fixture
def images(bpy):
    from runway_addon.blender import images
    return images


def gradient(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = x * 255 // (w - 1)
    img[..., 1] = y * 255 // (h - 1)
    img[..., 2] = 40
    img[..., 3] = 255
    img[0, 0] = (255, 0, 0, 255)  # a marker in the top-left corner
    return img


def raw_pixels(image):
    width, height = image.size
    raw = np.empty(width * height * image.channels, np.float32)
    image.pixels.foreach_get(raw)
    return raw.reshape(height, width, image.channels)


def test_byte_image_round_trip_is_exact_and_upright(images):
    src = gradient()
    image = images.array_to_image(src, "roundtrip")
    assert tuple(image.size) == (64, 48) and not image.is_float and image.packed_file
    assert image.name == "roundtrip" and image.use_fake_user
    # Blender stores rows bottom-up: the top-left marker is in the last row there.
    assert np.allclose(raw_pixels(image)[-1, 0], (1, 0, 0, 1))
    back = images.image_to_array(image)
    assert back.dtype == np.float32 and back.shape == (48, 64, 4)
    assert np.array_equal(np.round(back * 255).astype(np.uint8), src)


def test_alpha_is_kept_not_made_opaque(images):
    src = gradient()
    src[..., 3] = 100
    src[5, 7, 3] = 0
    image = images.array_to_image(src, "see-through")
    assert image.alpha_mode != "NONE"
    back = np.round(images.image_to_array(image) * 255).astype(np.uint8)
    assert back[5, 7, 3] == 0 and back[0, 1, 3] == 100


def test_sixteen_bit_goes_to_a_linear_float_image(images):
    src = np.zeros((4, 6, 4), np.uint16)
    src[..., :3] = 32768  # sRGB mid-grey, 16-bit
    src[..., 3] = 65535
    src[0, 0, 0] = 65535
    image = images.array_to_image(src, "deep")
    assert image.is_float and images.stores_linear(image)
    raw = raw_pixels(image)
    # The float buffer holds scene-linear light: sRGB 0.5 is about 0.214 there.
    assert np.allclose(raw[1, 1, :3], 0.2140, atol=1e-3)
    assert raw[-1, 0, 0] == pytest.approx(1.0) and raw[1, 1, 3] == pytest.approx(1.0)
    back = images.image_to_array(image)
    assert np.abs(back - src / 65535.0).max() < 1e-4


def test_float_values_go_to_a_float_image(images):
    src = np.full((3, 5, 4), 0.5, np.float32)
    image = images.array_to_image(src, "float")
    assert image.is_float
    assert np.allclose(raw_pixels(image)[..., 0], 0.2140, atol=1e-3)
    assert np.allclose(images.image_to_array(image), src, atol=1e-5)


def test_non_colour_float_images_are_read_without_conversion(images, bpy):
    image = bpy.data.images.new("normals", 4, 2, alpha=True, float_buffer=True)
    image.colorspace_settings.name = "Non-Color"
    values = np.linspace(0.0, 1.0, 4 * 2 * 4, dtype=np.float32)
    image.pixels.foreach_set(values)
    assert not images.stores_linear(image)
    back = images.image_to_array(image)
    # Data, not light: the values come back as stored, only the rows flipped.
    assert np.allclose(back, values.reshape(2, 4, 4)[::-1], atol=1e-6)


def test_a_linear_float_image_is_read_as_srgb(images, bpy):
    image = bpy.data.images.new("light", 1, 1, alpha=True, float_buffer=True)
    image.pixels.foreach_set(np.array([0.2140, 0.2140, 0.2140, 0.25], np.float32))
    assert images.stores_linear(image)
    back = images.image_to_array(image)
    assert np.allclose(back[0, 0, :3], 0.5, atol=1e-3) and back[0, 0, 3] == pytest.approx(0.25)


def test_a_byte_image_is_never_linear(images, bpy):
    image = bpy.data.images.new("bytes", 2, 2, alpha=True, float_buffer=False)
    assert not images.stores_linear(image)
    image.colorspace_settings.name = "Non-Color"
    assert not images.stores_linear(image)


def test_an_image_with_no_pixels_is_an_error_that_names_it(images, bpy):
    missing = bpy.data.images.new("missing", 4, 4)
    missing.source = "FILE"  # a file that is not there: Blender reports 0x0
    missing.filepath = "/nonexistent/runway-missing.png"
    assert tuple(missing.size) == (0, 0)
    with pytest.raises(CodecError) as err:
        images.read_pixels(missing)
    assert str(err.value).startswith("image 'missing' has no pixels (a render result")
    with pytest.raises(CodecError, match="^image 'missing' has no pixels"):
        images.image_to_array(missing)


def test_existing_image_is_never_overwritten(images):
    first = images.array_to_image(gradient(), "mine")
    first_pixels = images.image_to_array(first).copy()
    second = images.array_to_image(np.zeros((8, 8, 3), np.uint8), "mine")
    assert second.name != first.name
    assert np.array_equal(images.image_to_array(first), first_pixels)


def test_an_unpacked_result_is_not_packed(images):
    image = images.array_to_image(gradient(8, 8), "loose", pack=False)
    assert not image.packed_file and image.use_fake_user


def test_packed_result_survives_save_and_reload(images, bpy, tmp_path):
    images.array_to_image(gradient(), "kept")
    path = tmp_path / "kept.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    back = images.image_to_array(bpy.data.images["kept"])
    assert np.array_equal(np.round(back * 255).astype(np.uint8), gradient())


def test_a_bad_value_is_refused_with_its_name(images):
    with pytest.raises(CodecError, match="texture"):
        images.array_to_image(np.zeros((4,), np.uint8), "texture")
