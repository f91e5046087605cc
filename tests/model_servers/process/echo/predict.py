"""A tiny predictor for runtime tests: echoes text, with an optional slow setup."""
import os
import time

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        # Tests stretch the setup through the session's env to catch it mid-way.
        delay = float(os.environ.get("RUNWAY_TEST_SETUP_SECONDS", "0"))
        if delay:
            print(f"setting up for {delay} s", flush=True)
            time.sleep(delay)

    def predict(
        self,
        text: str = Input(description="Text to echo", default="hello"),
        repeat: int = Input(description="How many times", default=1, ge=1, le=10),
    ) -> str:
        if text == "crash the worker":  # tests: a worker that dies mid-way
            os._exit(3)
        return text * repeat
