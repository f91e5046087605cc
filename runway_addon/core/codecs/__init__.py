"""Python values <-> wire values, for every field type, in one place.

Python side (what the rest of the add-on hands in and gets back):

- image: numpy array HxW, HxWx1, HxWx3 or HxWx4 (uint8, uint16, or float32 in 0..1),
  top-down rows, sRGB-encoded display values; or a PIL image. Decoded images are
  HxWxC top-down uint8 or uint16 arrays (the wire's bit depth), C in 1, 3, 4.
- segmentation: HxW integer label-id array (an RGB colour map is accepted on input).
- file: ``FileValue`` (or a local path string when encoding).
- points, boxes, landmarks, vectors: lists of floats.

One module per concept: ``naming`` (file names, FileValue, describe), ``pixels`` (arrays,
channels, bit depth), ``png`` (image bytes), ``transport`` (WireContext, data URIs, the
shared folder, downloads), ``values`` (the per-type encoders and decoders), ``exr``
(OpenEXR writer and reader) and ``colour`` (the only place that knows Blender images are
bottom-up, linear float RGBA). Numpy and Pillow only. Every failure is a ``CodecError``
naming the field.
"""
from ..errors import CodecError
from .colour import (image_from_blender, image_to_blender, linear_to_srgb, srgb8_from_blender,
                     srgb_to_linear)
from .exr import encode_exr, read_exr
from .naming import (MAX_NAME_BYTES, MAX_NAME_LENGTH, FileValue, describe, safe_filename,
                     write_unique)
from .pixels import MAX_PIXELS, convert_channels, image_array, to_bit_depth
from .png import (DEFAULT_JPEG_QUALITY, DEFAULT_PNG_COMPRESS_LEVEL, decode_image_bytes,
                  encode_image_bytes)
from .transport import WireContext, parse_data_uri, to_data_uri
from .values import (colors_to_label_ids, decode_value, encode_value, label_colors, label_ids,
                     segmentation_ids)

__all__ = [
    "CodecError", "DEFAULT_JPEG_QUALITY", "DEFAULT_PNG_COMPRESS_LEVEL", "FileValue",
    "MAX_NAME_BYTES", "MAX_NAME_LENGTH", "MAX_PIXELS", "WireContext", "colors_to_label_ids",
    "convert_channels", "decode_image_bytes", "decode_value", "describe", "encode_exr",
    "encode_image_bytes", "encode_value", "image_array", "image_from_blender",
    "image_to_blender", "label_colors", "label_ids", "linear_to_srgb", "parse_data_uri",
    "read_exr", "safe_filename", "segmentation_ids", "srgb8_from_blender", "srgb_to_linear",
    "to_bit_depth", "to_data_uri", "write_unique",
]
