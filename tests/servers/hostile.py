"""Small misbehaving HTTP servers on loopback, started by the fault tests in-process.

A ``HostileServer`` answers each request from a route table: ``routes[(METHOD, path)]``
(or ``routes[path]`` for any method) is a function ``fn(req) -> None`` that writes the
answer itself through the helpers on ``req`` (``json``, ``raw``, ``trickle``, ``hang``,
``truncated``, ``gzip_bomb``, ``close``, ``garbage``, ``redirect``). Unknown paths answer
404. Every request is recorded in ``server.log`` (method, path, headers, body), so a
test can check what was, or was not, sent. Each connection is closed after one answer.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

HOST = "127.0.0.1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one answer per connection

    def log_message(self, *args):  # quiet
        pass

    def _serve(self):
        server: "HostileServer" = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        self.body = body
        server.log.append({"method": self.command, "path": path, "body": body,
                           "headers": {k.lower(): v for k, v in self.headers.items()}})
        fn = server.routes.get((self.command, path)) or server.routes.get(path)
        if fn is None:
            for (prefix, f) in server.prefixes:
                if path.startswith(prefix):
                    fn = f
                    break
        try:
            if fn is None:
                self.json({"detail": "Not Found"}, 404)
            else:
                fn(self)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client gave up: that is what most of these tests want

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    # ------------------------------------------------------------------ answers

    def raw(self, status: int, body: bytes, headers: Optional[dict] = None,
            content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        hdrs = {"Content-Length": str(len(body)), **(headers or {})}
        for k, v in hdrs.items():
            if v is not None:
                self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def json(self, obj: Any, status: int = 200, headers: Optional[dict] = None) -> None:
        self.raw(status, json.dumps(obj).encode(), headers)

    def trickle(self, body: bytes = b'{"status": "READY"}' * 100, delay: float = 0.2,
                status: int = 200, headers_too: bool = False) -> None:
        """One byte every ``delay`` seconds (the status line too, with ``headers_too``)."""
        head = (f"HTTP/1.0 {status} OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        stop = self.server.owner.stopping  # type: ignore[attr-defined]
        if not headers_too:
            self.wfile.write(head)
            self.wfile.flush()
            head = b""
        for b in head + body:
            if stop.is_set():
                return
            self.wfile.write(bytes([b]))
            self.wfile.flush()
            time.sleep(delay)

    def hang(self, seconds: float = 60.0) -> None:
        """Read the request and answer nothing (until the server stops)."""
        self.server.owner.stopping.wait(seconds)  # type: ignore[attr-defined]

    def truncated(self, declared: int = 10_000, sent: bytes = b'{"status": "succ') -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        self.wfile.write(sent)
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def gzip_bomb(self, inflated: int = 200 << 20, status: int = 200) -> None:
        """A small gzip body that inflates to ``inflated`` bytes of spaces."""
        body = _bomb(inflated)
        self.raw(status, body, {"Content-Encoding": "gzip"})

    def close(self) -> None:
        """Drop the connection without a word."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def garbage(self) -> None:
        self.wfile.write(b"\x00\xffthis is not HTTP at all\r\n\r\n")
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def redirect(self, location: str, status: int = 302) -> None:
        self.raw(status, b"", {"Location": location})


_BOMBS: dict[int, bytes] = {}


def _bomb(size: int) -> bytes:
    if size not in _BOMBS:
        c = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
        chunk = b" " * (1 << 20)
        parts = [c.compress(chunk) for _ in range(size >> 20)]
        parts.append(c.flush())
        _BOMBS[size] = b"".join(parts)
    return _BOMBS[size]


class HostileServer:
    """A threaded loopback server; use as a context manager or call ``stop()``."""

    def __init__(self, routes: Optional[dict] = None):
        self.routes: dict = dict(routes or {})
        self.prefixes: list[tuple[str, Callable]] = []
        self.log: list[dict] = []
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer((HOST, 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        self.port = self._httpd.server_address[1]
        self.url = f"http://{HOST}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"hostile-{self.port}")
        self._thread.start()

    def route(self, path: str, fn: Callable, method: Optional[str] = None) -> "HostileServer":
        self.routes[(method, path) if method else path] = fn
        return self

    def prefix(self, prefix: str, fn: Callable) -> "HostileServer":
        self.prefixes.append((prefix, fn))
        return self

    def requests_to(self, path: str, method: Optional[str] = None) -> list[dict]:
        return [r for r in self.log if r["path"] == path
                and (method is None or r["method"] == method)]

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------- model documents

def cog_schema(inputs: Optional[dict] = None, output: Optional[dict] = None,
               required: Optional[list] = None) -> dict:
    """A minimal Cog OpenAPI document with these input properties and output."""
    return {
        "openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {"/predictions": {}},
        "components": {"schemas": {
            "Input": {"type": "object", "title": "Input",
                      "properties": inputs if inputs is not None else
                      {"text": {"type": "string", "title": "Text", "x-order": 0}},
                      "required": required or []},
            "Output": output if output is not None else {"type": "string", "title": "Output"},
        }},
    }


def cog_routes(schema: Optional[dict] = None, health: Optional[dict] = None) -> dict:
    """Routes of a well-behaved Cog server; tests replace the ones they break."""
    schema = schema or cog_schema()
    health = health or {"status": "READY", "setup": {"status": "succeeded", "logs": ""}}
    return {
        ("GET", "/"): lambda r: r.json({"cog_version": "0.23.1"}),
        ("GET", "/openapi.json"): lambda r: r.json(schema),
        ("GET", "/health-check"): lambda r: r.json(health),
    }


def runway_meta(commands: Optional[list] = None, options: Optional[list] = None) -> dict:
    return {"modelSDKVersion": "0.6.1", "millisRunning": 1, "millisSinceLastCommand": None,
            "GPU": False,
            "options": options or [],
            "commands": commands if commands is not None else [
                {"name": "echo", "description": "",
                 "inputs": [{"name": "text", "type": "text", "default": "", "minLength": 0}],
                 "outputs": [{"name": "text", "type": "text", "default": ""}]}]}


def runway_routes(meta: Optional[dict] = None) -> dict:
    meta = meta or runway_meta()
    return {
        ("GET", "/meta"): lambda r: r.json(meta),
        ("GET", "/"): lambda r: r.json(meta),
        ("GET", "/healthcheck"): lambda r: r.json({"status": "RUNNING"}),
    }
