"""The Runway Model SDK clients against real server processes over real HTTP.

Every case a real SDK server can show runs twice (``backend``): against the real
Runway Model SDK (runway-python 0.6.1, tests/servers/runway_sdk_real: every_type.py
is the stand-in's model written for the SDK) and against the stand-in
(tests/servers/runway_sdk_server.py, which follows docs/protocols/runway-model-sdk.md,
quirks included). Both keep the same request log, so tests assert what actually
reached the server. Only the stand-in serves hosted-model endpoints (/v1: tokens,
waking, 429/502 retries, Retry-After); injected faults are test_faults.py's.
"""
from __future__ import annotations

import base64
import gzip
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from runway_addon.core.errors import (AuthError, Cancelled, ConnectionFailed, ServerError,
                                      SpecValidationError)
from runway_addon.core.protocols.base import HealthState
from runway_addon.core.protocols.detect import detect_protocol
from runway_addon.core.protocols.runway import (HostedRunwayClient, RunwayClient,
                                                field_from_runway, spec_from_meta)
from runway_addon.core.spec import (AnyField, ArrayField, BooleanField, CategoryField, Command,
                                    FileField, ImageBoundingBoxField, ImageField,
                                    ImageLandmarksField, ImagePointField, NumberField, Protocol,
                                    SegmentationField, TextField, VectorField)

from tests.helpers import wait_until
from tests.servers import RUNWAY_SDK_SERVER as SERVER, RunwayTestServer
from tests.servers.runway_sdk_real import EVERY_TYPE, HERE as SDK_MODELS, RealSdkServer, sdk_python

ALL_TYPES = {"image", "text", "number", "boolean", "category", "vector", "array", "file",
             "segmentation", "image_point", "image_bounding_box", "image_landmarks", "any"}


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("weights"))


BACKENDS = ["sdk", "stand-in"]


def start_server(backend, workdir, options, env=None):
    """A real SDK server or the stand-in, not yet waited for."""
    if backend == "sdk":
        return RealSdkServer(workdir, options=options, env=env)
    return RunwayTestServer(workdir, options=options, env=env)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(scope="module")
def server(backend, tmp_path_factory, weights_dir):
    """One shared server for tests that do not change its setup."""
    srv = start_server(backend, tmp_path_factory.mktemp("server"),
                       {"weights_dir": weights_dir}).wait_ready()
    yield srv
    srv.stop()


@pytest.fixture
def own_server(backend, tmp_path, weights_dir):
    """A fresh server per test: ``own_server(options=..., env=..., ready=...)``."""
    started = []

    def start(options=None, env=None, ready=True):
        opts = {"weights_dir": weights_dir, **(options or {})}
        srv = start_server(backend, tmp_path / f"server{len(started)}", opts, env)
        started.append(srv)
        return srv.wait_ready() if ready else srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def client(server):
    with RunwayClient(server.url, timeout=30) as c:
        yield c


def rgb_image(w=16, h=12):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 15 % 256, y * 20 % 256, (x + y) * 7 % 256], axis=2).astype(np.uint8)


def all_inputs(tmp_path):
    """A real value for every input of echo_all."""
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:5, 2:5] = 1
    mask[6:, :] = 2
    return {
        "image": rgb_image(), "text": "hey", "number": 2.5, "count": 7, "flag": True,
        "choice": "blue", "z": [0.1, -0.2, 0.3, 0.4], "words": ["a", "bc"],
        "path": str(text_file), "folder": str(tmp_path), "mask": mask, "point": [0.25, 0.75],
        "box": [0.1, 0.2, 0.6, 0.9], "pose": [[0.5, 0.5], [0.4, 0.3], [0.6, 0.3]],
        "extra": {"nested": [1, 2, {"k": "v"}], "n": None},
    }


# --------------------------------------------------------------------------- spec mapping

def server_meta(backend) -> dict:
    """What the server prints with RW_META=1: its real field descriptions."""
    env = dict(os.environ, RW_META="1")
    if backend == "sdk":
        env.pop("PYTHONPATH", None)
        cmd = [str(sdk_python()), str(SDK_MODELS / "launch.py"), str(EVERY_TYPE)]
    else:
        cmd = [sys.executable, str(SERVER)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("backend", BACKENDS)
def test_field_from_runway_maps_all_13_types(backend):
    echo = next(c for c in server_meta(backend)["commands"] if c["name"] == "echo_all")
    assert {d["type"] for d in echo["inputs"]} == ALL_TYPES
    fields = {d["name"]: field_from_runway(d) for d in echo["inputs"]}

    img = fields["image"]
    assert isinstance(img, ImageField) and img.channels == 3 and img.default_format == "JPEG"
    assert isinstance(fields["text"], TextField) and fields["text"].max_length == 10
    assert fields["text"].default == "hi"
    num = fields["number"]
    assert isinstance(num, NumberField) and (num.min, num.max, num.step, num.default) == \
        (0, 10, 0.5, 1)
    # An integer-only step stays a NumberField; with no default the server reports its min.
    assert isinstance(fields["count"], NumberField) and fields["count"].default == 2
    assert isinstance(fields["flag"], BooleanField) and fields["flag"].default is False
    cat = fields["choice"]
    assert isinstance(cat, CategoryField) and cat.choices == ["red", "green", "blue"]
    assert cat.default == "green"
    vec = fields["z"]
    assert isinstance(vec, VectorField) and vec.length == 4 and vec.sampling_mean == 0.5
    # The SDK states no default (null); a run left without one sends the sampling mean.
    assert vec.sampling_std == 0.1 and vec.default is None
    arr = fields["words"]
    assert isinstance(arr, ArrayField) and isinstance(arr.item, TextField)
    assert (arr.min_length, arr.max_length, arr.item.name) == (1, 3, "text_array_item")
    assert isinstance(fields["path"], FileField) and fields["path"].extension == ".txt"
    assert fields["path"].is_directory is False
    assert isinstance(fields["folder"], FileField) and fields["folder"].is_directory is True
    seg = fields["mask"]
    assert isinstance(seg, SegmentationField) and seg.labels == ["background", "person", "sky"]
    assert seg.label_to_id == {"background": 0, "person": 1, "sky": 2}
    assert seg.label_to_color["person"] == (255, 0, 0) and seg.default_label == "background"
    assert isinstance(fields["point"], ImagePointField)
    assert isinstance(fields["box"], ImageBoundingBoxField)
    pose = fields["pose"]
    assert isinstance(pose, ImageLandmarksField) and pose.length == 3
    assert pose.connections == [(0, 1), (0, 2)]  # label names became indices
    assert isinstance(fields["extra"], AnyField)
    assert all(f.raw is not None for f in fields.values())


def test_field_from_runway_edge_cases():
    # SDK defaults when keys are missing.
    num = field_from_runway({"name": "n", "type": "number", "max": 5})
    assert num.default == 5
    assert field_from_runway({"name": "n", "type": "number"}).default == 0
    vec = field_from_runway({"name": "v", "type": "vector", "default": [1, 2, 3]})
    assert isinstance(vec, VectorField) and vec.length == 3
    img = field_from_runway({"name": "i", "type": "image", "channels": 4, "width": 64,
                             "defaultOutputFormat": "EXR"})
    assert img.channels == 4 and img.width == 64 and img.default_format is None
    # Unknown and malformed descriptions are kept, never dropped.
    odd = {"name": "mesh", "type": "mesh3d", "vertices": 12}
    f = field_from_runway(odd)
    assert isinstance(f, AnyField) and f.name == "mesh" and f.raw == odd
    broken = field_from_runway({"name": "c", "type": "category"})  # no oneOf
    assert isinstance(broken, AnyField) and broken.raw["type"] == "category"
    nested = field_from_runway({"name": "a", "type": "array",
                                "itemType": {"name": "x", "type": "weird"}})
    assert isinstance(nested, ArrayField) and isinstance(nested.item, AnyField)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "name", "description", "default", "oneOf",
                                        "length", "itemType", "channels", "labels",
                                        "connections", "labelToId", "min", "isDirectory"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=5),
                                 st.lists(st.integers(), max_size=3),
                                 st.sampled_from(sorted(ALL_TYPES)))))
def test_field_from_runway_never_raises(d):
    f = field_from_runway(d)
    assert f.name


def test_spec_from_meta_over_http(client):
    assert detect_protocol(client.url) is Protocol.RUNWAY
    spec = client.spec()
    assert spec.protocol == Protocol.RUNWAY and spec.version == "0.6.1" and spec.gpu is False
    assert [c.name for c in spec.commands] == ["echo_all", "invert", "fail", "slow", "progress",
                                               "setup_info"]
    assert {o.name: o.type for o in spec.options} == {
        "setup_seconds": "number", "fail_setup": "boolean", "greeting": "text",
        "quality": "category", "weights_dir": "file"}
    assert spec.options[-1].is_directory is True
    meta = requests.get(client.url + "/meta", timeout=5).json()
    assert spec_from_meta(meta) == spec


# --------------------------------------------------------------------------- health and setup

@pytest.mark.network
def test_health_starting_while_port_closed_then_ready(own_server):
    srv = own_server(options={"setup_seconds": 1.5}, env={"GPU": "1"}, ready=False)
    client = RunwayClient(srv.url, health_timeout=1)
    first = client.health()
    assert first.state == HealthState.STARTING and "port closed" in first.detail
    with pytest.raises(ConnectionFailed) as err:  # a run now is refused, with a hint
        client.spec()
    assert "setup" in err.value.hint
    assert wait_until(lambda: client.health().state == HealthState.READY, 15)
    assert client.spec().gpu is True


@pytest.mark.network
def test_health_starting_while_post_setup_runs(own_server, weights_dir):
    srv = own_server()
    client = RunwayClient(srv.url, health_timeout=0.3, timeout=30)
    client.spec()
    t = threading.Thread(target=client.setup,
                         args=({"weights_dir": weights_dir, "setup_seconds": 3},))
    t.start()
    # The server answers nothing while setup runs: health reads STARTING until it ends.
    assert wait_until(lambda: client.health().state == HealthState.STARTING, 10, step=0.05)
    t.join()
    assert client.health().state == HealthState.READY


@pytest.mark.network
@pytest.mark.parametrize("options, said", [
    ({"fail_setup": True}, "Error during setup: RuntimeError('setup was asked to fail')"),
    ({"weights_dir": "/nonexistent/weights"},
     "Invalid argument: weights_dir. file path provided does not exist"),
])
def test_failed_first_setup_exits_with_1(backend, tmp_path, options, said, weights_dir):
    srv = start_server(backend, tmp_path, {"weights_dir": weights_dir, **options})
    assert srv.proc.wait(30) == 1
    assert said in srv.stderr()
    srv.stop()
    # The port never opened.
    assert RunwayClient(srv.url, health_timeout=0.5).health().state == HealthState.STARTING


@pytest.mark.network
def test_setup_always_sends_every_option(own_server, weights_dir):
    srv = own_server()
    client = RunwayClient(srv.url, timeout=30)
    client.spec()
    client.setup({"weights_dir": weights_dir, "greeting": "yo", "quality": "final"})
    got = client.run({}, "setup_info").outputs["options"]
    assert got["greeting"] == "yo" and got["quality"] == "final"
    # Left-out keys are sent with their defaults, so the server cannot silently keep or
    # reset anything the client does not know about.
    client.setup({"weights_dir": weights_dir})
    assert client.run({}, "setup_info").outputs["options"]["greeting"] == "hello"
    setups = [r for r in srv.requests() if r["path"] == "/setup"]
    assert all(r["body_keys"] == sorted(["setup_seconds", "fail_setup", "greeting", "quality",
                                         "weights_dir"]) for r in setups)
    assert not [r for r in srv.requests() if r["method"] == "GET" and r["path"] == "/setup"]


@pytest.mark.network
def test_setup_errors(own_server, weights_dir):
    srv = own_server(options={"greeting": "first"})
    client = RunwayClient(srv.url, timeout=30)
    client.spec()
    before = len(srv.requests())
    with pytest.raises(SpecValidationError) as err:  # a file option without value
        client.setup({})
    assert err.value.issues[0].field == "weights_dir" and len(srv.requests()) == before
    with pytest.raises(ServerError) as err:  # a 400 from the server names the option
        client.setup({"weights_dir": os.path.join(weights_dir, "nowhere")})
    assert err.value.status == 400 and err.value.field == "weights_dir"
    with pytest.raises(ServerError) as err:  # 500 Error during setup, with the traceback
        client.setup({"weights_dir": weights_dir, "fail_setup": True, "greeting": "second"})
    assert err.value.status == 500 and err.value.message.startswith("Error during setup")
    assert "_setup" in err.value.details and "RuntimeError" in err.value.message
    # The quirk: status stays STARTING while commands still run on the old setup.
    assert client.health().state == HealthState.STARTING
    assert client.run({}, "setup_info").outputs["options"]["greeting"] == "first"
    with pytest.raises(SpecValidationError):  # client-side: wrong type, nothing sent
        client.setup({"weights_dir": weights_dir, "quality": "ultra"})
    # Why the client refuses a file option left out: the server itself takes it, and the
    # model's setup gets None (the SDK's file default).
    raw = requests.post(srv.url + "/setup", json={}, timeout=5)
    assert raw.status_code == 200 and raw.json() == {"success": True}
    assert client.run({}, "setup_info").outputs["options"]["weights_dir"] is None


# --------------------------------------------------------------------------- runs

@pytest.mark.network
def test_run_every_type_round_trip(client, server, tmp_path):
    inputs = all_inputs(tmp_path)
    result = client.run(inputs, "echo_all", output_format="PNG")
    out = result.outputs
    np.testing.assert_array_equal(out["image"], inputs["image"])  # PNG: exact pixels
    assert out["rgba"].shape == (12, 16, 4) and (out["rgba"][..., 3] == 255).all()
    np.testing.assert_array_equal(out["rgba"][..., :3], inputs["image"])
    assert out["text"] == "hey" and out["number"] == 2.5 and out["count"] == 7
    assert out["flag"] is True and out["choice"] == "blue"
    assert out["z"] == pytest.approx([0.1, -0.2, 0.3, 0.4]) and out["words"] == ["a", "bc"]
    assert out["path"] == inputs["path"] and out["folder"] == inputs["folder"]
    # The server answers a segmentation as an RGB colour map; it comes back as label ids.
    np.testing.assert_array_equal(out["mask"], inputs["mask"])
    assert out["point"] == [0.25, 0.75] and out["box"] == pytest.approx(inputs["box"])
    assert out["pose"] == inputs["pose"] and out["extra"] == inputs["extra"]
    assert result.run_id and result.metrics["wall_time"] > 0
    last = server.requests()[-1]
    assert last["path"] == "/echo_all" and last["status"] == 200
    assert last["request_headers"]["x-runway-output-format"] == "image=PNG; rgba=PNG"
    with pytest.raises(SpecValidationError, match="rgba"):  # JPEG has no alpha: not sent
        client.run(inputs, "echo_all", output_format="JPEG")
    assert server.requests()[-1] == last


@pytest.mark.network
def test_run_fills_defaults_client_side(client, server, tmp_path):
    # The rest have SDK defaults (count: its min; z: its sampling mean; ...).
    inputs = {k: all_inputs(tmp_path)[k]
              for k in ("image", "path", "folder", "mask", "words", "point", "box", "pose")}
    client.spec()
    before = len(server.requests())
    with pytest.raises(SpecValidationError) as err:  # "any" has no default: the real SDK
        client.run(inputs, "echo_all")               # answers 500 "Missing field" to it
    assert [i.field for i in err.value.issues] == ["extra"] and len(server.requests()) == before
    out = client.run({**inputs, "extra": [1]}, "echo_all").outputs
    assert out["text"] == "hi" and out["count"] == 2 and out["choice"] == "green"
    assert out["z"] == [0.5] * 4  # the SDK states no default: its sampling mean
    # Every input went on the wire, defaults included.
    assert len(server.requests()[-1]["body_keys"]) == 15 and out["extra"] == [1]


@pytest.mark.network
def test_invert_pixels_and_output_formats(client, server):
    y, x = np.mgrid[0:64, 0:64]
    img = np.stack([x * 3, y * 3, x + y], axis=2).astype(np.uint8)  # smooth: JPEG copes
    exact = client.run({"image": img}, "invert", output_format={"image": "PNG"})
    np.testing.assert_array_equal(exact.outputs["image"], 255 - img)
    # Without the header the field's default (JPEG for 3 channels) is used: lossy.
    lossy = client.run({"image": img}, "invert").outputs["image"]
    assert lossy.shape == img.shape and lossy.dtype == np.uint8
    assert np.abs(lossy.astype(int) - (255 - img)).mean() < 6
    assert not np.array_equal(lossy, 255 - img)
    logged = server.requests()[-2:]
    assert logged[0]["request_headers"]["x-runway-output-format"] == "image=PNG"
    assert "x-runway-output-format" not in logged[1]["request_headers"]
    with pytest.raises(SpecValidationError):  # EXR fails offline on the server: refused here
        client.run({"image": img}, "invert", output_format="EXR")


@pytest.mark.network
def test_generator_command_gives_its_last_value(client):
    assert client.run({"steps": 4}, "progress").outputs["text"] == "step 4 of 4"


@pytest.mark.network
def test_gzip_both_ways(server):
    img = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    with RunwayClient(server.url, gzip_min_bytes=0, timeout=30) as client:
        out = client.run({"image": img}, "invert", output_format="PNG").outputs["image"]
    np.testing.assert_array_equal(out, 255 - img)
    last = server.requests()[-1]
    assert last["status"] == 200
    assert last["request_headers"]["content-encoding"] == "gzip"
    assert last["request_headers"]["content-type"] == "application/json"
    assert last["response_gzip"] is True


@pytest.mark.network
def test_server_gzip_quirks(server):
    """The server inflates a body only with the exact header pair, and gzips big answers."""
    body = gzip.compress(json.dumps({"steps": 2}).encode())
    ok = requests.post(server.url + "/progress", data=body, timeout=5, headers={
        "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert ok.status_code == 200 and ok.json() == {"text": "step 2 of 2"}
    refused = requests.post(server.url + "/progress", data=body, timeout=5, headers={
        "Content-Encoding": "gzip", "Content-Type": "application/json; charset=utf-8"})
    assert refused.status_code == 400
    # JSON is parsed whatever the Content-Type.
    plain = requests.post(server.url + "/progress", data='{"steps": 1}', timeout=5,
                          headers={"Content-Type": "text/plain"})
    assert plain.json() == {"text": "step 1 of 1"}
    small = requests.get(server.url + "/healthcheck", timeout=5)
    big = requests.get(server.url + "/meta", timeout=5)
    assert "Content-Encoding" not in small.headers and big.headers["Content-Encoding"] == "gzip"
    assert big.headers["Access-Control-Allow-Origin"] == "*"


# --------------------------------------------------------------------------- errors

@pytest.mark.network
def test_error_400_names_the_field(client, tmp_path):
    inputs = all_inputs(tmp_path)
    inputs["path"] = str(tmp_path / "missing.txt")  # exists only in the server's eyes
    with pytest.raises(ServerError) as err:
        client.run(inputs, "echo_all")
    assert err.value.status == 400 and err.value.field == "path"
    assert "does not exist" in err.value.message


@pytest.mark.network
def test_error_404_unknown_command(client):
    client.spec().commands.append(Command(name="gone", inputs=[TextField(name="t")]))
    with pytest.raises(ServerError) as err:  # a stale spec: the server no longer has it
        client.run({"t": "x"}, "gone")
    assert err.value.status == 404 and "gone" in err.value.message
    assert "invert" in err.value.hint
    with pytest.raises(KeyError):  # unknown to the spec: refused before sending
        client.run({}, "nothing")


@pytest.mark.network
def test_error_500_inference_carries_traceback(client):
    with pytest.raises(ServerError) as err:
        client.run({"message": "kaput"}, "fail")
    e = err.value
    assert e.status == 500 and e.message.startswith("Error during inference")
    assert "kaput" in e.message and "_fail" in e.details and "ValueError" in e.message


@pytest.mark.network
def test_bare_500_hints_at_image_input(client, server):
    # Client-side, a missing image is caught before sending...
    with pytest.raises(SpecValidationError) as err:
        client.run({}, "invert")
    assert err.value.issues[0].field == "image"
    # ...but with a spec that lost the field (e.g. stale), the server crashes: bare 500.
    client.spec().command("invert").inputs.clear()
    with pytest.raises(ServerError) as err:
        client.run({}, "invert")
    assert err.value.status == 500 and "image" in err.value.hint
    assert server.requests()[-1]["error"] == "Internal server error."
    bad = requests.post(server.url + "/invert", json={"image": "data:image/png;base64,@@@@"},
                        timeout=5)
    assert bad.status_code == 500 and bad.json() == {"error": "Internal server error."}


@pytest.mark.network
def test_405_and_get_setup_quirks(client, server):
    r = client._send("PUT", "invert")
    with pytest.raises(ServerError) as err:
        client._check(r)
    assert err.value.status == 405
    assert requests.post(server.url + "/", json={}, timeout=5).status_code == 405
    assert requests.get(server.url + "/setup", timeout=5).status_code == 500
    spec = requests.get(server.url + "/invert", timeout=5).json()
    assert spec["name"] == "invert" and spec["inputs"][0]["type"] == "image"
    assert requests.get(server.url + "/nope", timeout=5).json()["error"] == \
        "Unknown command: nope."


def test_non_json_answers_are_reported():
    class Html(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>not a model</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ServerError) as err:
            RunwayClient(f"http://127.0.0.1:{httpd.server_address[1]}").spec()
        assert "not JSON" in err.value.message and "<html>" in err.value.details
        health = RunwayClient(f"http://127.0.0.1:{httpd.server_address[1]}").health()
        assert health.state == HealthState.UNHEALTHY
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.network
def test_non_json_body_gives_400(server):
    r = requests.post(server.url + "/invert", data=b"{not json", timeout=5)
    assert r.status_code == 400


@pytest.mark.network
def test_refused_connection():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    client = RunwayClient(f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(ConnectionFailed) as err:
        client.spec()
    assert "refused" in err.value.message and err.value.hint


# --------------------------------------------------------------------------- client-side limits

@pytest.mark.network
@pytest.mark.parametrize("change, field", [
    ({"text": "x" * 50}, "text"),          # maxLength 10
    ({"number": 11}, "number"),            # max 10
    ({"z": [0.1, 0.2]}, "z"),              # length 4
    ({"words": ["a", "b", "c", "d"]}, "words"),  # maxLength 3
    ({"choice": "purple"}, "choice"),
    ({"flag": "yes"}, "flag"),
])
def test_client_validation_catches_what_the_server_does_not(client, server, tmp_path, change,
                                                            field):
    client.spec()
    inputs = {**all_inputs(tmp_path), **change}
    before = len(server.requests())
    with pytest.raises(SpecValidationError) as err:
        client.run(inputs, "echo_all")
    assert field in {i.field.split("[")[0] for i in err.value.issues}
    assert len(server.requests()) == before  # nothing was sent


@pytest.mark.network
def test_image_size_checked_client_side_not_by_server(client, server):
    client.spec()
    before = len(server.requests())
    with pytest.raises(SpecValidationError):  # invert declares 64x64
        client.run({"image": rgb_image(20, 10)}, "invert")
    assert len(server.requests()) == before
    # The server itself takes any size and any text length (limits not enforced).
    buf = io.BytesIO()
    Image.fromarray(rgb_image(20, 10)).save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    assert requests.post(server.url + "/invert", json={"image": uri}, timeout=5).ok
    echo = requests.post(server.url + "/fail", json={"message": "y" * 5000}, timeout=5)
    assert echo.status_code == 500 and "y" * 100 in echo.json()["error"]


# --------------------------------------------------------------------------- cancel

class Relay:
    """A loopback TCP relay to ``port`` that calls ``on_sent()`` once a whole request
    to ``path`` has been passed on to the server: a cancel then comes with the run
    surely sent, never before it (no timer racing the request)."""

    def __init__(self, port: int, path: bytes, on_sent):
        self.port, self.path, self.on_sent = port, path, on_sent
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._socks = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.port))
            self._socks += [conn, upstream]
            threading.Thread(target=self._pump, args=(conn, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, conn, False),
                             daemon=True).start()

    def _pump(self, src, dst, requests_out):
        buf = b""
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                buf += data if requests_out else b""
                while (end := buf.find(b"\r\n\r\n")) >= 0:  # one request after another
                    head = buf[:end].decode("latin-1")
                    length = int(re.search(r"(?im)^content-length:\s*(\d+)", head)[1]
                                 if "content-length:" in head.lower() else 0)
                    if len(buf) < end + 4 + length:
                        break
                    buf = buf[end + 4 + length:]
                    if head.split(" ")[1].encode() == self.path:
                        self.on_sent()
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        for sock in self._socks:
            sock.close()


def slow_answers(server, since):
    return [r for r in server.requests()[since:] if r["path"] == "/slow"]


@pytest.mark.network
def test_cancel_event_abandons_a_slow_run(server):
    cancel = threading.Event()
    relay = Relay(server.port, b"/slow", cancel.set)
    try:
        client = RunwayClient(relay.url, timeout=30)
        client.spec()
        before = len(server.requests())
        with pytest.raises(Cancelled) as err:
            client.run({"seconds": 5}, "slow", cancel_event=cancel)
        # The client let go while the server was still working (it logs before it
        # answers): a cancel that waited for the answer would find it logged.
        assert slow_answers(server, before) == []
        assert "cannot stop" in err.value.hint
    finally:
        relay.close()


@pytest.mark.network
def test_cancel_by_run_id(server):
    relay = Relay(server.port, b"/slow", lambda: client.cancel("run-42"))
    try:
        client = RunwayClient(relay.url, timeout=30)
        client.spec()
        before = len(server.requests())
        with pytest.raises(Cancelled):
            client.run({"seconds": 5}, "slow", run_id="run-42")
        assert slow_answers(server, before) == []
        # The client stays usable (the server answers once the abandoned run ends).
        assert client.run({"seconds": 0}, "slow").outputs["text"] == "done"
    finally:
        relay.close()


# --------------------------------------------------------------------------- hosted models

@pytest.fixture
def hosted(tmp_path, weights_dir):
    started = []

    def start(*args):
        srv = RunwayTestServer(tmp_path / f"hosted{len(started)}", args=("--hosted", *args),
                               options={"weights_dir": weights_dir}).wait_ready()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def queries(srv):
    return [r for r in srv.requests() if r["path"] == "/v1/query"]


@pytest.mark.network
def test_hosted_token_refused(hosted):
    srv = hosted("--token", "s3cret")
    for token in (None, "wrong"):
        client = HostedRunwayClient(srv.url + "/v1", token=token)
        with pytest.raises(AuthError) as err:
            client.spec()
        assert err.value.status == 401 and "token" in err.value.hint
        assert client.health().state == HealthState.UNHEALTHY
    good = HostedRunwayClient(srv.url + "/v1", token="s3cret")
    spec = good.spec()
    assert spec.protocol == Protocol.RUNWAY_HOSTED and spec.command().name == "invert"
    assert "s3cret" not in repr(good) and "s3cret" not in str(vars(good.session))


@pytest.mark.network
def test_hosted_wakes_up(hosted):
    srv = hosted("--wake-seconds", "1")
    client = HostedRunwayClient(srv.url, timeout=30)  # /v1 is added
    assert client.url.endswith("/v1")
    assert client.status() == "starting"
    assert client.health().state == HealthState.STARTING
    client.wait_until_ready(10, first_delay=0.1)
    assert client.health().state == HealthState.READY
    img = rgb_image(64, 64)
    out = client.run({"image": img}).outputs["image"]
    assert out.shape == img.shape  # JPEG: the hosted route has no format header


@pytest.mark.network
def test_hosted_run_waits_for_a_sleeping_model(hosted):
    srv = hosted("--wake-seconds", "0.5")
    client = HostedRunwayClient(srv.url + "/v1", timeout=30)
    client.spec()
    out = client.run({"image": rgb_image(64, 64)})
    assert out.outputs["image"].shape == (64, 64, 3)
    assert sum(r["path"].rstrip("/") == "/v1" for r in srv.requests()) >= 1


@pytest.mark.network
def test_hosted_retries_429_and_502_then_succeeds(hosted):
    srv = hosted("--inject", "429,502", "--retry-after", "0")
    client = HostedRunwayClient(srv.url + "/v1", backoff=0.01, timeout=30)
    out = client.run({"image": rgb_image(64, 64)})
    assert out.outputs["image"].shape == (64, 64, 3)
    assert [r["status"] for r in queries(srv)] == [429, 502, 200]


@pytest.mark.network
def test_hosted_honours_retry_after(hosted):
    srv = hosted("--inject", "429", "--retry-after", "1")
    client = HostedRunwayClient(srv.url + "/v1", backoff=0.01, timeout=30)
    client.spec()
    started = time.monotonic()
    client.run({"image": rgb_image(64, 64)})
    assert time.monotonic() - started >= 1.0
    assert [r["status"] for r in queries(srv)] == [429, 200]


@pytest.mark.network
def test_hosted_retries_are_bounded(hosted):
    srv = hosted("--inject", "429,502,429,429,429")
    client = HostedRunwayClient(srv.url + "/v1", backoff=0.01, max_attempts=3, timeout=30)
    with pytest.raises(ServerError) as err:
        client.run({"image": rgb_image(64, 64)})
    assert err.value.status == 429 and "3 attempts" in err.value.message and err.value.hint
    assert len(queries(srv)) == 3


@pytest.mark.network
def test_hosted_wrong_url(hosted):
    srv = hosted()
    client = HostedRunwayClient(srv.url + "/models/nope/v1")
    with pytest.raises(ServerError) as err:
        client.spec()
    assert err.value.status == 404 and "wrong URL or model not active" in err.value.message
    with pytest.raises(SpecValidationError):
        client.setup({"x": 1})


# --------------------------------------------------------------------------- hosted: no wake-up

@pytest.mark.network
def test_hosted_wake_up_longer_than_the_wait(hosted):
    """A hosted model asleep for longer than the caller waits: ModelNotReady saying
    so and what to do, after the polls woke it (each with the token)."""
    from runway_addon.core.errors import ModelNotReady

    srv = hosted("--token", "s3cret-wake", "--wake-seconds", "600")
    client = HostedRunwayClient(srv.url, token="s3cret-wake", timeout=30)
    with pytest.raises(ModelNotReady) as err:
        client.wait_until_ready(0.5, first_delay=0.05)
    assert "did not wake up" in err.value.message and err.value.hint
    assert "s3cret-wake" not in str(err.value) + err.value.details
    polls = [r for r in srv.requests() if r["path"].rstrip("/") == "/v1"]
    assert polls and all(r["status"] == 200 for r in polls)
    assert client.health().state == HealthState.STARTING


@pytest.mark.network
def test_hosted_wake_up_cancelled_and_a_session_stopped_while_it_wakes(hosted):
    import threading

    from runway_addon.core.runtimes.base import SessionState, StartAborted
    from runway_addon.core.runtimes.remote import RemoteSession

    srv = hosted("--wake-seconds", "600")
    client = HostedRunwayClient(srv.url, timeout=30)
    cancel = threading.Event()
    cancel.set()  # already cancelled: the first wait ends it
    with pytest.raises(Cancelled):
        client.wait_until_ready(60, cancel_event=cancel, first_delay=0.05)

    waking, outcome = threading.Event(), []
    session = RemoteSession(srv.url + "/v1", protocol="runway-hosted", timeout=30,
                            on_event=lambda ev: "waiting until ready" in ev.message
                            and waking.set())

    def start():
        try:
            session.start(600)
        except Exception as exc:  # noqa: BLE001 (checked below)
            outcome.append(exc)

    worker = threading.Thread(target=start)
    worker.start()
    assert waking.wait(30)
    session.stop()
    worker.join(30)
    assert not worker.is_alive() and session.state is SessionState.STOPPED
    assert len(outcome) == 1 and isinstance(outcome[0], StartAborted), outcome
