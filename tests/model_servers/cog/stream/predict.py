"""A text stream (ConcatenateIterator), as language models return."""
from cog import BasePredictor, ConcatenateIterator, Input


class Predictor(BasePredictor):
    def predict(self, prompt: str = Input(default="hello world")) -> ConcatenateIterator[str]:
        for i, word in enumerate(prompt.split()):
            yield word if i == 0 else " " + word
