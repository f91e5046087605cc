"""The model shelf (models/*): each real model, run as a person would through the
add-on's own runtime (``ProcessSession``) and client (``CogClient``), on the test
inputs in models/testdata/ (a public-domain photo and renders Blender made).

One test class per model. A module-scoped ``Shelf`` keeps at most one model server
alive: the first test of a class starts that model's server (its environment comes
from the shared default cache, built on first use), every test of the class uses it,
and the next class's model replaces it. Speed is measured in bench/bench_models.py,
never here.
"""
from __future__ import annotations

import functools
import io
import json
import os
import subprocess
import sys
import wave

import numpy as np
import pytest
from PIL import Image

from runway_addon.core.catalog import load_card
from runway_addon.core.codecs import FileValue, decode_image_bytes, decode_value
from runway_addon.core.protocols.cog import cog_wire, spec_from_openapi

from runway_addon.core.exr import read_exr
from tests.helpers import ROOT, image, photo, photo_512, to01

pytestmark = [pytest.mark.network, pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")]

MODELS = ROOT / "models"
TESTDATA = MODELS / "testdata"
SHELF = sorted(p.parent.name for p in MODELS.glob("*/cog.yaml"))


@pytest.fixture
def model(shelf, request):
    """The client of the running server of the test class's model."""
    return shelf.use(request.cls.MODEL)


# ---------------------------------------------------------------- inputs and helpers

@functools.lru_cache(maxsize=None)
def render(name: str) -> np.ndarray:
    """A 16-bit render from testdata as HxWx3 uint16."""
    arr = decode_image_bytes((TESTDATA / name).read_bytes())
    arr.flags.writeable = False
    return arr


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(1.0 / mse) if mse > 0 else float("inf")


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


# ---------------------------------------------------------------- checks every model gets

MEDIA_FIELDS = ("image", "text", "file")


def field_kind(field) -> str:
    """The kind a card names for a field: image, text, audio, json..."""
    if field.type == "file":
        return field.media if field.media != "any" else "file"
    if field.type == "any":
        return "json"
    if field.type == "array":  # a card names what there is one of (per face, ...)
        return field_kind(field.item)
    return field.type


def output_kind(field, value) -> str:
    """As field_kind, but a file output of unspecified media (Cog outputs carry no
    MIME filter) is known by what the model really returned."""
    kind = field_kind(field)
    if kind == "file" and isinstance(value, FileValue) and value.mime:
        return value.mime.split("/", 1)[0]
    if kind == "json":
        assert isinstance(value, (dict, list)), f"{field.name}: {value!r} is not JSON data"
    return kind


def comparable(spec):
    """The spec with each command's outputs in name order. The server re-serialises the
    schema with sorted keys, so a BaseModel output's attributes come back in alphabetical
    order, not in the file's (Cog gives outputs no x-order); inputs keep x-order."""
    commands = [c.model_copy(update={"outputs": sorted(c.outputs, key=lambda f: f.name)})
                for c in spec.commands]
    return spec.model_copy(update={"commands": commands})


def first_words(types: list[str]) -> list[str]:
    return [t.split(" ", 1)[0].lower() for t in types]


class ShelfModel:
    """The checks every shelf model gets; subclasses name MODEL and SMALL inputs."""

    MODEL = ""
    SMALL: dict = {}

    def test_spec_is_the_checked_in_schema(self, model, shelf):
        """The running server's spec is that of .cog/openapi_schema.json, and that file
        is current: the schema cog's inspector makes from predict.py now (in the model's
        own environment, as runway_addon/core/cog_inspect.py does) gives the same spec."""
        schema = json.loads((MODELS / self.MODEL / ".cog" / "openapi_schema.json").read_text())
        spec = model.spec()
        assert comparable(spec) == comparable(spec_from_openapi(schema, version=spec.version))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        fresh = subprocess.run(
            [str(shelf.session.environment.python), str(ROOT / "runway_addon" / "core" / "cog_inspect.py"),
             str(MODELS / self.MODEL)], cwd=MODELS / self.MODEL,
            env={**env, "PYTHONWARNINGS": "ignore"}, check=True, capture_output=True,
            text=True).stdout
        assert comparable(spec) == comparable(spec_from_openapi(json.loads(fresh),
                                                                version=spec.version))
        for f in spec.command().inputs:  # every file input says what it takes
            if f.type == "file":
                assert f.media != "any", f"{f.name} is a file of any kind: give it an accept"

    def test_card_types_agree_with_spec(self, model):
        card = load_card(MODELS / self.MODEL / "card.json")
        cmd = model.spec().command()
        media_inputs = [field_kind(f) for f in cmd.inputs if f.type in MEDIA_FIELDS]
        assert first_words(card.characteristics.input_types) == media_inputs
        out = model.run(self.SMALL).outputs
        kinds = [output_kind(f, out[f.name]) for f in cmd.outputs]
        # outputs as a multiset: the served schema lists them in name order (see comparable)
        assert sorted(first_words(card.characteristics.output_types)) == sorted(kinds)


# ---------------------------------------------------------------- person segmentation

class TestPersonSegmentation(ShelfModel):
    MODEL = "person-segmentation"
    SMALL = {"image": photo_512()[::4, ::4]}

    def test_mask_covers_the_person_and_cutout_alpha_is_the_matte(self, model):
        out = model.run({"image": photo()}).outputs
        matte, cut = image(out["matte"]), image(out["cutout"])
        assert matte.shape == (600, 512, 1) and matte.dtype == np.uint8
        assert cut.shape == (600, 512, 4)
        m = matte[:, :, 0] / 255.0
        # face and uniform of this photo (pixel boxes by eye)
        assert m[150:330, 190:330].mean() > 0.9
        assert m[420:590, 60:450].mean() > 0.9
        assert max(m[:60, :60].mean(), m[:60, -60:].mean()) < 0.05  # background corners
        assert np.array_equal(cut[:, :, 3], matte[:, :, 0])
        assert np.array_equal(cut[:, :, :3][m > 0.99], photo()[m > 0.99])

    def test_segmentation_is_a_typed_label_map(self, model):
        field = model.spec().command().output("segmentation")
        assert field.type == "segmentation" and field.labels == ["background", "person"]
        out = model.run({"image": photo()}).outputs
        ids = out["segmentation"]  # decoded by the codecs into label ids
        assert ids.shape == (600, 512) and set(np.unique(ids)) == {0, 1}
        m = image(out["matte"])[:, :, 0]
        # The map is the matte's threshold (0.5 by default).
        assert np.array_equal(ids == 1, m >= 128)

    def test_hard_edges_give_a_binary_matte(self, model):
        out = model.run({"image": Image.fromarray(photo()), "soft_edges": False}).outputs
        assert set(np.unique(image(out["matte"]))) <= {0, 255}


# ---------------------------------------------------------------- face detection

class TestFaceDetection(ShelfModel):
    MODEL = "face-detection"
    SMALL = {"image": photo()[100:400, 100:400]}

    @pytest.mark.parametrize("model_range", ["short", "full"])
    def test_box_holds_the_face_and_its_keypoints(self, model, model_range):
        out = model.run({"image": photo(), "model_range": model_range}).outputs
        boxes, scores, keypoints = out["boxes"], out["scores"], out["keypoints"]
        assert len(boxes) == len(scores) == len(keypoints) == 1
        x0, y0, x1, y1 = boxes[0]
        # Where the face is in this photo (normalised, by eye): eyes near y 0.33, chin 0.55.
        assert 0.25 < x0 < 0.45 and 0.55 < x1 < 0.75, boxes[0]
        assert 0.15 < y0 < 0.35 and 0.45 < y1 < 0.65, boxes[0]
        assert scores[0] > 0.5
        labels = model.spec().command().output("keypoints").item.labels
        points = dict(zip(labels, keypoints[0]))
        for k in ("right_eye", "left_eye", "nose_tip", "mouth_center"):
            kx, ky = points[k]
            assert x0 <= kx <= x1 and y0 <= ky <= y1, k
        assert image(out["annotated"]).shape[:2] == (600, 512)

    def test_outputs_are_typed_boxes_and_landmarks(self, model):
        cmd = model.spec().command()
        assert cmd.output("boxes").type == "array"
        assert cmd.output("boxes").item.type == "image_bounding_box"
        kp = cmd.output("keypoints").item
        assert kp.type == "image_landmarks" and kp.length == 6 and "nose_tip" in kp.labels

    def test_no_face_in_a_plain_picture(self, model):
        blank = np.empty((256, 256, 3), np.uint8)
        blank[...] = (90, 120, 160)
        assert model.run({"image": blank}).outputs["boxes"] == []


# ---------------------------------------------------------------- pose

class TestPose(ShelfModel):
    MODEL = "pose"
    SMALL = {"image": photo_512()[::4, ::4]}

    def test_landmarks_lie_on_the_body(self, model):
        field = model.spec().command().output("landmarks")
        assert field.type == "image_landmarks" and field.length == 33
        labels, connections = field.labels, field.connections
        assert len(labels) == 33 and len(connections) == 35
        assert all(0 <= a < 33 and 0 <= b < 33 for a, b in connections)
        out = model.run({"image": photo()}).outputs
        points, visibility = out["landmarks"], out["visibility"]
        assert len(points) == len(visibility) == 33
        pts = dict(zip(labels, points))
        nx, ny = pts["nose"]
        assert 0.4 < nx < 0.6 and 0.3 < ny < 0.5, pts["nose"]
        for side in ("left", "right"):
            sx, sy = pts[f"{side}_shoulder"]
            assert sy > ny + 0.1 and 0.0 <= sx <= 1.0 and sy <= 1.0, (side, sx, sy)
        # facing us: the person's left shoulder is on the picture's right
        assert pts["left_shoulder"][0] > pts["right_shoulder"][0]
        # nose, eyes, ears, mouth: inside the face of this photo
        assert all(0.28 < x < 0.75 and 0.18 < y < 0.6 for x, y in points[:11])
        vis = dict(zip(labels, visibility))
        arms = [lbl for lbl in labels if "elbow" in lbl or "wrist" in lbl]
        # out of this head-and-shoulders frame: unseen, or at the bottom edge
        assert all(vis[a] < 0.5 or pts[a][1] > 0.85 for a in arms)
        assert image(out["overlay"]).shape[:2] == (600, 512)

    def test_no_person_gives_no_landmarks(self, model):
        blank = np.full((256, 256, 3), 128, np.uint8)
        assert model.run({"image": blank}).outputs["landmarks"] == []


# ---------------------------------------------------------------- style transfer

class TestStyleTransfer(ShelfModel):
    MODEL = "style-transfer"
    SMALL = {"image": photo_512()[::4, ::4]}

    def styled(self, model, **inputs) -> np.ndarray:
        return to01(image(model.run({"image": photo_512(), **inputs}).outputs["output"]))

    def test_style_keeps_the_size_and_changes_the_picture(self, model):
        src = to01(photo_512())
        out = self.styled(model, style=19)
        assert out.shape == src.shape
        assert np.abs(out - src).mean() > 0.05
        other = self.styled(model, style=3)
        assert np.abs(other - out).mean() > 0.03  # two styles, two pictures
        half = self.styled(model, style=19, strength=0.5)
        assert np.abs(half - (src + out) / 2).mean() < 0.01

    def test_strength_zero_gives_the_input_back(self, model):
        out = self.styled(model, strength=0.0)
        assert np.abs(out - to01(photo_512())).mean() < 0.01

    def test_a_style_image_restyles_the_picture(self, model):
        out = self.styled(model, style_image=render("render_clean_256spp.png"))
        assert out.shape == (512, 512, 3)
        assert np.abs(out - to01(photo_512())).mean() > 0.05


# ---------------------------------------------------------------- upscale

class TestUpscale(ShelfModel):
    MODEL = "upscale"
    SMALL = {"image": photo_512()[::8, ::8]}

    @staticmethod
    def small() -> Image.Image:
        return Image.fromarray(photo()).resize((128, 150), Image.LANCZOS)

    @pytest.mark.parametrize("network,scale", [("realesr-animevideov3-x4", 4),
                                               ("realesr-animevideov3-x2", 2)])
    def test_upscaled_matches_the_input_when_scaled_back(self, model, network, scale):
        small = self.small()
        out = image(model.run({"image": small, "network": network, "tile_size": 64})
                    .outputs["output"])
        assert out.shape == (150 * scale, 128 * scale, 3)
        back = np.asarray(Image.fromarray(out).resize((128, 150), Image.BOX))
        assert psnr(to01(back), to01(np.asarray(small))) > 28

    def test_tiles_do_not_show(self, model):
        whole = image(model.run({"image": self.small(), "tile_size": 0}).outputs["output"])
        tiled = image(model.run({"image": self.small(), "tile_size": 48}).outputs["output"])
        assert np.abs(whole.astype(np.float64) - tiled).mean() < 1.0

    def test_512_becomes_2048(self, model):
        out = image(model.run({"image": photo_512()}).outputs["output"])
        assert out.shape == (2048, 2048, 3)


# ---------------------------------------------------------------- denoise

class TestDenoise(ShelfModel):
    MODEL = "denoise"
    SMALL = {"color": render("render_noisy_4spp.png")[:64, :64]}

    @pytest.mark.parametrize("passes", ["colour only", "colour + albedo + normal"])
    def test_denoised_is_closer_to_the_256_sample_render(self, model, passes):
        clean, noisy = to01(render("render_clean_256spp.png")), \
            to01(render("render_noisy_4spp.png"))
        inputs = {"color": render("render_noisy_4spp.png")}
        if passes != "colour only":
            inputs.update(albedo=render("render_albedo.png"), normal=render("render_normal.png"))
        out = image(model.run(inputs).outputs["output"])
        assert out.dtype == np.uint16 and out.shape == (256, 256, 3)
        assert psnr(to01(out), clean) > psnr(noisy, clean) + 3

    def test_exr_in_linear_float_exr_out(self, model):
        """An HDR render travels as an EXR file, which an image field (PNG on the wire)
        cannot carry: the raw request sends the bare paths a local server reads."""
        body = model.predict_raw({
            "color": str(TESTDATA / "render_noisy_4spp.exr"),
            "albedo": str(TESTDATA / "render_albedo.png"),
            "normal": str(TESTDATA / "render_normal.png"),
            "output_format": "exr"})
        field = model.spec().command().output("output")
        out = decode_value(field, body["output"], cog_wire())
        planes = read_exr(out.read_bytes())
        rgb = np.dstack([planes[c] for c in "RGB"])
        assert rgb.shape == (256, 256, 3)
        clean, noisy = to01(render("render_clean_256spp.png")), \
            to01(render("render_noisy_4spp.png"))
        assert psnr(srgb_encode(rgb), clean) > psnr(noisy, clean) + 3


# ---------------------------------------------------------------- text to speech

TEXT = ("Grace Hopper wrote the first compiler. She also popularised the word debugging, "
        "after a moth was found in a relay.")


def speech(value) -> tuple[np.ndarray, int]:
    """A WAV output as (int16 samples, rate)."""
    assert isinstance(value, FileValue) and (value.mime or "").startswith("audio/"), value
    with wave.open(io.BytesIO(value.read_bytes())) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), np.int16), w.getframerate()


class TestTextToSpeech(ShelfModel):
    MODEL = "text-to-speech"
    SMALL = {"text": "Hello."}

    def test_speech_lasts_as_long_as_the_words_and_is_not_silent(self, model):
        pcm, rate = speech(model.run({"text": TEXT}).outputs["output"])
        assert rate == 22050
        words = len(TEXT.split())
        assert 0.2 < len(pcm) / rate / words < 0.6  # seconds a word
        x = pcm / 32768.0
        assert np.sqrt(np.mean(x ** 2)) > 0.03  # RMS of full scale
        frames = x[: len(x) // 441 * 441].reshape(-1, 441)  # 20 ms frames
        assert np.mean(np.sqrt(np.mean(frames ** 2, axis=1)) > 0.02) > 0.5

    def test_faster_speaking_rate_is_shorter(self, model):
        normal, _ = speech(model.run({"text": TEXT}).outputs["output"])
        fast, _ = speech(model.run({"text": TEXT, "speaking_rate": 2.0}).outputs["output"])
        # words at half length; sentence pauses shrink less
        assert 0.4 < len(fast) / len(normal) < 0.75


def test_every_shelf_model_has_a_test_class():
    classes = {c.MODEL for c in ShelfModel.__subclasses__()}
    assert classes == set(SHELF)
