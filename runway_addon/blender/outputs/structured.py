"""Points, boxes, landmarks and segmentations: drawn over the input image
(OVERLAY) or placed as objects (OBJECTS)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field as _field
from typing import Any, Optional

import numpy as np

import bpy

from ...core import codecs
from .images import show_in_image_editor, write_image
from .record import stamp
from .targets import Applied, id_name, OutputError, PreparedImage, PROP, scene_of, Write
from .text import segment_ids


@dataclass
class Shape:
    """Boxes, points and landmarks of one item, normalised 0..1, origin top left."""

    points: list = _field(default_factory=list)  # [(x, y)]
    labels: list = _field(default_factory=list)  # one per point ('' when none)
    connections: list = _field(default_factory=list)  # [(i, j)]
    boxes: list = _field(default_factory=list)  # [(x0, y0, x1, y1)]


def shapes_of(f, value: Any, name: str = "output") -> list[Shape]:
    """A structured output -> one Shape per item (array items each make one)."""
    kind = getattr(f, "type", None)
    if kind == "array":
        if not isinstance(value, (list, tuple)):
            raise OutputError(f"{name} is {codecs.describe(value)}, not a list",
                              hint="Send it to a Text datablock.")
        out = []
        for v in value:
            out.extend(shapes_of(f.item, v, name))
        return out
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if kind == "image_bounding_box":
        x0, y0, x1, y1 = (float(v) for v in value)
        return [Shape(boxes=[(x0, y0, x1, y1)])]
    if kind == "image_point":
        x, y = (float(v) for v in value)
        return [Shape(points=[(x, y)], labels=[""])]
    if kind == "image_landmarks":
        points = [(float(p[0]), float(p[1])) for p in value]
        labels = list(getattr(f, "labels", None) or [])
        labels = [labels[i] if i < len(labels) else str(i) for i in range(len(points))]
        conns = [(a, b) for a, b in (getattr(f, "connections", None) or [])
                 if a < len(points) and b < len(points)]
        return [Shape(points=points, labels=labels, connections=conns)]
    raise OutputError(f"{name} ({kind}) holds no boxes, points or landmarks",
                      hint="Send it to a Text datablock or a File.")


_PALETTE = ((255, 64, 64), (64, 200, 255), (255, 210, 40), (120, 255, 90), (255, 90, 220),
            (255, 150, 40), (150, 120, 255), (40, 255, 200))


def _input_rgba8(value: Any) -> Optional[np.ndarray]:
    if value is None:
        return None
    if isinstance(value, PreparedImage):
        value = value.array
    if isinstance(value, codecs.FileValue):
        value = codecs.decode_image_bytes(value.read_bytes(), "input")
    arr = codecs.image_array(value, "input image")
    return codecs.convert_channels(codecs.to_bit_depth(arr, 8), 4)


def draw_overlay(base: np.ndarray, shapes: list[Shape]) -> np.ndarray:
    """Boxes, connections and points drawn over an HxWx4 uint8 image (a copy)."""
    from PIL import Image, ImageDraw
    h, w = base.shape[:2]
    im = Image.fromarray(np.ascontiguousarray(base), "RGBA")
    draw = ImageDraw.Draw(im)
    width = max(2, round(min(w, h) / 200))
    radius = max(2, round(min(w, h) / 120))
    for k, shape in enumerate(shapes):
        colour = _PALETTE[k % len(_PALETTE)] + (255,)

        def px(p):
            return (p[0] * (w - 1), p[1] * (h - 1))
        for x0, y0, x1, y1 in shape.boxes:
            a, b = px((min(x0, x1), min(y0, y1))), px((max(x0, x1), max(y0, y1)))
            draw.rectangle([a, b], outline=colour, width=width)
        for i, j in shape.connections:
            draw.line([px(shape.points[i]), px(shape.points[j])], fill=colour, width=width)
        for p in shape.points:
            x, y = px(p)
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour,
                         outline=(0, 0, 0, 255))
    return np.asarray(im).copy()


def blend_segmentation(base: np.ndarray, f, ids: np.ndarray, opacity: float = 0.5):
    """Label colours blended over an HxWx4 uint8 image; the default (background) label
    is left clear."""
    ids = codecs.segmentation_ids(f, ids)
    h, w = base.shape[:2]
    if ids.shape != (h, w):  # nearest neighbour onto the input's size
        ys = (np.arange(h) * ids.shape[0] // h).clip(0, ids.shape[0] - 1)
        xs = (np.arange(w) * ids.shape[1] // w).clip(0, ids.shape[1] - 1)
        ids = ids[ys][:, xs]
    colours = codecs.label_colors(f)
    known = codecs.label_ids(f)
    background = known.get(f.default_label) if f.default_label else None
    out = base.copy()
    rgb = out[..., :3].astype(np.float32)
    for label, i in known.items():
        if i == background:
            continue
        mask = ids == i
        if mask.any():
            rgb[mask] = rgb[mask] * (1 - opacity) + np.float32(colours[label]) * opacity
    out[..., :3] = np.rint(rgb).astype(np.uint8)
    return out


def to_overlay(w: Write) -> list[Applied]:
    base = _input_rgba8(w.run.input_image)
    note = ""
    ftype = getattr(w.field, "type", None)
    if ftype == "segmentation":
        ids = segment_ids(w)
        if base is None:
            base = np.zeros(ids.shape + (4,), np.uint8)
            base[..., 3] = 255
            note = " (no input image: drawn over black)"
        pixels = blend_segmentation(base, w.field, ids)
        count = len(np.unique(ids))
        what = f"{count} labels"
    else:
        shapes = shapes_of(w.field, w.value, w.output)
        if base is None:
            base = np.full((512, 512, 4), 40, np.uint8)
            base[..., 3] = 255
            note = " (no input image: drawn on a 512x512 canvas)"
        pixels = draw_overlay(base, shapes)
        what = f"{sum(len(s.points) for s in shapes)} points, " \
               f"{sum(len(s.boxes) for s in shapes)} boxes"
    name = w.target.name or f"{w.run.model} {w.output} overlay"
    image = write_image(PreparedImage(pixels), name, w.target)
    image.use_fake_user = True
    stamp(image, w.record)
    show_in_image_editor(image)
    return [Applied(w.output, "OVERLAY", image.name, "overlay",
                    f"{image.name}: {what}{note}")]


def _placement(w: Write, scene):
    """(root matrix, map (x, y) -> local Vector, unit size, note)."""
    from mathutils import Matrix, Vector
    cam = bpy.data.objects.get(w.run.camera) if w.run.camera else None
    if cam is not None and cam.type == "CAMERA":
        # The evaluated camera: its matrix as drawn and rendered (the depsgraph is
        # current after the render the input came from; else this evaluates it).
        cam = cam.evaluated_get(bpy.context.evaluated_depsgraph_get())
        tr, br, bl, tl = (Vector(v) for v in cam.data.view_frame(scene=scene))
        right, down = tr - tl, bl - tl

        def local(p):
            return tl + right * p[0] + down * p[1]
        return cam.matrix_world.copy(), local, down.length, f" (in the view of {cam.name})"
    aspect = 1.0
    base = w.run.input_image
    if isinstance(base, PreparedImage):
        base = base.array
    if isinstance(base, np.ndarray) and base.ndim >= 2 and base.shape[0]:
        aspect = base.shape[1] / base.shape[0]
    note = " (no camera: on the XZ plane, 1 unit high)"
    if w.run.camera:
        note = f" (camera {w.run.camera!r} not found: on the XZ plane)"

    def local(p):
        return Vector(((p[0] - 0.5) * aspect, 0.0, 0.5 - p[1]))
    return Matrix.Identity(4), local, 1.0, note


def to_objects(w: Write) -> list[Applied]:
    scene = scene_of(w.run)
    shapes = shapes_of(w.field, w.value, w.output)
    matrix, local, unit, note = _placement(w, scene)
    coll = scene.collection
    stamp = json.dumps(w.record, sort_keys=True)
    root_name = w.name + (f" {w.run.run_id[:8]}" if w.run.run_id and not w.target.name
                          else "")
    root = bpy.data.objects.new(id_name(root_name), None)
    root.empty_display_type = "PLAIN_AXES"
    root.empty_display_size = unit * 0.1
    root.matrix_world = matrix
    root[PROP] = stamp
    coll.objects.link(root)
    made = 1
    many = len(shapes) > 1
    for k, shape in enumerate(shapes):
        prefix = f"{k + 1} " if many else ""
        for i, (p, label) in enumerate(zip(shape.points, shape.labels)):
            empty = bpy.data.objects.new(id_name(prefix + (label or f"point {i}")), None)
            empty.empty_display_type = "SPHERE"
            empty.empty_display_size = unit * 0.01
            empty.parent = root
            empty.location = local(p)
            empty[PROP] = stamp
            empty["runway_label"] = label
            coll.objects.link(empty)
            made += 1
        if shape.connections:
            mesh = bpy.data.meshes.new(id_name(f"{prefix}{w.output} connections"))
            mesh.from_pydata([tuple(local(p)) for p in shape.points],
                             [tuple(c) for c in shape.connections], [])
            obj = bpy.data.objects.new(mesh.name, mesh)
            obj.parent = root
            obj[PROP] = stamp
            coll.objects.link(obj)
            made += 1
        for j, (x0, y0, x1, y1) in enumerate(shape.boxes):
            corners = [local((x0, y0)), local((x1, y0)), local((x1, y1)), local((x0, y1))]
            mesh = bpy.data.meshes.new(id_name(f"{prefix}box"))
            mesh.from_pydata([tuple(c) for c in corners], [(0, 1), (1, 2), (2, 3), (3, 0)],
                             [])
            obj = bpy.data.objects.new(mesh.name, mesh)
            obj.parent = root
            obj[PROP] = stamp
            coll.objects.link(obj)
            made += 1
    return [Applied(w.output, "OBJECTS", root.name, "objects",
                    f"{root.name}: {made} objects{note}")]
