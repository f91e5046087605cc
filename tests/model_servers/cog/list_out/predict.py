"""A list output: the prompt's words, upper-cased."""
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, prompt: str = Input(default="a b c")) -> list[str]:
        return [w.upper() for w in prompt.split()]
