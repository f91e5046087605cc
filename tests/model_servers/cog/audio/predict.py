"""An audio file output: a sine tone as 16-bit mono WAV (stdlib only)."""
import math
import struct
import tempfile
import wave

from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def predict(
        self,
        frequency: float = Input(default=440.0, ge=20.0, le=8000.0),
        seconds: float = Input(default=0.25, ge=0.01, le=5.0),
    ) -> Path:
        rate = 16000
        out = Path(tempfile.mkdtemp()) / "tone.wav"
        with wave.open(str(out), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            n = int(rate * seconds)
            w.writeframes(b"".join(
                struct.pack("<h", int(12000 * math.sin(2 * math.pi * frequency * i / rate)))
                for i in range(n)))
        return out
