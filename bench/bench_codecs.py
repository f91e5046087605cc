"""How long the image codecs take on real frame sizes, and which lossless default is fastest.

Run: .venv/bin/python bench/bench_codecs.py [--repeat N] [--quick]

For a 1920x1080 and a 3840x2160 RGBA render (a smooth gradient plus noise, like a real
frame), each wire format is encoded and decoded through ``encode_value``/``decode_value``,
once as a data URI (base64 in the JSON body) and once as a file in a shared folder (Cog's
bare path). The baseline row is a plain numpy copy of the same pixels, measured in the same
run, so numbers from different machines compare by their ratio to it.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runway_addon.core import codecs  # noqa: E402
from runway_addon.core.protocols.cog import cog_wire  # noqa: E402
from runway_addon.core.spec import ImageField  # noqa: E402


def frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A linear float RGBA render as Blender holds it: flat float32, bottom-up."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 4), dtype=np.float32)
    img[..., 0] = x / width
    img[..., 1] = y / height
    img[..., 2] = 0.5 + 0.5 * np.sin(x / 97.0) * np.cos(y / 61.0)
    img[..., :3] += rng.normal(0, 0.02, (height, width, 3)).astype(np.float32)  # sensor noise
    img[..., 3] = 1.0
    img[: height // 3, : width // 4, 3] = 0.0  # a transparent corner, as film-transparent renders
    np.clip(img, 0, 1, out=img)
    return (img ** 2.2).reshape(-1)  # roughly linear light


def best_of(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1000.0, result


def wire_size(wire: str) -> int:
    return len(wire) if wire.startswith("data:") else os.path.getsize(wire)


def run(sizes, repeat: int) -> dict:
    rows, totals = [], {}
    with tempfile.TemporaryDirectory() as shared:
        for w, h in sizes:
            label = f"{w}x{h}"
            pixels = frame(w, h)
            ms, srgb = best_of(lambda: codecs.image_from_blender(pixels, w, h), repeat)
            rows.append((label, "blender float -> sRGB float (image_from_blender)", ms, None,
                         None))
            ms8, img8 = best_of(lambda: codecs.to_bit_depth(srgb, 8), repeat)
            rows.append((label, "sRGB float -> uint8", ms8, None, img8.nbytes))
            ms16, img16 = best_of(lambda: codecs.to_bit_depth(srgb, 16), repeat)
            rows.append((label, "sRGB float -> uint16", ms16, None, img16.nbytes))
            msb, _ = best_of(lambda: img8.tobytes(), repeat)
            rows.append((label, "BASELINE numpy uint8 .tobytes() copy", msb, None, img8.nbytes))
            ms, _ = best_of(lambda: codecs.image_to_blender(img8), repeat)
            rows.append((label, "uint8 -> blender float (image_to_blender)", ms, None, None))

            cases = [(f"PNG 8-bit level {lvl}", img8, "PNG", lvl, 4) for lvl in (0, 1, 6)]
            cases += [("PNG 16-bit level 1", img16, "PNG", 1, 4),
                      ("JPEG q95 (RGB)", img8, "JPEG", 1, 3)]
            for name, img, fmt, level, channels in cases:
                field = ImageField(name="frame", channels=channels)
                for path, ctx in (
                        ("data URI", codecs.WireContext(image_format=fmt,
                                                        png_compress_level=level)),
                        ("shared file", cog_wire(image_format=fmt, png_compress_level=level,
                                                 shared_dir=shared))):
                    enc, wire = best_of(lambda: codecs.encode_value(field, img, ctx), repeat)
                    dec, _ = best_of(lambda: codecs.decode_value(field, wire, ctx), repeat)
                    rows.append((label, f"{name}, {path}", enc, dec, wire_size(wire)))
                    if fmt == "PNG" and img.dtype == np.uint8:
                        totals.setdefault((name, path), 0.0)
                        totals[(name, path)] += enc + dec
    return {"rows": rows, "totals": totals}


def samples_of(fn, repeat: int) -> list:
    """Milliseconds of each of ``repeat`` calls (after one unmeasured warm-up)."""
    fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def collect(bench, quick: bool = False) -> None:
    """The codec figures for ``build.py bench`` (bench/figures.py): per frame size,
    Blender float -> sRGB against a numpy copy of the float pixels, and PNG level 0
    (the default) encode + decode as a data URI and as a shared-folder file against a
    numpy copy of the 8-bit pixels. ``quick``: half-size frames, 2 repetitions."""
    repeat = 2 if quick else 5
    sizes = [(960, 540, "1080p"), (1920, 1080, "4k")] if quick else \
        [(1920, 1080, "1080p"), (3840, 2160, "4k")]
    with tempfile.TemporaryDirectory() as shared:
        for w, h, tag in sizes:
            note = f"{w}x{h}, n={repeat}"
            pixels = frame(w, h)
            srgb = codecs.image_from_blender(pixels, w, h)
            img8 = codecs.to_bit_depth(srgb, 8)
            bench.add(f"codecs.srgb.{tag}",
                      samples_of(lambda: codecs.image_from_blender(pixels, w, h), repeat),
                      samples_of(lambda: pixels.copy(), repeat), "numpy copy", note,
                      size=[w, h])
            copy8 = samples_of(lambda: img8.tobytes(), repeat)
            field = ImageField(name="frame", channels=4)
            for key, ctx in (("png0_uri", codecs.WireContext(png_compress_level=0)),
                             ("png0_file", cog_wire(png_compress_level=0,
                                                    shared_dir=shared))):
                def round_trip():
                    wire = codecs.encode_value(field, img8, ctx)
                    codecs.decode_value(field, wire, ctx)
                bench.add(f"codecs.{key}.{tag}", samples_of(round_trip, repeat), copy8,
                          "numpy copy", note, size=[w, h])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1080p only")
    args = ap.parse_args()
    sizes = [(1920, 1080)] if args.quick else [(1920, 1080), (3840, 2160)]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, numpy {np.__version__}; best of {args.repeat}")
    result = run(sizes, args.repeat)
    print(f"| frame | step | encode ms | decode ms | bytes |")
    print(f"|---|---|---:|---:|---:|")
    for label, name, enc, dec, size in result["rows"]:
        d = f"{dec:.1f}" if dec is not None else ""
        b = f"{size:,}" if size is not None else ""
        print(f"| {label} | {name} | {enc:.1f} | {d} | {b} |")
    print()
    print("Lossless 8-bit PNG, encode + decode summed over the frame sizes:")
    for (name, path), total in sorted(result["totals"].items(), key=lambda kv: kv[1]):
        print(f"  {total:8.1f} ms  {name}, {path}")
    (best_name, best_path), _ = min(result["totals"].items(), key=lambda kv: kv[1])
    print(f"Fastest lossless: {best_name} ({best_path}); codecs default compress level is "
          f"{codecs.DEFAULT_PNG_COMPRESS_LEVEL}.")


if __name__ == "__main__":
    main()
