"""Protocol auto-detection against real servers: Cog (cog 0.23.1), the Runway SDK
stand-in and its hosted-models mode, plus small stdlib servers for the odd cases."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runway_addon.core.client import connect
from runway_addon.core.errors import AuthError, ConnectionFailed, ServerError
from runway_addon.core.protocols.detect import detect_protocol
from runway_addon.core.runtimes.process import free_port
from runway_addon.core.spec import Protocol
from tests.servers import RunwayTestServer


class _Canned(BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        status, body = self.routes.get(self.path, (404, "<html>not found</html>"))
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def canned():
    """canned(routes) -> URL of a server answering GET path -> (status, JSON or text)."""
    servers = []

    def start(routes: dict) -> str:
        handler = type("Handler", (_Canned,), {"routes": routes})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def runway_server(tmp_path):
    started = []

    def start(*args) -> RunwayTestServer:
        # The stand-in's model needs a weights_dir setup option to start.
        server = RunwayTestServer(tmp_path / f"rw{len(started)}", args=args,
                                  options={"weights_dir": str(tmp_path)}).wait_ready()
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


@pytest.mark.network
def test_detects_real_cog(cog_servers):
    assert detect_protocol(cog_servers.get("list_out").url) is Protocol.COG


@pytest.mark.network
def test_detects_runway_sdk_server(runway_server):
    url = runway_server().url
    assert detect_protocol(url) is Protocol.RUNWAY
    from runway_addon.core.protocols.runway import RunwayClient

    with connect(url) as client:
        assert isinstance(client, RunwayClient)


@pytest.mark.network
def test_detects_hosted_model(runway_server):
    server = runway_server("--hosted", "--token", "tok-1234")
    with pytest.raises(AuthError):
        detect_protocol(server.url + "/v1")
    assert detect_protocol(server.url + "/v1/", token="tok-1234") is Protocol.RUNWAY_HOSTED
    from runway_addon.core.protocols.runway import HostedRunwayClient

    with connect(server.url + "/v1", token="tok-1234") as client:
        assert isinstance(client, HostedRunwayClient)


@pytest.mark.network
def test_cog_by_health_check_alone(canned):
    # e.g. a proxy in front of Cog that hides the index
    url = canned({"/health-check": (200, {"status": "STARTING", "setup": {}})})
    assert detect_protocol(url) is Protocol.COG


@pytest.mark.network
def test_runway_by_meta_or_healthcheck(canned):
    assert detect_protocol(canned({"/meta": (200, {"commands": [], "options": []})})) \
        is Protocol.RUNWAY
    assert detect_protocol(canned({"/healthcheck": (200, {"status": "RUNNING"})})) \
        is Protocol.RUNWAY


@pytest.mark.network
def test_unknown_server_is_named(canned):
    url = canned({"/": (200, "<html>a web site</html>")})
    with pytest.raises(ServerError, match="not a known model server") as e:
        detect_protocol(url)
    assert "GET / -> 200" in e.value.details


@pytest.mark.network
def test_nothing_listening():
    with pytest.raises(ConnectionFailed, match="No model server answers"):
        detect_protocol(f"http://127.0.0.1:{free_port()}", timeout=2)


def test_not_a_url():
    with pytest.raises(ConnectionFailed, match="not a URL"):
        detect_protocol("localhost-5000")


def test_explicit_protocol_skips_detection():
    # Nothing listens here: with the protocol given, connect() makes no request.
    from runway_addon.core.protocols.cog import CogClient

    client = connect("http://127.0.0.1:9", protocol="cog", shared_dir="/tmp")
    assert isinstance(client, CogClient) and client.shared_dir == "/tmp"
