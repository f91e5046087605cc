"""The main job, run by `python3 build.py demo` with the bpy module (real Blender).

It installs the freshly built extension into an isolated Blender user folder,
renders the demo scene with Cycles on the CPU, and runs real models from the
extension's built-in shelf on the local-process runtime (no Docker, no GPU, no
account): the render goes through style transfer and 4x upscaling, the bundled
photograph of Grace Hopper through person segmentation. Every result is loaded
into the saved .blend as an image and written as a file; every step is timed,
environment creation included (reused on the next run).
"""
import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

PKG = "bl_ext.user_default.runway"
REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "models" / "testdata" / "grace_hopper.jpg"


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    p = argparse.ArgumentParser()
    p.add_argument("--zip", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, nargs=2, default=(512, 384))
    p.add_argument("--samples", type=int, default=32)
    return p.parse_args(argv)


class Steps:
    def __init__(self):
        self.rows = []

    def add(self, name, seconds):
        self.rows.append((name, seconds))
        print(f"[demo] {name}: {seconds:.2f} s", flush=True)

    def timed(self, name):
        steps = self

        class _Timer:
            def __enter__(self):
                self.t0 = time.monotonic()
                print(f"[demo] {name} ...", flush=True)

            def __exit__(self, exc_type, *exc):
                if exc_type is None:
                    steps.add(name, time.monotonic() - self.t0)
        return _Timer()


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
    bpy.ops.mesh.primitive_cube_add(size=1.4, location=(1.2, 0.6, 0.7), rotation=(0, 0, 0.6))
    bpy.context.object.data.materials.append(material("Gold", (0.9, 0.7, 0.3), 0.25, 1.0))
    bpy.ops.mesh.primitive_torus_add(location=(0.3, -1.6, 0.3), major_radius=0.7,
                                     minor_radius=0.25)
    bpy.context.object.data.materials.append(material("Teal", (0.05, 0.5, 0.45), 0.4))

    bpy.ops.object.light_add(type="SUN", rotation=(0.7, 0.2, 0.8))
    bpy.context.object.data.energy = 3.0
    bpy.ops.object.camera_add(location=(6.5, -6.0, 4.2), rotation=(1.1, 0, 0.82))
    scene.camera = bpy.context.object
    return scene


def run_model(card, inputs, steps, label):
    """Start the model where the add-on's preferences say (the local process by
    default), run it once, stop it."""
    sessions = importlib.import_module(PKG + ".blender.sessions")
    base = importlib.import_module(PKG + ".core.runtimes.base")
    marks = {}

    def on_event(event):
        marks.setdefault(event.state, time.monotonic())
        if event.state is base.SessionState.PREPARING and event.message:
            print(f"         {event.message}", flush=True)

    session = sessions.open_session(card, on_event=on_event)
    t0 = time.monotonic()
    try:
        session.start()
        started = marks.get(base.SessionState.STARTING, t0)
        steps.add(f"{label}: environment (created once, then reused)", started - t0)
        steps.add(f"{label}: server start to ready", time.monotonic() - started)
        with steps.timed(f"{label}: run"):
            with session.client() as client:
                result = client.run(inputs)
    finally:
        session.stop()
    return result


def main():
    args = parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # An isolated Blender user folder: the demo never touches the user's own.
    os.environ["BLENDER_USER_RESOURCES"] = str(out / "blender-user")
    steps = Steps()
    with steps.timed("import Blender (bpy)"):
        import bpy
    with steps.timed("install and enable the extension"):
        result = bpy.ops.extensions.package_install_files(
            filepath=args.zip, repo="user_default", enable_on_install=True)
        if result != {"FINISHED"} or PKG not in bpy.context.preferences.addons:
            sys.exit(f"[demo] the extension did not install: {result}")
    # Model environments live in the shared cache, so a second demo run (and the
    # tests) reuse them; the add-on's own default is its user folder.
    process = importlib.import_module(PKG + ".core.runtimes.process")
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.cache_folder = str(process.default_cache_dir())
    catalog_mod = importlib.import_module(PKG + ".core.catalog")
    codecs = importlib.import_module(PKG + ".core.codecs")
    images = importlib.import_module(PKG + ".blender.images")
    shelf = catalog_mod.Catalog.load([catalog_mod.builtin_models_dir()])
    if shelf.errors:
        sys.exit("[demo] the built-in catalog is broken: " + "; ".join(map(str, shelf.errors)))
    print(f"[demo] built-in shelf: {', '.join(c.name for c in shelf.cards)}")

    with steps.timed("build the demo scene", ):
        scene = build_scene(bpy, *args.size, args.samples)
    render_path = out / "render.png"
    with steps.timed(f"render {args.size[0]}x{args.size[1]} with Cycles on the CPU "
                     f"({args.samples} samples)"):
        scene.render.filepath = str(render_path)
        scene.render.image_settings.file_format = "PNG"
        bpy.ops.render.render(write_still=True)
    render = bpy.data.images.load(str(render_path))
    render.name = "Demo render"
    render.pack()
    render.use_fake_user = True
    frame = images.image_to_array(render)

    written = [render_path]

    def keep(name, array):
        """Write a result as a PNG file and load it into the .blend (never overwriting)."""
        path = out / f"{name}.png"
        path.write_bytes(codecs.encode_image_bytes(array, "PNG", compress_level=6))
        images.array_to_image(array, name)
        written.append(path)
        return array

    def image_output(result, key):
        value = result.outputs[key]
        return codecs.decode_image_bytes(value.read_bytes(), key)

    styled = run_model(shelf.get("style-transfer"), {"image": frame, "strength": 0.85},
                       steps, "style transfer")
    styled = keep("render_stylised", image_output(styled, "output"))
    upscaled = run_model(shelf.get("upscale"), {"image": styled}, steps, "4x upscaling")
    upscaled = keep("render_stylised_x4", image_output(upscaled, "output"))
    print(f"[demo] upscaled {styled.shape[1]}x{styled.shape[0]} -> "
          f"{upscaled.shape[1]}x{upscaled.shape[0]}")
    from PIL import Image  # bundled with the extension
    with Image.open(PHOTO) as im:
        photo = im.convert("RGB")
    seg = run_model(shelf.get("person-segmentation"), {"image": photo}, steps,
                    "person segmentation")
    keep("hopper_matte", image_output(seg, "matte"))
    keep("hopper_cutout", image_output(seg, "cutout"))

    blend_path = out / "demo.blend"
    with steps.timed("save the demo .blend"):
        bpy.ops.wm.save_as_mainfile(filepath=str(blend_path))
    written.append(blend_path)

    print("\n[demo] wrote:")
    for p in written:
        print(f"  {p}  ({p.stat().st_size / 1e3:.0f} kB)")
    print("[demo] images in demo.blend: " + ", ".join(sorted(
        i.name for i in bpy.data.images if i.packed_file)))
    print("\n[demo] timings:")
    for name, dt in steps.rows:
        print(f"  {dt:7.2f} s  {name}")
    (out / "demo.json").write_text(json.dumps(
        {"steps": steps.rows, "files": [str(p) for p in written]}, indent=1))


main()
