"""Blender's pixels: bottom-up rows of linear float RGBA, to and from the top-down
sRGB-encoded images models take and give."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from ..errors import CodecError
from .pixels import check_pixels, convert_channels, image_array

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
        raise CodecError(f"pixels are not numbers: {e}") from e
    if width <= 0 or height <= 0 or channels not in (1, 2, 3, 4) or \
            flat.size != width * height * channels:
        raise CodecError(f"pixels: {flat.size} values do not make a {width}x{height} "
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
        raise CodecError(f"pixels: {flat.size} values do not make a {width}x{height} "
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
    arr = image_array(image, "image")
    h, w = arr.shape[:2]
    check_pixels(w, h, "image")  # before the RGBA copy and the float buffer
    img = convert_channels(arr, 4)
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
