#!/usr/bin/env python3
"""A local STAND-IN for Replicate's HTTP API, for tests. It is not Replicate.

Written from Replicate's public documentation (summarised in
docs/protocols/replicate-api.md) because the real service cannot be reached
from the test machines. It follows that documented contract; where the
documentation is silent, the choices are marked "stand-in:" below. Nothing
here was compared against the live service.

    python replicate_server.py --token SECRET [--host 127.0.0.1] [--port 0]

It prints ``REPLICATE_TEST_SERVER api=<port> delivery=<port>`` once both
sockets listen. Two servers run: the API (``/v1/...``, bearer token
required) and a "delivery" origin on its own port that serves output files
without a token, as Replicate's public delivery URLs do. Standard library plus
Pillow only.

What it implements:
- GET  /v1/models/{owner}/{name}                 model with latest_version.openapi_schema
- GET  /v1/models/{owner}/{name}/versions[/{id}] versions
- GET  /v1/deployments/{owner}/{name}            deployment with current_release
- POST /v1/predictions {"version", "input"}      version is an id, owner/name:id or owner/name
- POST /v1/models/{owner}/{name}/predictions     the model's latest version
- POST /v1/deployments/{owner}/{name}/predictions
  ``Prefer: wait`` / ``wait=N`` holds the answer up to N (<= 60) seconds; a
  prediction still running then is answered as starting/processing.
- GET  /v1/predictions/{id}, POST /v1/predictions/{id}/cancel
- POST /v1/files (multipart field ``content``) -> ``urls.get`` = /v1/files/{id};
  GET /v1/files/{id} (metadata), GET /v1/files/{id}/download (bytes).
  Prediction inputs may name such a URL, a data URI or another http(s) URL.
- Errors as problem JSON {title, detail, status}: 401, 404, 422 (with
  invalid_fields), 429 with Retry-After (injected, see below).

The models (schemas taken from the repository's Cog test predictors):
- test/invert  (tests/model_servers/cog/image):  inverts ``image`` after ``delay`` s,
  output an image URL on the delivery origin.
- test/slow    (tests/model_servers/cog/slow):   works ``seconds`` s in steps, logging.
- test/fails   (tests/model_servers/cog/predict_fails): logs a line, then fails.
- deployment test/invert-deploy runs test/invert; test/unreleased has no release yet
  (stand-in: ``current_release`` is null).
Predictions carry ``metrics.predict_time`` (the measured compute time).

Test-only control routes (stand-in additions, not Replicate's; no token):
- POST /_test/config {"throttle": {"count": N, "retry_after": S, "match": "POST /v1/"}}:
  the next N API requests whose "METHOD path" starts with ``match`` answer 429.
  {"forbid": {"match": "GET /v1/models/test/invert"}}: matching requests answer 403
  (stand-in: a token without access to that model); {"forbid": {}} ends it.
  {"stall": {"count": N, "seconds": S, "match": ...}}: the next N matching requests get
  no answer for S seconds (a network that stops answering), then the usual one.
- GET /_test/requests: what arrived (method, path, whether a valid token came,
  Prefer, a summary of the body; never the token itself).
- GET /_test/predictions, GET /_test/files: the server's records.
"""
from __future__ import annotations

import argparse
import base64
import email.parser
import email.policy
import hashlib
import io
import json
import secrets
import sys
import threading
import time
import traceback
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from PIL import Image, ImageOps

COG_MODELS = Path(__file__).resolve().parents[1] / "model_servers" / "cog"
MAX_WAIT = 60
TERMINAL = ("succeeded", "failed", "canceled")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def new_id() -> str:
    # Replicate's ids look like 26 lowercase base32 characters.
    return base64.b32encode(secrets.token_bytes(16)).decode().lower().rstrip("=")[:26]


class Canceled(Exception):
    pass


# ----------------------------------------------------------------------------- models

class RunContext:
    """What a model's code sees while one prediction runs."""

    def __init__(self, server: "State", prediction: dict, cancel: threading.Event):
        self.server, self.prediction, self.cancel = server, prediction, cancel

    def log(self, line: str) -> None:
        with self.server.lock:
            self.prediction["logs"] += line + "\n"

    def sleep(self, seconds: float) -> None:
        if self.cancel.wait(max(0.0, seconds)):
            raise Canceled()

    def file(self, value: str) -> bytes:
        return self.server.resolve_file(value, self.prediction)

    def output(self, name: str, data: bytes, mime: str) -> str:
        return self.server.store_output(self.prediction["id"], name, data, mime)


def run_invert(ctx: RunContext, inp: dict):
    data = ctx.file(inp["image"])
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    ctx.log(f"inverting a {rgb.width}x{rgb.height} image")
    ctx.sleep(float(inp.get("delay", 0.0)))
    buf = io.BytesIO()
    ImageOps.invert(rgb).save(buf, "PNG", compress_level=1)
    return ctx.output("inverted.png", buf.getvalue(), "image/png")


def run_slow(ctx: RunContext, inp: dict):
    seconds = float(inp.get("seconds", 0.5))
    steps = max(1, int(seconds / 0.05))
    for i in range(steps):
        ctx.sleep(seconds / steps)
        if i % 10 == 0:
            ctx.log(f"step {i}/{steps}")
    return f"slept {seconds}"


def run_fails(ctx: RunContext, inp: dict):
    prompt = inp.get("prompt", "x")
    ctx.log(f"about to fail on {prompt!r}")
    raise ValueError(f"cannot handle prompt {prompt!r}")


def _schema(folder: str) -> dict:
    return json.loads((COG_MODELS / folder / ".cog" / "openapi_schema.json").read_text())


def _model(owner_name: str, folder: str, run, description: str, **extra) -> dict:
    schema = _schema(folder)
    vid = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()
    owner, name = owner_name.split("/")
    return {
        "run": run,
        "json": {
            "url": f"https://replicate.com/{owner_name}", "owner": owner, "name": name,
            "description": description, "visibility": "public",
            "github_url": extra.get("github_url"), "paper_url": extra.get("paper_url"),
            "license_url": extra.get("license_url"), "run_count": extra.get("run_count", 0),
            "cover_image_url": extra.get("cover_image_url"), "default_example": None,
            "latest_version": {"id": vid, "created_at": "2025-01-02T03:04:05Z",
                               "cog_version": "0.23.1", "openapi_schema": schema},
        },
    }


def build_models() -> dict:
    return {
        "test/invert": _model(
            "test/invert", "image", run_invert, "Inverts the colours of an image.",
            github_url="https://github.com/example/invert",
            paper_url="https://arxiv.org/abs/0000.00000",
            license_url="https://www.apache.org/licenses/LICENSE-2.0",
            run_count=1234, cover_image_url="https://replicate.delivery/example/cover.png"),
        "test/slow": _model("test/slow", "slow", run_slow, "Works for a while."),
        "test/fails": _model("test/fails", "predict_fails", run_fails, "Always fails."),
    }


DEPLOYMENTS = {"test/invert-deploy": "test/invert", "test/unreleased": None}


# ----------------------------------------------------------------------------- state

class HttpError(Exception):
    def __init__(self, status: int, detail: str, title: str = "", headers=None, extra=None):
        super().__init__(detail)
        self.status, self.detail, self.title = status, detail, title or detail
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict:
        return {"title": self.title, "detail": self.detail, "status": self.status, **self.extra}


class State:
    def __init__(self, token: str):
        self.token = token
        self.lock = threading.Lock()
        self.models = build_models()
        self.predictions: dict[str, dict] = {}
        self.done: dict[str, threading.Event] = {}
        self.cancels: dict[str, threading.Event] = {}
        self.files: dict[str, dict] = {}
        self.outputs: dict[str, tuple[bytes, str]] = {}
        self.requests: list[dict] = []
        self.config: dict = {}
        self.api_base = ""
        self.delivery_base = ""

    # ---- files
    def resolve_file(self, value: str, prediction: dict) -> bytes:
        if not isinstance(value, str):
            raise ValueError(f"file input {value!r} is not a string")
        if value.startswith("data:"):
            head, _, payload = value.partition(",")
            return base64.b64decode(payload) if head.endswith(";base64") else \
                unquote(payload).encode()
        prefix = self.api_base + "/v1/files/"
        if value.startswith(prefix):
            fid = value[len(prefix):].split("/")[0]
            with self.lock:
                record = self.files.get(fid)
                if record is None:
                    raise ValueError(f"no uploaded file {fid}")
                prediction.setdefault("_files_used", []).append(fid)
                return record["data"]
        with urllib.request.urlopen(value, timeout=10) as r:  # Replicate fetches URLs
            return r.read()

    def store_output(self, pid: str, name: str, data: bytes, mime: str) -> str:
        key = f"{pid}/{name}"
        with self.lock:
            self.outputs[key] = (data, mime)
        return f"{self.delivery_base}/pbxt/{key}"

    # ---- predictions
    def public(self, prediction: dict) -> dict:
        return {k: v for k, v in prediction.items() if not k.startswith("_")}

    def create(self, model_name: str, version_id: str, inputs: dict) -> dict:
        pid = new_id()
        prediction = {
            "id": pid, "model": model_name, "version": version_id, "input": inputs,
            "logs": "", "output": None, "data_removed": False, "error": None,
            "status": "starting", "created_at": now_iso(), "started_at": None,
            "completed_at": None, "metrics": {},
            "urls": {"get": f"{self.api_base}/v1/predictions/{pid}",
                     "cancel": f"{self.api_base}/v1/predictions/{pid}/cancel"},
        }
        with self.lock:
            self.predictions[pid] = prediction
            self.done[pid] = threading.Event()
            self.cancels[pid] = threading.Event()
            self.models[model_name]["json"]["run_count"] += 1
        threading.Thread(target=self._execute, args=(pid,), daemon=True).start()
        return prediction

    def _execute(self, pid: str) -> None:
        p = self.predictions[pid]
        cancel = self.cancels[pid]
        run = self.models[p["model"]]["run"]
        with self.lock:
            p["status"], p["started_at"] = "processing", now_iso()
        t0 = time.monotonic()
        ctx = RunContext(self, p, cancel)
        try:
            if cancel.is_set():
                raise Canceled()
            output = run(ctx, dict(p["input"]))
            status, error = "succeeded", None
        except Canceled:
            output, status, error = None, "canceled", None
        except Exception as exc:
            output, status, error = None, "failed", f"{type(exc).__name__}: {exc}"
            ctx.log(traceback.format_exc().rstrip())
        with self.lock:
            p.update(output=output, status=status, error=error, completed_at=now_iso(),
                     metrics={"predict_time": round(time.monotonic() - t0, 6)})
        self.done[pid].set()


def validate_input(schema: dict, inputs) -> None:
    """Required inputs, types and bounds, answered as Replicate's 422."""
    if not isinstance(inputs, dict):
        raise HttpError(422, "- input: Invalid type. Expected: object", "Input validation failed",
                        extra={"invalid_fields": [{"type": "invalid_type", "field": "input",
                                                   "description": "Expected: object"}]})
    spec = schema["components"]["schemas"]["Input"]
    props = spec.get("properties", {})
    problems = []
    for name in spec.get("required", []):
        if inputs.get(name) is None:
            problems.append(("required", "input", f"{name} is required"))
    for name, value in inputs.items():
        prop = props.get(name)
        if prop is None:
            continue  # Replicate ignores unknown inputs
        if prop.get("type") == "number" and isinstance(value, (int, float)):
            if "minimum" in prop and value < prop["minimum"] or \
                    "maximum" in prop and value > prop["maximum"]:
                problems.append(("number_bounds", f"input.{name}",
                                 f"{name} must be between {prop.get('minimum')} and "
                                 f"{prop.get('maximum')}"))
    if problems:
        raise HttpError(422, "\n".join(f"- {f}: {d}" for _, f, d in problems),
                        "Input validation failed",
                        extra={"invalid_fields": [{"type": t, "field": f, "description": d}
                                                  for t, f, d in problems]})


def parse_prefer_wait(header: str):
    """Seconds from ``Prefer: wait`` (60) or ``Prefer: wait=N``; None without it."""
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "wait":
            try:
                return max(1, min(MAX_WAIT, int(value))) if value else MAX_WAIT
            except ValueError:
                return MAX_WAIT
    return None


def summarise(value, limit: int = 200):
    """A request body for the log: long strings cut, so a data URI stays readable."""
    if isinstance(value, dict):
        return {k: summarise(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [summarise(v, limit) for v in value]
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"...({len(value)} chars)"
    return value


# ----------------------------------------------------------------------------- HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ReplicateStandIn/1"
    state: State  # set on the class by main()

    def log_message(self, fmt, *args):  # quiet: tests read /_test/requests instead
        pass

    # ---- plumbing
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body, headers=None, content_type="application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _record(self, entry: dict) -> None:
        with self.state.lock:
            self.state.requests.append(entry)

    def _auth(self) -> str:
        given = self.headers.get("Authorization")
        if given is None:
            return "absent"
        return "valid" if given == f"Bearer {self.state.token}" else "invalid"

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, method: str) -> None:
        path = urlsplit(self.path).path
        raw = self._body()
        entry = {"method": method, "path": path, "auth": self._auth(), "time": time.time(),
                 "prefer": self.headers.get("Prefer"), "origin": self.server.role}
        if not path.startswith("/_test/"):
            self._record(entry)
        try:
            status, body, headers, ctype = self._route(method, path, raw, entry)
        except HttpError as e:
            status, body, headers, ctype = e.status, e.body(), e.headers, "application/json"
        except Exception as e:  # a bug in the stand-in: say so, do not hang the client
            status, body, headers, ctype = 500, {"detail": f"stand-in error: {e!r}",
                                                 "status": 500}, {}, "application/json"
        entry["status"] = status
        self._send(status, body, headers, ctype)

    # ---- routing
    def _route(self, method: str, path: str, raw: bytes, entry: dict):
        st = self.state
        if self.server.role == "delivery":
            key = path[len("/pbxt/"):] if path.startswith("/pbxt/") else None
            with st.lock:
                found = st.outputs.get(key) if key else None
            if method != "GET" or found is None:
                raise HttpError(404, "Not found.")
            return 200, found[0], {}, found[1]

        if path.startswith("/_test/"):
            return self._control(method, path, raw)
        if entry["auth"] != "valid":
            raise HttpError(401, "You did not pass a valid authentication token",
                            "Unauthenticated")
        stall = st.config.get("stall") or {}
        if stall.get("count", 0) > 0 and f"{method} {path}".startswith(stall.get("match", "")):
            with st.lock:
                stall["count"] -= 1
            time.sleep(float(stall.get("seconds", 5)))
        forbid = st.config.get("forbid") or {}
        if forbid.get("match") and f"{method} {path}".startswith(forbid["match"]):
            raise HttpError(403, "You do not have permission to perform this action.",
                            "Forbidden")
        throttle = st.config.get("throttle") or {}
        if throttle.get("count", 0) > 0 and f"{method} {path}".startswith(
                throttle.get("match", "")):
            with st.lock:
                throttle["count"] -= 1
            retry = str(throttle.get("retry_after", 1))
            raise HttpError(429, f"Request was throttled. Expected available in {retry} second.",
                            "Request was throttled.", headers={"Retry-After": retry})

        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:1] != ["v1"]:
            raise HttpError(404, "Not found.")
        parts = parts[1:]
        if method == "POST" and parts == ["files"]:
            return self._upload(raw, entry)
        if method == "GET" and len(parts) in (2, 3) and parts[0] == "files":
            return self._file(parts[1], download=len(parts) == 3 and parts[2] == "download")
        if method == "GET" and len(parts) == 3 and parts[0] == "models":
            return 200, self._model(f"{parts[1]}/{parts[2]}")["json"], {}, "application/json"
        if method == "GET" and len(parts) in (4, 5) and parts[0] == "models" \
                and parts[3] == "versions":
            version = self._model(f"{parts[1]}/{parts[2]}")["json"]["latest_version"]
            if len(parts) == 4:
                return 200, {"next": None, "previous": None, "results": [version]}, {}, \
                    "application/json"
            if parts[4] != version["id"]:
                raise HttpError(404, "Not found.")
            return 200, version, {}, "application/json"
        if method == "GET" and len(parts) == 3 and parts[0] == "deployments":
            return 200, self._deployment(f"{parts[1]}/{parts[2]}"), {}, "application/json"
        if method == "GET" and len(parts) == 2 and parts[0] == "predictions":
            return 200, self._prediction(parts[1]), {}, "application/json"
        if method == "POST" and len(parts) == 3 and parts[0] == "predictions" \
                and parts[2] == "cancel":
            return self._cancel(parts[1])
        if method == "POST":
            if parts == ["predictions"]:
                return self._create(raw, entry, route="version")
            if len(parts) == 4 and parts[0] in ("models", "deployments") \
                    and parts[3] == "predictions":
                return self._create(raw, entry, route=parts[0], name=f"{parts[1]}/{parts[2]}")
        raise HttpError(404, "Not found.")

    def _model(self, name: str) -> dict:
        model = self.state.models.get(name)
        if model is None:
            raise HttpError(404, "Not found.")
        return model

    def _deployment(self, name: str) -> dict:
        if name not in DEPLOYMENTS:
            raise HttpError(404, "Not found.")
        target = DEPLOYMENTS[name]
        owner, dname = name.split("/")
        if target is None:
            return {"owner": owner, "name": dname, "current_release": None}
        version = self.state.models[target]["json"]["latest_version"]["id"]
        return {"owner": owner, "name": dname, "current_release": {
            "number": 1, "model": target, "version": version, "created_at": "2025-01-02T03:04:05Z",
            "created_by": {"type": "organization", "username": owner},
            "configuration": {"hardware": "cpu", "min_instances": 0, "max_instances": 1}}}

    def _prediction(self, pid: str) -> dict:
        with self.state.lock:
            p = self.state.predictions.get(pid)
            if p is None:
                raise HttpError(404, "Not found.")
            return json.loads(json.dumps(self.state.public(p)))

    # ---- predictions
    def _create(self, raw: bytes, entry: dict, route: str, name: str = ""):
        st = self.state
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise HttpError(400, "The request body is not JSON.")
        entry["body"] = summarise(body)
        if route == "version":
            ref = str(body.get("version") or "")
            owner_name, _, vid = ref.rpartition(":") if ":" in ref else ("", "", ref)
            if "/" in vid and not owner_name:  # "owner/name": an official model
                owner_name, vid = vid, ""
            model_name = next((n for n, m in st.models.items()
                               if m["json"]["latest_version"]["id"] == vid
                               or (not vid and n == owner_name)), None)
            if model_name is None or (owner_name and model_name != owner_name):
                raise HttpError(422, "Invalid version or not permitted",
                                "Invalid version or not permitted")
        elif route == "deployments":
            model_name = DEPLOYMENTS.get(name)
            if model_name is None:
                raise HttpError(404, "Not found.")
        else:
            self._model(name)
            model_name = name
        model = st.models[model_name]["json"]
        version = model["latest_version"]
        validate_input(version["openapi_schema"], body.get("input"))
        p = st.create(model_name, version["id"], body["input"])
        wait = parse_prefer_wait(self.headers.get("Prefer"))
        if wait:
            st.done[p["id"]].wait(wait)
        return 201, self._prediction(p["id"]), {}, "application/json"

    def _cancel(self, pid: str):
        st = self.state
        with st.lock:
            if pid not in st.predictions:
                raise HttpError(404, "Not found.")
            st.predictions[pid]["_cancel_requested"] = True
        st.cancels[pid].set()
        st.done[pid].wait(2.0)  # the model notices within one step
        return 200, self._prediction(pid), {}, "application/json"

    # ---- files
    def _upload(self, raw: bytes, entry: dict):
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            raise HttpError(415, "Expected multipart/form-data")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
        content = next((part for part in msg.iter_parts()
                        if part.get_param("name", header="content-disposition") == "content"),
                       None)
        if content is None:
            raise HttpError(422, "- content: content is required", "Input validation failed")
        data = content.get_payload(decode=True) or b""
        fid = new_id()
        record = {
            "id": fid, "name": content.get_filename() or "file",
            "content_type": content.get_content_type(), "size": len(data),
            "etag": hashlib.md5(data).hexdigest(),
            "checksums": {"sha256": hashlib.sha256(data).hexdigest()}, "metadata": {},
            "created_at": now_iso(), "expires_at": None,
            "urls": {"get": f"{self.state.api_base}/v1/files/{fid}"},
        }
        entry["body"] = {"content": {"filename": record["name"], "size": len(data),
                                     "content_type": record["content_type"]}}
        with self.state.lock:
            self.state.files[fid] = {**record, "data": data}
        return 201, record, {}, "application/json"

    def _file(self, fid: str, download: bool):
        with self.state.lock:
            record = self.state.files.get(fid)
        if record is None:
            raise HttpError(404, "Not found.")
        if download:
            return 200, record["data"], {}, record["content_type"]
        return 200, {k: v for k, v in record.items() if k != "data"}, {}, "application/json"

    # ---- test control (stand-in only)
    def _control(self, method: str, path: str, raw: bytes):
        st = self.state
        with st.lock:
            if method == "POST" and path == "/_test/config":
                st.config.update(json.loads(raw or b"{}"))
                return 200, st.config, {}, "application/json"
            if method == "GET" and path == "/_test/requests":
                return 200, list(st.requests), {}, "application/json"
            if method == "GET" and path == "/_test/predictions":
                return 200, st.predictions, {}, "application/json"
            if method == "GET" and path == "/_test/files":
                return 200, {k: {kk: vv for kk, vv in v.items() if kk != "data"}
                             for k, v in st.files.items()}, {}, "application/json"
        raise HttpError(404, "Not found.")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--token", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)

    state = State(args.token)
    handler = type("BoundHandler", (Handler,), {"state": state})
    servers = []
    for role, port in (("api", args.port), ("delivery", 0)):
        srv = ThreadingHTTPServer((args.host, port), handler)
        srv.daemon_threads = True
        srv.role = role
        servers.append(srv)
    api, delivery = servers
    state.api_base = f"http://{args.host}:{api.server_address[1]}"
    state.delivery_base = f"http://{args.host}:{delivery.server_address[1]}"
    threading.Thread(target=delivery.serve_forever, daemon=True).start()
    print(f"REPLICATE_TEST_SERVER api={api.server_address[1]} "
          f"delivery={delivery.server_address[1]}", flush=True)
    try:
        api.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
