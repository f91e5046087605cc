"""Face detection: MediaPipe Face Detection (BlazeFace) as a Cog predictor.

Two TFLite models ship inside the mediapipe wheel: ``short`` range (faces within
about 2 m of the camera, 128 x 128 input) and ``full`` range (up to about 5 m,
192 x 192 sparse model).
"""
from __future__ import annotations

import tempfile

import mediapipe as mp
import numpy as np
from cog import BaseModel, BasePredictor, Input, Path
from PIL import Image, ImageDraw, ImageOps

RANGES = {"short": 0, "full": 1}
KEYPOINTS = ["right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion",
             "left_ear_tragion"]
FLOOR = 0.1  # the detectors keep everything above this; the user's threshold filters after


# Richer than JSON schema can say: the add-on reads these as typed boxes and landmarks.
RUNWAY_OUTPUTS = {
    "boxes": {"type": "array", "item": {"name": "box", "type": "image_bounding_box"}},
    "keypoints": {"type": "array", "item": {"name": "face", "type": "image_landmarks",
                                            "length": len(KEYPOINTS), "labels": KEYPOINTS}},
}


class Output(BaseModel):
    boxes: list  # per face, best first: normalised [xmin, ymin, xmax, ymax], origin top left
    scores: list[float]  # per face, 0..1
    keypoints: list  # per face: six normalised [x, y] points, in KEYPOINTS order
    annotated: Path


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


class Predictor(BasePredictor):
    def setup(self) -> None:
        fd = mp.solutions.face_detection
        self.models = {name: fd.FaceDetection(model_selection=sel, min_detection_confidence=FLOOR)
                       for name, sel in RANGES.items()}

    def predict(
        self,
        image: Path = Input(description="Photo or frame (PNG, JPEG, WebP).", accept="image/*"),
        model_range: str = Input(default="short", choices=list(RANGES),
                                 description="short: faces within about 2 m of the camera; "
                                             "full: faces up to about 5 m away."),
        min_confidence: float = Input(default=0.5, ge=FLOOR, le=1.0,
                                      description="Faces scored below this are dropped."),
        max_faces: int = Input(default=20, ge=1, le=100,
                               description="Keep at most this many faces, best first."),
        line_width: int = Input(default=3, ge=1, le=20,
                                description="Line width of the boxes in the annotated image, "
                                            "in pixels."),
    ) -> Output:
        rgb = load_rgb(image)
        h, w = rgb.shape[:2]
        result = self.models[model_range].process(rgb)
        faces = []
        for det in result.detections or []:
            score = float(det.score[0])
            if score < min_confidence:
                continue
            box = det.location_data.relative_bounding_box
            xmin, ymin = max(0.0, box.xmin), max(0.0, box.ymin)
            xmax, ymax = min(1.0, box.xmin + box.width), min(1.0, box.ymin + box.height)
            kps = [[round(k.x, 5), round(k.y, 5)] for k in det.location_data.relative_keypoints]
            faces.append({"box": [round(v, 5) for v in (xmin, ymin, xmax, ymax)],
                          "score": round(score, 4), "keypoints": kps})
        faces.sort(key=lambda f: -f["score"])
        faces = faces[:max_faces]

        annotated = Image.fromarray(rgb)
        draw = ImageDraw.Draw(annotated)
        r = max(2, line_width)
        for f in faces:
            x0, y0, x1, y1 = f["box"]
            draw.rectangle([x0 * w, y0 * h, x1 * w, y1 * h], outline=(0, 255, 64),
                           width=line_width)
            draw.text((x0 * w + line_width + 2, y0 * h + line_width + 1), f"{f['score']:.2f}",
                      fill=(0, 255, 64))
            for x, y in f["keypoints"]:
                draw.ellipse([x * w - r, y * h - r, x * w + r, y * h + r], fill=(255, 48, 48))
        out = Path(tempfile.mkdtemp()) / "annotated.png"
        annotated.save(out)
        return Output(boxes=[f["box"] for f in faces], scores=[f["score"] for f in faces],
                      keypoints=[f["keypoints"] for f in faces], annotated=out)
