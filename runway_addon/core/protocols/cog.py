"""Client for the Cog HTTP prediction protocol (cog / coglet 0.23.1).

``spec_from_openapi`` maps a Cog OpenAPI schema into ``core.spec``;
``CogClient`` runs predictions on a Cog server. What the server does, quirks
included, is written down in shared/protocols/cog-http.md; the comments below
say which of those facts each choice rests on.
"""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Mapping, Optional

import requests
from pydantic import TypeAdapter, ValidationError

from ..codecs import WireContext, decode_value, encode_value
from ..errors import (AuthError, Cancelled, ConnectionFailed, ModelNotReady, RunwayError,
                      ServerError)
from ..spec import (AnyField, ArrayField, BooleanField, CategoryField, Command, FieldSpec,
                    FileField, ImageField, IntegerField, ModelSpec, NumberField, Protocol,
                    SecretField, TextField)
from ..validation import validate_inputs
from .base import Health, HealthState, ModelClient, RunResult, read_body

__all__ = ["spec_from_openapi", "CogClient", "COMMAND", "SINGLE_OUTPUT"]

COMMAND = "predict"  # Cog has one command; the name matches its Python method
SINGLE_OUTPUT = "output"  # the output's name unless the model returns an object
# OpenAPI extension key under which a model folder states a richer type than JSON
# schema can (boxes, landmarks with labels and connections, segmentation maps):
# the value is a core.spec field without its name. See buildtools/cog_schema.py.
RICH_TYPE_KEY = "x-runway"
_FIELD = TypeAdapter(FieldSpec)

_STATES = {
    "STARTING": HealthState.STARTING,
    "READY": HealthState.READY,
    "BUSY": HealthState.BUSY,
    "SETUP_FAILED": HealthState.SETUP_FAILED,
    "DEFUNCT": HealthState.DEFUNCT,
    "UNHEALTHY": HealthState.UNHEALTHY,
}

# File extensions an x-cog-accept may list instead of MIME types.
_EXT_MEDIA = {
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff",
                     ".exr"), "image"),
    **dict.fromkeys((".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac"), "audio"),
    **dict.fromkeys((".mp4", ".mov", ".webm", ".mkv", ".avi"), "video"),
    **dict.fromkeys((".txt", ".json", ".csv", ".md"), "text"),
}


# --------------------------------------------------------------------------- spec mapping

def _resolve(schema: Mapping[str, Any], prop: Mapping[str, Any]) -> dict[str, Any]:
    """``prop`` with ``$ref``/``allOf`` references merged in (Cog puts choices in a
    component and points at it through ``allOf``); the property's own keys win."""
    merged: dict[str, Any] = {}
    refs = list(prop.get("allOf") or [])
    if "$ref" in prop:
        refs.append({"$ref": prop["$ref"]})
    for part in refs:
        ref = part.get("$ref") if isinstance(part, Mapping) else None
        if ref and ref.startswith("#/"):
            target: Any = schema
            for key in ref[2:].split("/"):
                target = target.get(key, {}) if isinstance(target, Mapping) else {}
            merged.update(_resolve(schema, target))
        elif isinstance(part, Mapping):
            merged.update(_resolve(schema, part))
    merged.update({k: v for k, v in prop.items() if k not in ("allOf", "$ref")})
    return merged


def _accept(prop: Mapping[str, Any]) -> Optional[str]:
    accept = prop.get("x-cog-accept")
    if isinstance(accept, (list, tuple)):  # some generators write a list
        accept = ",".join(str(a) for a in accept)
    return str(accept) if accept else None


def _media(accept: Optional[str]) -> str:
    """One media kind when every accepted type agrees on it, else "any"."""
    if not accept:
        return "any"
    kinds = set()
    for part in accept.split(","):
        part = part.strip().lower()
        if part.startswith("."):
            kinds.add(_EXT_MEDIA.get(part, "any"))
        else:
            kinds.add(part.split("/", 1)[0] if "/" in part else "any")
    kind = kinds.pop() if len(kinds) == 1 else "any"
    return kind if kind in ("image", "audio", "video", "text") else "any"


def _field(schema: Mapping[str, Any], name: str, prop: Mapping[str, Any],
           required: bool = False) -> FieldSpec:
    """One spec field from one (resolved) JSON-schema property."""
    p = _resolve(schema, prop)
    common: dict[str, Any] = {
        "name": name,
        "description": p.get("description") or "",
        "title": p.get("title"),
        "required": required,
        "deprecated": bool(p.get("deprecated", False)),
        "raw": dict(prop),
    }
    default = p.get("default")
    kind, fmt = p.get("type"), p.get("format")

    rich = p.get(RICH_TYPE_KEY)
    if isinstance(rich, Mapping):
        try:
            return _FIELD.validate_python({**common, **rich})
        except ValidationError:
            pass  # a rich type we cannot read: fall back to what JSON schema says
    if "enum" in p:
        return CategoryField(choices=list(p["enum"]), default=default, **common)
    if fmt == "password" or p.get("x-cog-secret"):
        return SecretField(**common)
    if kind == "string" and fmt == "uri":
        accept = _accept(p)
        media = _media(accept)
        if media == "image":
            return ImageField(accept=accept, **common)
        return FileField(accept=accept, media=media, default=default, **common)
    if kind == "string":
        return TextField(default=default, min_length=p.get("minLength") or 0,
                         max_length=p.get("maxLength"), pattern=p.get("pattern"), **common)
    if kind == "integer":
        bound = lambda v: None if v is None else int(v)  # noqa: E731 (Cog writes 1.0)
        return IntegerField(default=default, min=bound(p.get("minimum")),
                            max=bound(p.get("maximum")), **common)
    if kind == "number":
        return NumberField(default=default, min=p.get("minimum"), max=p.get("maximum"),
                           **common)
    if kind == "boolean":
        return BooleanField(default=default, **common)
    if kind == "array" and isinstance(p.get("items"), Mapping):
        item = _field(schema, name, p["items"], required=True)
        return ArrayField(
            item=item, default=default,
            min_length=p.get("minItems") or 0, max_length=p.get("maxItems"),
            iterator=p.get("x-cog-array-type") == "iterator",
            concatenate=p.get("x-cog-array-display") == "concatenate",
            **common)
    # Unions (anyOf), free-form objects, Any: passed through as they are.
    return AnyField(default=default, **common)


def _outputs(schema: Mapping[str, Any], out: Mapping[str, Any]) -> list[FieldSpec]:
    out = _resolve(schema, out)
    if out.get("type") == "object" and isinstance(out.get("properties"), Mapping):
        # A BaseModel output: each attribute is an output of its own.
        required = set(out.get("required") or [])
        return [_field(schema, name, prop, required=name in required)
                for name, prop in out["properties"].items()]
    if not out or out.keys() <= {"title", "description"}:
        return [AnyField(name=SINGLE_OUTPUT, raw=dict(out))]
    return [_field(schema, SINGLE_OUTPUT, out, required=True)]


def spec_from_openapi(schema: Mapping[str, Any], *, version: Optional[str] = None) -> ModelSpec:
    """The ``ModelSpec`` of a Cog model from its OpenAPI document.

    Inputs come in ``x-order`` order. Cog has no runtime setup options (its
    startup settings such as ``COG_WEIGHTS`` are environment variables), so
    ``options`` stays empty.
    """
    components = (schema.get("components") or {}).get("schemas") or {}
    inp = components.get("Input") or {}
    required = set(inp.get("required") or [])
    props = inp.get("properties") or {}
    order = sorted(props, key=lambda n: (props[n].get("x-order", len(props)), n))
    inputs = [_field(schema, n, props[n], required=n in required) for n in order]
    outputs = _outputs(schema, components.get("Output") or {})
    info = schema.get("info") or {}
    command = Command(name=COMMAND, description=info.get("description") or "",
                      inputs=inputs, outputs=outputs)
    return ModelSpec(protocol=Protocol.COG, commands=[command], version=version)


# --------------------------------------------------------------------------- client

def _json(r: requests.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


def _error_text(body: Any, r: requests.Response) -> str:
    if isinstance(body, Mapping):
        for key in ("error", "detail", "message"):
            if isinstance(body.get(key), str):
                return body[key]
    return (r.text or r.reason or "").strip()[:500]


class CogClient(ModelClient):
    """A Cog model server: ``/health-check``, ``/openapi.json``, ``/predictions``.

    ``busy_timeout`` bounds how long a run retries while every prediction slot
    is busy (409): a one-slot server answers 409 to a second caller, and to
    about 1 in 10 back-to-back calls because the slot frees just after the
    previous response.
    """

    protocol = Protocol.COG

    def __init__(self, url: str, *, token: Optional[str] = None, timeout: float = 600.0,
                 shared_dir: Optional[str] = None, busy_timeout: float = 60.0,
                 health_timeout: float = 5.0):
        super().__init__(url, token=token, timeout=timeout, shared_dir=shared_dir)
        self.busy_timeout = busy_timeout
        self.health_timeout = health_timeout
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        self._spec: Optional[ModelSpec] = None

    # ---------------------------------------------------------------- plumbing

    def _request(self, method: str, path: str, *, timeout: Optional[float] = None,
                 **kwargs) -> requests.Response:
        url = self.url + path
        try:
            return self._session.request(method, url, timeout=timeout or self.timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise ConnectionFailed(
                f"Cannot reach the Cog server at {self.url}.",
                hint="Check that the model server is running and the URL is right.",
                details=str(exc)) from exc
        except requests.Timeout as exc:
            raise ServerError(
                f"The Cog server at {self.url} did not answer {method} {path} in time.",
                hint="Raise the timeout, or check the server's load.", details=str(exc)) from exc

    def _raise_for(self, r: requests.Response, body: Any) -> None:
        """Turn an HTTP error answer into the error type a person can act on."""
        if r.status_code < 400:
            return
        text = _error_text(body, r)
        if r.status_code in (401, 403):
            raise AuthError(f"The server refused the access token ({r.status_code}).",
                            status=r.status_code, hint="Check the token for this endpoint.",
                            details=text)
        if r.status_code == 422:
            raise self._validation_error(body, r)
        if r.status_code == 503 and "setup" in text.lower():
            raise ModelNotReady("The Cog model has not finished its setup.",
                                hint="Wait until its health is READY.", details=text)
        raise ServerError(f"The Cog server answered {r.status_code}: {text}",
                          status=r.status_code, details=r.text[:4000])

    def _validation_error(self, body: Any, r: requests.Response) -> ServerError:
        """A 422 ``{"detail": [{"loc": ["body", "input", NAME], "msg": ...}]}`` as a
        ServerError naming the spec field."""
        items = body.get("detail") if isinstance(body, Mapping) else None
        if not isinstance(items, list) or not items:
            return ServerError(f"The Cog server rejected the input: {_error_text(body, r)}",
                               status=422, details=r.text[:4000])
        field, messages = None, []
        for item in items:
            loc = [str(x) for x in (item.get("loc") or [])] if isinstance(item, Mapping) else []
            # loc is ["body", "input", name, ...]; keep the input name.
            name = loc[2] if len(loc) > 2 and loc[:2] == ["body", "input"] else None
            field = field or name
            msg = item.get("msg", "") if isinstance(item, Mapping) else str(item)
            messages.append(f"{name}: {msg}" if name else msg)
        return ServerError("The Cog server rejected the input: " + "; ".join(messages),
                           status=422, field=field, details=r.text[:4000])

    def _context(self) -> WireContext:
        return WireContext(protocol="cog", shared_dir=self.shared_dir, fetch=self._fetch)

    def _fetch(self, url: str) -> bytes:
        """Output files that the server uploaded elsewhere (``--upload-url``)."""
        try:
            r = self._session.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ConnectionFailed(f"Cannot download the output file {url}.",
                                   details=str(exc)) from exc
        if r.status_code >= 400:
            raise ServerError(f"Downloading the output file {url} failed ({r.status_code}).",
                              status=r.status_code)
        return r.content

    # ---------------------------------------------------------------- health and spec

    def health(self) -> Health:
        try:
            r = self._session.get(self.url + "/health-check", timeout=self.health_timeout)
        except requests.ConnectionError as exc:
            return Health(HealthState.UNREACHABLE, detail=str(exc))
        except requests.Timeout:
            return Health(HealthState.UNHEALTHY, detail="the health check timed out")
        body = _json(r)
        if r.status_code in (401, 403):
            return Health(HealthState.UNHEALTHY, detail="the server refused the access token")
        if not isinstance(body, Mapping) or "status" not in body:
            return Health(HealthState.UNHEALTHY,
                          detail=f"unexpected health answer {r.status_code}: {r.text[:200]}")
        setup = body.get("setup") or {}
        state = _STATES.get(str(body["status"]).upper(), HealthState.UNHEALTHY)
        detail = str(body["status"])
        if state is HealthState.SETUP_FAILED:
            detail = "the model's setup() failed"
        return Health(state, detail=detail, logs=str(setup.get("logs") or ""))

    def openapi(self) -> dict:
        """The server's raw OpenAPI document."""
        r = self._request("GET", "/openapi.json", timeout=min(self.timeout, 30.0))
        body = _json(r)
        if r.status_code == 503:
            # Served only once setup succeeded AND .cog/openapi_schema.json exists
            # in the server's working directory; tell the two apart.
            h = self.health()
            if h.state in (HealthState.STARTING, HealthState.SETUP_FAILED, HealthState.DEFUNCT):
                raise ModelNotReady(
                    f"The Cog model has no schema yet: its state is {h.state.value}.",
                    hint="Wait until the model is ready.", details=h.logs)
            raise ServerError(
                "The Cog server has no OpenAPI schema (503): the model folder lacks "
                ".cog/openapi_schema.json, so its inputs are unknown and not validated.",
                status=503,
                hint="Build the model with `cog build`, or generate the schema file and start "
                     "the server from the model folder.", details=_error_text(body, r))
        self._raise_for(r, body)
        if not isinstance(body, Mapping):
            raise ServerError("The Cog server's /openapi.json is not JSON.",
                              status=r.status_code, details=r.text[:2000])
        return dict(body)

    def version(self) -> Optional[str]:
        """The cog version the server reports at GET / (None when it does not say)."""
        try:
            body = _json(self._request("GET", "/", timeout=min(self.timeout, 10.0)))
        except RunwayError:
            return None
        return body.get("cog_version") if isinstance(body, Mapping) else None

    def spec(self) -> ModelSpec:
        if self._spec is None:
            self._spec = spec_from_openapi(self.openapi(), version=self.version())
        return self._spec

    def setup(self, options: Mapping[str, Any]) -> None:
        """Cog has no runtime setup: a model's settings (COG_WEIGHTS and the like)
        are environment variables given when the server starts."""
        if options:
            raise RunwayError(
                "A Cog model takes no setup options at run time "
                f"(got: {', '.join(sorted(options))}).",
                hint="Pass settings such as COG_WEIGHTS as environment variables when the "
                     "server starts.")

    # ---------------------------------------------------------------- predictions

    def predict_raw(self, wire_input: Mapping[str, Any], *, run_id: Optional[str] = None,
                    cancel_event: Optional[threading.Event] = None) -> dict:
        """Send already-encoded input values, no client-side validation; return
        the prediction response (status succeeded or canceled).

        Uses ``PUT /predictions/{id}`` with a client-chosen id so a retry after
        409 cannot start the same prediction twice. A failed prediction (still
        HTTP 200) raises ServerError carrying the error and the logs.
        """
        run_id = run_id or uuid.uuid4().hex
        if cancel_event is not None and cancel_event.is_set():
            raise Cancelled("The run was cancelled before it started.")
        finished = threading.Event()
        if cancel_event is not None:
            threading.Thread(target=self._cancel_watch, args=(run_id, cancel_event, finished),
                             name=f"cog-cancel-{run_id[:8]}", daemon=True).start()
        try:
            body = self._put_with_retry(run_id, {"id": run_id, "input": dict(wire_input)},
                                        cancel_event)
        finally:
            finished.set()
        status = body.get("status")
        logs = str(body.get("logs") or "")
        if status == "failed":
            error = str(body.get("error") or "unknown error")
            raise ServerError(f"The model failed: {error}", status=200,
                              details=(logs + "\n" + error).strip())
        if status == "canceled" or (cancel_event is not None and cancel_event.is_set()):
            raise Cancelled("The run was cancelled.", details=logs)
        if status != "succeeded":
            # A repeated id of a run still in progress answers 202 "processing".
            raise ServerError(f"The Cog server answered with status {status!r} for run {run_id}.",
                              hint="Use a fresh run id for each run.", details=str(body)[:2000])
        return body

    def _put_with_retry(self, run_id: str, payload: dict,
                        cancel_event: Optional[threading.Event]) -> dict:
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.02
        while True:
            r = self._request("PUT", f"/predictions/{run_id}", json=payload, stream=True)
            read_body(r, f"The Cog server at {self.url}")
            if r.status_code != 409:
                break
            # At capacity: every slot busy. Back off, bounded by busy_timeout.
            if time.monotonic() + delay > deadline:
                raise ServerError("The Cog server stayed busy (409 at capacity) for "
                                  f"{self.busy_timeout:g} s.", status=409,
                                  hint="Wait for the running prediction, or raise busy_timeout.")
            if cancel_event is not None:
                if cancel_event.wait(delay):
                    raise Cancelled("The run was cancelled while the server was busy.")
            else:
                time.sleep(delay)
            delay = min(delay * 2, 1.0)
        body = _json(r)
        self._raise_for(r, body)
        if not isinstance(body, Mapping):
            raise ServerError("The Cog server's prediction answer is not JSON.",
                              status=r.status_code, details=r.text[:2000])
        return dict(body)

    def _cancel_watch(self, run_id: str, cancel_event: threading.Event,
                      finished: threading.Event) -> None:
        # Poll both events: threading has no wait-for-either. Only this side
        # thread waits, so a run's own latency is not affected.
        while not finished.is_set():
            if cancel_event.wait(0.05):
                if not finished.is_set():
                    try:
                        self.cancel(run_id)
                    except RunwayError:
                        pass  # the run's own request reports what happened
                return

    def run(self, inputs: Mapping[str, Any], command: Optional[str] = None, *,
            run_id: Optional[str] = None,
            cancel_event: Optional[threading.Event] = None) -> RunResult:
        cmd = self.spec().command(command)
        values = validate_inputs(cmd.inputs, dict(inputs), protocol="cog")
        ctx = self._context()
        by_name = {f.name: f for f in cmd.inputs}
        # None means "not given": Cog applies its own default (or null).
        wire = {name: encode_value(by_name[name], value, ctx)
                for name, value in values.items() if value is not None and name in by_name}
        run_id = run_id or uuid.uuid4().hex
        body = self.predict_raw(wire, run_id=run_id, cancel_event=cancel_event)
        outputs = self._decode_outputs(cmd, body.get("output"), ctx)
        metrics = {k: float(v) for k, v in (body.get("metrics") or {}).items()
                   if isinstance(v, (int, float))}
        return RunResult(outputs=outputs, logs=str(body.get("logs") or ""), metrics=metrics,
                         run_id=run_id)

    def _decode_outputs(self, cmd: Command, wire: Any, ctx: WireContext) -> dict[str, Any]:
        if len(cmd.outputs) == 1 and cmd.outputs[0].name == SINGLE_OUTPUT:
            named = {SINGLE_OUTPUT: wire}
        elif isinstance(wire, Mapping):
            named = dict(wire)
        else:
            raise ServerError("The Cog model returned a value its schema does not describe.",
                              details=repr(wire)[:2000])
        out = {}
        for field in cmd.outputs:
            value = named.get(field.name)
            out[field.name] = None if value is None else decode_value(field, value, ctx)
        return out

    def cancel(self, run_id: str) -> None:
        """Ask the server to cancel a run; an unknown (finished) run is no error.
        It takes effect when control returns to Python in the model."""
        r = self._request("POST", f"/predictions/{run_id}/cancel",
                          timeout=min(self.timeout, 10.0))
        if r.status_code == 404:
            return
        self._raise_for(r, _json(r))

    def shutdown(self) -> None:
        """Ask the server to exit (it does about 1.4 s later)."""
        r = self._request("POST", "/shutdown", timeout=min(self.timeout, 10.0))
        self._raise_for(r, _json(r))

    def close(self) -> None:
        self._session.close()
