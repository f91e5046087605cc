"""The main job, run by `python3 build.py demo` with the bpy module (real Blender).

It installs the freshly built extension into an isolated Blender user folder,
builds a small scene, and runs real models from the extension's built-in shelf
on the local-process runtime (no Docker, no GPU, no account), the way an artist
or a pipeline would:

1. renders a short animation with **render post-processing** on: every frame
   goes through style transfer as Blender renders it (files beside the
   renders, one image-sequence strip);
2. runs the job files in ``demo/jobs/`` with ``bpy.ops.runway.run_job``:
   style transfer of the camera render into the sphere's **material texture**,
   4x **upscaling** of a post-processed frame into a **file** and a **strip**,
   **person segmentation** of the bundled photograph into files and an image,
   saving the .blend.

Nothing is faked: every result comes from a real model. Every step is timed;
each job file writes a JSON-lines log beside the .blend.
"""
import argparse
import importlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

PKG = "bl_ext.user_default.runway"
REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "models" / "testdata" / "grace_hopper.jpg"
JOBS = REPO / "demo" / "jobs"


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    p = argparse.ArgumentParser()
    p.add_argument("--zip", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, nargs=2, default=(512, 384))
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--frames", type=int, default=3)
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


def build_scene(bpy, width, height, samples, frames):
    bpy.ops.wm.read_homefile(use_factory_startup=True, use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = 1, frames

    world = bpy.data.worlds.new("Demo sky")
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.45, 0.55, 0.7, 1)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    scene.world = world

    def material(name, rgb, rough=0.5, metal=0.0):
        m = bpy.data.materials.new(name)
        if bpy.app.version < (5, 0, 0):
            m.use_nodes = True
        bsdf = m.node_tree.nodes["Principled BSDF"]
        bsdf.inputs["Base Color"].default_value = (*rgb, 1)
        bsdf.inputs["Roughness"].default_value = rough
        bsdf.inputs["Metallic"].default_value = metal
        return m

    bpy.ops.mesh.primitive_plane_add(size=20)
    bpy.context.object.data.materials.append(material("Floor", (0.8, 0.78, 0.72), 0.8))
    bpy.ops.mesh.primitive_cube_add(size=1.4, location=(1.2, 0.6, 0.7), rotation=(0, 0, 0.6))
    bpy.context.object.data.materials.append(material("Gold", (0.9, 0.7, 0.3), 0.25, 1.0))
    bpy.ops.mesh.primitive_torus_add(location=(0.3, -1.6, 0.3), major_radius=0.7,
                                     minor_radius=0.25)
    bpy.context.object.data.materials.append(material("Teal", (0.05, 0.5, 0.45), 0.4))
    bpy.ops.mesh.primitive_uv_sphere_add(radius=1, location=(-1.3, 0, 1), segments=48,
                                         ring_count=24)
    bpy.ops.object.shade_smooth()
    sphere = bpy.context.object
    sphere.name = "Sphere"
    sphere.data.materials.append(material("Red", (0.8, 0.08, 0.05), 0.3))

    bpy.ops.object.light_add(type="SUN", rotation=(0.7, 0.2, 0.8))
    bpy.context.object.data.energy = 3.0
    bpy.ops.object.camera_add(location=(6.5, -6.0, 4.2), rotation=(1.1, 0, 0.82))
    camera = bpy.context.object
    scene.camera = camera
    # A short camera move, so every frame differs.
    camera.keyframe_insert("location", frame=1)
    camera.location.x -= 0.6
    camera.keyframe_insert("location", frame=max(2, frames))
    bpy.context.view_layer.objects.active = sphere  # the job's material texture lands here
    return scene


def job_log_steps(steps, log_path, label):
    """Timings of one job from its JSON-lines log."""
    lines = [json.loads(l) for l in Path(log_path).read_text().splitlines() if l.strip()]
    first_run = next((l["t"] for l in lines if l["event"] == "running"), None)
    end = next((l["t"] for l in lines if l["event"] == "done"), lines[-1]["t"])
    frames = [l for l in lines if l["event"] == "frame"]
    if first_run is not None:
        steps.add(f"{label}: read inputs and start the model", first_run)
        steps.add(f"{label}: run and write the results", end - first_run)
    for f in frames:
        if f.get("predict_s"):
            steps.add(f"{label}: model time, frame {f['frame']}", f["predict_s"])
    return lines


def main():
    args = parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # An isolated Blender user folder: the demo never touches the user's own.
    os.environ["BLENDER_USER_RESOURCES"] = str(out / "blender-user")
    steps = Steps()
    t_all = time.monotonic()
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
    props = importlib.import_module(PKG + ".blender.props")
    engine = importlib.import_module(PKG + ".blender.engine")

    with steps.timed("build the demo scene"):
        scene = build_scene(bpy, *args.size, args.samples, args.frames)
    (out / "photo").mkdir(exist_ok=True)
    shutil.copyfile(PHOTO, out / "photo" / PHOTO.name)
    blend_path = out / "demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend_path))  # '//' paths: relative to out/

    # 1. Render post-processing: each frame through style transfer while rendering.
    scene = bpy.context.scene
    s = props.settings(scene, "style-transfer")
    setattr(s, props.prop_id("in", "image", "src"), "CAMERA")
    setattr(s, props.prop_id("in", "strength"), 0.85)
    post = scene.runway_post
    post.enabled, post.model, post.to_strip = True, "style-transfer", True
    scene.render.filepath = "//render/frame_"
    scene.render.image_settings.file_format = "PNG"
    with steps.timed(f"render {args.frames} frames {args.size[0]}x{args.size[1]} (Cycles CPU, "
                     f"{args.samples} samples), each post-processed by style transfer"):
        bpy.ops.render.render(animation=True)
    report = importlib.import_module(PKG + ".blender.postprocess").last_report()
    if report is None or report.failed or len(report.done) != args.frames:
        sys.exit(f"[demo] post-processing failed: {report.summary if report else 'not run'}")
    post.enabled = False

    # 2. The job files, as a pipeline runs them.
    for name in ("style_texture", "upscale_file_strip", "segment_photo"):
        log = out / f"{name}.log.jsonl"
        log.unlink(missing_ok=True)
        with steps.timed(f"job {name}.json"):
            bpy.ops.runway.run_job(filepath=str(JOBS / f"{name}.json"), log=str(log))
        job_log_steps(steps, log, f"  {name}")
    engine.shutdown()  # stop the model servers
    steps.add("whole demo", time.monotonic() - t_all)

    written = sorted(p for p in out.rglob("*") if p.is_file() and "blender-user" not in p.parts
                     and p.suffix in (".png", ".blend", ".jsonl"))
    print("\n[demo] wrote:")
    for p in written:
        print(f"  {p.relative_to(out)}  ({p.stat().st_size / 1e3:.0f} kB)")
    ed = scene.sequence_editor
    strips = (ed.strips_all if hasattr(ed, "strips_all") else ed.sequences_all) if ed else []
    print("[demo] strips: " + ", ".join(f"{s.name} (frames {int(s.frame_final_start)}-"
                                       f"{int(s.frame_final_end) - 1})" for s in strips))
    sphere_nodes = [n.image.name for n in bpy.data.objects["Sphere"].active_material
                    .node_tree.nodes if n.type == "TEX_IMAGE" and n.image]
    print(f"[demo] the sphere's material texture: {', '.join(sphere_nodes)}")
    print("\n[demo] timings:")
    for name, dt in steps.rows:
        print(f"  {dt:7.2f} s  {name}")
    (out / "demo.json").write_text(json.dumps(
        {"steps": steps.rows, "files": [str(p) for p in written],
         "strips": [s.name for s in strips], "texture": sphere_nodes}, indent=1))


main()
