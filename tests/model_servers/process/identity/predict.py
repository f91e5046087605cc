"""An identity image model for engine and Blender tests: the output is the input's
exact pixels (RGBA kept), so a test can check orientation and colour space.

It shares the style-transfer model's lock (and so its environment): numpy and
Pillow are all it needs. ``delay`` makes a long run (in small steps, so a cancel
lands quickly); ``crash`` ends the worker mid-run like a dying server.
"""
import os
import tempfile
import time

import numpy as np
from cog import BasePredictor, Input, Path
from PIL import Image

# Declared as a 4-channel image so the client sends alpha too (Cog image inputs are
# RGB unless a model says otherwise).
RUNWAY_INPUTS = {"image": {"type": "image", "channels": 4}}


class Predictor(BasePredictor):
    def predict(
        self,
        image: Path = Input(description="Image to send back unchanged", accept="image/*"),
        delay: float = Input(description="Seconds to work first", default=0.0, ge=0.0, le=60.0),
        gain: float = Input(description="Multiply RGB by this (1: identity)", default=1.0,
                            ge=0.0, le=4.0),
        crash: bool = Input(description="Die mid-run (tests)", default=False),
    ) -> Path:
        steps = max(1, int(delay / 0.05))
        for i in range(steps if delay else 0):
            time.sleep(delay / steps)
            if i % 20 == 0:
                print(f"working {i}/{steps}", flush=True)
        if crash:
            os._exit(3)
        with Image.open(image) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
        if gain != 1.0 and arr.dtype == np.uint8:
            rgb = np.clip(arr[..., :3].astype(np.float32) * gain, 0, 255).astype(np.uint8)
            arr = np.concatenate([rgb, arr[..., 3:]], axis=-1) if arr.shape[-1] > 3 else rgb
        out = Path(tempfile.mkdtemp()) / "identity.png"
        Image.fromarray(arr, mode if gain == 1.0 else None).save(out, compress_level=0)
        print(f"sent back {arr.shape[1]}x{arr.shape[0]} {mode}", flush=True)
        return out
