"""An object output: several named outputs of different types."""
import tempfile
from typing import Optional

import numpy as np
from cog import BaseModel, BasePredictor, Input, Path
from PIL import Image


class Output(BaseModel):
    caption: str
    score: float
    tags: list[str]
    mask: Path
    extra: Optional[str]


class Predictor(BasePredictor):
    def predict(self, prompt: str = Input(default="red square")) -> Output:
        mask = Path(tempfile.mkdtemp()) / "mask.png"
        Image.fromarray(np.full((4, 6), 255, np.uint8)).save(mask)
        return Output(caption=prompt.upper(), score=0.75, tags=prompt.split(), mask=mask,
                      extra=None)
