"""Render passes as model images: which channels of Blender's multilayer EXR hold
a pass, and how its values become an image a model understands. Worker-thread
work (numpy only).

- Combined and albedo are scene-linear colour: sRGB-encoded like any image.
- Normals (-1..1 per axis) map to 0..1 (the usual normal-map encoding).
- Depth (distance in scene units) is normalised over the frame: near is white,
  the background (Blender writes a huge distance there) black.
- Mist is already 0..1.
"""
from __future__ import annotations

import numpy as np

from .codecs import linear_to_srgb
from .errors import CodecError
from .exr import read_exr

# pass id -> (the pass's name in Blender's EXR, its channels)
PASS_CHANNELS = {
    "COMBINED": ("Combined", "RGBA"),
    "DIFFUSE_COLOR": ("DiffCol", "RGB"),
    "NORMAL": ("Normal", "XYZ"),
    "DEPTH": ("Depth", "Z"),
    "MIST": ("Mist", "Z"),
}
FAR = 1e9  # Blender's depth where nothing was hit is about 1e10


def _planes_of(planes: dict, pass_id: str) -> list[np.ndarray]:
    name, channels = PASS_CHANNELS[pass_id]
    out = []
    for ch in channels:
        hits = [k for k in planes if k.endswith(f"{name}.{ch}")]
        if not hits:
            known = sorted({k.rsplit(".", 1)[0] for k in planes})
            raise CodecError(f"the render has no {name} pass (it has: {', '.join(known)})",
                             hint="Enable the pass in the View Layer properties.")
        out.append(planes[sorted(hits)[0]])
    if len({np.shape(plane) for plane in out}) > 1:  # a multi-part file whose parts disagree
        raise CodecError(f"the render's {name} channels differ in size "
                         f"({', '.join('x'.join(map(str, np.shape(p))) for p in out)})",
                         hint="Render the frame again; the EXR file is inconsistent.")
    return out


def pass_image(planes: dict, pass_id: str) -> np.ndarray:
    """One pass of a read EXR -> HxWxC float32 image, 0..1, sRGB-encoded where it is
    colour, top row first."""
    p = _planes_of(planes, pass_id)
    if pass_id in ("COMBINED", "DIFFUSE_COLOR"):
        img = np.dstack(p).astype(np.float32)
        img[..., :3] = linear_to_srgb(np.clip(img[..., :3], 0.0, 1.0))
        return img
    if pass_id == "NORMAL":
        return np.clip(np.dstack(p) * 0.5 + 0.5, 0.0, 1.0).astype(np.float32)
    z = p[0]
    if pass_id == "MIST":
        return np.clip(z, 0.0, 1.0).astype(np.float32)[:, :, None]
    hit = z < FAR
    if not hit.any():
        return np.zeros(z.shape + (1,), np.float32)
    near, far = float(z[hit].min()), float(z[hit].max())
    scaled = np.where(hit, 1.0 - (z - near) / max(far - near, 1e-6), 0.0)
    return scaled.astype(np.float32)[:, :, None]


def read_pass(path: str, pass_id: str) -> np.ndarray:
    """The pass ``pass_id`` of the multilayer EXR at ``path`` as a model image."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CodecError(f"cannot read the render {path!r}: {e.strerror or e}") from e
    return pass_image(read_exr(data), pass_id)
