"""The main job, run by `python3 build.py demo` with the bpy module (real Blender).

Today it installs the freshly built extension into an isolated Blender user
folder, builds and renders the demo scene with Cycles on the CPU, and saves the
render and the .blend. Running models on the render is not built yet (see the
README's roadmap); this script says so instead of pretending.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

PKG = "bl_ext.user_default.runway"


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    p = argparse.ArgumentParser()
    p.add_argument("--zip", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, nargs=2, default=(512, 384))
    p.add_argument("--samples", type=int, default=32)
    return p.parse_args(argv)


def step(name, steps):
    class _Step:
        def __enter__(self):
            self.t0 = time.monotonic()
            print(f"[demo] {name} ...", flush=True)

        def __exit__(self, *exc):
            dt = time.monotonic() - self.t0
            steps.append((name, dt))
            print(f"[demo] {name}: {dt:.2f} s", flush=True)
    return _Step()


def build_scene(bpy, width, height, samples):
    bpy.ops.wm.read_homefile(use_factory_startup=True, use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100

    world = bpy.data.worlds.new("Demo sky")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.45, 0.55, 0.7, 1)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    scene.world = world

    def material(name, rgb, rough=0.5, metal=0.0):
        m = bpy.data.materials.new(name)
        m.use_nodes = True
        bsdf = m.node_tree.nodes["Principled BSDF"]
        bsdf.inputs["Base Color"].default_value = (*rgb, 1)
        bsdf.inputs["Roughness"].default_value = rough
        bsdf.inputs["Metallic"].default_value = metal
        return m

    bpy.ops.mesh.primitive_plane_add(size=20)
    bpy.context.object.data.materials.append(material("Floor", (0.8, 0.78, 0.72), 0.8))
    bpy.ops.mesh.primitive_uv_sphere_add(radius=1, location=(-1.3, 0, 1), segments=48,
                                         ring_count=24)
    bpy.ops.object.shade_smooth()
    bpy.context.object.data.materials.append(material("Red", (0.8, 0.08, 0.05), 0.3))
    bpy.ops.mesh.primitive_cube_add(size=1.4, location=(1.2, 0.6, 0.7),
                                    rotation=(0, 0, 0.6))
    bpy.context.object.data.materials.append(material("Gold", (0.9, 0.7, 0.3), 0.25, 1.0))
    bpy.ops.mesh.primitive_torus_add(location=(0.3, -1.6, 0.3), major_radius=0.7,
                                     minor_radius=0.25)
    bpy.context.object.data.materials.append(material("Teal", (0.05, 0.5, 0.45), 0.4))

    bpy.ops.object.light_add(type="SUN", rotation=(0.7, 0.2, 0.8))
    bpy.context.object.data.energy = 3.0
    bpy.ops.object.camera_add(location=(6.5, -6.0, 4.2), rotation=(1.1, 0, 0.82))
    scene.camera = bpy.context.object
    return scene


def main():
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # An isolated Blender user folder, so the demo never touches the user's own.
    os.environ["BLENDER_USER_RESOURCES"] = str(out / "blender-user")
    steps = []
    with step("import Blender (bpy)", steps):
        import bpy
    with step("install and enable the extension", steps):
        result = bpy.ops.extensions.package_install_files(
            filepath=args.zip, repo="user_default", enable_on_install=True)
        if result != {"FINISHED"} or PKG not in bpy.context.preferences.addons:
            sys.exit(f"[demo] the extension did not install: {result}")
    with step("build the demo scene", steps):
        scene = build_scene(bpy, *args.size, args.samples)
    render_path = out / "render.png"
    with step(f"render {args.size[0]}x{args.size[1]} with Cycles on the CPU "
              f"({args.samples} samples)", steps):
        scene.render.filepath = str(render_path)
        scene.render.image_settings.file_format = "PNG"
        bpy.ops.render.render(write_still=True)
    blend_path = out / "demo.blend"
    with step("save the demo .blend", steps):
        bpy.ops.wm.save_as_mainfile(filepath=str(blend_path))

    print("\n[demo] wrote:")
    for p in (render_path, blend_path):
        print(f"  {p}  ({p.stat().st_size / 1e3:.0f} kB)")
    print("\n[demo] timings:")
    for name, dt in steps:
        print(f"  {dt:7.2f} s  {name}")
    print("\n[demo] NOT BUILT YET (nothing below is faked; these steps are skipped):")
    for line in (
        "running models on the render (style transfer, 4x upscaling) and on a photo "
        "(person segmentation): needs the model shelf and the local-process runtime",
        "loading model outputs back into the .blend as images",
    ):
        print(f"  - {line}")
    (out / "demo.json").write_text(json.dumps({"steps": steps, "render": str(render_path),
                                               "blend": str(blend_path)}, indent=1))


main()
