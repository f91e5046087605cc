"""A predictor whose prediction raises after logging a line.

Observed with coglet 0.23.1: the response of a failed prediction carries the
exception as ``error`` ("ValueError: ...") but empty ``logs``; the printed line
reaches only the server's own log.
"""
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, prompt: str = Input(default="x")) -> str:
        print(f"about to fail on {prompt!r}", flush=True)
        raise ValueError(f"cannot handle prompt {prompt!r}")
