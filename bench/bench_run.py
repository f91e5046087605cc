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


def ours(bpy, mod, image):
    props, engine = mod("blender.props"), mod("blender.engine")
    s = props.settings(bpy.context.scene, "identity")
    setattr(s, props.prop_id("in", "image", "src"), "IMAGE")
    setattr(s, props.prop_id("in", "image", "image"), image)
    setattr(s, props.prop_id("out", "output", "targets"), {"IMAGE_EDITOR"})
    eng = engine.get()
    t0 = time.perf_counter()
    handle = eng.submit(bpy.context, "identity")
    submit = time.perf_counter() - t0
    steps, apply_step = [], 0.0
    while True:
        done_before = handle.finished.is_set()
        s0 = time.perf_counter()
        eng.step()
        took = time.perf_counter() - s0
        if handle.id not in eng.runs:  # this step wrote the result
            apply_step = took
            break
        if not done_before:
            steps.append(took)
        time.sleep(0.002)
    total = time.perf_counter() - t0
    status = eng.status["identity"]
    assert status.error is None, status.error
    predict = status.last_predict or 0.0
    for a in status.applied:  # keep the file small between runs
        if a.name in bpy.data.images:
            bpy.data.images.remove(bpy.data.images[a.name])
    return {"overhead": total - predict, "predict": predict, "submit": submit,
            "max_step": max(steps) if steps else 0.0, "apply_step": apply_step}


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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--sizes", default="1920x1080")
    args = ap.parse_args()
    import bpy
    mod = install(bpy)
    from runway_addon.core.runtimes.process import default_cache_dir
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.cache_folder = str(default_cache_dir())
    catalog, directory, props = mod("core.catalog"), mod("blender.directory"), \
        mod("blender.props")
    cat = catalog.Catalog.load([catalog.builtin_models_dir(), ROOT / "tests" / "runtime_models"])
    directory._state["catalog"] = cat
    props.build(cat)
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
