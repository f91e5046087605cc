"""Blender properties generated from each model's spec, and back to plain values.

One PropertyGroup class per model of the catalog (built from the schema its
folder carries, no server needed), as Flamenco's add-on does for job types:
``build()`` turns spec fields into real widgets (sliders with soft limits,
enums for categories, checkboxes, text, vectors, file paths) plus, per input,
a source picker offering only the sources that fit its type, and per output
the targets that fit it. They live on the scene (``scene.runway_models``), so
every .blend keeps its own settings per model.

Limits are soft (the slider stops there, typing can go past): a value out of
range is then refused by validation before the run, naming the field, instead
of being clamped silently.

Enum items are fixed lists: item callbacks crashed the bpy module of Blender
4.2 at exit. A catalog refresh rebuilds the classes (the stored values stay:
they are ID properties keyed by name).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty,
                       IntProperty, PointerProperty, StringProperty)

from ..core import catalog as core_catalog
from ..core.errors import RunwayError
from ..core.jobfile import OUTPUT_PATH
from . import outputs as blender_outputs
from .preferences import RUNTIMES

RUN_ON = (("DEFAULT", "Preferences' default", "Where the add-on preferences say models run"),
          *RUNTIMES)

IMAGE_SOURCES = (
    ("CAMERA", "Camera render", "Render the scene camera at the scene's resolution"),
    ("PASS", "Render pass", "Render the scene camera and send one render pass"),
    ("IMAGE", "Image", "An image datablock"),
    ("TEXTURE", "Material texture", "The image texture of the active object's active material"),
    ("STRIP", "Sequencer strip", "The current frame of an image strip in the sequencer"),
    ("FILE", "File", "An image file on disk"),
)
TEXT_SOURCES = (
    ("TYPED", "Typed", "Text typed here"),
    ("TEXT", "Text datablock", "The whole text of a Text datablock"),
    ("FILE", "File", "The content of a text file"),
)
NONE_SOURCE = ("NONE", "Nothing", "Leave this input out (the model uses its default)")
PASSES = (
    ("COMBINED", "Combined", "The final render"),
    ("DIFFUSE_COLOR", "Albedo", "Diffuse colour (what a denoiser calls albedo)"),
    ("NORMAL", "Normal", "World-space normals"),
    ("DEPTH", "Depth", "Distance from the camera (Z)"),
    ("MIST", "Mist", "Mist pass, 0..1 over the mist range"),
)
FILE_FORMATS = blender_outputs.FILE_FORMATS
SOCKETS = tuple((s, s, f"Wire the texture to the shader's {s} input") for s in
                ("Base Color", "Normal", "Roughness", "Metallic", "Alpha", "Emission Color"))

_SAFE = re.compile(r"[^a-z0-9_]")


def prop_id(role: str, name: str, part: str = "") -> str:
    """A property identifier for a field (Blender identifiers: letters, digits, _)."""
    safe = _SAFE.sub("_", name.lower())[:40] or "field"
    return f"{role}_{safe}" + (f"__{part}" if part else "")


@dataclass
class ModelProps:
    """What was generated for one model: its card, spec and PropertyGroup class."""

    card: Any
    spec: Any = None
    cls: Any = None
    error: str = ""  # why no widgets could be built (e.g. an unreadable schema)
    choices: dict = field(default_factory=dict)  # prop id -> list of the category's values

    @property
    def command(self):
        return self.spec.command() if self.spec is not None else None


_models: dict[str, ModelProps] = {}
_container: dict = {"cls": None}


def _enum(items) -> list:
    return [(str(i), str(n), str(d)) for i, n, d in items]


def _value_props(role: str, f, choices: dict) -> dict:
    """The widgets of one plain-valued field (number, text, boolean, ...)."""
    pid = prop_id(role, f.name)
    desc = (f.description or f.label)[:400]
    t = f.type
    if t in ("number", "integer"):
        num, prop = (float, FloatProperty) if t == "number" else (int, IntProperty)
        kw = dict(name=f.label, description=desc,
                  default=num(f.default if f.default is not None else (f.min or 0)))
        if f.min is not None:
            kw["soft_min"] = num(f.min)
        if f.max is not None:
            kw["soft_max"] = num(f.max)
        if t == "number" and f.step:
            kw["step"] = max(1, int(round(float(f.step) * 100)))  # Blender's step is 1/100
        return {pid: prop(**kw)}
    if t == "boolean":
        return {pid: BoolProperty(name=f.label, description=desc, default=bool(f.default))}
    if t == "category":
        choices[pid] = list(f.choices)
        items = [(str(i), str(c), "") for i, c in enumerate(f.choices)]
        default = str(f.choices.index(f.default)) if f.default in f.choices else "0"
        return {pid: EnumProperty(name=f.label, description=desc, items=items, default=default)}
    if t == "vector" and f.length <= 32:
        default = list(f.default or [f.sampling_mean] * f.length)
        return {pid: FloatVectorProperty(name=f.label, description=desc, size=f.length,
                                         default=default)}
    if t == "file":
        return {pid: StringProperty(name=f.label, description=desc, subtype="FILE_PATH",
                                    default=f.default or "")}
    if t == "secret":
        return {}  # never a property: it would be saved into the .blend
    # text, long vectors, arrays, points, boxes and anything else: typed (JSON for structures)
    default = f.default if isinstance(getattr(f, "default", None), str) else ""
    return {pid: StringProperty(name=f.label, description=desc, default=default)}


def _input_props(f, choices: dict) -> dict:
    pid = prop_id("in", f.name)
    if f.type == "image":
        items = list(IMAGE_SOURCES) + ([] if f.required else [NONE_SOURCE])
        default = "CAMERA" if f.required else "NONE"
        return {
            prop_id("in", f.name, "src"): EnumProperty(name="Source", items=_enum(items),
                                                       default=default,
                                                       description=f"Where {f.label} comes from"),
            prop_id("in", f.name, "image"): PointerProperty(type=bpy.types.Image, name="Image"),
            prop_id("in", f.name, "pass"): EnumProperty(name="Pass", items=_enum(PASSES)),
            prop_id("in", f.name, "strip"): StringProperty(name="Strip",
                                                           description="Name of an image strip"),
            prop_id("in", f.name, "file"): StringProperty(name="File", subtype="FILE_PATH"),
        }
    if f.type == "text":
        out = _value_props("in", f, choices)
        out[prop_id("in", f.name, "src")] = EnumProperty(name="Source", items=_enum(TEXT_SOURCES))
        out[prop_id("in", f.name, "text")] = PointerProperty(type=bpy.types.Text, name="Text")
        out[prop_id("in", f.name, "file")] = StringProperty(name="File", subtype="FILE_PATH")
        return out
    out = _value_props("in", f, choices)
    if f.type == "file" and not f.required:
        pass  # an empty path means "leave it out"
    return out


def _output_props(f) -> dict:
    targets = blender_outputs.targets_for(f)
    labels = {t[0]: t for t in blender_outputs.TARGETS}
    items = [labels[t] for t in targets]
    return {
        prop_id("out", f.name, "targets"): EnumProperty(
            name="Send to", items=_enum(items), options={"ENUM_FLAG"}, default={targets[0]},
            description=f"Where {f.label} goes (several may be chosen)"),
        prop_id("out", f.name, "replace"): BoolProperty(
            name="Replace", description="Overwrite the result of an earlier run (same name or "
                                        "path) instead of making a new, numbered one"),
        prop_id("out", f.name, "path"): StringProperty(
            name="Path", subtype="FILE_PATH", default=OUTPUT_PATH,
            description="File path template: {model}, {output}, {frame}, {run}; // is the "
                        ".blend's folder"),
        prop_id("out", f.name, "format"): EnumProperty(name="Format", items=_enum(FILE_FORMATS)),
        prop_id("out", f.name, "socket"): EnumProperty(name="Socket", items=_enum(SOCKETS)),
    }


def _class_for(mp: ModelProps):
    choices: dict = {}
    ann: dict = {
        "run_on": EnumProperty(name="Run on", items=_enum(RUN_ON), default="DEFAULT",
                               description="Where this model runs (overrides the preferences)"),
        "licence_confirmed": BoolProperty(name="Licence confirmed", default=False),
        "show_outputs": BoolProperty(name="Outputs", default=True),
    }
    command = mp.command
    for f in mp.spec.options:
        ann.update(_value_props("opt", f, choices))
    for f in command.inputs:
        ann.update(_input_props(f, choices))
    for f in command.outputs:
        ann.update(_output_props(f))
    mp.choices = choices
    safe = _SAFE.sub("_", mp.card.name.lower())
    return type(f"RUNWAY_PG_model_{safe}", (bpy.types.PropertyGroup,), {"__annotations__": ann})


def build(catalog: core_catalog.Catalog) -> None:
    """(Re)generate and register the classes for every runnable card."""
    teardown()
    ann = {}
    for card in catalog.cards:
        mp = ModelProps(card)
        _models[card.name] = mp
        if not card.runnable:
            mp.error = "This model has no folder to run."
            continue
        try:
            mp.spec = core_catalog.load_spec(card)
            mp.cls = _class_for(mp)
            bpy.utils.register_class(mp.cls)
        except (RunwayError, ValueError, KeyError) as e:
            mp.error = str(e)
            mp.cls = None
            continue
        ann[attr_for(card.name)] = PointerProperty(type=mp.cls)
    container = type("RUNWAY_PG_models", (bpy.types.PropertyGroup,), {"__annotations__": ann})
    bpy.utils.register_class(container)
    _container["cls"] = container
    bpy.types.Scene.runway_models = PointerProperty(type=container)


def teardown() -> None:
    if _container["cls"] is not None:
        del bpy.types.Scene.runway_models
        bpy.utils.unregister_class(_container["cls"])
        _container["cls"] = None
    for mp in _models.values():
        if mp.cls is not None:
            bpy.utils.unregister_class(mp.cls)
    _models.clear()


def attr_for(model_name: str) -> str:
    return "m_" + _SAFE.sub("_", model_name.lower())


def model(name: str) -> Optional[ModelProps]:
    return _models.get(name)


def settings(scene, name: str):
    """The scene's settings of model ``name`` (None when it has no widgets)."""
    group = getattr(scene, "runway_models", None)
    return getattr(group, attr_for(name), None) if group is not None else None


def value_of(mp: ModelProps, s, role: str, f) -> Any:
    """A plain value of a plain-valued field, as the model expects it."""
    pid = prop_id(role, f.name)
    if pid in mp.choices:
        return mp.choices[pid][int(getattr(s, pid))]
    value = getattr(s, pid)
    if f.type == "vector":
        return [float(v) for v in value] if not isinstance(value, str) else _json_list(value)
    if f.type in ("array", "image_point", "image_bounding_box", "image_landmarks", "any"):
        return _json_or_text(value)
    return value


def _json_list(text: str) -> Any:
    return _json_or_text(text if text.strip().startswith("[") else f"[{text}]")


def _json_or_text(text: str) -> Any:
    import json
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def set_value(mp: ModelProps, s, role: str, f, value: Any) -> None:
    """Set a plain-valued field's widget to ``value`` (value_of's inverse): a
    category by its choice, a structure as JSON. RunwayError naming the field
    when the value does not fit."""
    import json
    pid = prop_id(role, f.name)
    try:
        if pid in mp.choices:
            if value not in mp.choices[pid]:
                raise ValueError(f"not one of {mp.choices[pid]}")
            setattr(s, pid, str(mp.choices[pid].index(value)))
        elif isinstance(getattr(s, pid), str) and not isinstance(value, str):
            setattr(s, pid, json.dumps(value))
        else:
            setattr(s, pid, value)
    except (ValueError, TypeError, AttributeError) as e:
        raise RunwayError(f"{f.name}: {value!r} does not fit this input ({e})",
                          hint="Fix the value.") from e


def options_of(mp: ModelProps, s) -> dict:
    return {f.name: value_of(mp, s, "opt", f) for f in mp.spec.options if f.type != "secret"}


def sample_vectors(mp: ModelProps, s, name: str) -> None:
    """Draw a vector input from its declared distribution (the "sample" button)."""
    from ..core.validation import sample_vector
    f = mp.command.input(name)
    setattr(s, prop_id("in", f.name), sample_vector(f))
