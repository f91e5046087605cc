"""Check each model as a person would, through its real Cog server, and time it.

Usage::

    python models/tools/check.py NAME [NAME ...] | --all

For each model: build its env if needed (env.py), start the real server
(serve.py), wait for READY, POST predictions with plain ``requests`` on the test
inputs in models/testdata/, check the outputs make sense (mask covers the
person, face box holds the face, landmarks on the body, upscaled image is 4x and
matches the input when scaled back, denoised render is closer to the 256-sample
render than the noisy one, speech lasts as long as expected and is not silent),
then time a 512 x 512 input. Prints one table:
model | env size on disk | cold start (server start to READY) | time per 512x512 input.
Runs one server at a time. Exit status 1 if any check failed.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

from _common import dir_size, env_dir, names_from_args, reexec_in_tools_env  # noqa: E402

if __name__ == "__main__":
    reexec_in_tools_env(__file__)

import io  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import wave  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from client import TESTDATA, Session, data_uri_bytes, decode_image, running  # noqa: E402

PHOTO = TESTDATA / "grace_hopper.jpg"  # 512 x 600, public domain
WORK = Path(tempfile.mkdtemp(prefix="runway-check-"))


class CheckFailed(AssertionError):
    pass


def expect(ok: bool, what: str) -> None:
    print(f"    {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        raise CheckFailed(what)


def photo_512() -> Path:
    """The test photo cropped to 512 x 512 (the timing input)."""
    p = WORK / "photo_512.png"
    if not p.exists():
        Image.open(PHOTO).convert("RGB").crop((0, 0, 512, 512)).save(p)
    return p


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(1.0 / mse) if mse > 0 else float("inf")


def load_png01(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return img[:, :, ::-1].astype(np.float64) / np.iinfo(img.dtype).max


# -- per-model checks: each returns a note about its timing --------------------

def check_person_segmentation(s: Session) -> tuple[float, float, str]:
    out = s.predict(image=PHOTO)["output"]
    matte = decode_image(out["matte"]) / 255.0
    cut = decode_image(out["cutout"])
    expect(matte.shape == (600, 512), f"matte is 1-channel 512x600 ({matte.shape})")
    expect(cut.shape == (600, 512, 4), f"cut-out is RGBA 512x600 ({cut.shape})")
    # face and uniform of this photo (pixel boxes by eye)
    body = min(matte[150:330, 190:330].mean(), matte[420:590, 60:450].mean())
    corners = np.mean([matte[:60, :60].mean(), matte[:60, -60:].mean()])
    expect(body > 0.9, f"matte covers the person: mean alpha >= {body:.3f} on face and uniform")
    expect(corners < 0.05, f"background is clear: mean alpha {corners:.3f} in the top corners")
    expect(np.array_equal(cut[:, :, 3], (matte * 255).round().astype(np.uint8)),
           "cut-out alpha is the matte")
    hard = decode_image(s.predict(image=PHOTO, soft_edges=False)["output"]["matte"])
    expect(set(np.unique(hard)) <= {0, 255}, "soft_edges=false gives a hard 0/255 matte")
    _, wall, pt = s.timed(image=photo_512())
    return wall, pt, ""


def check_face_detection(s: Session) -> tuple[float, float, str]:
    for rng in ("short", "full"):
        out = s.predict(image=PHOTO, model_range=rng)["output"]
        faces = out["detections"]["faces"]
        expect(len(faces) == 1, f"{rng} range: exactly one face ({len(faces)})")
        x0, y0, x1, y1 = faces[0]["box"]
        # Where the face is in this photo (normalised, by eye): eyes near y 0.33, chin 0.55.
        expect(0.25 < x0 < 0.45 and 0.55 < x1 < 0.75 and 0.15 < y0 < 0.35 and 0.45 < y1 < 0.65,
               f"{rng} range: box {faces[0]['box']} holds the face, score {faces[0]['score']}")
        for k in ("right_eye", "left_eye", "nose_tip", "mouth_center"):
            kx, ky = faces[0]["keypoints"][k]
            expect(x0 <= kx <= x1 and y0 <= ky <= y1, f"{rng} range: {k} inside the box")
        ann = decode_image(out["annotated"])
        expect(ann.shape[:2] == (600, 512), "annotated image has the input's size")
    blank = WORK / "blank.png"
    Image.new("RGB", (256, 256), (90, 120, 160)).save(blank)
    none = s.predict(image=blank)["output"]["detections"]["faces"]
    expect(none == [], "no face found in a plain blue picture")
    _, wall, pt = s.timed(image=photo_512())
    return wall, pt, ""


def check_pose(s: Session) -> tuple[float, float, str]:
    out = s.predict(image=PHOTO)["output"]
    lm = out["landmarks"]
    expect(lm["detected"] and len(lm["points"]) == 33 and len(lm["labels"]) == 33,
           "33 landmarks with labels")
    expect(len(lm["connections"]) == 35, f"{len(lm['connections'])} connection pairs")
    pts = dict(zip(lm["labels"], lm["points"]))
    nx, ny = pts["nose"]
    expect(0.4 < nx < 0.6 and 0.3 < ny < 0.5, f"nose at {pts['nose']} is on the face")
    for side in ("left", "right"):
        sx, sy = pts[f"{side}_shoulder"]
        expect(sy > ny + 0.1 and 0.0 <= sx <= 1.0 and sy <= 1.0,
               f"{side} shoulder {pts[f'{side}_shoulder']} is below the face, in the picture")
    lx, rx = pts["left_shoulder"][0], pts["right_shoulder"][0]
    expect(lx > rx, "the person's left shoulder is on the picture's right (facing us)")
    face = lm["points"][:11]  # nose, eyes, ears, mouth: inside the face box of this photo
    expect(all(0.28 < x < 0.75 and 0.18 < y < 0.6 for x, y in face),
           "the 11 face landmarks lie on the face")
    vis = dict(zip(lm["labels"], lm["visibility"]))
    arms = [lbl for lbl in lm["labels"] if any(w in lbl for w in ("elbow", "wrist"))]
    expect(all(vis[a] < 0.5 or pts[a][1] > 0.85 for a in arms),
           "elbows and wrists (out of this head-and-shoulders frame) are unseen or at the bottom")
    ov = decode_image(out["overlay"])
    expect(ov.shape[:2] == (600, 512), "overlay has the input's size")
    _, wall, pt = s.timed(image=photo_512())
    return wall, pt, ""


def check_style_transfer(s: Session) -> tuple[float, float, str]:
    src = np.asarray(Image.open(photo_512()).convert("RGB"), np.float64) / 255
    out = decode_image(s.predict(image=photo_512(), style=19)["output"]) / 255
    expect(out.shape == src.shape, f"stylised image has the input's size {out.shape}")
    diff = np.abs(out - src).mean()
    expect(diff > 0.05, f"style changes the picture (mean abs diff {diff:.3f})")
    other = decode_image(s.predict(image=photo_512(), style=3)["output"]) / 255
    expect(np.abs(other - out).mean() > 0.03, "two styles give two different pictures")
    zero = decode_image(s.predict(image=photo_512(), strength=0.0)["output"]) / 255
    expect(np.abs(zero - src).mean() < 0.01, "strength 0 gives the input back")
    half = decode_image(s.predict(image=photo_512(), style=19, strength=0.5)["output"]) / 255
    expect(np.abs(half - (src + out) / 2).mean() < 0.01, "strength 0.5 is the half blend")
    styled = decode_image(s.predict(image=photo_512(),
                                    style_image=TESTDATA / "render_clean_256spp.png")["output"])
    expect(styled.shape == src.shape and np.abs(styled / 255 - src).mean() > 0.05,
           "a style image restyles the picture")
    _, wall, pt = s.timed(image=photo_512(), style=19)
    _, wall_si, _ = s.timed(image=photo_512(), style_image=TESTDATA / "render_clean_256spp.png")
    return wall, pt, f"with a style image {wall_si:.2f} s"


def check_upscale(s: Session) -> tuple[float, float, str]:
    small = WORK / "photo_128.png"
    src = Image.open(PHOTO).convert("RGB").resize((128, 150), Image.LANCZOS)
    src.save(small)
    ref = np.asarray(src, np.float64) / 255
    for net, scale in (("realesr-animevideov3-x4", 4), ("realesr-animevideov3-x2", 2)):
        up = decode_image(s.predict(image=small, network=net, tile_size=64)["output"])
        expect(up.shape == (150 * scale, 128 * scale, 3), f"{net}: {scale}x size {up.shape}")
        back = np.asarray(Image.fromarray(up).resize((128, 150), Image.BOX), np.float64) / 255
        p = psnr(back, ref)
        expect(p > 28, f"{net}: scaled back it matches the input, PSNR {p:.1f} dB")
    whole = decode_image(s.predict(image=small, tile_size=0)["output"]).astype(np.float64)
    tiled = decode_image(s.predict(image=small, tile_size=48)["output"]).astype(np.float64)
    seam = np.abs(whole - tiled).mean()
    expect(seam < 1.0, f"tiled and untiled agree (mean abs diff {seam:.3f} of 255)")
    out, wall, pt = s.timed(repeat=2, image=photo_512())
    big = decode_image(out["output"])
    expect(big.shape == (2048, 2048, 3), "512 -> 2048")
    return wall, pt, "animevideov3 x4, 512 -> 2048"


def check_denoise(s: Session) -> tuple[float, float, str]:
    import cv2

    clean = load_png01(TESTDATA / "render_clean_256spp.png")
    noisy = load_png01(TESTDATA / "render_noisy_4spp.png")
    base = psnr(noisy, clean)
    aux = {"albedo": TESTDATA / "render_albedo.png", "normal": TESTDATA / "render_normal.png"}
    for label, extra in (("colour only", {}), ("colour + albedo + normal", aux)):
        out = s.predict(color=TESTDATA / "render_noisy_4spp.png", **extra)["output"]
        img = decode_image(out)
        expect(img.dtype == np.uint16 and img.shape == (256, 256, 3),
               f"{label}: 16-bit RGB PNG ({img.dtype}, {img.shape})")
        p = psnr(img / 65535.0, clean)
        expect(p > base + 3, f"{label}: PSNR to the 256-spp render {p:.2f} dB vs noisy {base:.2f} dB")
    out = s.predict(color=TESTDATA / "render_noisy_4spp.exr", output_format="exr", **aux)["output"]
    raw = data_uri_bytes(out)
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    expect(img is not None and img.dtype == np.float32, "EXR in, linear float EXR out")
    srgb = np.where(img <= 0.0031308, 12.92 * img, 1.055 * np.clip(img, 0, None) ** (1 / 2.4) - 0.055)
    p = psnr(np.clip(srgb[:, :, ::-1], 0, 1), clean)
    expect(p > base + 3, f"EXR path: PSNR {p:.2f} dB vs noisy {base:.2f} dB")
    # 512 x 512 timing input: the noisy render and its passes tiled 2 x 2
    tiled = {}
    for key, name in (("color", "render_noisy_4spp.png"), ("albedo", "render_albedo.png"),
                      ("normal", "render_normal.png")):
        img = cv2.imread(str(TESTDATA / name), cv2.IMREAD_UNCHANGED)
        tiled[key] = WORK / f"tiled_{name}"
        cv2.imwrite(str(tiled[key]), np.tile(img, (2, 2, 1)))
    _, wall, pt = s.timed(**tiled)
    return wall, pt, "colour + albedo + normal, 16-bit PNG"


def check_text_to_speech(s: Session) -> tuple[float, float, str]:
    text = ("Grace Hopper wrote the first compiler. She also popularised the word debugging, "
            "after a moth was found in a relay.")
    words = len(text.split())

    def speak(**kw):
        raw = data_uri_bytes(s.predict(text=text, **kw)["output"])
        with wave.open(io.BytesIO(raw)) as w:
            frames = np.frombuffer(w.readframes(w.getnframes()), np.int16)
            return w.getnframes() / w.getframerate(), frames, w.getframerate()

    dur, pcm, rate = speak()
    expect(rate == 22050, f"22.05 kHz WAV ({rate})")
    per_word = dur / words
    expect(0.2 < per_word < 0.6, f"{dur:.2f} s for {words} words ({per_word:.2f} s a word)")
    rms = float(np.sqrt(np.mean((pcm / 32768.0) ** 2)))
    expect(rms > 0.03, f"not silent: RMS {rms:.3f} of full scale")
    frames = pcm[: len(pcm) // 441 * 441].reshape(-1, 441) / 32768.0  # 20 ms frames
    voiced = float(np.mean(np.sqrt(np.mean(frames ** 2, axis=1)) > 0.02))
    expect(voiced > 0.5, f"sound in {voiced:.0%} of 20 ms frames")
    fast, _, _ = speak(speaking_rate=2.0)
    expect(0.4 < fast / dur < 0.75, f"speaking_rate 2 takes {fast / dur:.2f} of the time "
                                        "(words at half length, sentence pauses shrink less)")
    out, wall, pt = s.timed(text=text)
    return wall, pt, f"{dur:.1f} s of speech ({words} words), not an image"


CHECKS = {
    "person-segmentation": check_person_segmentation,
    "face-detection": check_face_detection,
    "pose": check_pose,
    "style-transfer": check_style_transfer,
    "upscale": check_upscale,
    "denoise": check_denoise,
    "text-to-speech": check_text_to_speech,
}


def main(argv: list[str]) -> int:
    rows, failed = [], []
    for name in names_from_args(argv):
        print(f"== {name}", flush=True)
        if name not in CHECKS:
            print("    no check written for this model")
            continue
        try:
            with running(name) as s:
                print(f"    READY after {s.cold_start_s:.1f} s")
                wall, pt, note = CHECKS[name](s)
            status = "pass"
        except Exception as e:  # noqa: BLE001 - report and go on with the next model
            if not isinstance(e, CheckFailed):
                traceback.print_exc()
            failed.append(name)
            rows.append((name, dir_size(env_dir(name)), float("nan"), float("nan"), float("nan"),
                         "FAILED: " + str(e).splitlines()[0][:60]))
            continue
        rows.append((name, dir_size(env_dir(name)), s.cold_start_s, wall, pt, note))
    print()
    print("| model | env size on disk | cold start (start to READY) | time per 512x512 input "
          "(HTTP round trip) | of which predict_time | note |")
    print("|---|---|---|---|---|---|")
    for name, size, cold, wall, pt, note in rows:
        print(f"| {name} | {size / 1e6:.0f} MB | {cold:.1f} s | {wall:.2f} s | {pt:.2f} s | {note} |")
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
