"""Pixel arrays: any image value as an HxWxC array, channel counts and bit depths."""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..errors import CodecError
from .naming import _fail, describe

# Refuse to decode more than this many pixels (a decompression bomb guard; 16k x 16k).
# Every decoder (PNG, Pillow's formats, EXR) and image_to_blender checks a header's size
# against it with check_pixels before allocating, so one limit gives one error everywhere.
MAX_PIXELS = 16384 * 16384


def too_many_pixels(name: str, what: str) -> CodecError:
    return _fail(name, f"{what} is too large: the limit is MAX_PIXELS = {MAX_PIXELS} "
                       "pixels (16384x16384)")


def check_pixels(width: int, height: int, name: str, what: str = "image") -> None:
    """Raise the pixel-limit CodecError when a ``width`` x ``height`` image is too large."""
    if width * height > MAX_PIXELS:
        raise too_many_pixels(name, f"{what} of {width}x{height} pixels")


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
