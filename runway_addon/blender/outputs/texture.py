"""Results as an image texture in the active object's material."""
from __future__ import annotations

import json

import bpy

from .images import image_values, write_image
from .record import stamp
from .targets import Applied, id_name, OutputError, PROP, scene_of, Write


_COLOUR_SOCKETS = ("RGBA",)


def _active_object(scene):
    view_layer = bpy.context.view_layer if bpy.context.scene == scene else \
        scene.view_layers[0]
    return view_layer.objects.active


def _material_of(obj, name: str):
    """The active material of ``obj``; a new one (with nodes) when it has none."""
    mat = obj.active_material
    if mat is not None:
        _use_nodes(mat)
        return mat, False
    mat = bpy.data.materials.new(id_name(name))
    _use_nodes(mat)
    if len(obj.material_slots) == 0:
        obj.data.materials.append(mat)
    else:
        obj.material_slots[obj.active_material_index].material = mat
    return mat, True


def _use_nodes(mat) -> None:
    # 5.0 always uses nodes (the switch is deprecated, to go in 6.0).
    if bpy.app.version < (5, 0, 0) and not mat.use_nodes:
        mat.use_nodes = True


def _shader_node(tree):
    """The Principled BSDF (the one the output uses first), else the output's shader."""
    outputs = [n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"]
    active = [n for n in outputs if n.is_active_output] or outputs
    for out in active:
        surface = out.inputs.get("Surface")
        if surface is not None and surface.is_linked:
            node = surface.links[0].from_node
            if node.type == "BSDF_PRINCIPLED":
                return node
    principled = [n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"]
    if principled:
        return principled[0]
    for out in active:
        surface = out.inputs.get("Surface")
        if surface is not None and surface.is_linked:
            return surface.links[0].from_node
    node = tree.nodes.new("ShaderNodeBsdfPrincipled")
    out = active[0] if active else tree.nodes.new("ShaderNodeOutputMaterial")
    node.location = (out.location.x - 300, out.location.y)
    tree.links.new(node.outputs[0], out.inputs["Surface"])
    return node


def to_texture(w: Write) -> list[Applied]:
    scene = scene_of(w.run)
    obj = _active_object(scene)
    if obj is None:
        raise OutputError("there is no active object to put the texture on",
                          hint="Select the object whose material should get the texture.")
    if not hasattr(obj.data, "materials"):
        raise OutputError(f"{obj.name} ({obj.type.lower()}) cannot have a material",
                          hint="Make a mesh (or curve, text...) the active object.")
    (name, img), *_ = image_values(w)
    mat, created = _material_of(obj, name)
    tree = mat.node_tree
    shader = _shader_node(tree)
    socket = shader.inputs.get(w.target.socket)
    if socket is None:
        names = ", ".join(s.name for s in shader.inputs if s.enabled)
        raise OutputError(f"{shader.name} in {mat.name} has no input {w.target.socket!r}",
                          hint=f"Choose one of: {names}.")
    # Colour goes to colour sockets; anything else (roughness, normal...) is data.
    image = write_image(img, name, w.target,
                         data_default=socket.type not in _COLOUR_SOCKETS)
    stamp(image, w.record)
    node = None
    feeder = socket.links[0].from_node if socket.is_linked else None
    if feeder is not None and feeder.type == "NORMAL_MAP" and feeder.get(PROP) and \
            feeder.inputs["Color"].is_linked:
        feeder = feeder.inputs["Color"].links[0].from_node
    if feeder is not None and feeder.type == "TEX_IMAGE" and feeder.get(PROP):
        node = feeder  # ours from an earlier run: update it
    if node is None:
        node = tree.nodes.new("ShaderNodeTexImage")
        node.location = (shader.location.x - 320, shader.location.y)
        node.label = f"Runway: {w.output}"
        if socket.name == "Normal" and socket.type == "VECTOR":
            normal_map = tree.nodes.new("ShaderNodeNormalMap")
            normal_map[PROP] = w.record["model"]
            normal_map.location = (shader.location.x - 160, node.location.y)
            node.location.x -= 160
            tree.links.new(node.outputs["Color"], normal_map.inputs["Color"])
            tree.links.new(normal_map.outputs["Normal"], socket)
        else:
            tree.links.new(node.outputs["Color"], socket)
    node.image = image
    node[PROP] = json.dumps(w.record, sort_keys=True)
    tree.nodes.active = node
    return [Applied(w.output, "TEXTURE", image.name, "texture",
                    f"{image.name} -> {mat.name}: {shader.name}.{socket.name}"
                    + (" (new material)" if created else ""))]
