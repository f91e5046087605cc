"""Remote sessions: RemoteSession over real Cog servers and the Runway test server,
ReplicateSession over the Replicate stand-in (tests/servers/replicate_server.py)."""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

from runway_addon.core.errors import Cancelled
from runway_addon.core.protocols.cog import CogClient
from runway_addon.core.protocols.replicate import ReplicateClient
from runway_addon.core.protocols.runway import RunwayClient
from runway_addon.core.runtimes.base import (RuntimeFailed, SessionState,
                                            StartAborted)
from runway_addon.core.runtimes.remote import (OFFLINE_MESSAGE, RemoteSession,
                                               ReplicateSession)
from runway_addon.core.runtimes.process import free_port
from runway_addon.core.spec import Protocol
from tests.helpers import wait_until
from tests.servers import REPLICATE_TOKEN as TOKEN, RunwayTestServer

network = pytest.mark.network


@pytest.fixture(scope="module")
def runway_server(tmp_path_factory):
    weights = tmp_path_factory.mktemp("weights")
    srv = RunwayTestServer(tmp_path_factory.mktemp("runway"),
                           options={"weights_dir": str(weights)}).wait_ready()
    yield srv
    srv.stop()


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def file_pixels(value) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(value.read_bytes())).convert("RGB"))


# --------------------------------------------------------------------------- online access

def test_offline_refuses_every_remote_url_by_default():
    events = []
    for url in ("https://models.example.com", "http://127.0.0.1:9", "http://localhost:9"):
        session = RemoteSession(url, online_access=False, on_event=events.append)
        with pytest.raises(RuntimeFailed) as err:
            session.start(timeout=5)
        assert OFFLINE_MESSAGE in str(err.value)
        assert session.state is SessionState.FAILED and OFFLINE_MESSAGE in session.reason
    assert events[-1].state is SessionState.FAILED


def test_offline_loopback_only_when_the_caller_allows_it():
    session = RemoteSession("https://models.example.com", online_access=False,
                            allow_loopback_offline=True)
    with pytest.raises(RuntimeFailed, match="Online access is off"):
        session.start(timeout=5)
    # Loopback passes the gate (and then finds nothing listening).
    port = free_port()
    session = RemoteSession(f"http://127.0.0.1:{port}", online_access=False,
                            allow_loopback_offline=True)
    with pytest.raises(RuntimeFailed) as err:
        session.start(timeout=5)
    assert "Online access" not in str(err.value)
    assert "No model server answers" in str(err.value)


def test_token_never_goes_over_plain_http_to_another_host():
    session = RemoteSession("http://10.255.255.1:5000", token="secret-token-1234")
    with pytest.raises(RuntimeFailed, match="plain http") as err:
        session.start(timeout=5)
    assert "secret-token-1234" not in str(err.value) + repr(session) + session.logs()


def test_replicate_offline_refuses_before_any_request(stand_in):
    before = stand_in.mark()
    session = ReplicateSession("test/invert", token=TOKEN, base_url=stand_in.url,
                               online_access=False)
    with pytest.raises(RuntimeFailed, match="Online access is off"):
        session.start()
    assert stand_in.requests(before) == []
    # api.replicate.com is never loopback: allow_loopback_offline does not help it.
    session = ReplicateSession("test/invert", token=TOKEN, online_access=False,
                               allow_loopback_offline=True)
    with pytest.raises(RuntimeFailed, match="Online access is off"):
        session.start()


# --------------------------------------------------------------------------- model server URLs

@network
def test_remote_cog_server_runs_and_stop_leaves_it_running(cog_servers):
    server = cog_servers.get("image")
    events = []
    session = RemoteSession(server.url, on_event=events.append)
    session.start(timeout=30)
    assert session.state is SessionState.RUNNING and session.protocol is Protocol.COG
    assert [f.name for f in session.model_spec.command().inputs] == ["image", "delay"]
    img = noise(20, 24, seed=5)
    with session.client() as client:
        assert isinstance(client, CogClient)
        result = client.run({"image": img})
    np.testing.assert_array_equal(file_pixels(result.outputs["output"]), 255 - img)
    session.stop()
    assert session.state is SessionState.STOPPED
    with pytest.raises(RuntimeFailed, match="not running"):
        session.client()
    # We did not start it, so we did not stop it.
    assert server.proc.poll() is None
    # Cog frees its slot just after answering: BUSY for a moment, then READY.
    def status():
        return requests.get(server.url + "/health-check", timeout=5).json()["status"]
    assert wait_until(lambda: status() != "BUSY", 10, step=0.05)
    assert status() == "READY"
    states = [e.state for e in events]
    assert states[0] is SessionState.STARTING and SessionState.RUNNING in states
    assert states[-1] is SessionState.STOPPED
    assert "keeps running" in session.logs()


@network
def test_remote_runway_server_detected_and_run(runway_server):
    session = RemoteSession(runway_server.url)
    session.start(timeout=30)
    assert session.protocol is Protocol.RUNWAY
    img = noise(64, 64, seed=6)  # the test model takes 64 x 64
    with session.client() as client:
        assert isinstance(client, RunwayClient)
        out = client.run({"image": img}, "invert", output_format={"image": "PNG"})
    np.testing.assert_array_equal(out.outputs["image"], 255 - img)
    session.stop()
    assert runway_server.proc.poll() is None
    paths = [r["path"] for r in runway_server.requests()]
    assert "/invert" in paths and not any("shutdown" in p for p in paths)
    session.stop()  # twice is fine
    assert session.state is SessionState.STOPPED


@network
def test_remote_with_explicit_protocol_and_unreachable_server():
    port = free_port()
    session = RemoteSession(f"http://127.0.0.1:{port}", protocol="cog")
    started = time.monotonic()
    with pytest.raises(RuntimeFailed, match="not ready"):
        session.start(timeout=1.0)
    assert time.monotonic() - started < 5
    assert session.state is SessionState.FAILED


@network
def test_stop_during_start_aborts_the_wait():
    port = free_port()  # nothing listens: start() keeps waiting for the server
    stopping = threading.Event()

    def on_event(ev):  # stopped while it waits, from another thread (never a timer)
        if ev.state is SessionState.STARTING and not stopping.is_set():
            stopping.set()
            threading.Thread(target=session.stop).start()

    session = RemoteSession(f"http://127.0.0.1:{port}", protocol="cog", on_event=on_event)
    # Not stopped, the wait would end after its 30 s as RuntimeFailed ("not ready").
    with pytest.raises(StartAborted):
        session.start(timeout=30)
    assert stopping.is_set() and session.state is SessionState.STOPPED


# --------------------------------------------------------------------------- Replicate

@network
def test_replicate_session_runs_and_sums_usage(stand_in):
    session = ReplicateSession("test/invert", token=TOKEN, base_url=stand_in.url, wait=5)
    session.start()
    assert session.state is SessionState.RUNNING
    assert session.model_spec.protocol is Protocol.REPLICATE
    assert session.model_info["description"] == "Inverts the colours of an image."
    times = []
    for seed in (7, 8):
        img = noise(10, 10, seed=seed)
        with session.client() as client:
            assert isinstance(client, ReplicateClient)
            result = client.run({"image": img, "delay": 0.3})
        np.testing.assert_array_equal(file_pixels(result.outputs["output"]), 255 - img)
        times.append(result.metrics["predict_time"])
    usage = session.usage
    assert usage.runs == 2 and min(times) >= 0.3
    assert usage.predict_time == pytest.approx(sum(times))
    session.stop()
    assert session.state is SessionState.STOPPED
    # Usage outlives a restart of the session.
    session.start()
    assert session.usage == usage
    session.stop()


@network
def test_replicate_session_stop_cancels_its_running_predictions(stand_in):
    session = ReplicateSession("test/slow", token=TOKEN, base_url=stand_in.url, wait=1)
    session.start()
    client = session.client()
    outcome = {}

    def run():
        try:
            client.run({"seconds": 27.0})
        except Exception as e:  # noqa: BLE001 (the test looks at it)
            outcome["error"] = e

    worker = threading.Thread(target=run)
    worker.start()
    assert wait_until(lambda: [r for r in stand_in.predictions().values()
                               if r["input"] == {"seconds": 27.0} and
                               r["status"] == "processing"], 10)
    (pid,) = [k for k, r in stand_in.predictions().items() if r["input"] == {"seconds": 27.0}]
    # Past the 1 s hold of its first answer: the client is polling the prediction now.
    assert wait_until(lambda: any(r["method"] == "GET" and r["path"].endswith("/" + pid)
                                  for r in stand_in.requests()), 10, 0.05)
    session.stop()
    worker.join(10)
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), Cancelled)
    (rec,) = [r for r in stand_in.predictions().values() if r["input"] == {"seconds": 27.0}]
    assert rec["status"] == "canceled" and rec["_cancel_requested"]
    assert "cancelled prediction" in session.logs()
    with pytest.raises(Cancelled):  # a stopped session's clients start nothing new
        client.run({"seconds": 0.1})
    client.close()


@network
def test_replicate_session_bad_token_fails_with_a_hint(stand_in):
    wrong = "r8_NotTheToken_00001111"
    session = ReplicateSession("test/invert", token=wrong, base_url=stand_in.url)
    with pytest.raises(RuntimeFailed) as err:
        session.start()
    assert session.state is SessionState.FAILED
    text = f"{err.value} {session.reason} {session.logs()} {repr(session)}"
    assert "refused the API token" in text and "REPLICATE_API_TOKEN" in str(err.value)
    assert wrong not in text
    with pytest.raises(RuntimeFailed, match="No Replicate API token"):
        ReplicateSession("test/invert", token=None, base_url=stand_in.url).start()


def test_one_loopback_rule_for_every_runtime():
    """Which hosts count as this computer: for offline access and plain-http tokens
    (remote) and for where Docker publishes a model port; one rule for both."""
    from runway_addon.core.runtimes import docker, remote
    assert docker.is_loopback is remote.is_loopback
    for host in ("localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1", "[::1]"):
        assert remote.is_loopback(host), host
    for host in (None, "", "0.0.0.0", "::", "10.0.0.5", "127.example.com", "localhost.example"):
        assert not remote.is_loopback(host), host
    assert docker.publish_address("tcp://[::1]:2375") == ("127.0.0.1", "::1")
