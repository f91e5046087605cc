"""A predictor whose setup raises: the server must report SETUP_FAILED."""
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("loading weights from /nowhere")
        raise RuntimeError("weights file missing: /nowhere/model.bin")

    def predict(self, prompt: str = Input(default="x")) -> str:
        return prompt
