"""A predictor whose setup raises: the session must fail with this traceback."""
from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("loading weights from /nowhere", flush=True)
        raise RuntimeError("weights file missing: /nowhere/model.bin")

    def predict(self, text: str = "x") -> str:
        return text
