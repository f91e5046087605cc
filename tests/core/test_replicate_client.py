"""ReplicateClient against tests/servers/replicate_server.py, a local stand-in written
from Replicate's public API documentation (the live service cannot be reached here)."""
from __future__ import annotations

import io
import logging
import threading
import time

import numpy as np
import pytest
from PIL import Image

from runway_addon.core.client import connect
from runway_addon.core.codecs import FileValue
from runway_addon.core.errors import (AuthError, Cancelled, RunwayError, ServerError,
                                      SpecValidationError)
from runway_addon.core.protocols.base import HealthState
from runway_addon.core.protocols.replicate import (ModelRef, ReplicateClient,
                                                   parse_model_ref)
from runway_addon.core.spec import FileField, ImageField, NumberField, Protocol
from tests.helpers import wait_until
from tests.servers import REPLICATE_TOKEN as TOKEN


@pytest.fixture
def make_client(stand_in):
    made = []

    def make(ref: str = "test/invert", **kw) -> ReplicateClient:
        kw.setdefault("token", TOKEN)
        client = ReplicateClient(ref, base_url=stand_in.url, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def pixels(value: FileValue) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(value.read_bytes())).convert("RGB"))


def creates(log: list[dict]) -> list[dict]:
    return [e for e in log if e["method"] == "POST" and e["path"].endswith("predictions")]


# --------------------------------------------------------------------------- no server needed

def test_parse_model_ref():
    assert parse_model_ref("acme/upscale") == ModelRef("acme", "upscale")
    assert parse_model_ref(" acme/up-scale.v2:abc123 ") == ModelRef("acme", "up-scale.v2",
                                                                     "abc123")
    assert parse_model_ref("deployment:acme/prod") == ModelRef("acme", "prod", deployment=True)
    assert str(parse_model_ref("deployment:acme/prod")) == "deployment:acme/prod"
    for bad in ("", "acme", "acme/", "/x", "a/b/c", "deployment:a/b:v1", "https://x/y"):
        with pytest.raises(RunwayError):
            parse_model_ref(bad)


def test_https_only_except_loopback():
    with pytest.raises(RunwayError, match="not https"):
        ReplicateClient("a/b", token=TOKEN, base_url="http://api.example.com")
    ReplicateClient("a/b", token=TOKEN, base_url="http://127.0.0.1:9").close()
    # An https API never makes the client download plain http, loopback included.
    remote = ReplicateClient("a/b", token=TOKEN)
    for url in ("http://127.0.0.1:1/out.png", "http://example.com/out.png", "ftp://x/y"):
        with pytest.raises(ServerError, match="not https"):
            remote._fetch(url)
    # A loopback test API downloads loopback http only.
    local = ReplicateClient("a/b", token=TOKEN, base_url="http://127.0.0.1:9")
    with pytest.raises(ServerError, match="not https"):
        local._fetch("http://example.com/out.png")


def test_connect_builds_a_replicate_client():
    client = connect("acme/model:v1", protocol="replicate", token=TOKEN,
                     base_url="http://127.0.0.1:9", wait=5)
    assert isinstance(client, ReplicateClient)
    assert client.ref == ModelRef("acme", "model", "v1") and client.wait == 5
    with pytest.raises(ValueError):
        connect("acme/model", protocol="replicate", token=TOKEN, shared_dir="/tmp")


def test_no_token_sends_nothing():
    client = ReplicateClient("a/b", token="  ", base_url="http://127.0.0.1:9")
    with pytest.raises(AuthError, match="No Replicate API token") as err:
        client.spec()
    assert "REPLICATE_API_TOKEN" in str(err.value)
    assert client.health().state is HealthState.UNHEALTHY


# --------------------------------------------------------------------------- over HTTP

network = pytest.mark.network


@network
def test_spec_and_model_card_from_the_model_endpoint(stand_in, make_client):
    mark = stand_in.mark()
    client = make_client()
    spec = client.spec()
    assert spec.protocol is Protocol.REPLICATE
    image, delay = spec.command().inputs
    assert isinstance(image, ImageField) and image.required and image.accept == "image/*"
    assert isinstance(delay, NumberField) and (delay.min, delay.max) == (0.0, 5.0)
    assert isinstance(spec.command().outputs[0], FileField)
    info = client.model_info()
    assert info["description"] == "Inverts the colours of an image."
    assert info["run_count"] >= 1234 and info["license_url"].startswith("https://")
    assert info["github_url"] and info["paper_url"] and info["cover_image_url"]
    assert info["version"] == spec.version and len(spec.version) == 64
    log = stand_in.requests(mark)
    assert [(e["method"], e["path"], e["auth"]) for e in log] == [
        ("GET", "/v1/models/test/invert", "valid")]
    assert client.health().state is HealthState.READY


@network
def test_run_finishes_within_prefer_wait(stand_in, make_client):
    client = make_client(wait=10)
    img = noise(24, 32)
    mark = stand_in.mark()
    result = client.run({"image": img})
    np.testing.assert_array_equal(pixels(result.outputs["output"]), 255 - img)
    assert result.metrics["predict_time"] > 0
    assert "inverting a 32x24 image" in result.logs
    log = stand_in.requests(mark)
    (create,) = creates(log)
    assert create["path"] == "/v1/models/test/invert/predictions"  # unpinned: official route
    assert create["prefer"] == "wait=10" and create["status"] == 201
    assert create["body"]["input"]["image"].startswith("data:image/png;base64,")
    assert not [e for e in log if e["path"].startswith(("/v1/predictions/", "/v1/files"))]
    # The output came from the delivery origin, without the token.
    (download,) = [e for e in log if e["origin"] == "delivery"]
    assert download["path"].endswith(f"/{result.run_id}/inverted.png")
    assert download["auth"] == "absent" and download["status"] == 200


@network
def test_run_that_needs_polling(stand_in, make_client):
    client = make_client(wait=1)
    img = noise(16, 16, seed=1)
    mark = stand_in.mark()
    started = time.monotonic()
    result = client.run({"image": img, "delay": 2.0})
    assert time.monotonic() - started >= 2.0
    np.testing.assert_array_equal(pixels(result.outputs["output"]), 255 - img)
    assert result.metrics["predict_time"] >= 2.0
    log = stand_in.requests(mark)
    assert creates(log)[0]["prefer"] == "wait=1"
    polls = [e for e in log if e["method"] == "GET" and e["path"] ==
             f"/v1/predictions/{result.run_id}"]
    assert 1 <= len(polls) <= 4  # 0.5 s apart over the second left after the 1 s hold
    gaps = [b["time"] - a["time"] for a, b in zip(polls, polls[1:])]
    assert all(g >= 0.45 for g in gaps)
    assert all(e["auth"] == "valid" for e in polls)


@network
def test_large_file_goes_through_the_files_api(stand_in, make_client):
    client = make_client()
    img = noise(400, 400, seed=2)  # about 480 KB as PNG: over the 256 KB limit
    mark = stand_in.mark()
    result = client.run({"image": img})
    np.testing.assert_array_equal(pixels(result.outputs["output"]), 255 - img)
    log = stand_in.requests(mark)
    (upload,) = [e for e in log if e["path"] == "/v1/files"]
    assert upload["method"] == "POST" and upload["auth"] == "valid"
    assert upload["body"]["content"]["size"] > 256 * 1024
    assert upload["body"]["content"]["content_type"] == "image/png"
    files = stand_in.files()
    (file_id,) = [fid for fid, f in files.items() if f["size"] == upload["body"]["content"]["size"]]
    sent = creates(log)[0]["body"]["input"]["image"]
    assert sent == files[file_id]["urls"]["get"] == f"{stand_in.url}/v1/files/{file_id}"
    assert stand_in.predictions()[result.run_id]["_files_used"] == [file_id]


@network
def test_pinned_version_and_deployment_routes(stand_in, make_client):
    version = make_client().spec().version
    img = noise(8, 8, seed=3)
    mark = stand_in.mark()
    pinned = make_client(f"test/invert:{version}")
    assert pinned.spec().version == version
    np.testing.assert_array_equal(pixels(pinned.run({"image": img}).outputs["output"]), 255 - img)
    deployed = make_client("deployment:test/invert-deploy")
    assert deployed.spec().version == version
    np.testing.assert_array_equal(pixels(deployed.run({"image": img}).outputs["output"]),
                                  255 - img)
    log = stand_in.requests(mark)
    paths = [e["path"] for e in log if e["origin"] == "api"]
    assert f"/v1/models/test/invert/versions/{version}" in paths
    assert "/v1/deployments/test/invert-deploy" in paths
    first, second = creates(log)
    assert first["path"] == "/v1/predictions" and first["body"]["version"] == version
    assert second["path"] == "/v1/deployments/test/invert-deploy/predictions"


@network
def test_failed_prediction_raises_with_error_and_logs(make_client):
    client = make_client("test/fails")
    with pytest.raises(ServerError) as err:
        client.run({"prompt": "boom"})
    assert "cannot handle prompt 'boom'" in err.value.message
    assert "about to fail on 'boom'" in err.value.details
    assert "Traceback" in err.value.details
    usage = client.tracker.usage  # failed predictions are billed too
    assert usage.runs == 1 and usage.predict_time > 0


@network
def test_validation_before_sending_and_422_from_the_server(stand_in, make_client):
    client = make_client()
    mark = stand_in.mark()
    with pytest.raises(SpecValidationError, match="image"):
        client.run({"delay": 1.0})
    with pytest.raises(SpecValidationError, match="delay"):
        client.run({"image": noise(4, 4), "delay": 9.0})
    assert not creates(stand_in.requests(mark))
    with pytest.raises(ServerError) as err:  # the raw path skips client-side checks
        client.predict_raw({"image": "data:image/png;base64,AAAA", "delay": 9.0})
    assert err.value.status == 422 and err.value.field == "delay"


def cancelled_once(client, inputs: dict, ready) -> Cancelled:
    """``client.run(inputs)`` on a thread, its cancel event set once ``ready()`` holds
    (a state of the stand-in, never a timer); the Cancelled it must raise."""
    cancel, got = threading.Event(), {}

    def work():
        try:
            got["result"] = client.run(inputs, cancel_event=cancel)
        except Exception as exc:  # noqa: BLE001 (checked below)
            got["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    assert wait_until(ready, 15, step=0.05)
    cancel.set()
    worker.join(30)
    assert not worker.is_alive() and isinstance(got.get("error"), Cancelled), got
    return got["error"]


@network
def test_cancel_event_cancels_on_the_server(stand_in, make_client):
    client = make_client("test/slow", wait=1)
    mark = stand_in.mark()
    # Cancelled while polling: the held create has answered and a poll went out.
    cancelled_once(client, {"seconds": 30.0}, lambda: any(
        e["method"] == "GET" and e["path"].startswith("/v1/predictions/")
        for e in stand_in.requests(mark)))
    (pid,) = [p for p, rec in stand_in.predictions().items()
              if rec["model"] == "test/slow" and rec["input"] == {"seconds": 30.0}]
    prediction = stand_in.predictions()[pid]  # cancelled, not run to its 30 s end
    assert prediction["_cancel_requested"] and prediction["status"] == "canceled"
    assert any(e["path"] == f"/v1/predictions/{pid}/cancel" for e in stand_in.requests())
    assert client.tracker.usage.runs == 0  # cancelled before it finished: nothing seen billed


@network
def test_cancel_while_the_create_request_is_held(stand_in, make_client):
    """The id is unknown until the held create answers: run() returns at once and
    the prediction is cancelled as soon as Replicate names it."""
    client = make_client("test/slow", wait=5)
    mark = stand_in.mark()

    def held():  # the create arrived and the stand-in holds its answer
        return [e for e in creates(stand_in.requests(mark)) if "status" not in e]

    cancelled_once(client, {"seconds": 29.0}, held)
    assert held()  # run() returned while the create was still held, not after it

    def canceled():
        return [rec for rec in stand_in.predictions().values()
                if rec["input"] == {"seconds": 29.0} and rec["status"] == "canceled"]
    assert wait_until(canceled, 20, step=0.2)
    assert canceled()[0]["_cancel_requested"]


@network
def test_run_timeout_cancels_the_prediction(stand_in, make_client):
    client = make_client("test/slow", wait=1, timeout=1.8)
    with pytest.raises(ServerError, match="did not finish"):
        client.run({"seconds": 28.0})
    (rec,) = [r for r in stand_in.predictions().values() if r["input"] == {"seconds": 28.0}]
    assert rec["status"] == "canceled"


@network
def test_401_is_an_auth_error_and_the_token_never_shows(stand_in, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "r8_WrongToken_fedcba9876543210"
    bad = make_client(token=wrong)
    with pytest.raises(AuthError) as err:
        bad.run({"image": noise(4, 4)})
    e = err.value
    assert e.status == 401
    assert e.kind == "token-refused" and "REPLICATE_API_TOKEN" in e.hint
    health = bad.health()
    assert health.state is HealthState.UNHEALTHY and "REPLICATE_API_TOKEN" in health.detail
    # A successful run with the right token logs and shows no token either.
    good = make_client()
    result = good.run({"image": noise(4, 4)})
    shown = [str(e), e.message, e.hint, e.details, repr(e), repr(bad), repr(good),
             health.detail, caplog.text, result.logs, repr(result)]
    for text in shown:
        assert wrong not in text and TOKEN not in text
    assert any(r["auth"] == "invalid" for r in stand_in.requests())


@network
def test_429_honours_retry_after_and_is_bounded(stand_in, make_client, caplog):
    caplog.set_level(logging.INFO)
    client = make_client(max_retries=3)
    stand_in.configure(throttle={"count": 2, "retry_after": 1, "match": "POST /v1/models"})
    mark = stand_in.mark()
    img = noise(6, 6, seed=4)
    result = client.run({"image": img})
    np.testing.assert_array_equal(pixels(result.outputs["output"]), 255 - img)
    tries = creates(stand_in.requests(mark))
    assert [t["status"] for t in tries] == [429, 429, 201]
    gaps = [b["time"] - a["time"] for a, b in zip(tries, tries[1:])]
    assert all(g >= 0.95 for g in gaps), gaps
    assert "429" in caplog.text and TOKEN not in caplog.text

    # Bounded: after max_retries the 429 is an error, not an endless wait.
    stand_in.configure(throttle={"count": 100, "retry_after": 1, "match": "POST /v1/models"})
    mark = stand_in.mark()
    try:
        with pytest.raises(ServerError) as err:
            make_client(max_retries=2).run({"image": img})
    finally:
        stand_in.configure(throttle={"count": 0})
    assert err.value.status == 429
    assert [t["status"] for t in creates(stand_in.requests(mark))] == [429, 429, 429]


@network
def test_unknown_model_is_a_clear_error(make_client):
    with pytest.raises(ServerError) as err:
        make_client("test/nope").spec()
    assert err.value.status == 404 and "owner/name" in err.value.hint


# --------------------------------------------------------------------------- 403, no release,
# a network that stops answering

def _no_token_in(err) -> None:
    for text in (err.message, err.hint, err.details, str(err), repr(err)):
        assert TOKEN not in text


@pytest.mark.network
def test_403_says_the_token_has_no_access_to_the_model(stand_in, make_client):
    stand_in.configure(forbid={"match": "GET /v1/models/test/invert"})
    try:
        with pytest.raises(AuthError) as err:
            make_client().spec()
    finally:
        stand_in.configure(forbid={})
    assert err.value.status == 403 and "test/invert" in err.value.message
    assert "token" in err.value.hint.lower()
    _no_token_in(err.value)
    assert make_client().spec().protocol == Protocol.REPLICATE  # access given back


@pytest.mark.network
def test_deployment_without_a_release_fails_before_any_prediction(stand_in, make_client):
    client = make_client("deployment:test/unreleased")
    mark = stand_in.mark()
    with pytest.raises(ServerError) as err:
        client.run({"image": noise(4, 4)})
    assert "no release" in err.value.message and "release" in err.value.hint
    _no_token_in(err.value)
    assert [r["method"] for r in stand_in.requests(mark)] == ["GET"]  # nothing was run


@pytest.mark.network
def test_api_that_stops_answering_times_out_then_recovers(stand_in, make_client):
    from runway_addon.core.errors import TimedOut

    stand_in.configure(stall={"count": 1, "seconds": 5, "match": "GET /v1/models/test/slow"})
    with pytest.raises(TimedOut) as err:
        make_client("test/slow", request_timeout=1).spec()
    assert "did not answer" in err.value.message and "network" in err.value.hint
    _no_token_in(err.value)
    assert make_client("test/slow", request_timeout=10).spec().command().inputs
