"""Clients for the Runway Model SDK wire protocol.

``RunwayClient`` talks to a model server written with Runway's Model SDK (a
``runway_model.py`` run locally, in Docker or on a remote machine);
``HostedRunwayClient`` talks to the hosted-models flavour (``/v1/info``,
``/v1/query``). Both map the SDK's field descriptions into ``core.spec`` and
turn every failure the server is known to produce into a ``core.errors`` type
that says what to do. The quirks they work around are listed in
docs/protocols/runway-model-sdk.md.
"""
from __future__ import annotations

import gzip
import json
import re
import threading
import time
import uuid
from typing import Any, Callable, Mapping, Optional, Union

import requests
from pydantic import ValidationError

from ..codecs import WireContext, decode_value, encode_value
from ..errors import (AuthError, BadAnswer, Cancelled, ConnectionFailed, FieldIssue,
                      ModelNotReady, RunwayError, ServerError, SpecValidationError, TimedOut)
from ..spec import (AnyField, ArrayField, BooleanField, CategoryField, Command, FieldSpec,
                    FileField, ImageBoundingBoxField, ImageField, ImageLandmarksField,
                    ImagePointField, ModelSpec, NumberField, Protocol, SegmentationField,
                    TextField, VectorField)
from ..validation import validate_inputs
from . import http
from .base import Health, HealthState, ModelClient, RunResult, command_of, decode_typed
from .http import Deadline, Reply

__all__ = [
    "field_from_runway", "command_from_runway", "spec_from_meta",
    "RunwayClient", "HostedRunwayClient", "OUTPUT_FORMATS",
]

# Formats a Runway server can write for an image output. EXR is accepted by the
# header parser but fails without network access, so it is not offered.
OUTPUT_FORMATS = ("PNG", "JPEG")

_SIZE_KEYS = {"minWidth": "min_width", "maxWidth": "max_width", "minHeight": "min_height",
              "maxHeight": "max_height", "width": "width", "height": "height"}


# --------------------------------------------------------------------------- spec mapping

def _common(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": str(d.get("name") or d.get("type") or "value"),
        "description": str(d.get("description") or ""),
        "raw": dict(d),
    }


def _sizes(d: Mapping[str, Any]) -> dict[str, Any]:
    return {ours: d[theirs] for theirs, ours in _SIZE_KEYS.items() if d.get(theirs) is not None}


def _number_default(d: Mapping[str, Any]) -> float:
    # The SDK's rule when a number has no default: min, else max, else 0.
    for key in ("default", "min", "max"):
        if d.get(key) is not None:
            return d[key]
    return 0


def _landmark_connections(d: Mapping[str, Any]) -> list[tuple[int, int]]:
    # The SDK writes connections as pairs of label names; indices are kept as they are.
    labels = list(d.get("labels") or [])
    pairs = []
    for pair in d.get("connections") or []:
        a, b = pair
        pairs.append((labels.index(a) if isinstance(a, str) else int(a),
                      labels.index(b) if isinstance(b, str) else int(b)))
    return pairs


def _build_field(d: Mapping[str, Any]) -> FieldSpec:
    kind = d.get("type")
    base = _common(d)
    if kind == "image":
        fmt = d.get("defaultOutputFormat")
        return ImageField(**base, channels=d.get("channels") or 3, **_sizes(d),
                          default_format=fmt if fmt in OUTPUT_FORMATS else None)
    if kind == "text":
        return TextField(**base, default=d.get("default", ""), min_length=d.get("minLength") or 0,
                         max_length=d.get("maxLength"))
    if kind == "number":
        return NumberField(**base, default=_number_default(d), min=d.get("min"),
                           max=d.get("max"), step=d.get("step"))
    if kind == "boolean":
        return BooleanField(**base, default=bool(d.get("default", False)))
    if kind == "category":
        choices = list(d["oneOf"])
        default = d.get("default")
        return CategoryField(**base, choices=choices,
                             default=default if default is not None else choices[0])
    if kind == "vector":
        default = d.get("default")
        length = d.get("length") if d.get("length") is not None else len(default)
        return VectorField(**base, length=length, sampling_mean=d.get("samplingMean", 0.0),
                           sampling_std=d.get("samplingStd", 1.0), default=default)
    if kind == "array":
        return ArrayField(**base, item=field_from_runway(d["itemType"]),
                          min_length=d.get("minLength") or 0, max_length=d.get("maxLength"))
    if kind == "file":
        return FileField(**base, is_directory=bool(d.get("isDirectory", False)),
                         extension=d.get("extension"), default=d.get("default"))
    if kind == "segmentation":
        label_to_id = dict(d.get("labelToId") or {})
        labels = list(d.get("labels") or label_to_id)
        return SegmentationField(
            **base, labels=labels, default_label=d.get("defaultLabel"), label_to_id=label_to_id,
            label_to_color={k: tuple(v) for k, v in (d.get("labelToColor") or {}).items()},
            **_sizes(d))
    if kind == "image_point":
        return ImagePointField(**base)
    if kind == "image_bounding_box":
        return ImageBoundingBoxField(**base)
    if kind == "image_landmarks":
        return ImageLandmarksField(**base, length=d["length"], labels=d.get("labels"),
                                   connections=_landmark_connections(d))
    if kind == "any":
        return AnyField(**base, default=d.get("default"))
    raise ValueError(f"unknown Runway field type {kind!r}")


def field_from_runway(d: Mapping[str, Any]) -> FieldSpec:
    """One Runway field description (input, output or option) as a ``core.spec`` field.

    A type this module does not know, or a known type whose description is
    malformed, becomes an ``AnyField`` that keeps the description in ``raw``:
    the value then passes through untouched instead of the field disappearing.
    """
    if not isinstance(d, Mapping):
        return AnyField(name="value", raw={"value": d})
    try:
        return _build_field(d)
    except (AttributeError, KeyError, TypeError, ValueError, ValidationError, OverflowError,
            RecursionError, IndexError):
        try:
            return AnyField(**_common(d), default=d.get("default"))
        except (ValidationError, TypeError, ValueError):
            return AnyField(name=str(d.get("name"))[:100] or "value", raw={})


def _list_of(d: Mapping[str, Any], key: str, what: str) -> list:
    value = d.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadAnswer(f"The model's description is not a Runway model's: {what} {key!r} is "
                        f"{type(value).__name__}, not a list.",
                        hint="Check that the URL points at a Runway model server.")
    return value


def command_from_runway(d: Mapping[str, Any]) -> Command:
    if not isinstance(d, Mapping):
        raise BadAnswer(f"The model's description lists a command that is "
                        f"{type(d).__name__}, not an object.",
                        hint="Check that the URL points at a Runway model server.")
    name = d.get("name")
    try:
        return Command(name=str(name)[:200] if name else "query",
                       description=str(d.get("description") or "")[:10_000],
                       inputs=[field_from_runway(f) for f in _list_of(d, "inputs", "a command's")],
                       outputs=[field_from_runway(f)
                                for f in _list_of(d, "outputs", "a command's")])
    except ValidationError as exc:
        raise BadAnswer(f"The model's command {str(name)[:80]!r} cannot be read.",
                        hint="Check the model server.", details=str(exc)[:2000]) from None


def spec_from_meta(meta: Mapping[str, Any], protocol: Protocol = Protocol.RUNWAY) -> ModelSpec:
    """The answer of ``GET /meta`` (or ``GET /``) as a ``ModelSpec``; BadAnswer when
    it is not a Runway model's description."""
    if not isinstance(meta, Mapping) or not isinstance(meta.get("commands"), list):
        raise BadAnswer("The answer does not describe a Runway model (no list of commands).",
                        hint="Check that the URL points at a Runway model server.")
    http.check_depth(meta, "The model's description")
    gpu, version = meta.get("GPU"), meta.get("modelSDKVersion")
    try:
        return ModelSpec(
            protocol=protocol,
            commands=[command_from_runway(c) for c in meta["commands"]],
            options=[field_from_runway(o) for o in _list_of(meta, "options", "its")],
            gpu=gpu if isinstance(gpu, bool) else None,
            version=str(version)[:100] if isinstance(version, (str, int, float)) else None,
        )
    except ValidationError as exc:
        raise BadAnswer("The model's description cannot be read as a Runway model.",
                        hint="Check the model server.", details=str(exc)[:2000]) from None


# --------------------------------------------------------------------------- HTTP plumbing

def _traceback(body: Any) -> str:
    tb = body.get("traceback") if isinstance(body, dict) else None
    if isinstance(tb, list):
        return "".join(str(line) for line in tb[:2000])[:100_000]
    return str(tb or "")[:100_000]


def _json_or_none(r: Reply) -> Any:
    return r.json_or_none()


def _not_json(r: Reply, url: str) -> ServerError:
    return BadAnswer(
        f"The server at {url} answered HTTP {r.status_code} with something that is not JSON.",
        status=r.status_code, details=r.text[:4000],
        hint="Check that the URL points at a Runway model server (every answer of one is JSON).")


def _retry_after(r: Reply) -> Optional[float]:
    return http.retry_after(r.headers)


def _message(body: Any) -> str:
    """The server's error message, one line, short."""
    if isinstance(body, dict):
        body = body.get("error")
    return " ".join(str(body if body is not None else "").split())[:1000]


class _RunwayHTTP(ModelClient):
    """What both Runway clients share: one requests Session, interruptible
    requests, validation/encoding/decoding around a POST, error mapping."""

    protocol = Protocol.RUNWAY

    def __init__(self, url: str, *, token: Optional[str] = None, timeout: float = 600.0,
                 shared_dir: Optional[str] = None, connect_timeout: float = 5.0,
                 gzip_min_bytes: int = 256 * 1024, input_image_format: str = "PNG",
                 session: Optional[requests.Session] = None):
        super().__init__(url, token=token, timeout=timeout, shared_dir=shared_dir)
        self.connect_timeout = connect_timeout
        # Bodies under this size go as they are: on loopback gzip costs more than it saves.
        self.gzip_min_bytes = gzip_min_bytes
        # Inputs go as lossless PNG unless asked otherwise: a field's defaultOutputFormat
        # (JPEG for RGB) says how the model answers, not how it wants to be fed.
        self.input_image_format = input_image_format
        self.session = http.watch_session(session or requests.Session())
        self._spec: Optional[ModelSpec] = None
        self._lock = threading.Lock()
        self._cancels: dict[str, threading.Event] = {}
        self._inflight = 0

    # -- plumbing -----------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.url}/{path.lstrip('/')}"

    def _headers(self, extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def _connection_failed(self, exc: ConnectionFailed, timeout: float) -> RunwayError:
        if isinstance(exc, TimedOut):
            return TimedOut(
                f"The model server at {self.url} did not answer in time ({timeout:g} s).",
                hint="It may be busy with its setup or a long run; wait and try again, or "
                     "raise the timeout.", details=exc.details)
        if getattr(exc, "refused", False):
            return ConnectionFailed(
                f"Nothing is listening at {self.url} (connection refused).",
                hint="Start the model, or wait: a Runway model keeps its port closed while its "
                     "setup runs.", details=exc.details)
        return ConnectionFailed(f"Cannot reach the model server at {self.url}.",
                                hint="Check the URL and the network.", details=exc.details)

    def _send(self, method: str, path: str, *, body: Optional[bytes] = None,
              headers: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None,
              cancel: Optional[threading.Event] = None,
              limit: int = http.MAX_BODY_BYTES) -> Reply:
        """One HTTP request, bounded as a whole by ``timeout``; with ``cancel``, the
        call stops (the connection is closed) once it is set."""
        timeout = self.timeout if timeout is None else timeout
        try:
            return http.call(self.session, method, self._url(path),
                             what=f"The model server at {self.url}", deadline=Deadline(timeout),
                             connect_timeout=min(self.connect_timeout, timeout), data=body,
                             headers=self._headers(headers), cancel=cancel, limit=limit)
        except ConnectionFailed as exc:  # TimedOut included
            raise self._connection_failed(exc, timeout) from None

    def _json_body(self, payload: Any) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
        # The server inflates a gzip body only when Content-Type is exactly
        # application/json (no charset) and Content-Encoding is exactly gzip.
        headers = {"Content-Type": "application/json"}
        if len(body) >= self.gzip_min_bytes:
            body = gzip.compress(body, compresslevel=1)  # base64 gains mostly from entropy coding
            headers["Content-Encoding"] = "gzip"
        return body, headers

    def _cached_spec(self) -> ModelSpec:
        return self._spec if self._spec is not None else self.spec()

    def _wire_context(self, image_format: Optional[str] = None) -> WireContext:
        # File fields are paths the model server opens; its image fields decode base64.
        return WireContext(files_as_paths=True, bytes_as_paths=False, directories=True,
                           image_format=image_format, shared_dir=self.shared_dir,
                           fetch=self._fetch)

    def _fetch(self, url: str) -> bytes:
        """Fetch a URL an output points at (used by the codecs): the token only to
        the model server's own origin, at most MAX_FILE_BYTES."""
        return http.fetch(self.session, url, what="Downloading a model output",
                          deadline=Deadline(self.timeout), token=self.token,
                          token_origin=self.url, connect_timeout=self.connect_timeout)

    def _encode(self, fields, values: Mapping[str, Any]) -> dict[str, Any]:
        ctx = self._wire_context(self.input_image_format)
        wire = {}
        for f in fields:
            if f.name in values and values[f.name] is not None:
                wire[f.name] = encode_value(f, values[f.name], ctx)
        return wire

    def _decode(self, fields, wire: Mapping[str, Any]) -> dict[str, Any]:
        ctx = self._wire_context()
        by_name = {f.name: f for f in fields}
        return {name: decode_value(by_name[name], value, ctx) if name in by_name else value
                for name, value in wire.items()}

    def _post_run(self, path: str, cmd: Command, inputs: Mapping[str, Any], *,
                  run_id: Optional[str], cancel_event: Optional[threading.Event],
                  headers: Optional[Mapping[str, str]] = None,
                  send: Optional[Callable[..., Reply]] = None) -> RunResult:
        # Also refuses a missing image or file, on which a Runway server crashes (bare 500).
        values = validate_inputs(cmd.inputs, dict(inputs), protocol="runway")
        payload = self._encode(cmd.inputs, values)
        body, body_headers = self._json_body(payload)
        body_headers.update(headers or {})

        run_id = run_id or uuid.uuid4().hex
        cancel = cancel_event or threading.Event()
        with self._lock:
            self._cancels[run_id] = cancel
            self._inflight += 1
        started = time.monotonic()
        try:
            if cancel.is_set():
                raise Cancelled("The run was cancelled before it was sent.")
            try:
                r = (send or self._send)("POST", path, body=body, headers=body_headers,
                                         cancel=cancel)
            except Cancelled:
                raise Cancelled(
                    "The run was cancelled; the server may still finish it.",
                    hint="A Runway model cannot stop a run over HTTP: it stays busy until the "
                         "run ends.") from None
        finally:
            with self._lock:
                self._cancels.pop(run_id, None)
                self._inflight -= 1
        elapsed = time.monotonic() - started
        data = self._check(r, command=cmd.name)
        if not isinstance(data, dict):
            raise BadAnswer(f"The model's answer to {cmd.name!r} is not a JSON object of "
                            "outputs.", status=r.status_code, details=r.text[:2000],
                            hint="Check the model server.")
        outputs = decode_typed(lambda: self._decode(cmd.outputs, data),
                               f"The model's outputs of {cmd.name!r}", "Check the model server.")
        metrics = {"wall_time": elapsed, "request_bytes": float(len(body))}
        if r.headers.get("Content-Length"):
            metrics["response_bytes"] = float(r.headers["Content-Length"])
        return RunResult(outputs=outputs, metrics=metrics, run_id=run_id)

    def _check(self, r: Reply, *, command: Optional[str] = None) -> Any:
        raise NotImplementedError

    # -- ModelClient --------------------------------------------------------------------

    def cancel(self, run_id: str) -> None:
        """Stop waiting for the run ``run_id``: its ``run`` call raises ``Cancelled``.

        Over HTTP a Runway run cannot be cancelled server-side (only the SDK's
        WebSocket had a cancel message): the client abandons the request, and
        the server goes on until the run ends, staying busy meanwhile.
        """
        with self._lock:
            event = self._cancels.get(run_id)
        if event is not None:
            event.set()

    def close(self) -> None:
        self.session.close()


# --------------------------------------------------------------------------- Model SDK server

_FIELD_IN_MESSAGE = re.compile(
    r"(?:Invalid argument|Missing option|Missing input|Invalid input):\s*([\w\-]+)")


class RunwayClient(_RunwayHTTP):
    """A Runway Model SDK server (``runway_model.py``), over plain HTTP.

    ``url`` is the server's root, e.g. ``http://127.0.0.1:9000``. Never calls
    ``GET /setup`` (a server bug makes it answer 500 always).
    """

    protocol = Protocol.RUNWAY

    def __init__(self, url: str, *, health_timeout: float = 2.0, **kwargs):
        super().__init__(url, **kwargs)
        self.health_timeout = health_timeout

    def health(self, timeout: Optional[float] = None) -> Health:
        """READY once the server says RUNNING.

        A refused connection counts as STARTING: the server keeps its port
        closed while its first setup runs. No answer within ``health_timeout``
        counts as STARTING too (a server answers nothing while POST /setup
        runs), or BUSY while this client has a run in flight.
        """
        timeout = timeout or self.health_timeout
        try:
            r = self._send("GET", "healthcheck", timeout=timeout, limit=http.MAX_META_BYTES)
        except TimedOut:
            with self._lock:
                busy = self._inflight > 0
            if busy:
                return Health(HealthState.BUSY, "busy with a run")
            return Health(HealthState.STARTING, "not answering (busy setting up?)")
        except ConnectionFailed as exc:
            if exc.message.startswith("Nothing is listening"):
                return Health(HealthState.STARTING, "port closed (setup running?)")
            return Health(HealthState.UNREACHABLE, exc.message)
        except RunwayError as exc:
            return Health(HealthState.UNHEALTHY, exc.message)
        body = _json_or_none(r)
        status = body.get("status") if isinstance(body, dict) else None
        if r.status_code == 200 and status == "RUNNING":
            return Health(HealthState.READY)
        if r.status_code == 200 and status == "STARTING":
            return Health(HealthState.STARTING, "setting up")
        if r.status_code in (401, 403):  # the token is what to fix: wait_until_ready says so
            try:
                self._check(r)
            except AuthError as exc:
                return Health(HealthState.UNHEALTHY, exc.message, error=exc)
        return Health(HealthState.UNHEALTHY,
                      f"healthcheck answered HTTP {r.status_code}: "
                      f"{http.error_text(None, r, limit=200)}")

    def spec(self) -> ModelSpec:
        """GET /meta (GET / on servers without it); the result is cached for ``run``."""
        timeout = min(60.0, self.timeout)
        r = self._send("GET", "meta", timeout=timeout, limit=http.MAX_META_BYTES)
        if r.status_code in (404, 405) or _json_or_none(r) is None:
            r = self._send("GET", "", timeout=timeout, limit=http.MAX_META_BYTES)
        meta = self._check(r)
        if not isinstance(meta, dict) or "commands" not in meta:
            raise BadAnswer(f"{self.url} does not describe a Runway model (no commands).",
                            status=r.status_code, details=r.text[:4000],
                            hint="Check that the URL points at a Runway model server.")
        self._spec = spec_from_meta(meta)
        return self._spec

    def setup(self, options: Mapping[str, Any]) -> None:
        """POST /setup with every option: the server replaces keys left out by their
        defaults (it does not keep earlier values), so the full set always goes.
        The server answers nothing, healthcheck included, until setup is done."""
        spec = self._cached_spec()
        values = validate_inputs(spec.options, dict(options), protocol="runway")
        body, headers = self._json_body(self._encode(spec.options, values))
        r = self._send("POST", "setup", body=body, headers=headers)
        self._check(r, setup=True)

    def run(self, inputs: Mapping[str, Any], command: Optional[str] = None, *,
            run_id: Optional[str] = None, cancel_event: Optional[threading.Event] = None,
            output_format: Union[str, Mapping[str, str], None] = None) -> RunResult:
        """Validate, encode and POST ``inputs`` to ``/<command>``; decode the outputs.

        ``output_format`` ("PNG"/"JPEG" for every image output, or a mapping
        from output name to format) becomes the ``X-Runway-Output-Format``
        header. Setting ``cancel_event`` (or calling ``cancel(run_id)``) makes
        this call raise ``Cancelled`` at once; the server still finishes the run.
        """
        cmd = command_of(self._cached_spec(), command)
        headers = {}
        if output_format:
            headers["X-Runway-Output-Format"] = _output_format_header(cmd, output_format)
        return self._post_run(cmd.name, cmd, inputs, run_id=run_id, cancel_event=cancel_event,
                              headers=headers)

    def _check(self, r: Reply, *, command: Optional[str] = None,
               setup: bool = False) -> Any:
        if r.status_code in (401, 403):
            raise AuthError(f"The model server at {self.url} refused the access token "
                            f"(HTTP {r.status_code}).", status=r.status_code,
                            hint="Check the token set for this endpoint.",
                            details=http.error_text(r.json_or_none(), r))
        if 200 <= r.status_code < 300:
            return r.json()  # typed: not JSON, too deep
        body = _json_or_none(r)
        if body is None:
            raise _not_json(r, self.url)
        message = _message(body)
        details = _traceback(body)
        status = r.status_code
        if status == 400:
            fields = self._field_names(command, setup)
            field = _field_in(message, fields)
            where = f" ({field})" if field else ""
            what = "setup option" if setup else "input"
            raise ServerError(
                f"The model refused an {what}{where}: {message}", status=status, field=field,
                details=details, hint="Change that value and try again.")
        if status == 404:
            known = ", ".join(c.name for c in self._spec.commands) if self._spec else ""
            # Without a command (setup) and without an error text, the 404 itself says it.
            raise ServerError(
                f"The model has no command {command!r}: {message}" if command else
                f"The model server has no {'setup' if setup else 'such'} route (HTTP 404)"
                + (f": {message}" if message else "."),
                status=status, details=details,
                hint=f"Commands it offers: {known}." if known else "Reload the model's spec.")
        if status == 405:
            raise ServerError(
                f"The server refused the HTTP method: {message}", status=status,
                hint="Check that the URL points at a Runway model server.")
        if status == 500 and message.startswith("Error during setup"):
            raise ServerError(message, status=status, details=details,
                              hint="The model's setup failed; see details for its traceback. "
                                   "It may still run with its old setup.")
        if status == 500 and message.startswith("Error during inference"):
            raise ServerError(message, status=status, details=details,
                              hint="The model failed on these inputs; see details for its "
                                   "traceback.")
        if status == 500 and message.strip() == "Internal server error.":
            raise ServerError(
                "The model server crashed on this request (Internal server error).",
                status=status, details=details,
                hint="This usually means an image input was missing or could not be decoded.")
        raise ServerError(f"The model server answered HTTP {status}: {message}",
                          status=status, details=details)

    def _field_names(self, command: Optional[str], setup: bool) -> list[str]:
        if self._spec is None:
            return []
        if setup:
            return [f.name for f in self._spec.options]
        try:
            return [f.name for f in self._spec.command(command).inputs]
        except KeyError:
            return []


def _field_in(message: str, names: list[str]) -> Optional[str]:
    m = _FIELD_IN_MESSAGE.search(message)
    if m and (not names or m.group(1).rstrip(".") in names):
        return m.group(1).rstrip(".")
    # Otherwise the longest known name the message mentions as a word.
    for name in sorted(names, key=len, reverse=True):
        if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", message):
            return name
    return None


def _output_format_header(cmd: Command, output_format: Union[str, Mapping[str, str]]) -> str:
    by_name = {f.name: f for f in cmd.outputs if isinstance(f, ImageField)}
    images = list(by_name)
    if isinstance(output_format, str):
        wanted = {name: output_format for name in images}
    elif isinstance(output_format, Mapping):
        wanted = dict(output_format)
    else:
        raise SpecValidationError([FieldIssue("output_format", output_format, "type",
                                              "is not a format name or a mapping of output "
                                              "names to formats")])
    issues = []
    for name, fmt in wanted.items():
        if name not in images:
            issues.append(FieldIssue(str(name), fmt, "output_format",
                                     f"not an image output of {cmd.name!r}"))
        elif str(fmt).upper() not in OUTPUT_FORMATS:
            issues.append(FieldIssue(name, fmt, "output_format",
                                     f"format must be one of {', '.join(OUTPUT_FORMATS)}"))
        elif str(fmt).upper() == "JPEG" and by_name[name].channels == 4:
            issues.append(FieldIssue(name, fmt, "output_format",
                                     "JPEG has no alpha channel and this output has 4 "
                                     "channels: ask for PNG"))
    if issues:
        raise SpecValidationError(issues)
    return "; ".join(f"{name}={str(fmt).upper()}" for name, fmt in wanted.items())


# --------------------------------------------------------------------------- hosted models

class HostedRunwayClient(_RunwayHTTP):
    """A hosted Runway model: ``https://<slug>.hosted-models.runwayml.cloud/v1``.

    The URL is taken to end in ``/v1`` (added when missing). Private models
    need ``token``; it goes only into the Authorization header and never into
    repr, logs or errors. 429 and 502 answers are retried ``max_attempts``
    times in all, with bounded exponential backoff that honours Retry-After.
    """

    protocol = Protocol.RUNWAY_HOSTED

    def __init__(self, url: str, *, max_attempts: int = 5, backoff: float = 1.0,
                 max_backoff: float = 30.0, **kwargs):
        url = url.rstrip("/")
        if not url.endswith("/v1"):
            url += "/v1"
        super().__init__(url, **kwargs)
        self.max_attempts = max(1, int(max_attempts))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._running = False

    # -- requests with retry ----------------------------------------------------------

    def _request(self, method: str, path: str, *, body: Optional[bytes] = None,
                 headers: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None,
                 cancel: Optional[threading.Event] = None) -> Reply:
        waited = cancel or threading.Event()
        deadline = Deadline(self.timeout if timeout is None else timeout)  # retries included
        for attempt in range(1, self.max_attempts + 1):
            r = self._send(method, path, body=body, headers=headers,
                           timeout=max(0.001, deadline.left()), cancel=cancel)
            if r.status_code not in (429, 502) or attempt == self.max_attempts:
                return r
            delay = _retry_after(r)
            if delay is None:
                delay = self.backoff * 2 ** (attempt - 1)
            delay = min(delay, self.max_backoff)
            if delay >= deadline.left():
                return r  # no time for another attempt: _check reports the last answer
            if waited.wait(delay):
                raise Cancelled("The request was cancelled while waiting to retry.")
        raise AssertionError("unreachable")

    def _get_json(self, path: str, timeout: Optional[float] = None) -> Any:
        return self._check(self._request("GET", path, timeout=timeout))

    def _check(self, r: Reply, *, command: Optional[str] = None) -> Any:
        status = r.status_code
        body = r.json() if 200 <= status < 300 else _json_or_none(r)
        message = _message(body) if isinstance(body, dict) else ""
        if status in (401, 403):
            raise AuthError(
                f"The hosted model refused the token (HTTP {status}).", status=status,
                hint="Check the token: a private hosted model needs the token shown on its "
                     "page, sent as a Bearer token.")
        if status == 404:
            raise ServerError("Hosted model not found: wrong URL or model not active.",
                              status=status,
                              hint="Check the URL (it ends in /v1) and that the model is "
                                   "active on its page.")
        if status in (429, 502):
            raise ServerError(
                f"The hosted model stayed unavailable (HTTP {status}) after "
                f"{self.max_attempts} attempts.", status=status,
                hint="It is overloaded or restarting; try again in a few minutes.")
        if body is None:
            raise _not_json(r, self.url)
        if status == 500:
            raise ServerError(f"The hosted model failed: {message or 'model error'}",
                              status=status, details=_traceback(body),
                              hint="The model failed on these inputs.")
        if not 200 <= status < 300:
            raise ServerError(f"The hosted model answered HTTP {status}: {message}",
                              status=status, details=_traceback(body))
        return body

    # -- status -----------------------------------------------------------------------

    def status(self, timeout: float = 30.0) -> str:
        """``"starting"`` or ``"running"`` from GET /v1/ (which also wakes a sleeping model)."""
        body = self._get_json("", timeout=timeout)
        state = str(body.get("status", ""))[:40] if isinstance(body, dict) else ""
        self._running = state == "running"
        return state

    def health(self, timeout: Optional[float] = None) -> Health:
        try:
            state = self.status(timeout or 30.0)
        except AuthError as exc:
            return Health(HealthState.UNHEALTHY, exc.message)
        except ConnectionFailed as exc:
            return Health(HealthState.UNREACHABLE, exc.message)
        except RunwayError as exc:
            return Health(HealthState.UNHEALTHY, exc.message)
        if state == "running":
            return Health(HealthState.READY)
        if state == "starting":
            return Health(HealthState.STARTING, "waking up")
        return Health(HealthState.UNHEALTHY, f"unknown status {state!r}")

    def wait_until_ready(self, timeout: float = 300.0, *,
                         cancel_event: Optional[threading.Event] = None,
                         first_delay: float = 0.5, max_delay: float = 5.0) -> Health:
        """Poll GET /v1/ until the model runs (the first poll wakes it), with a slower
        backoff than a local server needs. A refused token raises AuthError at once."""
        cancel = cancel_event or threading.Event()
        deadline = time.monotonic() + timeout
        delay = first_delay
        while True:
            if self.status(max(0.05, min(30.0, deadline - time.monotonic()))) == "running":
                return Health(HealthState.READY)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ModelNotReady(f"The hosted model at {self.url} did not wake up within "
                                    f"{timeout:.0f} s.", hint="Try again later.")
            if cancel.wait(min(delay, left)):
                raise Cancelled("Stopped waiting for the hosted model.")
            delay = min(delay * 2, max_delay)

    # -- ModelClient ------------------------------------------------------------------

    def spec(self) -> ModelSpec:
        """GET /v1/info: one command, no setup options."""
        info = self._get_json("info")
        if not isinstance(info, dict):
            raise BadAnswer("The hosted model's /v1/info is not a command description.",
                            details=str(info)[:4000], hint="Check the URL (it ends in /v1).")
        self._spec = ModelSpec(protocol=Protocol.RUNWAY_HOSTED,
                               commands=[command_from_runway(info)])
        return self._spec

    def setup(self, options: Mapping[str, Any]) -> None:
        """Hosted models are set up on Runway's side; they take no options."""
        if options:
            raise SpecValidationError(
                [FieldIssue(name, value, "unknown", "a hosted model takes no setup options")
                 for name, value in options.items()])

    def run(self, inputs: Mapping[str, Any], command: Optional[str] = None, *,
            run_id: Optional[str] = None,
            cancel_event: Optional[threading.Event] = None) -> RunResult:
        """POST /v1/query, after waking the model if it was not seen running."""
        cmd = command_of(self._cached_spec(), command)
        if not self._running:
            self.wait_until_ready(self.timeout, cancel_event=cancel_event)
        return self._post_run("query", cmd, inputs, run_id=run_id, cancel_event=cancel_event,
                              send=self._request)
