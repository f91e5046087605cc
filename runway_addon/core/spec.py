"""One typed description of a model, whatever protocol serves it.

Both wire protocols (Runway Model SDK, Cog) map their descriptions into these
classes in ``core.protocols``; everything above (validation, codecs, the UI,
job files) only ever sees this module's types.
"""
from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from .errors import NotFound


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class _FieldBase(_Spec):
    name: str
    description: str = ""
    title: Optional[str] = None
    # Cog: listed in Input.required. Runway: never (a missing input takes its default).
    required: bool = False
    deprecated: bool = False
    # The protocol's own description of the field, kept for display and debugging.
    raw: Optional[dict[str, Any]] = None

    @property
    def label(self) -> str:
        # Cog titles a choice input after its enum, which it names like the field: "style".
        if self.title and self.title != self.name:
            return self.title
        return self.name.replace("_", " ").capitalize()


class ImageField(_FieldBase):
    type: Literal["image"] = "image"
    channels: Literal[1, 3, 4] = 3
    min_width: Optional[int] = None
    max_width: Optional[int] = None
    min_height: Optional[int] = None
    max_height: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    default_format: Optional[Literal["PNG", "JPEG"]] = None
    accept: Optional[str] = None  # MIME filter (Cog x-cog-accept)


class TextField(_FieldBase):
    type: Literal["text"] = "text"
    default: Optional[str] = None
    min_length: int = 0
    max_length: Optional[int] = None
    pattern: Optional[str] = None


class NumberField(_FieldBase):
    type: Literal["number"] = "number"
    default: Optional[float] = None
    min: Optional[float] = None
    max: Optional[float] = None
    step: Optional[float] = None


class IntegerField(_FieldBase):
    type: Literal["integer"] = "integer"
    default: Optional[int] = None
    min: Optional[int] = None
    max: Optional[int] = None
    step: Optional[int] = None


class BooleanField(_FieldBase):
    type: Literal["boolean"] = "boolean"
    default: Optional[bool] = None


class CategoryField(_FieldBase):
    type: Literal["category"] = "category"
    choices: list[Union[str, int, float]]
    default: Optional[Union[str, int, float]] = None


class VectorField(_FieldBase):
    type: Literal["vector"] = "vector"
    length: int
    sampling_mean: float = 0.0
    sampling_std: float = 1.0
    default: Optional[list[float]] = None


class ArrayField(_FieldBase):
    type: Literal["array"] = "array"
    item: "FieldSpec"
    min_length: int = 0
    max_length: Optional[int] = None
    # Cog outputs: an iterator streams items; "concatenate" marks a text stream.
    iterator: bool = False
    concatenate: bool = False
    default: Optional[list[Any]] = None


class FileField(_FieldBase):
    """A file or directory. ``media`` tells audio/video/image files apart when
    the protocol says so (Cog MIME accept), so outputs can land as sound strips."""

    type: Literal["file"] = "file"
    is_directory: bool = False
    extension: Optional[str] = None
    accept: Optional[str] = None
    media: Literal["any", "audio", "video", "image", "text"] = "any"
    default: Optional[str] = None


class SegmentationField(_FieldBase):
    type: Literal["segmentation"] = "segmentation"
    labels: list[str]
    default_label: Optional[str] = None
    label_to_id: dict[str, int] = Field(default_factory=dict)
    label_to_color: dict[str, tuple[int, int, int]] = Field(default_factory=dict)
    min_width: Optional[int] = None
    max_width: Optional[int] = None
    min_height: Optional[int] = None
    max_height: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None


class ImagePointField(_FieldBase):
    type: Literal["image_point"] = "image_point"


class ImageBoundingBoxField(_FieldBase):
    type: Literal["image_bounding_box"] = "image_bounding_box"


class ImageLandmarksField(_FieldBase):
    type: Literal["image_landmarks"] = "image_landmarks"
    length: int
    labels: Optional[list[str]] = None
    connections: list[tuple[int, int]] = Field(default_factory=list)


class SecretField(_FieldBase):
    """Never shown, logged or saved into a .blend."""

    type: Literal["secret"] = "secret"


class AnyField(_FieldBase):
    """A value passed through as it is; unknown protocol types land here with ``raw``."""

    type: Literal["any"] = "any"
    default: Any = None


FieldSpec = Annotated[
    Union[
        ImageField,
        TextField,
        NumberField,
        IntegerField,
        BooleanField,
        CategoryField,
        VectorField,
        ArrayField,
        FileField,
        SegmentationField,
        ImagePointField,
        ImageBoundingBoxField,
        ImageLandmarksField,
        SecretField,
        AnyField,
    ],
    Field(discriminator="type"),
]
ArrayField.model_rebuild()

FIELD_TYPES = (
    "image", "text", "number", "integer", "boolean", "category", "vector", "array", "file",
    "segmentation", "image_point", "image_bounding_box", "image_landmarks", "secret", "any",
)


class Protocol(str, Enum):
    RUNWAY = "runway"  # Runway Model SDK server (runway_model.py)
    RUNWAY_HOSTED = "runway-hosted"  # hosted-models style /v1/info, /v1/query
    COG = "cog"  # Cog / coglet HTTP server
    REPLICATE = "replicate"  # Replicate's HTTP API (Cog models hosted by Replicate)


class Command(_Spec):
    name: str
    description: str = ""
    inputs: list[FieldSpec] = Field(default_factory=list)
    outputs: list[FieldSpec] = Field(default_factory=list)

    def input(self, name: str) -> FieldSpec:
        return _by_name(self.inputs, name, f"command {self.name!r} input")

    def output(self, name: str) -> FieldSpec:
        return _by_name(self.outputs, name, f"command {self.name!r} output")


class ModelSpec(_Spec):
    protocol: Protocol
    commands: list[Command]
    options: list[FieldSpec] = Field(default_factory=list)  # setup options
    gpu: Optional[bool] = None
    version: Optional[str] = None  # SDK / cog version the server reported

    def command(self, name: Optional[str] = None) -> Command:
        """The named command, or the only/first one when ``name`` is None."""
        if name is None:
            if not self.commands:
                raise NotFound("the model declares no commands",
                               hint="Check the model's schema: it describes nothing to run.")
            return self.commands[0]
        return _by_name(self.commands, name, "command")


def _by_name(items, name, what):
    for item in items:
        if item.name == name:
            return item
    known = ", ".join(i.name for i in items) or "none"
    raise NotFound(f"unknown {what} {name!r} (known: {known})",
                   hint="Use one of the names the model declares.")
