"""Make a model's gallery: run it through the add-on's own runtime and client on the
test inputs and write small images (at most 256 px a side) into models/<name>/gallery/.

Usage (the project's Python: it imports runway_addon, numpy and Pillow)::

    .venv/bin/python models/tools/gallery.py NAME [NAME ...] | --all

Each model runs as the add-on runs it: ``ProcessSession`` (environment from the shared
cache, the real Cog server, one at a time) and its ``CogClient``; images go in as numpy
arrays and come back decoded by ``core.codecs`` (16-bit PNGs included). The files
listed in card.json's "gallery" are the ones written here. Keep the total under 1 MB.
"""
from __future__ import annotations

import io
import sys
import wave
from contextlib import contextmanager
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1]
ROOT = MODELS.parent


def names_from_args(args: list[str]) -> list[str]:
    if not args:
        raise SystemExit("give a model name or --all")
    if "--all" in args:
        return sorted(p.parent.name for p in MODELS.glob("*/cog.yaml"))
    return args


sys.path.insert(0, str(ROOT))
try:
    import numpy as np
    from PIL import Image, ImageDraw

    from runway_addon.core.codecs import FileValue, decode_image_bytes, to_bit_depth
    from runway_addon.core.runtimes.process import ProcessSession
except ImportError as e:  # pragma: no cover - a plain system Python
    raise SystemExit(f"{e}: run this with the project's Python, .venv/bin/python")

TESTDATA = MODELS / "testdata"
PHOTO = TESTDATA / "grace_hopper.jpg"
MAX = 256


@contextmanager
def running(name: str):
    """The model's client, its server READY; stopped on exit."""
    session = ProcessSession(MODELS / name)
    session.start()
    try:
        client = session.client()
        try:
            yield client
        finally:
            client.close()
    finally:
        session.stop()


def read(path: Path) -> np.ndarray:
    """A test input as an HxWxC uint8/uint16 array (16-bit PNGs keep their 16 bits)."""
    return decode_image_bytes(path.read_bytes())


def pixels(value) -> np.ndarray:
    """An image file output as an array."""
    if not isinstance(value, FileValue):
        raise TypeError(f"expected an image file, got {value!r}")
    return decode_image_bytes(value.read_bytes())


def picture(a: np.ndarray) -> Image.Image:
    """An 8-bit PIL image of a decoded array (grey, RGB or RGBA)."""
    a = to_bit_depth(a, 8)
    return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)


def fit(img: Image.Image, size: int = MAX) -> Image.Image:
    img = img.copy()
    img.thumbnail((size, size), Image.LANCZOS)
    return img


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

    def save_bytes(self, data: bytes, filename: str) -> None:
        """A file as the model made it (a speech sample the card can play)."""
        path = self.dir / filename
        path.write_bytes(data)
        print(f"    {path.relative_to(MODELS.parent)}  {len(data) / 1024:.0f} KB")


def gallery_person_segmentation(model, w: Writer) -> None:
    out = model.run({"image": read(PHOTO)}).outputs
    w.save(Image.open(PHOTO), "input.jpg")
    w.save(picture(pixels(out["matte"])), "matte.png")
    w.save(checker_behind(fit(picture(pixels(out["cutout"])))), "cutout.jpg")


def gallery_face_detection(model, w: Writer) -> None:
    out = model.run({"image": read(PHOTO), "line_width": 6}).outputs
    w.save(picture(pixels(out["annotated"])), "annotated.jpg")


def gallery_pose(model, w: Writer) -> None:
    out = model.run({"image": read(PHOTO), "line_width": 6, "background": "dimmed"}).outputs
    w.save(picture(pixels(out["overlay"])), "overlay.jpg")


def gallery_style_transfer(model, w: Writer) -> None:
    photo = read(PHOTO)
    for style in (19, 3, 12):
        out = model.run({"image": photo, "style": style}).outputs["output"]
        w.save(picture(pixels(out)), f"style_{style}.jpg")
    out = model.run({"image": photo, "style": 19, "strength": 0.5}).outputs["output"]
    w.save(picture(pixels(out)), "style_19_strength_0.5.jpg")
    out = model.run({"image": photo,
                     "style_image": read(TESTDATA / "render_clean_256spp.png")}).outputs["output"]
    w.save(picture(pixels(out)), "style_image_render.jpg")


def gallery_upscale(model, w: Writer) -> None:
    crop = read(PHOTO)[150:214, 200:264]  # an eye, 64 x 64
    out = pixels(model.run({"image": crop}).outputs["output"])
    w.save(picture(crop).resize((256, 256), Image.NEAREST), "input_64px_nearest.png")
    w.save(picture(out), "upscaled_x4_animevideov3.png")


def gallery_denoise(model, w: Writer) -> None:
    out = model.run({"color": read(TESTDATA / "render_noisy_4spp.png"),
                     "albedo": read(TESTDATA / "render_albedo.png"),
                     "normal": read(TESTDATA / "render_normal.png")}).outputs["output"]
    w.save(picture(read(TESTDATA / "render_noisy_4spp.png")), "noisy_4spp.jpg")
    w.save(picture(pixels(out)), "denoised.jpg")
    w.save(picture(read(TESTDATA / "render_clean_256spp.png")), "reference_256spp.jpg")


def gallery_text_to_speech(model, w: Writer) -> None:
    text = "Grace Hopper wrote the first compiler."
    raw = model.run({"text": text}).outputs["output"].read_bytes()
    w.save_bytes(raw, "speech.wav")
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
        with running(name) as model:
            GALLERIES[name](model, Writer(name))
    total = sum(p.stat().st_size for p in MODELS.glob("*/gallery/*"))
    print(f"all galleries: {total / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
