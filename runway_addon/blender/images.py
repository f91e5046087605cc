"""Blender images <-> core image values (numpy, top-down, sRGB-encoded).

Pixels move with foreach_get/foreach_set through float32 buffers (a Python
list per pixel takes seconds per frame at 1080p); the flip and the colour
transfer live in core.codecs, the one place that knows about them.
"""
import numpy as np

import bpy

from ..core import codecs

# Colour spaces whose pixel values are data, not light: never converted.
DATA_COLORSPACES = {"Non-Color", "Raw", "Generic Data"}


def stores_linear(image) -> bool:
    """Float buffers hold scene-linear values; byte buffers hold the encoded ones."""
    return image.is_float and image.colorspace_settings.name not in DATA_COLORSPACES


def read_pixels(image) -> np.ndarray:
    """The image's flat float32 buffer as Blender holds it (foreach_get: one copy)."""
    width, height = image.size
    if width == 0 or height == 0:
        raise codecs.CodecError(
            f"image {image.name!r} has no pixels (a render result or a missing file?)")
    buf = np.empty(width * height * image.channels, dtype=np.float32)
    image.pixels.foreach_get(buf)
    return buf


def image_to_array(image) -> np.ndarray:
    """A Blender image -> HxWx4 float32 top-down sRGB-encoded array."""
    width, height = image.size
    return codecs.image_from_blender(read_pixels(image), width, height, image.channels,
                                     linear=stores_linear(image))


def array_to_image(value, name: str, *, pack: bool = True):
    """A new Blender image holding ``value`` (never overwrites an existing one:
    Blender gives a taken name a .001 suffix).

    8-bit values land in a byte sRGB image; 16-bit and float values in a float
    (linear) image so no precision is lost. Packed and kept (fake user) so
    the .blend keeps it."""
    arr = codecs.image_array(value, name)
    use_float = arr.dtype != np.uint8
    height, width = arr.shape[:2]
    image = bpy.data.images.new(name, width=width, height=height, alpha=True,
                                float_buffer=use_float)
    pixels, _, _ = codecs.image_to_blender(arr, linear=use_float)
    image.pixels.foreach_set(pixels)
    image.update()
    # A result nobody uses yet would be dropped on save: keep it.
    image.use_fake_user = True
    if pack:
        image.pack()
    return image
