"""CogClient against real Cog servers (cog 0.23.1 / coglet), one per test predictor
in tests/model_servers/cog, plus the schema mapping from the checked-in schema files."""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import threading
import wave

import numpy as np
import pytest
from PIL import Image

from runway_addon.core.client import connect
from runway_addon.core.codecs import FileValue
from runway_addon.core.errors import (Cancelled, ModelNotReady, RunwayError, ServerError,
                                      SpecValidationError)
from runway_addon.core.protocols.base import HealthState
from runway_addon.core.protocols.cog import CogClient, spec_from_openapi
from runway_addon.core.runtimes.process import free_port
from runway_addon.core.spec import Protocol
from tests.helpers import ROOT, wait_until
from tests.servers import COG_MODELS as MODELS


def schema_of(name: str) -> dict:
    return json.loads((MODELS / name / ".cog" / "openapi_schema.json").read_text())


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def gradient(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4 % 256, y * 5 % 256, (x + y) % 256], axis=2).astype(np.uint8)


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 80)
    return buf.getvalue()


def decode_png(value: FileValue) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(value.read_bytes())))


@pytest.fixture
def cog_client(cog_servers):
    """cog_client(model, **kwargs) -> a CogClient on that model's running server."""
    made = []

    def make(name: str, **kwargs) -> CogClient:
        client = CogClient(cog_servers.get(name).url, **kwargs)
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()


def _inputs(**overrides):
    values = {"prompt": "hello", "image": gradient(6, 5), "words": ["a", "b"]}
    values.update(overrides)
    return values


# --------------------------------------------------------------------------- spec mapping

def test_spec_maps_every_input_type():
    cmd = spec_from_openapi(schema_of("inputs")).command()
    assert cmd.name == "predict"
    f = {i.name: i for i in cmd.inputs}
    # x-order order, not the JSON key order
    assert [i.name for i in cmd.inputs] == [
        "prompt", "code", "steps", "strength", "flag", "mode", "size", "image", "document",
        "sound", "api_key", "words", "numbers", "note", "old_knob"]
    assert f["prompt"].type == "text" and f["prompt"].required
    assert (f["prompt"].min_length, f["prompt"].max_length) == (1, 40)
    assert f["prompt"].description == "Text prompt" and f["prompt"].title == "Prompt"
    assert f["code"].pattern == "^[A-Z]{2}[0-9]{2}$" and f["code"].default == "AB12"
    assert not f["code"].required
    assert f["steps"].type == "integer" and (f["steps"].min, f["steps"].max) == (1, 50)
    assert isinstance(f["steps"].min, int) and f["steps"].default == 10
    assert f["strength"].type == "number" and (f["strength"].min, f["strength"].max) == (0, 1)
    assert f["flag"].type == "boolean" and f["flag"].default is False
    # choices through allOf -> $ref -> enum component
    assert f["mode"].type == "category" and f["mode"].choices == ["fast", "slow", "best"]
    assert f["mode"].default == "fast" and f["mode"].description == "Speed"
    assert f["size"].type == "category" and f["size"].choices == [256, 512, 1024]
    assert f["image"].type == "image" and f["image"].accept == "image/*" and f["image"].required
    assert f["document"].type == "file" and f["document"].media == "any"
    assert not f["document"].required
    assert f["sound"].type == "file" and f["sound"].media == "audio"
    assert f["sound"].accept == "audio/*"
    assert f["api_key"].type == "secret"
    assert f["words"].type == "array" and f["words"].item.type == "text" and f["words"].required
    assert f["numbers"].type == "array" and f["numbers"].item.type == "integer"
    assert f["note"].type == "text" and not f["note"].required and f["note"].default is None
    assert f["old_knob"].deprecated and not f["steps"].deprecated
    assert f["steps"].raw["x-order"] == 2  # the protocol's own description is kept


@pytest.mark.parametrize("model, check", [
    ("image", lambda o: o.type == "file" and o.media == "any"),
    ("audio", lambda o: o.type == "file"),
    ("inputs", lambda o: o.type == "text"),
    ("list_out", lambda o: o.type == "array" and o.item.type == "text" and not o.iterator),
    ("iterator", lambda o: o.type == "array" and o.iterator and not o.concatenate
     and o.item.type == "file"),
    ("stream", lambda o: o.type == "array" and o.iterator and o.concatenate),
])
def test_spec_maps_single_outputs(model, check):
    outputs = spec_from_openapi(schema_of(model)).command().outputs
    assert [o.name for o in outputs] == ["output"]
    assert check(outputs[0]), outputs[0]


def test_spec_maps_object_output_to_named_outputs():
    outputs = {o.name: o for o in spec_from_openapi(schema_of("object_out")).command().outputs}
    assert list(outputs) == ["caption", "score", "tags", "mask", "extra"]
    assert outputs["caption"].type == "text" and outputs["caption"].required
    assert outputs["score"].type == "number"
    assert outputs["tags"].type == "array"
    assert outputs["mask"].type == "file"
    assert outputs["extra"].type == "text" and not outputs["extra"].required


def test_spec_edge_cases():
    schema = {"components": {"schemas": {
        "Input": {"type": "object", "properties": {
            "b": {"type": "string", "format": "uri", "x-cog-accept": [".wav", ".mp3"],
                  "x-order": 1},
            "a": {"$ref": "#/components/schemas/Pick", "x-order": 0},
            "c": {"type": "string", "format": "uri", "x-cog-accept": "video/mp4", "x-order": 2},
            "d": {"anyOf": [{"type": "string"}, {"type": "integer"}], "x-order": 3},
            "e": {"type": "string", "format": "uri", "x-cog-accept": "image/png,image/jpeg",
                  "x-order": 4},
            "f": {"type": "string", "format": "uri", "x-cog-accept": "image/*,audio/*",
                  "x-order": 5},
            "g": {"type": "string", "x-cog-secret": True, "x-order": 6},
            "h": {"type": "object", "x-order": 7},
        }},
        "Pick": {"type": "integer", "enum": [1, 2]},
        "Output": {"title": "Output"},  # Any
    }}}
    cmd = spec_from_openapi(schema).command()
    f = {i.name: i for i in cmd.inputs}
    assert [i.name for i in cmd.inputs] == list("abcdefgh")
    assert f["a"].type == "category" and f["a"].choices == [1, 2]
    assert f["b"].type == "file" and f["b"].media == "audio" and f["b"].accept == ".wav,.mp3"
    assert f["c"].media == "video"
    assert f["d"].type == "any" and f["d"].raw["anyOf"]
    assert f["e"].type == "image"
    assert f["f"].type == "file" and f["f"].media == "any"
    assert f["g"].type == "secret"
    assert f["h"].type == "any"
    assert cmd.outputs[0].type == "any" and cmd.outputs[0].raw == {"title": "Output"}


def test_checked_in_schemas_are_current(cog_venv):
    """The schema files match what cog's inspector says about the predictors today."""
    dirs = sorted(str(p.parent) for p in MODELS.glob("*/cog.yaml"))
    r = subprocess.run([sys.executable, "-m", "buildtools.cogmodels", "schema", "--check", *dirs],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("ok ") == len(dirs) >= 10


def test_setup_takes_no_options():
    client = CogClient("http://127.0.0.1:9")
    client.setup({})  # no-op
    with pytest.raises(RunwayError, match="COG_WEIGHTS"):
        client.setup({"weights": "x"})


def test_client_repr_hides_token():
    assert "secret" not in repr(CogClient("http://127.0.0.1:9", token="secret"))


# --------------------------------------------------------------------------- health

@pytest.mark.network
def test_health_unreachable():
    client = CogClient(f"http://127.0.0.1:{free_port()}")
    assert client.health().state is HealthState.UNREACHABLE


@pytest.mark.network
def test_health_ready_spec_and_version(cog_client):
    client = cog_client("inputs")
    assert client.wait_until_ready(10).state is HealthState.READY
    spec = client.spec()
    assert spec.protocol is Protocol.COG and spec.version == "0.23.1"
    assert spec == spec_from_openapi(schema_of("inputs"), version="0.23.1")


@pytest.mark.network
@pytest.mark.slow
def test_setup_failed(cog_client):
    client = cog_client("setup_fails")
    h = client.health()
    assert h.state is HealthState.SETUP_FAILED
    # coglet 0.23.1 reports the exception (type and message), not the full traceback.
    assert "RuntimeError: weights file missing: /nowhere/model.bin" in h.logs
    with pytest.raises(ModelNotReady) as e:
        client.wait_until_ready(5)
    assert "weights file missing" in e.value.details
    with pytest.raises(ModelNotReady):
        client.spec()


@pytest.mark.network
@pytest.mark.slow
def test_missing_schema_file_is_explained(cog_servers, tmp_path):
    server = cog_servers.start_copy("list_out", tmp_path, drop_schema=True)
    try:
        client = CogClient(server.url)
        assert client.health().state is HealthState.READY
        with pytest.raises(ServerError, match="openapi_schema.json") as e:
            client.spec()
        assert e.value.status == 503
    finally:
        server.stop()


# --------------------------------------------------------------------------- inputs

@pytest.mark.network
def test_every_input_type_reaches_the_model(cog_client, tmp_path):
    sound = tmp_path / "clip.wav"
    sound.write_bytes(wav_bytes())
    client = cog_client("inputs")
    result = client.run(_inputs(
        prompt="a red fox", code="ZX98", steps=50, strength=0.25, flag=True, mode="best",
        size=1024, image=Image.fromarray(gradient(7, 9)), document=b"hello document",
        sound=str(sound), api_key="sk-123456", words=["x", "y", "z"], numbers=[3, 1, 2],
        note="a note", old_knob=2.5))
    got = json.loads(result.outputs["output"])
    assert got == {
        "prompt": "a red fox", "code": "ZX98", "steps": 50, "strength": 0.25, "flag": True,
        "mode": "best", "size": 1024, "image": [9, 7, "RGB"], "document": "hello document",
        "sound": "RIFF", "api_key_len": 9, "words": ["x", "y", "z"], "numbers": [3, 1, 2],
        "note": "a note", "old_knob": 2.5}
    assert result.metrics["predict_time"] > 0
    assert result.run_id


@pytest.mark.network
def test_defaults_are_filled(cog_client):
    got = json.loads(cog_client("inputs").run(_inputs()).outputs["output"])
    assert (got["code"], got["steps"], got["mode"], got["size"]) == ("AB12", 10, "fast", 512)
    assert got["note"] is None and got["numbers"] is None and got["api_key_len"] is None


@pytest.mark.network
@pytest.mark.parametrize("bad", [
    {"steps": 51}, {"steps": 0}, {"strength": 1.5}, {"mode": "turbo"}, {"size": 300},
    {"code": "ab12"}, {"prompt": ""}, {"prompt": "x" * 41}, {"prompt": None},
    {"flag": "yes"}, {"words": "not a list"},
])
def test_bad_values_rejected_before_sending(cog_client, bad):
    client = cog_client("inputs")
    client.spec()
    sent = []
    client._session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request.method))
    values = _inputs(**bad)
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(SpecValidationError) as e:
        client.run(values)
    assert e.value.issues and e.value.issues[0].field == next(iter(bad))
    assert sent == []  # nothing reached the server


@pytest.mark.network
def test_422_maps_to_the_field(cog_client):
    client = cog_client("inputs")
    image = "data:image/png;base64," + base64.b64encode(png_bytes(gradient(2, 2))).decode()
    wire = {"prompt": "hi", "image": image, "words": ["a"], "steps": 99}
    with pytest.raises(ServerError) as e:
        client.predict_raw(wire)
    assert e.value.status == 422 and e.value.field == "steps"
    assert "maximum of 50" in str(e.value)


# --------------------------------------------------------------------------- files

def _capture_wire(client, monkeypatch):
    seen = {}
    original = client.predict_raw

    def spy(wire, **kwargs):
        seen.update(wire)
        return original(wire, **kwargs)

    monkeypatch.setattr(client, "predict_raw", spy)
    return seen


@pytest.mark.network
def test_image_in_image_out_as_data_uris(cog_client, monkeypatch):
    client = cog_client("image")
    wire = _capture_wire(client, monkeypatch)
    img = gradient()
    out = client.run({"image": img}).outputs["output"]
    assert wire["image"].startswith("data:image/png;base64,")
    assert isinstance(out, FileValue) and out.mime == "image/png"
    np.testing.assert_array_equal(decode_png(out), 255 - img)


@pytest.mark.network
def test_files_as_bare_paths_in_a_shared_folder(cog_client, monkeypatch, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    client = cog_client("image", shared_dir=str(shared))
    wire = _capture_wire(client, monkeypatch)
    img = gradient(30, 20)
    out = client.run({"image": img}).outputs["output"]
    assert wire["image"].startswith(str(shared)) and wire["image"].endswith(".png")
    np.testing.assert_array_equal(decode_png(out), 255 - img)

    # A file already in the shared folder travels as its own path. (Only for Path
    # inputs: cog 0.23.1 hands a bare path to a legacy File input as a str.)
    clip = shared / "clip.wav"
    clip.write_bytes(wav_bytes())
    client = cog_client("inputs", shared_dir=str(shared))
    wire = _capture_wire(client, monkeypatch)
    got = json.loads(client.run(_inputs(sound=str(clip))).outputs["output"])
    assert wire["sound"] == str(clip.resolve()) and got["sound"] == "RIFF"
    assert wire["image"].startswith(str(shared))


# --------------------------------------------------------------------------- outputs

@pytest.mark.network
def test_list_output(cog_client):
    assert cog_client("list_out").run({"prompt": "x yz"}).outputs == {"output": ["X", "YZ"]}


@pytest.mark.network
def test_iterator_of_files(cog_client):
    frames = cog_client("iterator").run({"frames": 3}).outputs["output"]
    assert [decode_png(f)[0, 0, 0] for f in frames] == [0, 20, 40]


@pytest.mark.network
def test_concatenate_text_stream(cog_client):
    out = cog_client("stream").run({"prompt": "the quick fox"}).outputs
    assert out == {"output": "the quick fox"}


@pytest.mark.network
def test_object_output(cog_client):
    out = cog_client("object_out").run({"prompt": "big blue"}).outputs
    assert out["caption"] == "BIG BLUE" and out["score"] == 0.75
    assert out["tags"] == ["big", "blue"] and out["extra"] is None
    assert decode_png(out["mask"]).shape == (4, 6)


@pytest.mark.network
def test_audio_output(cog_client):
    out = cog_client("audio").run({"seconds": 0.1}).outputs["output"]
    assert out.mime in ("audio/wav", "audio/x-wav")
    with wave.open(io.BytesIO(out.read_bytes())) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (16000, 1, 1600)


# --------------------------------------------------------------------------- failures, cancel, busy

@pytest.mark.network
def test_failed_prediction_raises_with_error_and_logs(cog_client):
    with pytest.raises(ServerError) as e:
        cog_client("predict_fails").run({"prompt": "boom"})
    assert "ValueError: cannot handle prompt 'boom'" in str(e.value)
    assert "cannot handle prompt" in e.value.details
    assert e.value.status == 200  # Cog answers a failed prediction with HTTP 200


@pytest.mark.network
@pytest.mark.slow
def test_cancel_event_stops_a_slow_run(cog_client):
    client = cog_client("slow")
    assert wait_until(lambda: client.health().state is HealthState.READY, 10, step=0.05)
    cancel = threading.Event()

    def cancel_once_running():  # the run is on the server: never a timer racing the send
        if wait_until(lambda: client.health().state is HealthState.BUSY, 10, step=0.05):
            cancel.set()

    threading.Thread(target=cancel_once_running, daemon=True).start()
    with pytest.raises(Cancelled):  # not cancelled, the 30 s run would end with its answer
        client.run({"seconds": 30}, cancel_event=cancel)
    # The cancelled prediction frees the slot long before its 30 s: the server goes back
    # to READY (wait_until_ready would also accept BUSY, so poll for READY itself).
    assert wait_until(lambda: client.health().state is HealthState.READY, 15, step=0.05)
    assert client.run({"seconds": 0.05}).outputs["output"] == "slept 0.05"


@pytest.mark.network
@pytest.mark.slow
def test_cancel_by_run_id(cog_client):
    client = cog_client("slow")
    errors = []
    # Start from an idle server: a slot still freeing after an earlier test reads
    # BUSY too, and a cancel sent then would find no such run.
    assert wait_until(lambda: client.health().state is HealthState.READY, 10, step=0.05)

    def work():
        try:
            client.run({"seconds": 30}, run_id="run-to-cancel")
        except Exception as exc:  # noqa: BLE001 (collected for the assert)
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    assert wait_until(lambda: client.health().state is HealthState.BUSY, 5, step=0.05)
    client.cancel("run-to-cancel")
    t.join(10)
    assert not t.is_alive() and len(errors) == 1 and isinstance(errors[0], Cancelled)
    client.cancel("no-such-run")  # unknown or finished: not an error


@pytest.mark.network
@pytest.mark.slow
def test_busy_409_is_retried(cog_client):
    client = cog_client("slow")
    assert wait_until(lambda: client.health().state is HealthState.READY, 10, step=0.05)
    statuses = []
    client._session.hooks["response"].append(
        lambda r, *a, **k: statuses.append((r.request.method, r.status_code)))
    outcomes = {}

    def work(name, seconds):
        try:
            outcomes[name] = client.run({"seconds": seconds}, run_id=name)
        except Exception as exc:  # noqa: BLE001 (collected for the assert)
            outcomes[name] = exc

    # The one slot is held by a run that ends only when the test cancels it, so the
    # second run meets a busy server for certain and must retry until the slot frees.
    holder = threading.Thread(target=work, args=("holder", 60))
    holder.start()
    assert wait_until(lambda: client.health().state is HealthState.BUSY, 10, step=0.05)
    second = threading.Thread(target=work, args=("second", 0.1))
    second.start()
    assert wait_until(lambda: ("PUT", 409) in statuses, 10, step=0.05)
    assert second.is_alive()  # retrying, not failed
    client.cancel("holder")
    holder.join(30)
    second.join(30)
    assert not holder.is_alive() and not second.is_alive()
    assert isinstance(outcomes["holder"], Cancelled)
    assert outcomes["second"].outputs["output"] == "slept 0.1"


@pytest.mark.network
@pytest.mark.slow
def test_busy_retry_is_bounded(cog_client):
    client = cog_client("slow")
    first = threading.Thread(target=client.run, args=({"seconds": 2.0},))
    first.start()
    assert wait_until(lambda: client.health().state is HealthState.BUSY, 5, step=0.05)
    other = CogClient(client.url, busy_timeout=0.3)
    try:
        with pytest.raises(ServerError) as e:
            other.run({"seconds": 0.1})
        assert e.value.status == 409
    finally:
        first.join(10)
        other.close()


# --------------------------------------------------------------------------- public API

@pytest.mark.network
def test_connect_detects_cog(cog_servers):
    with connect(cog_servers.get("list_out").url) as model:
        assert isinstance(model, CogClient)
        assert model.run({"prompt": "a"}).outputs["output"] == ["A"]


def test_rich_types_come_from_the_x_runway_extension():
    """A model folder states boxes, landmarks and segmentation maps in the schema's
    x-runway extension (JSON schema alone says 'array' or 'uri'); a broken one falls
    back to what JSON schema says, never to an error."""
    schema = {"components": {"schemas": {
        "Input": {"type": "object", "properties": {}},
        "Output": {"type": "object", "properties": {
            "boxes": {"type": "array", "items": {"type": "object"},
                      "x-runway": {"type": "array",
                                   "item": {"name": "box", "type": "image_bounding_box"}}},
            "pose": {"type": "array", "x-runway": {"type": "image_landmarks", "length": 2,
                                                   "labels": ["a", "b"],
                                                   "connections": [[0, 1]]}},
            "seg": {"type": "string", "format": "uri",
                    "x-runway": {"type": "segmentation", "labels": ["bg", "fg"]}},
            "broken": {"type": "string", "format": "uri", "x-runway": {"type": "nonsense"}},
        }}}}}
    out = {f.name: f for f in spec_from_openapi(schema).command().outputs}
    assert out["boxes"].type == "array" and out["boxes"].item.type == "image_bounding_box"
    assert out["pose"].type == "image_landmarks" and out["pose"].connections == [(0, 1)]
    assert out["seg"].type == "segmentation" and out["seg"].labels == ["bg", "fg"]
    assert out["broken"].type == "file" and out["broken"].raw["x-runway"] == {"type": "nonsense"}


# --------------------------------------------------------------------------- setup, URL outputs

COG_TOKEN = "tok-CogClient-setup-and-urls-7713"


def _data_uri(img: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode()


@pytest.mark.network
@pytest.mark.slow
def test_a_model_still_in_setup_is_not_ready_then_runs(cog_venv, tmp_path):
    """A real Cog server whose setup() waits for a file: while it sets up, the schema
    and a prediction (Cog answers 503 "Setup has not finished yet") are ModelNotReady
    with a hint to wait; once setup ends the same client runs."""
    import shutil

    from tests.helpers import wait_until
    from tests.servers import CogServer

    model = tmp_path / "image"
    shutil.copytree(MODELS / "image", model)
    go = tmp_path / "go"
    source = (model / "predict.py").read_text()
    (model / "predict.py").write_text(source.replace(
        "class Predictor(BasePredictor):\n",
        "class Predictor(BasePredictor):\n"
        "    def setup(self):\n"
        "        import os\n"
        "        while not os.path.exists(os.environ['RUNWAY_TEST_GO']):\n"
        "            time.sleep(0.02)\n\n", 1))
    server = CogServer(cog_venv, model, env={"RUNWAY_TEST_GO": str(go)})
    client = CogClient(server.url, token=COG_TOKEN, timeout=30)
    try:
        assert wait_until(lambda: (server.health() or {}).get("status") == "STARTING", 60), \
            server.log()
        assert client.health().state is HealthState.STARTING
        with pytest.raises(ModelNotReady) as err:
            client.spec()
        assert "starting" in err.value.message.lower() and "Wait" in err.value.hint
        img = gradient(4, 5)
        with pytest.raises(ModelNotReady) as err:
            client.predict_raw({"image": _data_uri(img)})
        assert "setup" in err.value.message and "Wait" in err.value.hint
        assert "Setup has not finished" in err.value.details  # Cog's own words, kept
        for text in (err.value.message, err.value.hint, err.value.details, repr(err.value)):
            assert COG_TOKEN not in text
        go.write_text("")
        client.wait_until_ready(60)
        np.testing.assert_array_equal(decode_png(client.run({"image": img}).outputs["output"])
                                      [..., :3], 255 - img)
    finally:
        client.close()
        server.stop()


@pytest.mark.network
@pytest.mark.slow
def test_outputs_delivered_as_urls_come_without_the_token(cog_venv):
    """A real Cog server started with --upload-url PUTs its output file to another
    origin and answers with that file's URL: the client downloads it there (the
    pixels are the model's), and never sends the server's token to that origin."""
    from tests.servers import CogServer
    from tests.servers.hostile import HostileServer

    stored: dict = {}

    def uploads(r):
        if r.command == "PUT":
            stored[r.path] = r.body
            r.json({}, 201)
        elif r.path in stored:
            r.raw(200, stored[r.path], content_type="image/png")
        else:
            r.json({"detail": "Not Found"}, 404)

    files = HostileServer()
    files.prefix("/uploads/", uploads)
    server = CogServer(cog_venv, MODELS / "image", args=("--upload-url", files.url + "/uploads/"))
    client = CogClient(server.url, token=COG_TOKEN, timeout=60)
    try:
        server.wait_settled()
        img = gradient(6, 7)
        result = client.run({"image": img})
        np.testing.assert_array_equal(decode_png(result.outputs["output"])[..., :3], 255 - img)
        puts = [r for r in files.log if r["method"] == "PUT"]
        gets = [r for r in files.log if r["method"] == "GET"]
        assert len(puts) == 1 and [g["path"] for g in gets] == [puts[0]["path"]]
        assert all("authorization" not in r["headers"] for r in files.log)
    finally:
        client.close()
        server.stop()
        files.stop()
