"""Image in, image out: inverts RGB so tests can check every pixel."""
import tempfile
import time

import numpy as np
from cog import BasePredictor, Input, Path
from PIL import Image


class Predictor(BasePredictor):
    def predict(
        self,
        image: Path = Input(description="Image to invert", accept="image/*"),
        delay: float = Input(description="Seconds to wait first", default=0.0, ge=0.0, le=5.0),
    ) -> Path:
        time.sleep(delay)
        with Image.open(image) as im:
            pixels = np.asarray(im.convert("RGB"))
        out = Path(tempfile.mkdtemp()) / "inverted.png"
        Image.fromarray(255 - pixels).save(out, compress_level=1)
        return out
