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
# An output's defaults, the same for a job file and the Run panel: a file per frame in
# runway/ beside the .blend, 8-bit PNG, a material's Base Color.
OUTPUT_PATH = "//runway/{model}_{output}_{frame:04d}"
OUTPUT_FORMAT = "PNG8"
OUTPUT_SOCKET = "Base Color"


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
            raise ValueError("give a value, or a source (render, pass, image, texture, strip, "
                             "text, file)")
        if self.source == "text" and self.text is None:
            raise ValueError("source 'text' needs text (a Text datablock's name)")
        return self


class OutputTarget(_Strict):
    target: TARGET
    name: str = ""
    replace: bool = False
    path: str = OUTPUT_PATH
    format: FORMAT = OUTPUT_FORMAT
    socket: str = OUTPUT_SOCKET


_SOURCE_KEYS = {"source", "pass", "pass_", "image", "strip", "text", "path", "value"}


class JobFile(_Strict):
    """A batch job: one model run on each frame of a .blend (see docs/job.schema.json)."""

    version: Literal[1] = Field(1, description="The job file format's version")
    model: ModelSource = Field(description="The model: exactly one of its sources")
    runtime: Optional[RUNTIME] = Field(
        None, description="Where the model runs; null: the default of the program that runs "
                          "the job (in Blender, the extension's preferences)")
    command: Optional[str] = Field(
        None, description="The model's command; null: its first (usually predict)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Setup options (the model's options, not inputs)")
    inputs: dict[str, InputSource] = Field(
        default_factory=dict, description="Each input by name: a source, or a bare value")
    outputs: dict[str, list[OutputTarget]] = Field(
        default_factory=dict, description="Each output by name: its targets (one or more)")
    frames: Optional[Union[str, int]] = Field(
        None, description="Farm-style frames: 5, \"1-10\", \"1..10\", \"1-3,5,9-12\" (in order, "
        "no repeats); null: the scene's current frame")
    save_blend: Union[bool, str] = Field(
        False, description="true: save the .blend in place afterwards; a path: save a copy "
        "there (// is the .blend's folder); false: do not save")
    on_failure: Literal["stop", "skip"] = Field(
        "stop", description="A failing frame: stop (no later frame starts) or skip it and "
        "go on; either way the job fails")
    replicas: int = Field(default=1, ge=1, le=8,
                          description="Copies of the model working side by side")

    @field_validator("inputs", mode="before")
    @classmethod
    def _plain_values(cls, given: Any) -> Any:
        # A bare value stands for {"value": ...}: {"strength": 0.8}. An object is an
        # input source when it has any of a source's keys (so {"path": ...} without a
        # source is refused, not sent as a value); {"value": {...}} sends an object.
        if not isinstance(given, dict):
            return given
        return {name: v if isinstance(v, InputSource) or
                (isinstance(v, dict) and _SOURCE_KEYS & set(v)) else {"value": v}
                for name, v in given.items()}

    @field_validator("outputs", mode="before")
    @classmethod
    def _target_lists(cls, given: Any) -> Any:
        # One target may be given alone: {"output": {"target": "FILE"}} or {"output": "FILE"}.
        if not isinstance(given, dict):
            return given
        out = {}
        for name, v in given.items():
            if isinstance(v, str):
                v = {"target": v}
            out[name] = [v] if isinstance(v, (dict, OutputTarget)) else v
        return out

    @field_validator("frames", mode="before")
    @classmethod
    def _frames(cls, v: Any) -> Optional[str]:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, str))):
            raise ValueError("give frames as a number or a string like \"1-10\"")
        if isinstance(v, int):
            v = str(v)  # "frames": 5
        if isinstance(v, str):
            parse_frames(v)
        return v

    def frame_list(self, default: int) -> list[int]:
        return parse_frames(str(self.frames)) if self.frames is not None else [default]


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
    except UnicodeDecodeError as e:
        raise JobFileError(f"{path.name} is not UTF-8 text (byte {e.start}).",
                           hint="Save the job file as UTF-8.") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise JobFileError(f"{path.name} is nested too deeply to read.",
                           hint="A job file is a few levels of objects; fix the file.") from None
    except ValueError as e:
        raise JobFileError(f"{path.name} is not JSON: {e}", hint="Check the file's syntax.") \
            from e
    return parse(data, path.name)


def schema() -> dict:
    out = JobFile.model_json_schema(by_alias=True)
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "Runway for Blender job file"
    return out


def schema_text() -> str:
    """The schema as ``docs/job.schema.json`` holds it (``build.py jobschema``)."""
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"
