"""A job's log: one JSON object per step, to a file and to stdout (what a farm shows)."""
from __future__ import annotations

import json
import time


class JsonLog:
    """One JSON object per line: what happened, when (s since the start)."""

    def __init__(self, path: str = ""):
        self.t0 = time.monotonic()
        self._f = open(path, "a", encoding="utf-8") if path else None

    def __call__(self, event: str, **fields) -> None:
        record = {"t": round(time.monotonic() - self.t0, 3), "event": event, **fields}
        line = json.dumps(record, default=str)
        if self._f is not None:
            self._f.write(line + "\n")
            self._f.flush()
        print(f"Runway: {line}", flush=True)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
