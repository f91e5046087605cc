"""The Run path's cost, measured in real Blender (the bpy module) against a real Cog
server: the identity test model on a warm local-process session.

Figures (medians of -n runs, min and max beside):
- add-on overhead per frame: from submit() (Blender image in) to the result
  image written into Blender by the timer step, minus the server's predict time;
- the peer path on the same frame, same server, same run: ``save_render`` to
  PNG, base64 in JSON over HTTP, the answer written to a file, ``images.load``,
  pixels read back (what other add-ons do), minus the same predict time;
- main thread: the longest timer step while the run is in flight (not counting
  the step that writes the result), and the step that writes the result.

    .venv/bin/python bench/bench_run.py [-n 10] [--sizes 1920x1080,3840x2160]
"""
from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="runway-bench-user-"))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402

PKG = "bl_ext.user_default.runway"


def install(bpy):
    import subprocess
    if not os.environ.get("RUNWAY_BENCH_DIST_BUILT"):  # build.py bench builds it once
        subprocess.run([sys.executable, str(ROOT / "build.py"), "dist"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    from buildtools import dist
    result = bpy.ops.extensions.package_install_files(
        filepath=str(dist.zip_for("linux-x64")), repo="user_default", enable_on_install=True)
    assert result == {"FINISHED"}, result
    import importlib
    return lambda name: importlib.import_module(f"{PKG}.{name}")


def frame(bpy, w, h):
    """A render-like float image: gradient plus noise, linear."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.dstack([x / w, y / h, (x + y) / (w + h), np.ones_like(x)])
    img[..., :3] += rng.normal(0, 0.02, (h, w, 3)).astype(np.float32)
    image = bpy.data.images.new(f"frame {w}x{h}", width=w, height=h, alpha=True,
                                float_buffer=True)
    image.pixels.foreach_set(np.clip(img, 0, 1).reshape(-1))
    return image


def ours(bpy, mod, image, runtime=""):
    """One Run of the identity model on ``image`` (``runtime``: the preferences' default
    or one of LOCAL_PROCESS, DOCKER_CPU), driven by the engine's timer step."""
    props, engine = mod("blender.props"), mod("blender.engine")
    s = props.settings(bpy.context.scene, "identity")
    setattr(s, props.prop_id("in", "image", "src"), "IMAGE")
    setattr(s, props.prop_id("in", "image", "image"), image)
    setattr(s, props.prop_id("out", "output", "targets"), {"IMAGE_EDITOR"})
    eng = engine.get()
    t0 = time.perf_counter()
    handle = eng.submit(bpy.context, "identity", runtime=runtime)
    submit = time.perf_counter() - t0
    steps, apply_step, timeline = [], 0.0, []
    while True:
        done_before = handle.finished.is_set()
        s0 = time.perf_counter()
        eng.step()
        took = time.perf_counter() - s0
        if handle.id not in eng.runs:  # this step wrote the result
            apply_step = took
            timeline.append((s0 - t0, took, "apply"))
            break
        if not done_before:
            steps.append(took)
            timeline.append((s0 - t0, took, "flight"))
        time.sleep(0.002)
    total = time.perf_counter() - t0
    status = eng.status["identity"]
    assert status.error is None, status.error
    predict = status.last_predict or 0.0
    for a in status.applied:  # keep the file small between runs
        if a.name in bpy.data.images:
            bpy.data.images.remove(bpy.data.images[a.name])
    return {"overhead": total - predict, "predict": predict, "submit": submit,
            "max_step": max(steps) if steps else 0.0, "apply_step": apply_step,
            "timeline": timeline}


def peer(bpy, url, image, tmp):
    """What peer add-ons do, timed the same way."""
    t0 = time.perf_counter()
    png = os.path.join(tmp, "peer_in.png")
    image.save_render(png)
    with open(png, "rb") as f:
        uri = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    r = requests.post(url + "/predictions", json={"input": {"image": uri}}, timeout=300)
    r.raise_for_status()
    body = r.json()
    out = body["output"]
    data = base64.b64decode(out.split(",", 1)[1])
    path = os.path.join(tmp, "peer_out.png")
    with open(path, "wb") as f:
        f.write(data)
    loaded = bpy.data.images.load(path)
    buf = np.empty(loaded.size[0] * loaded.size[1] * 4, np.float32)
    loaded.pixels.foreach_get(buf)
    total = time.perf_counter() - t0
    bpy.data.images.remove(loaded)
    predict = float(body.get("metrics", {}).get("predict_time", 0.0))
    return {"overhead": total - predict, "predict": predict}


def med(values):
    return statistics.median(values), min(values), max(values)


def setup():
    """bpy with the extension installed and enabled, the test models in its catalog and
    the shared model cache: (bpy, mod), ``mod(name)`` importing the add-on's modules."""
    import bpy
    mod = install(bpy)
    from runway_addon.core.runtimes.process import default_cache_dir
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.cache_folder = str(default_cache_dir())
    catalog, directory, props = mod("core.catalog"), mod("blender.directory"), \
        mod("blender.props")
    cat = catalog.Catalog.load([catalog.builtin_models_dir(), ROOT / "tests" / "model_servers" / "process"])
    directory._state["catalog"] = cat
    props.build(cat)
    return bpy, mod


def start_count(mod) -> int:
    card = mod("blender.directory").get_catalog().get("identity")
    eng = mod("blender.engine").get()
    return eng.queue.pool.start_count(mod("core.jobs").ModelRef.from_card(card))


def _rss_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_extra_bytes(fn) -> tuple[int, str]:
    """Peak memory above the start while ``fn()`` runs: the process's resident peak
    (VmHWM, reset through /proc/self/clear_refs) where Linux allows, else the peak of
    Python and numpy allocations (tracemalloc, which misses Blender's own buffers)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the resident-set high-water mark
        before = _rss_kb("VmRSS")
        fn()
        return (_rss_kb("VmHWM") - before) * 1024, "resident peak (VmHWM)"
    except OSError:
        import tracemalloc
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak - base, "Python/numpy allocations (tracemalloc)"


def measure_apply(bpy, mod, w, h, n):
    """The main-thread write of a finished 8-bit and float result (``outputs.apply`` of
    what the worker prepared), against writing the same pixels into a new image."""
    outputs, spec = mod("blender.outputs"), mod("core.spec")
    field = spec.ImageField(name="output", channels=4)
    rng = np.random.default_rng(2)
    values = {"byte": rng.integers(0, 256, (h, w, 4), dtype=np.uint8)}
    values["float"] = values["byte"].astype(np.float32) / 255
    flat = np.zeros(w * h * 4, np.float32)
    result = {}
    for kind, value in values.items():
        times, floor = [], []
        for _ in range(n + 1):
            prepared = outputs.prepare({"output": value}, {"output": field})  # worker side
            run = outputs.RunInfo(model="identity", command="predict")
            t0 = time.perf_counter()
            applied = outputs.apply(prepared, {"output": field},
                                    {"output": [outputs.Target("IMAGE_EDITOR")]}, run)
            times.append(time.perf_counter() - t0)
            for a in applied:
                bpy.data.images.remove(bpy.data.images[a.name])
            t0 = time.perf_counter()
            image = bpy.data.images.new("floor", width=w, height=h, alpha=True,
                                        float_buffer=kind == "float")
            image.pixels.foreach_set(flat)
            floor.append(time.perf_counter() - t0)
            bpy.data.images.remove(image)
        result[kind] = (times[1:], floor[1:])  # the first of each is a warm-up
    return result


def collect(bench, quick: bool = False) -> None:
    """The Run path's figures for ``build.py bench`` (bench/figures.py): overhead per
    frame ours vs the peer path (and Docker), main-thread steps and the apply step,
    model starts of a warm second run, peak memory of a 4K round trip; plots of
    overhead against frame size and of the timer steps during a 1080p run.
    ``quick``: frames at a third of the size ("1080p" is 640x360, "4K" 960x540), n=2."""
    bpy, mod = setup()
    engine = mod("blender.engine")
    sizes = [("small", 320, 180), ("1080p", 640, 360), ("4k", 960, 540)] if quick else \
        [("small", 960, 540), ("1080p", 1920, 1080), ("4k", 3840, 2160)]
    reps = {"small": 2, "1080p": 2, "4k": 2} if quick else {"small": 5, "1080p": 8, "4k": 5}
    plot = {"ours (warm local process)": [], "peer path": []}
    timeline = []
    eng = engine.get()
    with tempfile.TemporaryDirectory() as tmp:
        for tag, w, h in sizes:
            n = reps[tag]
            image = frame(bpy, w, h)
            starts0 = start_count(mod)
            ours(bpy, mod, image)  # starts the model on the first size (not measured)
            first_starts = start_count(mod) - starts0
            url = eng.session_of("identity").session.url
            peer(bpy, url, image, tmp)
            a, b, warm = [], [], []
            for _ in range(n):  # interleaved, so drift hits both alike
                s0 = start_count(mod)
                a.append(ours(bpy, mod, image))
                warm.append(start_count(mod) - s0)
                b.append(peer(bpy, url, image, tmp))
            mp = w * h / 1e6
            plot["ours (warm local process)"].append([mp, statistics.median(
                r["overhead"] for r in a) * 1000])
            plot["peer path"].append([mp, statistics.median(r["overhead"] for r in b) * 1000])
            note = f"{w}x{h}, n={n}"
            ours_ms = [r["overhead"] * 1000 for r in a]
            peer_ms = [r["overhead"] * 1000 for r in b]
            if tag == "small":
                bench.add("run.warm_starts", warm, [first_starts], "first run's starts",
                          f"{len(warm)} warm runs")
            else:
                bench.add(f"run.overhead.{tag}", ours_ms, peer_ms, "peer path", note,
                          size=[w, h], predict_ms=[r["predict"] * 1000 for r in a],
                          submit_ms=[r["submit"] * 1000 for r in a],
                          apply_step_ms=[r["apply_step"] * 1000 for r in a])
                bench.add(f"run.peer.{tag}", peer_ms, ours_ms, "ours", note, size=[w, h])
            if tag == "1080p":
                idle = []
                for _ in range(20):
                    s0 = time.perf_counter()
                    eng.step()
                    idle.append((time.perf_counter() - s0) * 1000)
                bench.add("run.max_step", [r["max_step"] * 1000 for r in a], idle,
                          "idle step", note)
                timeline = a[len(a) // 2]["timeline"]
                docker_figure(bench, bpy, mod, image, n, note, w, h)
            if tag == "4k":
                frame_bytes = w * h * 4 * 4
                peaks = []
                for _ in range(1 if quick else 2):
                    extra, how = peak_extra_bytes(lambda: ours(bpy, mod, image))
                    peaks.append(extra / frame_bytes)
                bench.add("run.memory.4k", peaks, note=f"{w}x{h}, {how}",
                          frame_mb=frame_bytes / 1e6)
            bpy.data.images.remove(image)
    aw, ah = (1920, 1080)
    applied = measure_apply(bpy, mod, aw, ah, 2 if quick else 8)
    for kind, (times, floor) in applied.items():
        bench.add(f"run.apply.{kind}.1080p", [t * 1000 for t in times],
                  [t * 1000 for t in floor], "new image + foreach_set",
                  f"{aw}x{ah}, n={len(times)}")
    engine.shutdown()
    from figures import Plot
    bench.plot(Plot("overhead_per_frame", "Overhead per frame against frame size (identity "
                    "model, medians)", "frame size (megapixels)", "ms per frame",
                    series=plot))
    bench.plot(Plot("main_thread_timeline", "Main-thread timer steps during one 1080p run"
                    + (" (--quick: 640x360)" if quick else ""), "time since Run (s)",
                    "step duration (ms)", kind="timeline",
                    series={"step while in flight": [[t, d * 1000] for t, d, k in timeline
                                                     if k == "flight"],
                            "step that writes the result": [[t, d * 1000] for t, d, k in
                                                            timeline if k == "apply"]},
                    marks=[[5.0, "goal: 5 ms in flight"]]))


def docker_figure(bench, bpy, mod, image, n, note, w, h) -> None:
    """Docker (identity image built offline) against the local process, same frames,
    interleaved; not measured where Docker or the image build is not available."""
    try:
        from buildtools import images
        docker = mod("core.runtimes.docker")
        docker.connect_engine().ping()
        folder = ROOT / "tests" / "model_servers" / "process" / "identity"
        info = images.build_model_image(folder, docker.image_tag(folder))
        ours(bpy, mod, image, runtime="DOCKER_CPU")  # starts the container (not measured)
    except Exception as e:  # noqa: BLE001 (any reason Docker cannot run here)
        bench.skip("run.docker.1080p", f"Docker not usable here: {type(e).__name__}: {e}"[:200])
        return
    d, local = [], []
    for _ in range(n):
        d.append(ours(bpy, mod, image, runtime="DOCKER_CPU")["overhead"] * 1000)
        local.append(ours(bpy, mod, image, runtime="LOCAL_PROCESS")["overhead"] * 1000)
    built = "reused" if info["reused"] else f"built in {info['seconds']:.0f} s"
    bench.add("run.docker.1080p", d, local, "local process", f"{note}; image {built}",
              size=[w, h])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--sizes", default="1920x1080")
    args = ap.parse_args()
    bpy, mod = setup()
    engine = mod("blender.engine")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            w, h = map(int, size.split("x"))
            image = frame(bpy, w, h)
            ours(bpy, mod, image)  # starts the model (not measured)
            url = engine.get().session_of("identity").session.url
            peer(bpy, url, image, tmp)
            a = [ours(bpy, mod, image) for _ in range(args.n)]
            b = [peer(bpy, url, image, tmp) for _ in range(args.n)]
            rows.append((size, a, b))
            bpy.data.images.remove(image)
    engine.shutdown()
    print(f"\nRun path, identity model, warm local process, n={args.n} (median [min-max], ms)")
    for size, a, b in rows:
        o = med([r["overhead"] * 1000 for r in a])
        p = med([r["overhead"] * 1000 for r in b])
        print(f"{size}: ours overhead {o[0]:.0f} [{o[1]:.0f}-{o[2]:.0f}]  "
              f"peer path {p[0]:.0f} [{p[1]:.0f}-{p[2]:.0f}]  ours is {p[0] / o[0]:.2f}x faster")
        for key, label in (("submit", "submit() on the main thread"),
                           ("max_step", "longest timer step in flight"),
                           ("apply_step", "timer step that writes the result"),
                           ("predict", "server predict time")):
            m = med([r[key] * 1000 for r in a])
            print(f"    {label}: {m[0]:.1f} [{m[1]:.1f}-{m[2]:.1f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
