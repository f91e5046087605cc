"""Every Cog input type; echoes what it received as JSON so tests can check it."""
import json
from typing import Optional

from cog import BasePredictor, File, Input, Path, Secret
from PIL import Image


class Predictor(BasePredictor):
    def predict(
        self,
        prompt: str = Input(description="Text prompt", min_length=1, max_length=40),
        code: str = Input(description="Two letters, two digits", default="AB12",
                          regex=r"^[A-Z]{2}[0-9]{2}$"),
        steps: int = Input(description="Step count", default=10, ge=1, le=50),
        strength: float = Input(description="Strength", default=0.5, ge=0.0, le=1.0),
        flag: bool = Input(description="A switch", default=False),
        mode: str = Input(description="Speed", default="fast", choices=["fast", "slow", "best"]),
        size: int = Input(description="Side", default=512, choices=[256, 512, 1024]),
        image: Path = Input(description="Any image", accept="image/*"),
        document: Optional[File] = Input(description="A text file (legacy File type)",
                                         default=None),
        sound: Optional[Path] = Input(description="An audio clip", default=None,
                                      accept="audio/*"),
        api_key: Optional[Secret] = Input(description="A secret", default=None),
        words: list[str] = Input(description="Some words"),
        numbers: Optional[list[int]] = Input(description="Some integers", default=None),
        note: Optional[str] = Input(description="Optional note", default=None),
        old_knob: float = Input(description="Do not use", default=1.0, deprecated=True),
    ) -> str:
        with Image.open(image) as im:
            image_info = [im.width, im.height, im.mode]
        return json.dumps({
            "prompt": prompt, "code": code, "steps": steps, "strength": strength,
            "flag": flag, "mode": mode, "size": size, "image": image_info,
            "document": None if document is None else document.read().decode(),
            "sound": None if sound is None else Path(sound).read_bytes()[:4].decode("latin-1"),
            "api_key_len": None if api_key is None else len(api_key.get_secret_value()),
            "words": words, "numbers": numbers, "note": note, "old_knob": old_knob,
        })
