"""An iterator of image files: grey frames of rising brightness."""
import tempfile
from typing import Iterator

import numpy as np
from cog import BasePredictor, Input, Path
from PIL import Image


class Predictor(BasePredictor):
    def predict(self, frames: int = Input(default=3, ge=1, le=10)) -> Iterator[Path]:
        folder = Path(tempfile.mkdtemp())
        for i in range(frames):
            out = folder / f"frame{i}.png"
            Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(out)
            yield out
