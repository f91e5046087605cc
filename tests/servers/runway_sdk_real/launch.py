"""Run a real Runway Model SDK model file (runway-python 0.6.1) under Python 3.9+.

    python launch.py MODEL.py

The SDK calls base64.decodestring, removed in Python 3.9; the vendored README's
two-line fix is applied before the model runs. Port and options come from
RW_HOST / RW_PORT / RW_MODEL_OPTIONS, as the SDK reads them.

RW_REQUEST_LOG=FILE appends one JSON line per request in the stand-in's format
(tests/servers/runway_sdk_server.py --request-log), so the same tests can assert
what reached either server. It wraps the SDK's WSGI app from outside (after
Flask-Compress, so it sees the bytes that went on the wire) and changes nothing
that the client sees.
"""
import base64
import gzip
import io
import json
import os
import runpy
import sys
import threading

base64.decodestring = base64.decodebytes  # type: ignore[attr-defined]


class RequestLog:
    def __init__(self, app, path):
        self.app, self.path, self.lock = app, path, threading.Lock()

    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
                   if k.startswith("HTTP_") and k != "HTTP_AUTHORIZATION"}
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        seen = {}

        def capture(status, response_headers, exc_info=None):
            seen["status"] = int(status.split()[0])
            seen["headers"] = {k.lower(): v for k, v in response_headers}
            return start_response(status, response_headers, exc_info)

        result = self.app(environ, capture)
        try:
            answer = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
        gzipped = seen["headers"].get("content-encoding") == "gzip"
        record = {
            "method": environ["REQUEST_METHOD"], "path": environ.get("PATH_INFO", ""),
            "status": seen["status"], "request_bytes": len(body), "request_headers": headers,
            "authorized": "HTTP_AUTHORIZATION" in environ,
            "body_keys": _keys(_json(body, headers.get("content-encoding") == "gzip")),
            "response_gzip": gzipped, "response_bytes": len(answer),
            "error": (_json(answer, gzipped) or {}).get("error")
            if isinstance(_json(answer, gzipped), dict) else None,
        }
        with self.lock, open(self.path, "a", encoding="utf-8") as f:  # before the answer
            f.write(json.dumps(record) + "\n")
        return [answer]


def _json(data, gzipped):
    try:
        return json.loads(gzip.decompress(data) if gzipped else data)
    except (OSError, ValueError):
        return None


def _keys(data):
    return sorted(data) if isinstance(data, dict) else None


if os.environ.get("RW_REQUEST_LOG"):
    import runway
    model = runway.__defaultmodel__
    model.app.wsgi_app = RequestLog(model.app.wsgi_app, os.environ["RW_REQUEST_LOG"])
runpy.run_path(sys.argv[1], run_name="__main__")
