"""Where an output may go (TARGETS, targets_for) and the values a write passes
around: Target, RunInfo, Applied, PreparedImage, Write."""
from __future__ import annotations

from dataclasses import dataclass, field as _field
from typing import Any, Optional

import numpy as np

import bpy

from ...core import codecs
from ...core.jobfile import OUTPUT_FORMAT, OUTPUT_PATH, OUTPUT_SOCKET
from ...core.errors import RunwayError


PROP = "runway"  # custom property holding the provenance JSON

TARGETS = (
    ("IMAGE_EDITOR", "Image Editor",
     "A new image, shown in an open Image Editor (kept in the .blend)"),
    ("TEXTURE", "Material texture",
     "An Image Texture node in the active object's active material, wired to a socket"),
    ("STRIP", "Sequencer strip",
     "An image or sound strip at the current frame on a free channel (the file is "
     "written next to the .blend)"),
    ("FILE", "File", "A file in the chosen format, with a .runway.json sidecar"),
    ("TEXT", "Text datablock", "The text, or JSON for structured results"),
    ("OVERLAY", "Overlay image",
     "The input image with the boxes, points, landmarks or segmentation drawn over it"),
    ("OBJECTS", "Objects",
     "Empties at the points and landmarks, mesh edges and box outlines, in camera space "
     "when the input was a camera render"),
    ("NONE", "Nothing", "Do not keep this output"),
)
TARGET_IDS = tuple(t[0] for t in TARGETS)

FILE_FORMATS = (
    ("PNG8", "PNG 8-bit", "8 bits per channel PNG"),
    ("PNG16", "PNG 16-bit", "16 bits per channel PNG (keeps the precision of deep results)"),
    ("EXR", "OpenEXR", "Linear float OpenEXR (as it came when the model sent EXR)"),
    ("JPEG", "JPEG", "8-bit JPEG, no alpha"),
    ("ASIS", "As it came", "The bytes exactly as the model sent them (e.g. WAV)"),
)

# Words in an output's name that say its pixels are data, not colour.
DATA_WORDS = {"matte", "mattes", "mask", "masks", "alpha", "depth", "normal", "normals",
               "disparity", "segmentation", "ids", "labels", "id"}
_STRUCTURED = ("image_point", "image_bounding_box", "image_landmarks")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".tga", ".exr",
               ".hdr"}
AUDIO_EXTS = {".wav", ".mp3", ".ogg", ".flac", ".aac", ".m4a", ".opus"}
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".webm", ".avi"}
_MAX_ID_NAME = 63  # bytes Blender keeps of an ID name


class OutputError(RunwayError):
    """A result that could not be written where its target said.

    Raised once at the end of ``apply`` when any target failed: ``applied`` holds the
    writes that worked, ``failures`` the ones that did not (``Applied`` with ``error``)."""

    def __init__(self, message: str, *, hint: str = "", details: str = "",
                 applied: Optional[list] = None, failures: Optional[list] = None):
        super().__init__(message, hint=hint, details=details)
        self.applied = list(applied or [])
        self.failures = list(failures or [])


@dataclass
class Target:
    """Where one output goes: plain values gathered on the main thread at submit."""

    target: str
    name: str = ""
    replace: bool = False
    path: str = OUTPUT_PATH
    file_format: str = OUTPUT_FORMAT
    socket: str = OUTPUT_SOCKET
    colorspace: str = ""
    frame_start: Optional[int] = None
    channel: int = 0


@dataclass
class RunInfo:
    """What the engine knows about the run (main-thread plain values)."""

    model: str
    version: str = ""
    runtime: str = ""
    command: str = ""
    options: dict = _field(default_factory=dict)
    inputs: dict = _field(default_factory=dict)
    run_id: str = ""
    predict_time: Optional[float] = None
    time: float = 0.0
    frame: int = 0
    scene: str = ""
    input_image: Any = None
    camera: str = ""


@dataclass
class Applied:
    """One write of one output to one target. ``name``: the datablock's name, or the
    file's path for FILE. ``kind``: image, texture, strip, sound, file, text, overlay,
    objects."""

    output: str
    target: str
    name: str = ""
    kind: str = ""
    message: str = ""
    ok: bool = True
    error: Optional[RunwayError] = None


@dataclass(repr=False)
class PreparedImage:
    """An image result ready for Blender. ``array``: HxWxC top-down (uint8, uint16 or
    float32, sRGB-encoded or data). ``pixels``: the flat bottom-up float32 RGBA buffer for
    ``foreach_set``, computed for ``pixels_linear`` (float images of colour store linear
    light; byte images and data store the values as they are). ``source``: the value the
    model sent (a FileValue), so files can be copied exactly. ``data``: the pixels are
    data (a matte, normals, depth, label colours): Non-Color."""

    array: np.ndarray
    source: Any = None
    data: bool = False
    pixels: Optional[np.ndarray] = None
    pixels_linear: bool = False
    ids: Optional[np.ndarray] = None  # segmentation: the label ids the colours show

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def is_float(self) -> bool:
        """16-bit and float results go to float images (no precision lost)."""
        return self.array.dtype != np.uint8

    def blender_pixels(self, linear: bool) -> np.ndarray:
        if self.pixels is None or self.pixels_linear != linear:
            self.pixels, _, _ = codecs.image_to_blender(self.array, linear=linear)
            self.pixels_linear = linear
        return self.pixels

    def __repr__(self) -> str:
        return f"PreparedImage({codecs.describe(self.array)}, data={self.data})"




def targets_for(field) -> list[str]:
    """Target ids that fit a core.spec output field; the first is the default."""
    kind = getattr(field, "type", "any")
    if kind == "array":
        item = getattr(field, "item", None)
        item_kind = getattr(item, "type", "any")
        if item_kind in _STRUCTURED:
            out = ["OVERLAY", "OBJECTS", "TEXT", "FILE"]
        elif item_kind == "image":
            out = ["IMAGE_EDITOR", "TEXTURE", "STRIP", "FILE"]
        else:
            out = ["TEXT", "FILE"]
    elif kind == "image":
        out = ["IMAGE_EDITOR", "TEXTURE", "STRIP", "FILE"]
    elif kind == "file":
        media = getattr(field, "media", "any")
        out = {"image": ["IMAGE_EDITOR", "TEXTURE", "STRIP", "FILE"],
               "audio": ["STRIP", "FILE"],
               "video": ["STRIP", "FILE"],
               "text": ["TEXT", "FILE"]}.get(media, ["IMAGE_EDITOR", "TEXTURE", "STRIP",
                                                     "FILE"])
    elif kind in _STRUCTURED:
        out = ["OVERLAY", "OBJECTS", "TEXT", "FILE"]
    elif kind == "segmentation":
        out = ["IMAGE_EDITOR", "TEXTURE", "OVERLAY", "FILE", "TEXT"]
    elif kind == "secret":
        out = []
    else:  # text, number, integer, boolean, category, vector, any
        out = ["TEXT", "FILE"]
    return out + ["NONE"]


@dataclass
class Write:
    output: str
    field: Any
    value: Any
    target: Target
    run: RunInfo
    record: dict

    @property
    def name(self) -> str:
        return self.target.name or f"{self.run.model} {self.output}"


def scene_of(run: RunInfo):
    return (bpy.data.scenes.get(run.scene) if run.scene else None) or bpy.context.scene


def id_name(name: str) -> str:
    data = name.encode("utf-8")[:_MAX_ID_NAME]
    return data.decode("utf-8", "ignore") or "Runway"
