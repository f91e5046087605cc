"""The model shelf (models/*): size, cold start and time per input, through the
add-on's own runtime and client, with a bare ``requests`` POST as the baseline.

Per model, one server at a time:

- env size:    the model's environment on disk (built first if missing; the shared
               default cache, as the add-on and the tests use it);
- cold start:  ``ProcessSession.start()`` -> RUNNING with the environment already
               built (median of ``--starts``), and the model's own setup within it
               (Cog's setup.started_at/completed_at);
- client:      ``CogClient.run()`` on a 512 x 512 input (text for text-to-speech):
               validation, PNG encode into the session's shared folder (bare path on
               the wire), the request, and decoding the outputs (base64 + PNG / WAV);
- bare POST:   the same input files as bare paths in a plain
               ``requests.post(URL/predictions, json={"input": ...})``, answer parsed as
               JSON, outputs left as data: URIs: what any client must pay at least;
- predict_time: the model's own time, from the result's metrics (client runs).

Client and bare runs alternate (after one unmeasured warm-up of each), so drift on
this shared machine hits both alike; the medians of ``-n`` runs are printed.

    .venv/bin/python bench/bench_models.py [-n 5] [--starts 3] [NAME ...]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runway_addon.core.codecs import decode_image_bytes, encode_image_bytes  # noqa: E402
from runway_addon.core.runtimes.process import ProcessSession  # noqa: E402

MODELS = ROOT / "models"
TESTDATA = MODELS / "testdata"
SHELF = sorted(p.parent.name for p in MODELS.glob("*/cog.yaml"))
TEXT = ("Grace Hopper wrote the first compiler. She also popularised the word debugging, "
        "after a moth was found in a relay.")


def _read(name: str) -> np.ndarray:
    return decode_image_bytes((TESTDATA / name).read_bytes())


def inputs_for(name: str) -> tuple[dict, str]:
    """(client inputs, note) for one 512 x 512 request of the model."""
    photo = _read("grace_hopper.jpg")[:512, :512]
    if name == "denoise":  # the 256 x 256 render and its passes, tiled 2 x 2
        tile = lambda f: np.tile(_read(f), (2, 2, 1))  # noqa: E731
        return ({"color": tile("render_noisy_4spp.png"), "albedo": tile("render_albedo.png"),
                 "normal": tile("render_normal.png")}, "16-bit colour + albedo + normal")
    if name == "text-to-speech":
        return {"text": TEXT}, f"{len(TEXT.split())} words of text, not an image"
    if name == "style-transfer":
        return {"image": photo, "style": 19}, "built-in style 19"
    if name == "upscale":
        return {"image": photo}, "animevideov3 x4, 512 -> 2048"
    return {"image": photo}, ""


def wire_inputs(inputs: dict, folder: Path) -> dict:
    """The bare request's input: images as PNG files (the client's own encoding, level
    0) sent as bare paths, everything else as it is."""
    out = {}
    for key, value in inputs.items():
        if isinstance(value, np.ndarray):
            path = folder / f"{key}.png"
            path.write_bytes(encode_image_bytes(value))
            out[key] = str(path)
        else:
            out[key] = value
    return out


def bare_post(url: str, wire: dict) -> float:
    for _ in range(100):  # a one-slot server answers 409 just after the previous run
        t0 = time.perf_counter()
        r = requests.post(f"{url}/predictions", json={"input": wire}, timeout=900)
        if r.status_code != 409:
            break
        time.sleep(0.02)
    r.raise_for_status()
    body = r.json()
    elapsed = time.perf_counter() - t0
    if body.get("status") != "succeeded":
        raise RuntimeError(f"bare POST: {body.get('status')}: {body.get('error')}")
    return elapsed


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def bench_model(name: str, n: int, starts: int, work: Path) -> dict:
    session = ProcessSession(MODELS / name)
    session.environment.ensure()  # cold start below never includes building
    size = dir_size(session.environment.path)
    inputs, note = inputs_for(name)
    wire = wire_inputs(inputs, work)
    colds, setups = [], []
    for i in range(starts):
        t0 = time.perf_counter()
        session.start()
        colds.append(time.perf_counter() - t0)
        setups.append(session.setup_seconds or 0.0)
        if i < starts - 1:
            session.stop()
    try:
        client = session.client()
        client.run(inputs)  # warm-up, unmeasured
        bare_post(session.url, wire)
        runs, bares, predicts = [], [], []
        for _ in range(n):
            t0 = time.perf_counter()
            result = client.run(inputs)
            runs.append(time.perf_counter() - t0)
            predicts.append(result.metrics.get("predict_time", float("nan")))
            bares.append(bare_post(session.url, wire))
        client.close()
    finally:
        session.stop()
    med = statistics.median
    return {"name": name, "size": size, "cold": med(colds), "setup": med(setups),
            "client": med(runs), "bare": med(bares), "predict": med(predicts), "note": note,
            "runs": runs, "bares": bares}


QUICK_MODELS = ("face-detection",)


def collect(bench, quick: bool = False) -> None:
    """Per shelf model, ``client.run()`` per input against a bare POST of the same
    input files, for ``build.py bench`` (bench/figures.py). ``quick``: one model,
    2 requests, 1 start; a model whose environment is not built is left out there."""
    n, starts = (2, 1) if quick else (5, 1)
    with tempfile.TemporaryDirectory(prefix="runway-bench-models-") as tmp:
        for name in SHELF:
            key = f"models.{name}"
            if quick and name not in QUICK_MODELS:
                bench.skip(key, "--quick runs " + ", ".join(QUICK_MODELS) + " only")
                continue
            if quick and not ProcessSession(MODELS / name).environment.path.exists():
                bench.skip(key, "environment not built (--quick builds nothing)")
                continue
            try:
                r = bench_model(name, n, starts, Path(tmp))
            except Exception as e:  # noqa: BLE001 (one model failing leaves the others)
                bench.skip(key, f"{type(e).__name__}: {e}"[:200])
                continue
            bench.add(key, r["runs"], r["bares"], "bare POST",
                      f"n={n}; {r['note'] or '512x512 photo'}", predict_s=r["predict"],
                      cold_s=r["cold"], env_bytes=r["size"])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"models (default: all of {', '.join(SHELF)})")
    p.add_argument("-n", type=int, default=5, help="timed requests per model (median)")
    p.add_argument("--starts", type=int, default=3, help="cold starts per model (median)")
    args = p.parse_args(argv)
    unknown = set(args.names) - set(SHELF)
    if unknown:
        p.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="runway-bench-models-") as tmp:
        for name in args.names or SHELF:
            print(f"== {name}", file=sys.stderr, flush=True)
            rows.append(bench_model(name, args.n, args.starts, Path(tmp)))
    print(f"\nmedians: {args.starts} cold starts, {args.n} requests per model "
          f"({os.cpu_count()} CPUs)\n")
    print("| model | env size | cold start (start() -> RUNNING) | of which model setup "
          "| client run() per input | bare POST per input | predict_time "
          "| client - bare | input |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['size'] / 1e6:.0f} MB | {r['cold']:.2f} s | "
              f"{r['setup']:.2f} s | {r['client']:.3f} s | {r['bare']:.3f} s | "
              f"{r['predict']:.3f} s | {(r['client'] - r['bare']) * 1000:+.0f} ms | "
              f"{r['note'] or '512x512 photo'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
