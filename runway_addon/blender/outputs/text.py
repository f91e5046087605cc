"""Results as Text datablocks (text, JSON, segmentation summaries)."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

import bpy

from ...core import codecs
from .images import hint_for_kind
from .record import stamp
from .targets import Applied, id_name, OutputError, PreparedImage, Write
from .worker import as_file, file_kind


def text_of(w: Write) -> tuple[str, bool]:
    """(text, is_json) of a value for a Text datablock or a text file."""
    value = as_file(w.field, w.value)
    ftype = getattr(w.field, "type", None)
    if isinstance(value, str):
        return value, False
    if isinstance(value, codecs.FileValue):
        if file_kind(value) != "text":
            raise OutputError(f"{w.output} is a {file_kind(value)} file, not text",
                              hint=hint_for_kind(file_kind(value)))
        try:
            return value.read_bytes().decode("utf-8"), value.name.endswith(".json")
        except UnicodeDecodeError as e:
            raise OutputError(f"{value.name} is not UTF-8 text: {e}",
                              hint="Send it to a File.")
    if ftype == "segmentation" and isinstance(value, (np.ndarray, PreparedImage)):
        return json.dumps(_segmentation_summary(w.field, segment_ids(w)), indent=2), True
    if isinstance(value, (PreparedImage, np.ndarray)):
        raise OutputError(f"{w.output} is an image, not text",
                          hint="Send it to the Image Editor or a File.")
    return json.dumps(_jsonable(value), indent=2), True


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, codecs.FileValue):
        return value.path or value.name
    return value


def segment_ids(w: Write) -> np.ndarray:
    value = w.value
    if isinstance(value, PreparedImage):
        if value.ids is None:
            raise OutputError(f"{w.output} holds no label ids", hint="Send it to an image.")
        return value.ids
    return codecs.segmentation_ids(w.field, value)


def _segmentation_summary(f, value: np.ndarray) -> dict:
    ids = codecs.segmentation_ids(f, value)
    counts = np.bincount(ids.ravel().astype(np.int64))
    total = int(ids.size)
    labels = {}
    for label, i in codecs.label_ids(f).items():
        n = int(counts[i]) if i < counts.size else 0
        labels[label] = {"id": i, "pixels": n, "fraction": round(n / total, 6)}
    return {"width": int(ids.shape[1]), "height": int(ids.shape[0]), "labels": labels}


def to_text(w: Write) -> list[Applied]:
    text, is_json = text_of(w)
    existing = bpy.data.texts.get(w.name) if w.target.replace else None
    block = existing if existing is not None and existing.library is None else \
        bpy.data.texts.new(id_name(w.name))
    block.from_string(text)
    stamp(block, w.record)
    return [Applied(w.output, "TEXT", block.name, "text",
                    f"{block.name}: {len(text)} characters" + (" of JSON" if is_json else ""))]
