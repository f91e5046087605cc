"""Job files and render post-processing in real Blender (the bpy module), through the
identity test model on warm local-process sessions.

Figures (each against a baseline measured in the same run):
- a 48-frame job (``batch.run_job``: image datablock in, files out) with a fixed cost
  per frame (the model's ``delay`` input), 1 and 2 replicas: frames per second
  against the model-bound throughput (replicas / the model's own predict time per
  frame, from the same job's results);
- an animation render (``render(animation=True)``, the ``blender -b -a`` path) with
  post-processing on, against the same render alone, the model faster than the
  render; the two alternate so drift on a shared machine hits both alike.

    .venv/bin/python bench/bench_batch.py [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_run  # noqa: E402  (sets up bpy's user folder and sys.path first)
from figures import Collector, Plot, table  # noqa: E402


class QuietLog:
    """A job log kept in memory (batch.JsonLog prints every line)."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.lines: list[dict] = []

    def __call__(self, event: str, **fields) -> None:
        self.lines.append({"t": time.monotonic() - self.t0, "event": event, **fields})

    def close(self) -> None:
        pass


def job_once(bpy, mod, out: Path, frames: int, delay: float, replicas: int) -> dict:
    jobfile, batch = mod("core.jobfile"), mod("blender.batch")
    job = jobfile.parse({
        "version": 1, "model": {"catalog": "identity"}, "runtime": "LOCAL_PROCESS",
        "inputs": {"image": {"source": "image", "image": "bench job frame"}, "delay": delay},
        "outputs": {"output": [{"target": "FILE", "path": str(out / "f_{frame:04d}"),
                                "replace": True}]},
        "frames": f"1-{frames}", "replicas": replicas, "on_failure": "stop"})
    log = QuietLog()
    t0 = time.perf_counter()
    report = batch.run_job(bpy.context, job, log=log)
    seconds = time.perf_counter() - t0
    assert report.ok, report.summary()
    predicts = [line["predict_s"] for line in log.lines
                if line["event"] == "frame" and line.get("predict_s")]
    done = sorted(line["t"] for line in log.lines if line["event"] == "frame")
    return {"seconds": seconds, "fps": frames / seconds,
            "bound": replicas / statistics.median(predicts), "predict": predicts,
            "done_at": done}


def collect_job(bench, bpy, mod, quick: bool) -> None:
    frames, delay, reps, (w, h) = (8, 0.1, 1, (320, 180)) if quick else \
        (48, 0.25, 2, (960, 540))
    image = bench_run.frame(bpy, w, h)
    image.name = "bench job frame"
    results = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        job_once(bpy, mod, out, 2, 0.0, 2)  # starts both replicas (not measured)
        for _ in range(reps):
            for replicas in (1, 2):
                results[replicas].append(job_once(bpy, mod, out, frames, delay, replicas))
    bpy.data.images.remove(image)
    for replicas, runs in results.items():
        bench.add(f"job.replicas{replicas}", [r["fps"] for r in runs],
                  [r["bound"] for r in runs], "model-bound",
                  f"{frames} frames {w}x{h}, delay {delay} s, n={len(runs)}",
                  seconds=[r["seconds"] for r in runs],
                  predict_median_s=statistics.median(p for r in runs for p in r["predict"]))
    bench.plot(Plot("throughput_replicas", f"Job throughput against replicas ({frames} frames, "
                    f"model cost {delay} s per frame, medians)", "replicas", "frames per second",
                    kind="bars",
                    series={"measured": [[str(k), statistics.median(r["fps"] for r in v)]
                                         for k, v in results.items()],
                            "model-bound": [[str(k), statistics.median(r["bound"] for r in v)]
                                            for k, v in results.items()]}))


def render_scene(bpy, folder: Path, quick: bool):
    """Cycles on the CPU, a moving sphere over a plane, a sun: a render slower than the
    model (the current scene: a loaded file would stop the engine's sessions)."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4 if quick else 8
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = (160, 90) if quick else (320, 180)
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(folder / "frame_")
    scene.frame_start, scene.frame_end = 1, (3 if quick else 10)
    bpy.ops.mesh.primitive_uv_sphere_add(location=(0, 0, 0))
    sphere = bpy.context.object
    for f, x in ((1, -1.5), (scene.frame_end, 1.5)):
        sphere.location.x = x
        sphere.keyframe_insert("location", frame=f)
    bpy.ops.mesh.primitive_plane_add(size=20, location=(0, 0, -1))
    bpy.ops.object.light_add(type="SUN", location=(2, -2, 5))
    bpy.ops.object.camera_add(location=(0, -8, 2), rotation=(1.35, 0, 0))
    scene.camera = bpy.context.object
    if scene.world is None:
        scene.world = bpy.data.worlds.new("W")
    return scene


def collect_post(bench, bpy, mod, quick: bool) -> None:
    props = mod("blender.props")
    reps = 1 if quick else 2
    with tempfile.TemporaryDirectory() as tmp:
        scene = render_scene(bpy, Path(tmp), quick)
        s = props.settings(scene, "identity")
        setattr(s, props.prop_id("in", "image", "src"), "CAMERA")
        post = scene.runway_post
        post.model, post.replace, post.to_preview = "identity", True, True

        def render(enabled: bool, last: int) -> float:
            post.enabled = enabled
            scene.frame_end = last
            t0 = time.perf_counter()
            bpy.ops.render.render(animation=True)
            return time.perf_counter() - t0

        frames = scene.frame_end
        render(True, 1)  # warm: kernels, the model's session (not measured)
        render(False, 1)
        alone, with_post = [], []
        for _ in range(reps):
            alone.append(render(False, frames))
            with_post.append(render(True, frames))
            state = mod("blender.postprocess").last_report()
            assert len(state.done) == frames and not state.failed, state.failed
        post.enabled = False
    bench.add("post.render", with_post, alone, "render alone",
              f"{frames} frames {scene.render.resolution_x}x{scene.render.resolution_y} "
              f"Cycles {scene.cycles.samples} spp, n={reps}",
              render_s_per_frame=statistics.median(alone) / frames)


def collect(bench, quick: bool = False) -> None:
    """Job throughput and post-processing figures for ``build.py bench``."""
    bpy, mod = bench_run.setup()
    try:
        try:
            collect_job(bench, bpy, mod, quick)
        except Exception as e:  # noqa: BLE001 (the post-processing figure still runs)
            for key in ("job.replicas1", "job.replicas2"):
                bench.skip(key, f"failed: {type(e).__name__}: {e}"[:200])
        collect_post(bench, bpy, mod, quick)
    finally:
        mod("blender.engine").shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    bench = Collector()
    collect(bench, args.quick)
    print(table(bench.figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
