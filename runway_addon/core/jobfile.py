"""The batch job file: one model, where it runs, its options, each input by source,
each output to one or more targets, and a frame range; what `bpy.ops.runway.run_job`
and the farm templates run headless. A pydantic model, so its JSON Schema is
published from the same definition (``build.py jobschema`` writes
``docs/job.schema.json``) and an invalid file is refused before anything
starts, naming the field and the rule.

Example::

    {"version": 1,
     "model": {"catalog": "style-transfer"},
     "runtime": "LOCAL_PROCESS",
     "inputs": {"image": {"source": "render"}, "strength": {"value": 0.8}},
     "outputs": {"output": [{"target": "FILE", "path": "//out/styled_{frame:04d}"}]},
     "frames": "1-3"}
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from .errors import RunwayError

RUNTIME = Literal["LOCAL_PROCESS", "DOCKER_CPU", "DOCKER_GPU", "REMOTE"]
PASS = Literal["COMBINED", "DIFFUSE_COLOR", "NORMAL", "DEPTH", "MIST"]
TARGET = Literal["IMAGE_EDITOR", "TEXTURE", "STRIP", "FILE", "TEXT", "OVERLAY", "OBJECTS"]
FORMAT = Literal["PNG8", "PNG16", "EXR", "JPEG", "ASIS"]
MAX_FRAMES = 100_000


class JobFileError(RunwayError):
    """A job file that cannot run; ``field`` names the offending field (dotted)."""

    def __init__(self, message: str, *, field: str = "", hint: str = "", details: str = ""):
        super().__init__(message, hint=hint, details=details)
        self.field = field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelSource(_Strict):
    """Exactly one of: a catalog card's name, a model folder, a Docker image, a
    model server URL (protocol optional: detected), a Replicate reference."""

    catalog: Optional[str] = None
    folder: Optional[str] = None
    image: Optional[str] = None
    url: Optional[str] = None
    protocol: Optional[Literal["cog", "runway", "runway-hosted"]] = None
    replicate: Optional[str] = None

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("catalog", "folder", "image", "url", "replicate")
                 if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of catalog, folder, image, url, replicate "
                             f"(given: {', '.join(given) or 'none'})")
        if self.protocol and not self.url:
            raise ValueError("protocol goes with url only")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("catalog", "folder", "image", "url", "replicate")
                    if getattr(self, k))


class InputSource(_Strict):
    """Where one input comes from. ``source`` may be left out when ``value`` is given."""

    source: Literal["render", "pass", "image", "texture", "strip", "text", "file",
                    "value"] = "value"
    pass_: Optional[PASS] = Field(default=None, alias="pass")
    image: Optional[str] = None  # an image datablock's name
    strip: Optional[str] = None  # a sequencer strip's name
    text: Optional[str] = None  # a Text datablock's name (typed text is a value)
    path: Optional[str] = None  # a file; // is the .blend's folder
    value: Any = None

    @model_validator(mode="after")
    def _has_what_the_source_needs(self):
        need = {"pass": "pass_", "image": "image", "strip": "strip", "file": "path"}
        key = need.get(self.source)
        if key and getattr(self, key) in (None, ""):
            raise ValueError(f"source {self.source!r} needs "
                             f"{'pass' if key == 'pass_' else key}")
        if self.source == "value" and self.value is None:
            raise ValueError("give a value (or another source)")
        if self.source == "text" and self.text is None:
            raise ValueError("source 'text' needs text (a Text datablock's name)")
        return self


class OutputTarget(_Strict):
    target: TARGET
    name: str = ""
    replace: bool = False
    path: str = "//runway/{model}_{output}_{frame:04d}"
    format: FORMAT = "PNG8"
    socket: str = "Base Color"


class JobFile(_Strict):
    version: Literal[1] = 1
    model: ModelSource
    runtime: Optional[RUNTIME] = None  # None: the add-on preferences' default
    command: Optional[str] = None
    options: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, InputSource] = Field(default_factory=dict)
    outputs: dict[str, list[OutputTarget]] = Field(default_factory=dict)
    frames: Optional[str] = None  # "1-10", "1-3,5,9-12"; None: the scene's current frame
    save_blend: Union[bool, str] = False  # True: save in place; a path: save a copy there
    on_failure: Literal["stop", "skip"] = "stop"
    replicas: int = Field(default=1, ge=1, le=8)

    @field_validator("inputs", mode="before")
    @classmethod
    def _plain_values(cls, given: Any) -> Any:
        # A bare value stands for {"value": ...}: {"strength": 0.8}.
        if not isinstance(given, dict):
            return given
        return {name: v if isinstance(v, (dict, InputSource)) and
                ({"source", "value"} & set(v if isinstance(v, dict) else v.model_fields_set))
                else {"value": v} for name, v in given.items()}

    @field_validator("frames")
    @classmethod
    def _frames(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            parse_frames(v)
        return v

    def frame_list(self, default: int) -> list[int]:
        return parse_frames(self.frames) if self.frames else [default]


_RANGE = re.compile(r"^\s*(-?\d+)\s*(?:(?:-|\.\.)\s*(-?\d+)\s*)?$")


def parse_frames(text: str) -> list[int]:
    """Farm-style frame lists: ``1-10``, ``1..10``, ``1-3,5,9-12`` (in order, no repeats)."""
    frames: list[int] = []
    seen = set()
    for part in str(text).split(","):
        m = _RANGE.match(part)
        if not m:
            raise ValueError(f"{part.strip()!r} is not a frame or range (like 1-10 or 5)")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise ValueError(f"range {a}-{b} goes backwards")
        if len(frames) + (b - a + 1) > MAX_FRAMES:
            raise ValueError(f"more than {MAX_FRAMES} frames")
        for f in range(a, b + 1):
            if f not in seen:
                seen.add(f)
                frames.append(f)
    if not frames:
        raise ValueError("no frames")
    return frames


def _field_of(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-"))


def parse(data: Any, where: str = "job") -> JobFile:
    try:
        return JobFile.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = _field_of(first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        others = len(e.errors()) - 1
        raise JobFileError(f"{where}: {field or 'the job'}: {msg}" +
                           (f" (and {others} more)" if others else ""), field=field,
                           hint="See docs/job.schema.json for the fields of a job file.",
                           details=str(e)) from None


def load(path: Union[str, Path]) -> JobFile:
    """Read and check a job file; JobFileError names the field and the rule."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise JobFileError(f"cannot read the job file {str(path)!r}: {e.strerror or e}") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        raise JobFileError(f"{path.name} is not JSON: {e}", hint="Check the file's syntax.") \
            from e
    return parse(data, path.name)


def schema() -> dict:
    out = JobFile.model_json_schema(by_alias=True)
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "Runway for Blender job file"
    return out
