"""Render denoising: Intel Open Image Denoise 2.5.1 (through pyoidn) as a Cog predictor.

The "RT" filter for path-traced renders, with optional albedo and normal
auxiliary passes (Blender's Cycles gives exactly these: "Denoising Albedo" and
"Denoising Normal"). The trained weights are compiled into the OIDN library
inside the pyoidn wheel; nothing is downloaded. CPU only here.

Files: 8- or 16-bit PNG (and TIFF, JPEG) hold display-encoded values; colour
and albedo are decoded from sRGB to linear, normals unpacked from n * 0.5 + 0.5.
OpenEXR (and other float files) hold linear values as they are, colour may be
HDR (values above 1), normals in [-1, 1].
"""
from __future__ import annotations

import os
import tempfile
from typing import Optional

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # before cv2 is imported

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pyoidn  # noqa: E402
from cog import BasePredictor, Input, Path  # noqa: E402


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def read_rgb(path: Path) -> tuple[np.ndarray, bool]:
    """(HxWx3 float32 RGB, is_float_file). Integer files are scaled to [0, 1]."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if img is None:
        raise ValueError(f"cannot read image {path.name}")
    if img.ndim == 2:
        img = np.dstack([img] * 3)
    img = img[:, :, :3][:, :, ::-1]  # BGR(A) -> RGB
    if np.issubdtype(img.dtype, np.integer):
        return img.astype(np.float32) / np.iinfo(img.dtype).max, False
    return np.ascontiguousarray(img, dtype=np.float32), True


class Predictor(BasePredictor):
    def setup(self) -> None:
        probe = np.full((16, 16, 3), 0.5, np.float32)
        pyoidn.denoise(probe, albedo=probe, normal=probe * 0)  # creates the device and filter

    def predict(
        self,
        color: Path = Input(description="Noisy render: 8/16-bit PNG (sRGB-encoded) or OpenEXR "
                                        "(linear, HDR allowed).", accept="image/*"),
        albedo: Optional[Path] = Input(default=None, accept="image/*",
                                       description="Optional albedo pass of the same render "
                                                   "(Cycles' Denoising Albedo), same size."),
        normal: Optional[Path] = Input(default=None, accept="image/*",
                                       description="Optional normal pass (Cycles' Denoising "
                                                   "Normal; PNG packed as n*0.5+0.5, EXR in "
                                                   "[-1, 1]); needs albedo too."),
        quality: str = Input(default="high", choices=["high", "balanced", "fast"],
                             description="OIDN filter quality: fast for previews."),
        clean_aux: bool = Input(default=False,
                                description="The albedo/normal passes are already noise-free "
                                            "(else OIDN prefilters them)."),
        output_format: str = Input(default="png16", choices=["png16", "exr"],
                                   description="png16: 16-bit sRGB-encoded PNG; exr: linear "
                                               "float OpenEXR (keeps HDR values)."),
    ) -> Path:
        rgb, is_float = read_rgb(color)
        linear = rgb if is_float else srgb_to_linear(rgb)
        hdr = bool(is_float and linear.max() > 1.0)
        aux_albedo = aux_normal = None
        if normal is not None and albedo is None:
            raise ValueError("a normal pass needs an albedo pass too (OIDN's rule)")
        if albedo is not None:
            a, a_float = read_rgb(albedo)
            aux_albedo = np.clip(a if a_float else srgb_to_linear(a), 0.0, 1.0)
        if normal is not None:
            n, n_float = read_rgb(normal)
            aux_normal = np.ascontiguousarray(n if n_float else n * 2.0 - 1.0, dtype=np.float32)
        for name, aux in (("albedo", aux_albedo), ("normal", aux_normal)):
            if aux is not None and aux.shape != linear.shape:
                raise ValueError(f"{name} is {aux.shape[1]}x{aux.shape[0]}, colour is "
                                 f"{linear.shape[1]}x{linear.shape[0]}")
        result = pyoidn.denoise(np.ascontiguousarray(linear), albedo=aux_albedo,
                                normal=aux_normal, hdr=hdr, clean_aux=clean_aux,
                                quality=quality)
        out_dir = Path(tempfile.mkdtemp())
        if output_format == "exr":
            path = out_dir / "denoised.exr"
            ok = cv2.imwrite(str(path), np.ascontiguousarray(result[:, :, ::-1], np.float32))
        else:
            path = out_dir / "denoised.png"
            px = np.round(linear_to_srgb(result) * 65535.0).astype(np.uint16)
            ok = cv2.imwrite(str(path), np.ascontiguousarray(px[:, :, ::-1]))
        if not ok:
            raise RuntimeError(f"could not write {path.name}")
        return path
