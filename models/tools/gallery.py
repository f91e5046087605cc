"""Make a model's gallery: run it through its real Cog server on the test inputs
and write small images (at most 256 px a side) into models/<name>/gallery/.

Usage::

    python models/tools/gallery.py NAME [NAME ...] | --all

Plain ``requests`` against the server that serve.py starts; the files listed in
card.json's "gallery" are the ones written here. Keep the total under 1 MB.
"""
from __future__ import annotations

import io
import os
import sys
import wave
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

from _common import MODELS, names_from_args, reexec_in_tools_env  # noqa: E402

if __name__ == "__main__":
    reexec_in_tools_env(__file__)

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from client import TESTDATA, Session, data_uri_bytes, decode_image, running  # noqa: E402

PHOTO = TESTDATA / "grace_hopper.jpg"
MAX = 256


def fit(img: Image.Image, size: int = MAX) -> Image.Image:
    img = img.copy()
    img.thumbnail((size, size), Image.LANCZOS)
    return img


def to8(a: np.ndarray) -> np.ndarray:
    return a if a.dtype == np.uint8 else (a / 257.0).round().astype(np.uint8)


def checker_behind(rgba: Image.Image, cell: int = 12) -> Image.Image:
    """Composite an RGBA image over a grey checkerboard (how editors show transparency)."""
    w, h = rgba.size
    yy, xx = np.mgrid[:h, :w]
    board = np.where(((yy // cell) + (xx // cell)) % 2, 200, 150).astype(np.uint8)
    bg = Image.fromarray(np.dstack([board] * 3))
    bg.paste(rgba, (0, 0), rgba)
    return bg


class Writer:
    def __init__(self, name: str):
        self.dir = MODELS / name / "gallery"
        self.dir.mkdir(exist_ok=True)
        for old in self.dir.iterdir():
            old.unlink()

    def save(self, img: Image.Image, filename: str) -> None:
        img = fit(img)
        path = self.dir / filename
        if filename.endswith(".jpg"):
            img.convert("RGB").save(path, quality=85, optimize=True)
        else:
            img.save(path, optimize=True)
        print(f"    {path.relative_to(MODELS.parent)}  {img.size[0]}x{img.size[1]}  "
              f"{path.stat().st_size / 1024:.0f} KB")


def gallery_person_segmentation(s: Session, w: Writer) -> None:
    out = s.predict(image=PHOTO)["output"]
    w.save(Image.open(PHOTO), "input.jpg")
    w.save(Image.fromarray(decode_image(out["matte"])), "matte.png")
    cut = Image.fromarray(decode_image(out["cutout"]), "RGBA")
    w.save(checker_behind(fit(cut)), "cutout.jpg")


def gallery_face_detection(s: Session, w: Writer) -> None:
    out = s.predict(image=PHOTO, line_width=6)["output"]
    w.save(Image.fromarray(decode_image(out["annotated"])), "annotated.jpg")


def gallery_pose(s: Session, w: Writer) -> None:
    out = s.predict(image=PHOTO, line_width=6, background="dimmed")["output"]
    w.save(Image.fromarray(decode_image(out["overlay"])), "overlay.jpg")


def gallery_style_transfer(s: Session, w: Writer) -> None:
    for style in (19, 3, 12):
        out = s.predict(image=PHOTO, style=style)["output"]
        w.save(Image.fromarray(decode_image(out)), f"style_{style}.jpg")
    out = s.predict(image=PHOTO, style=19, strength=0.5)["output"]
    w.save(Image.fromarray(decode_image(out)), "style_19_strength_0.5.jpg")
    out = s.predict(image=PHOTO, style_image=TESTDATA / "render_clean_256spp.png")["output"]
    w.save(Image.fromarray(decode_image(out)), "style_image_render.jpg")


def gallery_upscale(s: Session, w: Writer) -> None:
    crop = Image.open(PHOTO).convert("RGB").crop((200, 150, 264, 214))  # an eye, 64 x 64
    src = w.dir / "_crop.png"
    crop.save(src)
    try:
        out = decode_image(s.predict(image=src)["output"])
    finally:
        src.unlink()
    w.save(crop.resize((256, 256), Image.NEAREST), "input_64px_nearest.png")
    w.save(Image.fromarray(out), "upscaled_x4_animevideov3.png")


def gallery_denoise(s: Session, w: Writer) -> None:
    import cv2

    def png16(path: Path) -> Image.Image:
        return Image.fromarray(to8(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[:, :, ::-1]))

    out = decode_image(s.predict(color=TESTDATA / "render_noisy_4spp.png",
                                 albedo=TESTDATA / "render_albedo.png",
                                 normal=TESTDATA / "render_normal.png")["output"])
    w.save(png16(TESTDATA / "render_noisy_4spp.png"), "noisy_4spp.jpg")
    w.save(Image.fromarray(to8(out)), "denoised.jpg")
    w.save(png16(TESTDATA / "render_clean_256spp.png"), "reference_256spp.jpg")


def gallery_text_to_speech(s: Session, w: Writer) -> None:
    text = "Grace Hopper wrote the first compiler."
    raw = data_uri_bytes(s.predict(text=text)["output"])
    with wave.open(io.BytesIO(raw)) as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), np.int16) / 32768.0
        rate = f.getframerate()
    width, height = 256, 96
    img = Image.new("RGB", (width, height), (24, 26, 32))
    d = ImageDraw.Draw(img)
    cols = np.array_split(pcm, width)
    mid = height // 2
    for x, c in enumerate(cols):
        lo, hi = (float(c.min()), float(c.max())) if len(c) else (0.0, 0.0)
        d.line([(x, mid - hi * (mid - 4)), (x, mid - lo * (mid - 4))], fill=(120, 200, 255))
    d.text((4, 2), f'"{text}"', fill=(230, 230, 230))
    d.text((4, height - 12), f"{len(pcm) / rate:.2f} s, {rate} Hz", fill=(160, 160, 160))
    w.save(img, "waveform.png")


GALLERIES = {
    "person-segmentation": gallery_person_segmentation,
    "face-detection": gallery_face_detection,
    "pose": gallery_pose,
    "style-transfer": gallery_style_transfer,
    "upscale": gallery_upscale,
    "denoise": gallery_denoise,
    "text-to-speech": gallery_text_to_speech,
}


def main(argv: list[str]) -> int:
    for name in names_from_args(argv):
        print(f"== {name}", flush=True)
        with running(name) as s:
            GALLERIES[name](s, Writer(name))
    total = sum(p.stat().st_size for p in MODELS.glob("*/gallery/*"))
    print(f"all galleries: {total / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
