"""Allocates (and touches) as many megabytes as asked: the OOM test's model."""
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, megabytes: int = Input(description="Memory to fill", default=1,
                                             ge=0, le=65536)) -> str:
        blocks = []
        for _ in range(megabytes):
            blocks.append(bytearray(b"\1" * (1 << 20)))  # written, so really resident
        return f"held {len(blocks)} MB"
