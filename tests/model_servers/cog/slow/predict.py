"""A slow predictor that sleeps in small steps, so a cancel takes effect quickly."""
import time

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(
        self,
        seconds: float = Input(description="How long to work", default=0.5, ge=0.0, le=60.0),
    ) -> str:
        steps = max(1, int(seconds / 0.05))
        for i in range(steps):
            time.sleep(seconds / steps)
            if i % 10 == 0:
                print(f"step {i}/{steps}", flush=True)
        return f"slept {seconds}"
