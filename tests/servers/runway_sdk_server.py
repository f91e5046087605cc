#!/usr/bin/env python3
"""A stand-in for a Runway Model SDK server (and for Runway's hosted models).

It follows docs/protocols/runway-model-sdk.md, quirks included, so the
client can be tested over real HTTP without the SDK (which needs Flask 1.x
and cannot be installed here). Standard library plus Pillow only, so it runs
in any Python the tests use.

    RW_PORT=9000 RW_HOST=127.0.0.1 RW_MODEL_OPTIONS='{"weights_dir": "/tmp"}' \
        python runway_sdk_server.py [--request-log FILE] [--hosted ...]

RW_PORT=0 picks a free port. The chosen port is printed as
``RUNWAY_TEST_SERVER_PORT=<n>`` as soon as the socket is bound; the server
only listens (so connections are refused until then) once the first setup is
done, like the SDK. ``--request-log`` appends one JSON line per request (what
arrived, what was answered) so tests can assert what the server saw; it is
the only addition to the protocol and it does not show on the wire.

The built-in model has setup options of several types and commands that
exercise all 13 data types; see ``MODEL`` at the bottom.
"""
from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image, ImageOps

SDK_VERSION = "0.6.1"
GZIP_MIN_BYTES = 500  # responses over this size are gzipped when the client asks


# ----------------------------------------------------------------------------- errors

class RunwayError(Exception):
    code = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def response(self):
        return {"error": self.message, "traceback": traceback.format_tb(self.__traceback__)}


class ArgumentError(RunwayError):
    code = 400

    def __init__(self, name: str, reason: str = ""):
        super().__init__(f"Invalid argument: {name}." + (f" {reason}" if reason else ""))


class MissingOption(RunwayError):
    code = 400

    def __init__(self, name: str):
        super().__init__(f"Missing option: {name}.")


class UnknownCommand(RunwayError):
    code = 404

    def __init__(self, name: str):
        super().__init__(f"Unknown command: {name}.")


class SetupFailed(RunwayError):
    def __init__(self, exc: BaseException):
        super().__init__(f"Error during setup: {exc!r}")


class InferenceFailed(RunwayError):
    def __init__(self, exc: BaseException):
        super().__init__(f"Error during inference: {exc!r}")


class NotJSON(Exception):
    pass


# ----------------------------------------------------------------------------- data types
# Each type: to_dict() as in /meta, deserialize() for values that arrive,
# serialize() for values that leave. Limits that the SDK does not enforce
# (text length, number range, vector length, image size) are not enforced here.

_NO_DEFAULT = object()


class DataType:
    type = "any"

    def __init__(self, description=None):
        self.name = self.type
        self.description = description

    @property
    def default(self):
        return _NO_DEFAULT

    def to_dict(self):
        return {"name": self.name, "type": self.type, "description": self.description}

    def deserialize(self, value):
        return value

    def serialize(self, value, fmt=None):
        return value


class AnyType(DataType):
    type = "any"


class Text(DataType):
    type = "text"

    def __init__(self, description=None, default="", min_length=0, max_length=None):
        super().__init__(description)
        self._default, self.min_length, self.max_length = default, min_length, max_length

    @property
    def default(self):
        return self._default

    def to_dict(self):
        d = dict(super().to_dict(), default=self._default, minLength=self.min_length)
        if self.max_length:
            d["maxLength"] = self.max_length
        return d

    def serialize(self, value, fmt=None):
        return str(value)


class Number(DataType):
    type = "number"

    def __init__(self, description=None, default=None, min=None, max=None, step=None):
        super().__init__(description)
        # As the SDK: `default or min or max or 0`, so a default of 0 becomes min or max.
        self._default, self.min, self.max, self.step = default or min or max or 0, min, max, step

    @property
    def default(self):
        return self._default

    def to_dict(self):
        d = dict(super().to_dict(), default=self._default)
        for key in ("min", "max", "step"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d


class Boolean(DataType):
    type = "boolean"

    def __init__(self, description=None, default=False):
        super().__init__(description)
        self._default = default

    @property
    def default(self):
        return self._default

    def to_dict(self):
        return dict(super().to_dict(), default=self._default)

    def deserialize(self, value):
        if type(value) is not bool:
            raise ArgumentError(self.name, f"value type {type(value).__name__} is not a boolean")
        return value


class Category(DataType):
    type = "category"

    def __init__(self, choices, description=None, default=None):
        super().__init__(description)
        self.choices = list(choices)
        self._default = default if default is not None else self.choices[0]

    @property
    def default(self):
        return self._default

    def to_dict(self):
        return dict(super().to_dict(), oneOf=self.choices, default=self._default)

    def deserialize(self, value):
        if value not in self.choices:
            raise ArgumentError(self.name, f'category value "{value}" is not one of the choices')
        return value


class Vector(DataType):
    type = "vector"

    def __init__(self, length, description=None, default=None, sampling_mean=0.0,
                 sampling_std=1.0):
        super().__init__(description)
        self.length, self.sampling_mean, self.sampling_std = length, sampling_mean, sampling_std
        self._default = default  # the SDK states none (null) when none is given

    @property
    def default(self):
        return None if self._default is None else list(self._default)

    def to_dict(self):
        return dict(super().to_dict(), length=self.length, samplingMean=self.sampling_mean,
                    samplingStd=self.sampling_std, default=self._default)

    def deserialize(self, value):
        return [float(v) for v in value]  # length not checked, as in the SDK


class Array(DataType):
    type = "array"

    def __init__(self, item_type, description=None, min_length=0, max_length=None):
        super().__init__(description)
        self.item_type = item_type
        item_type.name = f"{item_type.type}_array_item"
        self.min_length, self.max_length = min_length, max_length

    def to_dict(self):
        d = dict(super().to_dict(), itemType=self.item_type.to_dict(), minLength=self.min_length)
        if self.max_length:
            d["maxLength"] = self.max_length
        return d

    def deserialize(self, value):
        return [self.item_type.deserialize(v) for v in value]

    def serialize(self, value, fmt=None):
        return [self.item_type.serialize(v, fmt) for v in value]


class File(DataType):
    type = "file"

    def __init__(self, description=None, is_directory=False, extension=None):
        super().__init__(description)
        self.is_directory, self.extension = is_directory, extension

    @property
    def default(self):  # the SDK's file default is None: left out, the model gets None
        return None

    def to_dict(self):
        d = super().to_dict()
        if self.is_directory:
            d["isDirectory"] = True
        if self.extension:
            d["extension"] = self.extension
        return d

    def deserialize(self, value):
        if value.startswith(("http://", "https://", "ftp://")):
            return _download(value)
        if not os.path.exists(value):
            raise ArgumentError(self.name, "file path provided does not exist")
        if self.extension and not value.endswith(self.extension):
            raise ArgumentError(self.name, "file path does not have expected extension")
        return value


def _download(url: str) -> str:
    """Fetch a URL into a temporary file; a tarball is extracted into a folder."""
    folder = tempfile.mkdtemp(prefix="runway-download-")
    target = os.path.join(folder, os.path.basename(url.split("?")[0]) or "download")
    with urllib.request.urlopen(url, timeout=60) as r, open(target, "wb") as f:
        shutil.copyfileobj(r, f)
    if tarfile.is_tarfile(target):
        out = target + "_extracted"
        with tarfile.open(target) as tar:
            tar.extractall(out, filter="data")
        return out
    return target


def _decode_image_bytes(value: str) -> Image.Image:
    # A data URI or raw base64; the prefix up to the comma is ignored like the SDK does.
    raw = base64.b64decode(value[value.find(",") + 1:].encode("utf-8"))
    img = Image.open(io.BytesIO(raw))
    img.load()
    return img


def _encode_image(img: Image.Image, fmt: str) -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


class ImageType(DataType):
    type = "image"
    _modes = {1: "L", 3: "RGB", 4: "RGBA"}

    def __init__(self, description=None, channels=3, min_width=None, min_height=None,
                 max_width=None, max_height=None, width=None, height=None,
                 default_output_format=None):
        super().__init__(description)
        self.channels = channels
        self.sizes = {"minWidth": min_width, "maxWidth": max_width, "minHeight": min_height,
                      "maxHeight": max_height, "width": width, "height": height}
        self.default_output_format = default_output_format or (
            "JPEG" if channels == 3 else "PNG")

    def to_dict(self):
        d = dict(super().to_dict(), channels=self.channels)
        d.update({k: v for k, v in self.sizes.items() if v})
        d["defaultOutputFormat"] = self.default_output_format
        return d

    def deserialize(self, value):
        # None (a missing input) or bad base64 raise plain errors: a bare 500.
        img = _decode_image_bytes(value)
        mode = self._modes[self.channels]
        return img if img.mode == mode else img.convert(mode)

    def serialize(self, value, fmt=None):
        mode = self._modes[self.channels]
        img = value if value.mode == mode else value.convert(mode)
        return _encode_image(img, fmt or self.default_output_format)


class Segmentation(DataType):
    type = "segmentation"

    def __init__(self, label_to_id, description=None, label_to_color=None, default_label=None,
                 width=None, height=None):
        super().__init__(description)
        self.label_to_id = dict(label_to_id)
        self.label_to_color = {k: list(v) for k, v in (label_to_color or {}).items()}
        for label, label_id in self.label_to_id.items():  # colours for labels given none
            self.label_to_color.setdefault(label, [(label_id * 67) % 256, (label_id * 131) % 256,
                                                   (label_id * 29) % 256])
        self.default_label = default_label or next(iter(self.label_to_id))
        self.width, self.height = width, height

    def to_dict(self):
        d = dict(super().to_dict(), labels=list(self.label_to_id), defaultLabel=self.default_label,
                 labelToId=self.label_to_id, labelToColor=self.label_to_color)
        if self.width:
            d["width"] = self.width
        if self.height:
            d["height"] = self.height
        return d

    def deserialize(self, value):
        try:
            img = _decode_image_bytes(value)
        except Exception:
            raise ArgumentError(self.name, "unable to parse expected base64-encoded image")
        if not img.mode.startswith("RGB"):
            return img.convert("L")
        # A colour map: each pixel takes the label of the nearest label colour.
        colors = [(tuple(c), self.label_to_id[label]) for label, c in self.label_to_color.items()]
        rgb = img.convert("RGB")
        cache = {}

        def nearest(px):
            if px not in cache:
                cache[px] = min(colors, key=lambda c: sum((a - b) ** 2
                                                          for a, b in zip(c[0], px)))[1]
            return cache[px]

        ids = Image.new("L", rgb.size)
        ids.putdata([nearest(px) for px in rgb.getdata()])
        return ids

    def serialize(self, value, fmt=None):
        if value.mode == "L":
            palette = {self.label_to_id[k]: tuple(c) for k, c in self.label_to_color.items()}
            cmap = Image.new("RGB", value.size)
            cmap.putdata([palette.get(v, (0, 0, 0)) for v in value.getdata()])
            value = cmap
        return _encode_image(value, "PNG")


class ImagePoint(DataType):
    type = "image_point"

    def deserialize(self, value):
        if len(value) != 2:
            raise ArgumentError(self.name, "Value must be of length 2")
        return value


class ImageBoundingBox(DataType):
    type = "image_bounding_box"

    def deserialize(self, value):
        if len(value) != 4:
            raise ArgumentError(self.name, "Value must be of length 4")
        if value[0] >= value[2]:
            raise ArgumentError(self.name, f"{self.name}[0] must be less than {self.name}[2]")
        if value[1] >= value[3]:
            raise ArgumentError(self.name, f"{self.name}[1] must be less than {self.name}[3]")
        return value


class ImageLandmarks(DataType):
    type = "image_landmarks"

    def __init__(self, length, description=None, labels=None, connections=None):
        super().__init__(description)
        self.length, self.labels, self.connections = length, labels, connections

    def to_dict(self):
        d = dict(super().to_dict(), length=self.length)
        if self.labels:
            d["labels"] = self.labels
        if self.connections:
            d["connections"] = self.connections
        return d

    def deserialize(self, value):
        if len(value) != self.length:
            raise ArgumentError(self.name, f"Expected array of length {self.length}, "
                                           f"instead got array of length {len(value)}")
        for index, point in enumerate(value):
            if len(point) != 2:
                raise ArgumentError(self.name, f"Expected point at index {index} to have 2 "
                                               f"elements, instead got {len(point)} elements")
        return value


# ----------------------------------------------------------------------------- the model

class Model:
    """Setup options, commands and the state the SDK keeps between requests."""

    def __init__(self, options: dict, setup_fn, commands: dict):
        self.options = options
        for name, opt in options.items():
            opt.name = name
        self.setup_fn = setup_fn
        self.commands = commands  # name -> (fn, inputs, outputs, description)
        for _, inputs, outputs, _ in commands.values():
            for name, field in list(inputs.items()) + list(outputs.items()):
                field.name = name
        self.state = None
        self.status = "STARTING"
        self.started_ms = None
        self.last_command_ms = None

    def setup(self, opts: dict) -> None:
        """Missing keys take their defaults: earlier values are not kept."""
        values = {}
        for name, opt in self.options.items():
            if name in opts:
                values[name] = opt.deserialize(opts[name])
            elif opt.default is not _NO_DEFAULT:
                values[name] = opt.default
            else:
                raise MissingOption(name)
        self.status = "STARTING"  # stays so when setup fails; the old state keeps serving
        try:
            self.state = self.setup_fn(values)
        except RunwayError:
            raise
        except Exception as exc:  # re-raised with the model's own traceback, as the SDK does
            raise SetupFailed(exc).with_traceback(exc.__traceback__) from None
        self.status = "RUNNING"
        if self.started_ms is None:
            self.started_ms = _millis()

    def meta(self) -> dict:
        now = _millis()
        return {
            "modelSDKVersion": SDK_VERSION,
            "millisRunning": now - self.started_ms if self.started_ms else None,
            "millisSinceLastCommand": now - self.last_command_ms if self.last_command_ms else None,
            "GPU": os.environ.get("GPU") == "1",
            "options": [o.to_dict() for o in self.options.values()],
            "commands": [self.command_spec(n) for n in self.commands],
        }

    def command_spec(self, name: str) -> dict:
        if name not in self.commands:
            raise UnknownCommand(name)
        _, inputs, outputs, description = self.commands[name]
        return {"name": name, "description": description,
                "inputs": [f.to_dict() for f in inputs.values()],
                "outputs": [f.to_dict() for f in outputs.values()]}

    def run(self, name: str, data, formats: dict) -> dict:
        if name not in self.commands:
            raise UnknownCommand(name)
        fn, inputs, outputs, _ = self.commands[name]
        data = data if isinstance(data, dict) else {}
        args = {}
        for key, field in inputs.items():
            if key in data:
                args[key] = field.deserialize(data[key])
            elif field.default is not _NO_DEFAULT:
                args[key] = field.default
            else:
                args[key] = field.deserialize(None)  # crashes for images: a bare 500
        self.last_command_ms = _millis()
        try:
            result = fn(self.state, args)
            if hasattr(result, "__next__"):  # over HTTP a generator gives its last value
                last = None
                for last in result:
                    pass
                result = last[0] if isinstance(last, tuple) else last
        except Exception as exc:
            raise InferenceFailed(exc).with_traceback(exc.__traceback__) from None
        return {key: outputs[key].serialize(value, formats.get(key)) if key in outputs else value
                for key, value in result.items()}


def _millis() -> int:
    return int(time.time() * 1000)


def _parse_output_formats(header: str) -> dict:
    formats = {}
    for part in (header or "").split(";"):
        if "=" in part:
            key, value = part.split("=", 1)
            formats[key.strip()] = value.strip().upper()
    return formats


# ----------------------------------------------------------------------------- HTTP

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, model: Model, args):
        super().__init__(address, Handler, bind_and_activate=False)
        self.model = model
        self.args = args
        # Held while a setup runs: every other request waits, so nothing is answered,
        # as with the SDK whose single gevent loop is blocked by the setup.
        self.quiet = threading.Lock()
        self.log_lock = threading.Lock()
        self.hosted = HostedState(args) if args.hosted else None


class HostedState:
    def __init__(self, args):
        self.token = args.token
        self.wake_seconds = args.wake_seconds
        self.awake_at = None if args.wake_seconds > 0 else 0.0  # None: asleep
        self.injected = [int(s) for s in args.inject.split(",") if s.strip()]
        self.retry_after = args.retry_after
        self.command = args.hosted_command
        self.lock = threading.Lock()

    def wake(self) -> str:
        """Any request wakes a sleeping model; answers "starting" until it is up."""
        with self.lock:
            if self.awake_at is None:
                self.awake_at = time.monotonic() + self.wake_seconds
            return "running" if time.monotonic() >= self.awake_at else "starting"

    def next_injected(self):
        with self.lock:
            return self.injected.pop(0) if self.injected else None


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if self.server.args.verbose:
            super().log_message(fmt, *args)

    # -- request and response plumbing ---------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        self._wire_body = self.rfile.read(length) if length else b""
        return self._wire_body

    def _json_body(self):
        """The body parsed as JSON whatever the Content-Type; gzip only with the exact pair."""
        body = self._read_body()
        if (self.headers.get("Content-Encoding") == "gzip"
                and self.headers.get("Content-Type") == "application/json"):
            try:
                body = gzip.decompress(body)
            except OSError:
                raise NotJSON()
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise NotJSON()
        self._body_keys = sorted(data) if isinstance(data, dict) else None
        return data

    def _send(self, status: int, payload, extra_headers=None, raw: bytes = None,
              content_type="application/json"):
        body = raw if raw is not None else json.dumps(payload).encode("utf-8")
        gzipped = (len(body) > GZIP_MIN_BYTES
                   and "gzip" in (self.headers.get("Accept-Encoding") or ""))
        if gzipped:
            body = gzip.compress(body)
        self._log(status, gzipped, len(body), payload)  # before the answer: tests read it then
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _log(self, status, gzipped, size, payload):
        path = self.server.args.request_log
        if not path:
            return
        record = {
            "method": self.command, "path": self.path, "status": status,
            "request_bytes": len(getattr(self, "_wire_body", b"")),
            "request_headers": {k.lower(): v for k, v in self.headers.items()
                                if k.lower() != "authorization"},
            "authorized": "Authorization" in self.headers,
            "body_keys": getattr(self, "_body_keys", None),
            "response_gzip": gzipped, "response_bytes": size,
            "error": payload.get("error") if isinstance(payload, dict) else None,
        }
        with self.server.log_lock, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _error(self, err: RunwayError):
        self._send(err.code, err.response())

    def _bare_500(self):
        self._send(500, {"error": "Internal server error."})

    def _wait_quiet(self):
        with self.server.quiet:
            pass

    # -- methods ---------------------------------------------------------------------

    def do_OPTIONS(self):  # CORS preflight, as flask-cors answers it
        self._send(200, None, raw=b"", extra_headers={
            "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
            "Access-Control-Allow-Headers": self.headers.get(
                "Access-Control-Request-Headers", "*")})

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def _dispatch(self, method: str):
        self._wait_quiet()
        try:
            if self.server.hosted:
                self._hosted(method)
            else:
                self._sdk(method)
        except NotJSON:
            self._send(400, {"error": "Invalid JSON: the request body could not be parsed."})
        except RunwayError as err:
            self._error(err)
        except Exception:
            traceback.print_exc()
            self._bare_500()

    # -- Model SDK routes --------------------------------------------------------------

    def _sdk(self, method: str):
        model = self.server.model
        path = self.path.split("?")[0]
        segments = [s for s in path.split("/") if s]
        if len(segments) > 1:
            return self._send(404, {"error": "Not found."})
        name = segments[0] if segments else ""
        if method not in ("GET", "POST") or (method == "POST" and name == ""):
            return self._send(405, {"error": "Method not allowed."})
        if method == "GET":
            if name in ("", "meta"):
                return self._send(200, model.meta())
            if name == "healthcheck":
                return self._send(200, {"status": model.status})
            if name == "setup":  # the SDK's GET /setup tries to jsonify objects and fails
                return self._bare_500()
            return self._send(200, model.command_spec(name))
        if name == "setup":
            opts = self._json_body()
            with self.server.quiet:
                model.setup(opts if isinstance(opts, dict) else {})
            return self._send(200, {"success": True})
        data = self._json_body()
        formats = _parse_output_formats(self.headers.get("X-Runway-Output-Format"))
        return self._send(200, model.run(name, data, formats))

    # -- hosted-model routes -----------------------------------------------------------

    def _hosted(self, method: str):
        hosted = self.server.hosted
        if hosted.token and self.headers.get("Authorization") != f"Bearer {hosted.token}":
            return self._send(401, {"error": "Permission denied."})
        path = self.path.split("?")[0].rstrip("/")
        if path == "/v1" and method == "GET":
            return self._send(200, {"status": hosted.wake(), "queryRoute": "/v1/query",
                                    "infoRoute": "/v1/info"})
        if path not in ("/v1/info", "/v1/query"):
            return self._send(404, {"error": "Not found."})
        if (path, method) not in (("/v1/info", "GET"), ("/v1/query", "POST")):
            return self._send(405, {"error": "Method not allowed."})
        if path == "/v1/query":
            injected = hosted.next_injected()
            if injected is not None:
                self._read_body()
                headers = {"Retry-After": hosted.retry_after} if hosted.retry_after else {}
                if injected == 502:  # a gateway answers, not the model: HTML
                    return self._send(502, None, extra_headers=headers, content_type="text/html",
                                      raw=b"<html><body>502 Bad Gateway</body></html>")
                return self._send(injected, {"error": "Too many requests."},
                                  extra_headers=headers)
        while hosted.wake() != "running":  # a request for a sleeping model waits for it
            time.sleep(0.05)
        model = self.server.model
        if path == "/v1/info":
            return self._send(200, model.command_spec(hosted.command))
        return self._send(200, model.run(hosted.command, self._json_body(), {}))


# ----------------------------------------------------------------------------- built-in model

def _setup(opts):
    if opts["setup_seconds"]:
        time.sleep(float(opts["setup_seconds"]))
    if opts["fail_setup"]:
        raise RuntimeError("setup was asked to fail")
    return dict(opts)


def _echo_all(model, args):
    out = dict(args)
    out["rgba"] = args["image"].convert("RGBA")
    return out


def _invert(model, args):
    return {"image": ImageOps.invert(args["image"])}


def _fail(model, args):
    raise ValueError(f"the model failed on purpose: {args['message']}")


def _slow(model, args):
    time.sleep(float(args["seconds"]))
    return {"text": "done"}


def _progress(model, args):
    steps = int(args["steps"])
    for i in range(1, steps + 1):
        yield {"text": f"step {i} of {steps}"}, i / steps


def _setup_info(model, args):
    return {"options": {k: v for k, v in model.items()}}


def build_model() -> Model:
    labels = {"background": 0, "person": 1, "sky": 2}
    colors = {"background": [0, 0, 0], "person": [255, 0, 0], "sky": [0, 0, 255]}
    landmark_labels = ["nose", "left_eye", "right_eye"]

    def every_type():  # fresh instances: names are assigned per command
        return {
            "image": ImageType(description="An RGB image.", channels=3),
            "text": Text(description="Some text.", default="hi", max_length=10),
            "number": Number(default=1, min=0, max=10, step=0.5),
            "count": Number(min=2, step=1),  # no default: its min
            "flag": Boolean(default=False),
            "choice": Category(["red", "green", "blue"], default="green"),
            "z": Vector(length=4, sampling_mean=0.5, sampling_std=0.1),
            "words": Array(Text(), min_length=1, max_length=3),
            "path": File(extension=".txt"),
            "folder": File(is_directory=True),
            "mask": Segmentation(labels, label_to_color=colors),
            "point": ImagePoint(),
            "box": ImageBoundingBox(),
            "pose": ImageLandmarks(3, labels=landmark_labels,
                                   connections=[["nose", "left_eye"], ["nose", "right_eye"]]),
            "extra": AnyType(),
        }

    echo_outputs = every_type()
    echo_outputs["rgba"] = ImageType(channels=4)  # PNG by default
    commands = {
        "echo_all": (_echo_all, every_type(), echo_outputs, "Echoes every data type."),
        "invert": (_invert, {"image": ImageType(channels=3, width=64, height=64)},
                   {"image": ImageType(channels=3)}, "Inverts an image."),
        "fail": (_fail, {"message": Text(default="boom")}, {"text": Text()},
                 "Always raises."),
        "slow": (_slow, {"seconds": Number(default=1, min=0)}, {"text": Text()},
                 "Sleeps, then answers."),
        "progress": (_progress, {"steps": Number(default=3, min=1, step=1)}, {"text": Text()},
                     "A generator: over HTTP only its last value comes back."),
        "setup_info": (_setup_info, {"prefix": Text()}, {"options": AnyType()},
                       "The options the last successful setup received."),
    }
    options = {
        "setup_seconds": Number(default=0, min=0,  # no max: it would become the default
                                description="How long setup takes (for tests)."),
        "fail_setup": Boolean(default=False),
        "greeting": Text(default="hello"),
        "quality": Category(["draft", "final"], default="draft"),
        "weights_dir": File(is_directory=True, description="A folder; no default."),
    }
    return Model(options, _setup, commands)


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=int(os.environ.get("RW_PORT", "9000")))
    # The SDK binds 0.0.0.0 by default; a test server stays on loopback unless told.
    p.add_argument("--host", default=os.environ.get("RW_HOST", "127.0.0.1"))
    p.add_argument("--options", default=os.environ.get("RW_MODEL_OPTIONS", "{}"),
                   help="startup setup options (JSON); default from RW_MODEL_OPTIONS")
    p.add_argument("--request-log", default=None, help="append one JSON line per request")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--hosted", action="store_true", help="serve /v1/, /v1/info, /v1/query")
    p.add_argument("--token", default=None, help="hosted: the Bearer token required")
    p.add_argument("--wake-seconds", type=float, default=0.0,
                   help="hosted: start asleep; the first request wakes it after this long")
    p.add_argument("--inject", default="", help="hosted: statuses answered to the first "
                                                "queries, e.g. 429,502")
    p.add_argument("--retry-after", default="", help="hosted: Retry-After for injected answers")
    p.add_argument("--hosted-command", default="invert")
    args = p.parse_args(argv)

    model = build_model()
    if os.environ.get("RW_META") == "1":
        meta = model.meta()
        print(json.dumps({"options": meta["options"], "commands": meta["commands"]}))
        return 0

    server = Server((args.host, args.port), model, args)
    server.server_bind()  # the port is ours, but refuses connections until listen()
    print(f"RUNWAY_TEST_SERVER_PORT={server.server_address[1]}", flush=True)
    try:
        model.setup(json.loads(args.options))
    except Exception as exc:
        message = exc.message if isinstance(exc, RunwayError) else repr(exc)
        print(f"Setup failed: {message}", file=sys.stderr, flush=True)
        traceback.print_exc()
        return 1
    server.server_activate()
    print("RUNWAY_TEST_SERVER_READY", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
