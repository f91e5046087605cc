"""Person segmentation: MediaPipe Selfie Segmentation as a Cog predictor.

Both TFLite models ship inside the mediapipe wheel (nothing is downloaded):
``general`` (256 x 256 input, the better matte) and ``landscape`` (144 x 256,
faster, made for video calls).
"""
from __future__ import annotations

import tempfile

import mediapipe as mp
import numpy as np
from cog import BaseModel, BasePredictor, Input, Path
from PIL import Image, ImageOps

MODELS = {"general": 0, "landscape": 1}


LABELS = ["background", "person"]

# Richer than JSON schema can say: the add-on reads the map as a typed segmentation.
RUNWAY_OUTPUTS = {
    "segmentation": {"type": "segmentation", "labels": LABELS, "default_label": "background",
                     "label_to_id": {name: i for i, name in enumerate(LABELS)},
                     "label_to_color": {"background": [0, 0, 0], "person": [255, 255, 255]}},
}


class Output(BaseModel):
    matte: Path  # alpha, 8-bit grey
    cutout: Path  # the photo with the matte as alpha
    segmentation: Path  # label ids, 8-bit grey: 0 background, 1 person (the threshold)


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


class Predictor(BasePredictor):
    def setup(self) -> None:
        seg = mp.solutions.selfie_segmentation
        self.models = {name: seg.SelfieSegmentation(model_selection=sel)
                       for name, sel in MODELS.items()}

    def predict(
        self,
        image: Path = Input(description="Photo or frame with one or more people (PNG, JPEG, WebP).",
                            accept="image/*"),
        model: str = Input(default="general", choices=list(MODELS),
                           description="general: 256x256 model, best edges; "
                                       "landscape: 144x256 model, faster."),
        threshold: float = Input(default=0.5, ge=0.0, le=1.0,
                                 description="Person probability below which a pixel is "
                                             "background (alpha 0)."),
        soft_edges: bool = Input(default=True,
                                 description="Keep the model's probability as alpha above the "
                                             "threshold (soft hair and edges); off gives a "
                                             "hard 0/1 matte."),
    ) -> Output:
        rgb = load_rgb(image)
        prob = self.models[model].process(rgb).segmentation_mask
        prob = np.clip(np.nan_to_num(prob), 0.0, 1.0)
        keep = prob >= threshold
        alpha = np.where(keep, prob if soft_edges else 1.0, 0.0)
        alpha8 = np.round(alpha * 255.0).astype(np.uint8)

        out = Path(tempfile.mkdtemp())
        matte = out / "matte.png"
        cutout = out / "cutout.png"
        labels = out / "segmentation.png"
        Image.fromarray(alpha8).save(matte)
        Image.fromarray(np.dstack([rgb, alpha8])).save(cutout)
        Image.fromarray(keep.astype(np.uint8)).save(labels)
        return Output(matte=matte, cutout=cutout, segmentation=labels)
