"""Render the denoise test inputs with real Blender (Cycles, CPU).

Run with the bpy module or with Blender itself::

    /work/main/.venv/bin/python models/testdata/make_renders.py
    blender --background --python models/testdata/make_renders.py

A small scene (textured sphere, cube and floor under an area light and a sun),
256 x 256, rendered twice:
- at 4 samples: ``render_noisy_4spp.png`` plus its ``render_albedo.png`` and
  ``render_normal.png`` (Cycles' "Denoising Albedo" and "Denoising Normal"
  passes, the auxiliary images Blender itself gives OIDN);
- at 256 samples: ``render_clean_256spp.png``, the reference.
Cycles' own denoiser is off. Passes are written to an uncompressed multilayer
EXR, read back here (a minimal reader for exactly that file), and saved as
16-bit PNGs: colour and albedo sRGB-encoded, normals packed as n * 0.5 + 0.5.
A second file, ``render_noisy_4spp.exr``, keeps the noisy colour as linear float
RGB for the EXR path of the denoise model.
"""
from __future__ import annotations

import math
import os
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

if "BLENDER_USER_RESOURCES" not in os.environ:  # keep a user's Blender config out of it
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="runway-bpy-")
import bpy  # noqa: E402

HERE = Path(__file__).resolve().parent
SIZE = 256


# -- scene ---------------------------------------------------------------------

def build_scene() -> bpy.types.Scene:
    bpy.ops.wm.read_homefile(use_factory_startup=True, use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.seed = 7
    scene.render.resolution_x = scene.render.resolution_y = SIZE
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    vl = scene.view_layers[0]
    vl.cycles.denoising_store_passes = True  # Denoising Albedo / Normal / Depth

    world = bpy.data.worlds.new("World")
    if not world.node_tree:  # use_nodes is implied from Blender 5.0 on
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.15
    scene.world = world

    def material(name, colour, checker=None, rough=0.5):
        m = bpy.data.materials.new(name)
        if not m.node_tree:
            m.use_nodes = True
        nt = m.node_tree
        bsdf = nt.nodes["Principled BSDF"]
        bsdf.inputs["Roughness"].default_value = rough
        if checker:
            tex = nt.nodes.new("ShaderNodeTexChecker")
            tex.inputs["Scale"].default_value = checker
            tex.inputs["Color1"].default_value = colour
            tex.inputs["Color2"].default_value = (0.9, 0.9, 0.85, 1)
            nt.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
        else:
            bsdf.inputs["Base Color"].default_value = colour
        return m

    bpy.ops.mesh.primitive_plane_add(size=20)
    bpy.context.object.data.materials.append(material("Floor", (0.2, 0.3, 0.6, 1), checker=12))
    bpy.ops.mesh.primitive_uv_sphere_add(radius=1, location=(-0.8, 0, 1), segments=48,
                                         ring_count=24)
    bpy.ops.object.shade_smooth()
    bpy.context.object.data.materials.append(material("Ball", (0.8, 0.15, 0.1, 1), checker=6,
                                                      rough=0.3))
    bpy.ops.mesh.primitive_cube_add(size=1.2, location=(1.2, 0.6, 0.6), rotation=(0, 0, 0.5))
    bpy.context.object.data.materials.append(material("Box", (0.9, 0.75, 0.2, 1), rough=0.2))

    bpy.ops.object.light_add(type="AREA", location=(2.5, -2.5, 4))
    light = bpy.context.object
    light.data.energy = 150
    light.data.size = 1.0
    light.rotation_euler = (math.radians(40), 0, math.radians(45))
    bpy.ops.object.light_add(type="SUN", rotation=(math.radians(50), 0, math.radians(-60)))
    bpy.context.object.data.energy = 0.8

    bpy.ops.object.camera_add(location=(0, -6, 3.2), rotation=(math.radians(66), 0, 0))
    scene.camera = bpy.context.object
    return scene


def render_exr(scene: bpy.types.Scene, samples: int, path: Path) -> float:
    scene.cycles.samples = samples
    s = scene.render.image_settings
    if hasattr(s, "media_type"):  # Blender 5.0+ picks multilayer through the media type
        s.media_type = "MULTI_LAYER_IMAGE"
    s.file_format = "OPEN_EXR_MULTILAYER"
    s.color_depth = "32"
    s.exr_codec = "NONE"
    scene.render.filepath = str(path)
    t0 = time.monotonic()
    bpy.ops.render.render(write_still=True)
    return time.monotonic() - t0


# -- files ---------------------------------------------------------------------

def read_exr(path: Path) -> dict[str, np.ndarray]:
    """Channels of an uncompressed scanline EXR (single- or multi-part, as Blender writes
    multilayer files), as top-down float32 arrays keyed by full channel name."""
    data = path.read_bytes()
    magic, version = struct.unpack_from("<ii", data, 0)
    multipart = bool(version & 0x1000)
    if magic != 20000630 or version & 0x200:
        raise ValueError(f"{path}: not a scanline EXR")
    pos, parts = 8, []
    while True:  # one header per part; an empty header ends a multi-part list
        part = {"channels": []}
        while data[pos] != 0:
            end = data.index(b"\0", pos)
            name = data[pos:end].decode()
            end2 = data.index(b"\0", end + 1)
            (size,) = struct.unpack_from("<i", data, end2 + 1)
            value = data[end2 + 5:end2 + 5 + size]
            pos = end2 + 5 + size
            if name == "channels":
                p = 0
                while value[p] != 0:
                    e = value.index(b"\0", p)
                    ptype = struct.unpack_from("<i", value, e + 1)[0]
                    part["channels"].append((value[p:e].decode(), ptype))
                    p = e + 17
            elif name == "dataWindow":
                part["window"] = struct.unpack("<iiii", value)
            elif name == "compression" and value[0] != 0:
                raise ValueError(f"{path}: compressed EXR (write it with exr_codec NONE)")
        pos += 1
        parts.append(part)
        if not multipart or data[pos] == 0:
            break
    if multipart:
        pos += 1
    for part in parts:  # skip the offset tables: one entry per scanline
        x0, y0, x1, y1 = part["window"]
        pos += 8 * (y1 - y0 + 1)
    dtypes = {1: np.float16, 2: np.float32, 0: np.uint32}
    out = {}
    for part in parts:
        x0, y0, x1, y1 = part["window"]
        for name, _ in part["channels"]:
            out[name] = np.empty((y1 - y0 + 1, x1 - x0 + 1), np.float32)
    n_chunks = sum(p["window"][3] - p["window"][1] + 1 for p in parts)
    for _ in range(n_chunks):
        index = 0
        if multipart:
            (index,) = struct.unpack_from("<i", data, pos)
            pos += 4
        part = parts[index]
        x0, y0, x1, y1 = part["window"]
        w = x1 - x0 + 1
        y, _size = struct.unpack_from("<ii", data, pos)
        pos += 8
        for name, ptype in part["channels"]:  # stored in name order, one line each
            dt = np.dtype(dtypes[ptype])
            out[name][y - y0] = np.frombuffer(data, dt, w, pos)
            pos += w * dt.itemsize
    return out


def pass_rgb(ch: dict[str, np.ndarray], layer: str, names="RGB") -> np.ndarray:
    key = next(k for k in ch if k.endswith(f".{layer}.{names[0]}"))
    base = key[:-1]
    return np.dstack([ch[base + c] for c in names])


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def write_png16(path: Path, rgb01: np.ndarray) -> None:
    """A 16-bit RGB PNG (filter 'none' per row) from values in [0, 1]."""
    h, w, _ = rgb01.shape
    px = np.round(np.clip(rgb01, 0, 1) * 65535).astype(">u2")
    raw = b"".join(b"\0" + px[y].tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_exr_rgb(path: Path, rgb: np.ndarray) -> None:
    """An uncompressed half-float RGB scanline EXR."""
    h, w, _ = rgb.shape

    def attr(name: str, kind: str, value: bytes) -> bytes:
        return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value

    chl = b"".join(c.encode() + b"\0" + struct.pack("<iB3xii", 1, 0, 1, 1) for c in "BGR") + b"\0"
    header = (struct.pack("<ii", 20000630, 2)
              + attr("channels", "chlist", chl)
              + attr("compression", "compression", b"\0")
              + attr("dataWindow", "box2i", struct.pack("<iiii", 0, 0, w - 1, h - 1))
              + attr("displayWindow", "box2i", struct.pack("<iiii", 0, 0, w - 1, h - 1))
              + attr("lineOrder", "lineOrder", b"\0")
              + attr("pixelAspectRatio", "float", struct.pack("<f", 1.0))
              + attr("screenWindowCenter", "v2f", struct.pack("<ff", 0, 0))
              + attr("screenWindowWidth", "float", struct.pack("<f", 1.0)) + b"\0")
    line = 8 + w * 3 * 2
    start = len(header) + 8 * h
    offsets = struct.pack(f"<{h}Q", *[start + y * line for y in range(h)])
    half = rgb.astype(np.float16)
    body = b"".join(struct.pack("<ii", y, w * 6) + half[y, :, 2].tobytes() + half[y, :, 1].tobytes()
                    + half[y, :, 0].tobytes() for y in range(h))
    path.write_bytes(header + offsets + body)


def main() -> int:
    scene = build_scene()
    with tempfile.TemporaryDirectory() as tmp:
        noisy_exr, clean_exr = Path(tmp) / "noisy.exr", Path(tmp) / "clean.exr"
        t4 = render_exr(scene, 4, noisy_exr)
        t256 = render_exr(scene, 256, clean_exr)
        noisy, clean = read_exr(noisy_exr), read_exr(clean_exr)
    colour = pass_rgb(noisy, "Combined")
    write_png16(HERE / "render_noisy_4spp.png", srgb_encode(colour))
    write_exr_rgb(HERE / "render_noisy_4spp.exr", colour)
    write_png16(HERE / "render_clean_256spp.png", srgb_encode(pass_rgb(clean, "Combined")))
    write_png16(HERE / "render_albedo.png", srgb_encode(pass_rgb(noisy, "Denoising Albedo")))
    normal = pass_rgb(noisy, "Denoising Normal", "XYZ")
    write_png16(HERE / "render_normal.png", normal * 0.5 + 0.5)
    print(f"rendered 4 spp in {t4:.1f} s, 256 spp in {t256:.1f} s -> {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
