"""Image in, image out (RGB inverted), for the Docker runtime tests.

Environment knobs so one image covers several faults: SETUP_DELAY (seconds of
setup, to stop a session while it starts) and FAIL_SETUP (setup raises).
"""
import os
import tempfile
import time

from cog import BasePredictor, Input, Path
from PIL import Image, ImageOps


class Predictor(BasePredictor):
    def setup(self) -> None:
        time.sleep(float(os.environ.get("SETUP_DELAY", "0")))
        if os.environ.get("FAIL_SETUP"):
            raise RuntimeError("FAIL_SETUP is set: no weights to load")

    def predict(
        self,
        image: Path = Input(description="Image to invert", accept="image/*"),
        delay: float = Input(description="Seconds to wait first", default=0.0, ge=0.0, le=30.0),
    ) -> Path:
        time.sleep(delay)
        with Image.open(image) as im:
            out_image = ImageOps.invert(im.convert("RGB"))
        out = Path(tempfile.mkdtemp()) / "inverted.png"
        out_image.save(out, compress_level=1)
        return out
