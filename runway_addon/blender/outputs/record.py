"""The record of the run that made a result, stamped on it as the custom property
``runway`` (a JSON string; never a secret)."""
from __future__ import annotations

import datetime
import json
import math
import re
from typing import Any

import numpy as np

from ...core import codecs
from .targets import PROP, RunInfo


_SECRET_KEY = re.compile(r"(?i)token|secret|password|passwd|api[_-]?key|authori[sz]ation")


def _plain(value: Any, depth: int = 0) -> Any:
    """JSON-safe, short: arrays and bytes are described, never dumped."""
    if depth > 20:
        return codecs.describe(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return _plain(value.item(), depth + 1)
    if hasattr(value, "get_secret_value"):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()
                if not _SECRET_KEY.search(str(k))}
    if isinstance(value, (list, tuple)):
        if len(value) > 64:
            return codecs.describe(value, 80)
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, codecs.FileValue):
        return value.path or value.name
    return codecs.describe(value, 200)


def provenance(run: RunInfo, output: str) -> dict:
    """The record stored on each result: what made it (never a token or secret)."""
    when = datetime.datetime.fromtimestamp(run.time or 0, tz=datetime.timezone.utc)
    return {
        "model": run.model, "version": run.version, "runtime": run.runtime,
        "command": run.command, "output": output,
        "options": _plain(dict(run.options or {})),
        "inputs": _plain(dict(run.inputs or {})),
        "run_id": run.run_id, "predict_time": run.predict_time,
        "time": run.time, "time_utc": when.isoformat(timespec="seconds"),
        "frame": run.frame, "scene": run.scene, "camera": run.camera,
    }


def stamp(owner, record: dict) -> None:
    owner[PROP] = json.dumps(record, sort_keys=True)
