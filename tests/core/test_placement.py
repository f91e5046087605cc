"""open_session: a placement turned into a session, then started against real parts.

- Remote Docker engines: the local dockerd reached through tests/servers/tcp_forward.py
  as tcp://ADDRESS:PORT, so the session treats it as another machine's engine (no
  shared folder, data URIs). ADDRESS is loopback, or the host's own address on
  Docker's bridge (an address other machines could reach): there, the model's port
  is published where the placement says, loopback by default.
- Replicate: the stand-in tests/servers/replicate_server.py (the service cannot be
  reached here); it records whether each request carried the valid token and on which
  origin (the API, or the delivery origin of output files).
- A model server URL: a hostile loopback Cog server that records every header.
"""
from __future__ import annotations

import io
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runway_addon.core.errors import RunwayError
from runway_addon.core.jobs.job import ModelRef
from runway_addon.core.jobs.placement import Placement, open_session
from runway_addon.core.runtimes import docker as rt
from runway_addon.core.runtimes.base import RuntimeFailed, SessionState
from runway_addon.core.runtimes.remote import RemoteSession, ReplicateSession
from tests.helpers import DOCKER_TEST_IMAGES
from tests.servers import REPLICATE_TOKEN as TOKEN
from tests.servers.hostile import HostileServer, cog_routes, cog_schema
from tests.servers.tcp_forward import UnixForward

DOCKER_SOCKET = "/var/run/docker.sock"
INVERT_REF = ModelRef("image", DOCKER_TEST_IMAGES["invert"], "invert")


# ---------------------------------------------------------------- remote Docker engines

def _pattern() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, size=(5, 6, 3), dtype=np.uint8)


def _pixels(value) -> np.ndarray:
    """An image output: a file (Cog and Replicate answer with one) or pixels."""
    if hasattr(value, "read_bytes"):
        return np.asarray(Image.open(io.BytesIO(value.read_bytes())).convert("RGB"))
    return np.asarray(value)[..., :3]


def _run_invert(session) -> None:
    """A real run through the session's client: the pixels come back inverted."""
    img = _pattern()
    with session.client() as client:
        (value,) = client.run({"image": img}).outputs.values()
    np.testing.assert_array_equal(_pixels(value), 255 - img)


def _bridge_address(engine) -> str:
    """This machine's address on Docker's default bridge: not loopback."""
    return engine.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]


def _published(engine, session) -> str:
    """The address the engine really publishes the model port on (asked and done)."""
    c = engine.containers.get(session.container_id)
    (asked,) = c.attrs["HostConfig"]["PortBindings"]["5000/tcp"]
    done = {b["HostIp"] for b in c.attrs["NetworkSettings"]["Ports"]["5000/tcp"]}
    assert done == {asked["HostIp"]}, (asked, done)
    return asked["HostIp"]


@pytest.fixture
def remote_docker(docker_client):
    """``make(address, **placement)``: a session from open_session on the local engine
    reached as tcp://address:port; every session is stopped and checked gone after."""
    made, forwards = [], []

    def make(address: str, **placement):
        fwd = UnixForward(DOCKER_SOCKET, host=address)
        forwards.append(fwd)
        s = open_session(INVERT_REF, Placement(runtime="REMOTE", remote_kind="DOCKER_HOST",
                                               remote_address=fwd.url, **placement))
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
        if s.session_id:
            left = docker_client.containers.list(
                all=True, filters={"label": f"{rt.SESSION_LABEL}={s.session_id}"})
            for c in left:
                c.remove(force=True)
            assert not left, f"containers outlived their session: {[c.name for c in left]}"
    for fwd in forwards:
        fwd.stop()


def _refused(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


@pytest.mark.docker
@pytest.mark.slow  # may build the test image first
def test_remote_engine_over_loopback_runs_with_data_uris(docker_images, docker_client, remote_docker):
    s = remote_docker("127.0.0.1")
    assert isinstance(s, rt.DockerSession) and s.remote
    s.start(timeout=120)
    assert s.shared_dir is None  # another machine's engine cannot see our disk
    assert _published(docker_client, s) == "127.0.0.1"
    assert s.url == f"http://127.0.0.1:{s.host_port}"
    _run_invert(s)


@pytest.mark.docker
@pytest.mark.slow
def test_remote_engine_on_a_network_address_refuses_by_default(docker_images, docker_client, remote_docker):
    """The engine's own address is not loopback: publishing the model port on the
    host's loopback would be unreachable from here, and on every address would open
    it to the network. Neither happens unless the user says so: it fails first."""
    s = remote_docker(_bridge_address(docker_client))
    with pytest.raises(RuntimeFailed) as err:
        s.start(timeout=120)
    assert "loopback" in err.value.message and _bridge_address(docker_client) in err.value.message
    assert "address" in err.value.hint and "anyone" in err.value.hint
    assert s.state is SessionState.FAILED
    assert not docker_client.containers.list(
        all=True, filters={"label": f"{rt.SESSION_LABEL}={s.session_id}"})


@pytest.mark.docker
@pytest.mark.slow
def test_remote_engine_publishes_on_the_address_the_user_chose(docker_images, docker_client, remote_docker):
    address = _bridge_address(docker_client)
    s = remote_docker(address, docker_publish_ip=address)
    s.start(timeout=120)
    assert _published(docker_client, s) == address
    assert s.url == f"http://{address}:{s.host_port}"
    assert _refused("127.0.0.1", s.host_port)  # that address only, not loopback too
    _run_invert(s)


@pytest.mark.docker
@pytest.mark.slow
def test_remote_engine_publishes_on_every_address_when_chosen(docker_images, docker_client, remote_docker):
    address = _bridge_address(docker_client)
    s = remote_docker(address, docker_publish_ip="0.0.0.0")
    s.start(timeout=120)
    assert _published(docker_client, s) == "0.0.0.0"
    assert s.url == f"http://{address}:{s.host_port}"  # reached at the engine's address
    _run_invert(s)


@pytest.mark.docker
@pytest.mark.slow
def test_local_engine_stays_on_loopback_whatever_the_setting(docker_images, docker_client):
    """A unix socket is this machine's engine: loopback always, the shared folder used."""
    s = open_session(INVERT_REF, Placement(runtime="DOCKER_CPU",
                                           docker_host=f"unix://{DOCKER_SOCKET}",
                                           docker_publish_ip="0.0.0.0"))
    try:
        s.start(timeout=120)
        assert not s.remote and s.shared_dir and Path(s.shared_dir).is_dir()
        assert _published(docker_client, s) == "127.0.0.1"
        _run_invert(s)
    finally:
        s.stop()


# ---------------------------------------------------------------- Replicate

@pytest.mark.network
@pytest.mark.parametrize("how", ["endpoint", "card"])
def test_replicate_token_goes_to_the_api_only(stand_in, how):
    """Through a Replicate endpoint, and through a card whose model is on Replicate
    (whatever the runtime): every API request carries the token; the output file on
    the delivery origin (another port) is fetched without it."""
    if how == "endpoint":
        s = open_session(ModelRef("folder", "/nowhere/invert", "invert"),
                         Placement(runtime="REMOTE", remote_kind="REPLICATE",
                                   remote_address="test/invert", token=TOKEN,
                                   replicate_base_url=stand_in.url))
    else:
        s = open_session(ModelRef("replicate", "test/invert", "invert"),
                         Placement(runtime="LOCAL_PROCESS", token=TOKEN,
                                   replicate_base_url=stand_in.url))
    assert isinstance(s, ReplicateSession) and str(s.ref) == "test/invert"
    since = stand_in.mark()
    s.start()
    try:
        _run_invert(s)
    finally:
        s.stop()
    seen = stand_in.requests(since)
    api = [r for r in seen if r["origin"] == "api"]
    delivery = [r for r in seen if r["origin"] == "delivery"]
    assert api and all(r["auth"] == "valid" for r in api), api
    assert delivery and all(r["auth"] == "absent" for r in delivery), delivery
    assert TOKEN not in repr(s) and TOKEN not in repr(Placement(token=TOKEN))


@pytest.mark.network
def test_replicate_deployment_endpoint_runs_the_release(stand_in):
    s = open_session(INVERT_REF, Placement(runtime="REMOTE", remote_kind="REPLICATE",
                                           remote_address="deployment:test/invert-deploy",
                                           token=TOKEN, replicate_base_url=stand_in.url))
    since = stand_in.mark()
    s.start()
    try:
        with s.client() as client:
            client.run({"image": _pattern()})
    finally:
        s.stop()
    posts = [r["path"] for r in stand_in.requests(since) if r["method"] == "POST"]
    assert "/v1/deployments/test/invert-deploy/predictions" in posts, posts


@pytest.mark.network
def test_replicate_endpoint_with_a_wrong_token_fails_without_showing_it(stand_in):
    wrong = "r8_WrongTokenFor_PlacementTests_99"
    s = open_session(INVERT_REF, Placement(runtime="REMOTE", remote_kind="REPLICATE",
                                           remote_address="test/invert", token=wrong,
                                           replicate_base_url=stand_in.url))
    with pytest.raises(RuntimeFailed) as err:
        s.start()
    assert "401" in err.value.message and "token" in err.value.hint.lower()
    for text in (err.value.message, err.value.hint, err.value.details, repr(err.value)):
        assert wrong not in text
    assert s.state is SessionState.FAILED


# ---------------------------------------------------------------- a model server URL

@pytest.mark.network
def test_url_endpoint_token_goes_to_its_own_origin_only(tmp_path, monkeypatch):
    """A Cog server at a URL endpoint: detection, schema and prediction carry the
    token; the output file on another port is fetched without it."""
    token = "tok-Placement-url-endpoint-4411"
    files = HostileServer({("GET", "/out.txt"): lambda r: r.raw(200, b"result",
                                                               content_type="text/plain")})
    routes = cog_routes(cog_schema(output={"type": "string", "format": "uri",
                                           "title": "Output"}))
    routes["/predictions"] = lambda r: r.json({"status": "succeeded",
                                               "output": files.url + "/out.txt"})
    server = HostileServer(routes)
    server.prefix("/predictions/", routes["/predictions"])
    monkeypatch.chdir(tmp_path)  # where a client may put downloaded outputs
    try:
        s = open_session(INVERT_REF, Placement(runtime="REMOTE", remote_kind="URL",
                                               remote_address=server.url, token=token))
        assert isinstance(s, RemoteSession)
        s.start(timeout=30)
        with s.client() as client:
            out = client.run({"text": "x"}).outputs["output"]
        s.stop()
        assert out.read_bytes() == b"result"
        assert server.log and all(r["headers"].get("authorization") == f"Bearer {token}"
                                  for r in server.log), [r["path"] for r in server.log]
        assert files.log and all("authorization" not in r["headers"] for r in files.log)
    finally:
        server.stop()
        files.stop()


def test_remote_without_an_endpoint_says_what_to_do():
    with pytest.raises(RuntimeFailed) as err:
        open_session(INVERT_REF, Placement(runtime="REMOTE"))
    assert "endpoint" in err.value.hint
    assert isinstance(err.value, RunwayError)
