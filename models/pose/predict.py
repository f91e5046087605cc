"""Body pose: MediaPipe Pose (BlazePose, "full" landmark model) as a Cog predictor.

Only model_complexity=1 ships inside the mediapipe wheel; 0 ("lite") and 2
("heavy") would be downloaded at run time, which cannot work offline, so they
are not offered.
"""
from __future__ import annotations

import tempfile

import mediapipe as mp
import numpy as np
from cog import BaseModel, BasePredictor, Input, Path
from PIL import Image, ImageDraw, ImageOps

POSE = mp.solutions.pose
LABELS = [lm.name.lower() for lm in POSE.PoseLandmark]  # 33, in landmark index order
CONNECTIONS = sorted([int(a), int(b)] for a, b in POSE.POSE_CONNECTIONS)


# Richer than JSON schema can say: the add-on reads these as typed landmarks.
RUNWAY_OUTPUTS = {
    "landmarks": {"type": "image_landmarks", "length": len(LABELS), "labels": LABELS,
                  "connections": CONNECTIONS},
}


class Output(BaseModel):
    landmarks: list  # 33 normalised [x, y] (origin top left), or none without a person
    visibility: list[float]  # per landmark, 0..1
    overlay: Path


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.pose = POSE.Pose(static_image_mode=True, model_complexity=1,
                              enable_segmentation=False, min_detection_confidence=0.5)

    def predict(
        self,
        image: Path = Input(description="Photo or frame with one person (PNG, JPEG, WebP).",
                            accept="image/*"),
        min_visibility: float = Input(default=0.5, ge=0.0, le=1.0,
                                      description="Landmarks less visible than this are left "
                                                  "out of the overlay (they stay in the "
                                                  "landmarks, with their visibility)."),
        background: str = Input(default="image", choices=["image", "dimmed", "black"],
                                description="What the skeleton is drawn over."),
        line_width: int = Input(default=3, ge=1, le=20,
                                description="Width of the skeleton lines in pixels."),
    ) -> Output:
        rgb = load_rgb(image)
        h, w = rgb.shape[:2]
        result = self.pose.process(rgb)
        found = result.pose_landmarks is not None
        points, visibility = [], []
        if found:
            for lm in result.pose_landmarks.landmark:
                points.append([round(lm.x, 5), round(lm.y, 5)])
                visibility.append(round(lm.visibility, 4))

        if background == "black":
            base = np.zeros_like(rgb)
        elif background == "dimmed":
            base = (rgb * 0.4).astype(np.uint8)
        else:
            base = rgb
        overlay = Image.fromarray(base)
        draw = ImageDraw.Draw(overlay)
        px = [(x * w, y * h) for x, y in points]
        shown = [v >= min_visibility for v in visibility]
        for a, b in CONNECTIONS if found else []:
            if shown[a] and shown[b]:
                draw.line([px[a], px[b]], fill=(255, 255, 255), width=line_width)
        r = line_width + 1
        for i, (x, y) in enumerate(px):
            if shown[i]:
                colour = (255, 64, 64) if "left" in LABELS[i] else (64, 160, 255)
                draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        out = Path(tempfile.mkdtemp()) / "overlay.png"
        overlay.save(out)
        return Output(landmarks=points, visibility=visibility, overlay=out)
