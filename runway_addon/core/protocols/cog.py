"""Client for the Cog HTTP prediction protocol (cog / coglet 0.23.1).

``spec_from_openapi`` maps a Cog OpenAPI schema into ``core.spec``;
``CogClient`` runs predictions on a Cog server. What the server does, quirks
included, is written down in docs/protocols/cog-http.md; the comments below
say which of those facts each choice rests on.
"""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Mapping, Optional

from pydantic import TypeAdapter, ValidationError

from ..codecs import WireContext, decode_value, encode_value
from ..errors import (AuthError, BadAnswer, Cancelled, ConnectionFailed, ModelNotReady,
                      RunwayError, ServerError, TimedOut)
from ..spec import (AnyField, ArrayField, BooleanField, CategoryField, Command, FieldSpec,
                    FileField, ImageField, IntegerField, ModelSpec, NumberField, Protocol,
                    SecretField, TextField)
from ..validation import validate_inputs
from . import http
from .base import Health, HealthState, ModelClient, RunResult, command_of, decode_typed
from .http import Deadline, Reply

__all__ = ["spec_from_openapi", "CogClient", "COMMAND", "SINGLE_OUTPUT", "cog_wire"]

COMMAND = "predict"  # Cog has one command; the name matches its Python method
SINGLE_OUTPUT = "output"  # the output's name unless the model returns an object
# OpenAPI extension key under which a model folder states a richer type than JSON
# schema can (boxes, landmarks with labels and connections, segmentation maps):
# the value is a core.spec field without its name. See buildtools/cog_schema.py.
RICH_TYPE_KEY = "x-runway"
_FIELD = TypeAdapter(FieldSpec)


def cog_wire(**options: Any) -> WireContext:
    """What a Cog server's inputs and outputs carry: files as contents (data URIs, URLs,
    or bare paths in a shared folder it also sees), images likewise, never directories.
    Replicate runs Cog models, so its client uses this too."""
    return WireContext(files_as_paths=False, bytes_as_paths=True, directories=False,
                       **options)


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

_MAX_REF_DEPTH = 16  # $ref/allOf hops while resolving one property


class _SchemaProblem(Exception):
    """A part of the schema that cannot be read; becomes a BadAnswer naming the field."""


def _resolve(schema: Mapping[str, Any], prop: Any, _seen: tuple = ()) -> dict[str, Any]:
    """``prop`` with ``$ref``/``allOf`` references merged in (Cog puts choices in a
    component and points at it through ``allOf``); the property's own keys win.
    A reference cycle or a chain deeper than _MAX_REF_DEPTH is refused."""
    if not isinstance(prop, Mapping):
        raise _SchemaProblem(f"a property description is {type(prop).__name__}, not an object")
    if len(_seen) > _MAX_REF_DEPTH:
        raise _SchemaProblem(f"references nest more than {_MAX_REF_DEPTH} levels deep")
    merged: dict[str, Any] = {}
    all_of = prop.get("allOf") or []
    if not isinstance(all_of, list):
        raise _SchemaProblem("allOf is not a list")
    refs = list(all_of)
    if "$ref" in prop:
        refs.append({"$ref": prop["$ref"]})
    for part in refs:
        ref = part.get("$ref") if isinstance(part, Mapping) else None
        if ref is not None and not isinstance(ref, str):
            raise _SchemaProblem("a $ref is not a string")
        if ref and ref.startswith("#/"):
            if ref in _seen:
                raise _SchemaProblem(f"the reference {ref[:80]!r} refers to itself")
            target: Any = schema
            for key in ref[2:].split("/"):
                target = target.get(key, {}) if isinstance(target, Mapping) else {}
            merged.update(_resolve(schema, target, _seen + (ref,)))
        elif ref:
            raise _SchemaProblem(f"the reference {ref[:80]!r} points outside the document")
        elif isinstance(part, Mapping):
            merged.update(_resolve(schema, part, _seen + ("allOf",)))
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
           required: bool = False, *, what: str = "input", _depth: int = 0) -> FieldSpec:
    """One spec field from one (resolved) JSON-schema property; BadAnswer naming the
    field when the property cannot be read."""
    try:
        return _field_of(schema, name, prop, required, _depth)
    except BadAnswer:
        raise
    except (_SchemaProblem, ValidationError, TypeError, ValueError, AttributeError, KeyError,
            OverflowError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, _SchemaProblem) else \
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        raise BadAnswer(f"The model's schema describes its {what} {str(name)[:80]!r} in a way "
                        f"that cannot be read ({reason}).",
                        hint="Fix the model's OpenAPI schema (regenerate it with `cog build` "
                             "or `python3 build.py models schema`).",
                        details=str(exc)[:2000]) from None


def _str_or_none(v: Any) -> Optional[str]:
    return v if isinstance(v, str) else None


def _field_of(schema: Mapping[str, Any], name: str, prop: Mapping[str, Any],
              required: bool, _depth: int) -> FieldSpec:
    if _depth > 8:
        raise _SchemaProblem("array items nest more than 8 levels deep")
    p = _resolve(schema, prop)
    common: dict[str, Any] = {
        "name": name,
        "description": _str_or_none(p.get("description")) or "",
        "title": _str_or_none(p.get("title")),
        "required": required,
        "deprecated": p.get("deprecated") is True,
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
        if not isinstance(p["enum"], list) or not p["enum"]:
            raise _SchemaProblem("its enum is not a non-empty list of choices")
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
        pattern = p.get("pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise _SchemaProblem("its pattern is not a string")
        return TextField(default=default, min_length=p.get("minLength") or 0,
                         max_length=p.get("maxLength"), pattern=pattern, **common)
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
        item = _field_of(schema, name, p["items"], True, _depth + 1)
        return ArrayField(
            item=item, default=default,
            min_length=p.get("minItems") or 0, max_length=p.get("maxItems"),
            iterator=p.get("x-cog-array-type") == "iterator",
            concatenate=p.get("x-cog-array-display") == "concatenate",
            **common)
    # Unions (anyOf), free-form objects, Any: passed through as they are.
    return AnyField(default=default, **common)


def _names(value: Any) -> set:
    """A ``required`` list as a set of names (anything else: none)."""
    return {v for v in value if isinstance(v, str)} if isinstance(value, list) else set()


def _outputs(schema: Mapping[str, Any], out: Mapping[str, Any]) -> list[FieldSpec]:
    try:
        out = _resolve(schema, out)
    except _SchemaProblem as exc:
        raise BadAnswer(f"The model's schema describes its output in a way that cannot be "
                        f"read ({exc}).", hint="Fix the model's OpenAPI schema.") from None
    if out.get("type") == "object" and isinstance(out.get("properties"), Mapping):
        # A BaseModel output: each attribute is an output of its own.
        required = _names(out.get("required"))
        return [_field(schema, str(name), prop, required=name in required, what="output")
                for name, prop in out["properties"].items()]
    if not out or out.keys() <= {"title", "description"}:
        return [AnyField(name=SINGLE_OUTPUT, raw=dict(out))]
    return [_field(schema, SINGLE_OUTPUT, out, required=True, what="output")]


def _not_a_model(why: str) -> BadAnswer:
    return BadAnswer(f"The document is not a Cog model's schema: {why}.",
                     hint="Check that the URL points at a Cog model server, or that the file "
                          "is the model's .cog/openapi_schema.json.")


def _order(prop: Any, fallback: int) -> float:
    v = prop.get("x-order") if isinstance(prop, Mapping) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
        and v == v and abs(v) < 1e15 else float(fallback)


def spec_from_openapi(schema: Mapping[str, Any], *, version: Optional[str] = None) -> ModelSpec:
    """The ``ModelSpec`` of a Cog model from its OpenAPI document.

    Inputs come in ``x-order`` order. Cog has no runtime setup options (its
    startup settings such as ``COG_WEIGHTS`` are environment variables), so
    ``options`` stays empty.
    """
    if not isinstance(schema, Mapping):
        raise _not_a_model(f"it is {type(schema).__name__}, not an object")
    http.check_depth(schema, "The model's schema")
    components = schema.get("components")
    components = components.get("schemas") if isinstance(components, Mapping) else None
    if not isinstance(components, Mapping) or not isinstance(components.get("Input"), Mapping):
        raise _not_a_model("it has no components.schemas.Input object (the model's inputs)")
    inp = components["Input"]
    required = _names(inp.get("required"))
    props = inp.get("properties", {})
    if not isinstance(props, Mapping):
        raise _not_a_model("components.schemas.Input.properties is not an object")
    order = sorted(props, key=lambda n: (_order(props[n], len(props)), str(n)))
    inputs = [_field(schema, str(n), props[n], required=n in required) for n in order]
    output = components.get("Output", {})
    if not isinstance(output, Mapping):
        raise _not_a_model("components.schemas.Output is not an object")
    outputs = _outputs(schema, output)
    info = schema.get("info")
    description = info.get("description") if isinstance(info, Mapping) else None
    try:
        command = Command(name=COMMAND, description=_str_or_none(description) or "",
                          inputs=inputs, outputs=outputs)
        return ModelSpec(protocol=Protocol.COG, commands=[command],
                         version=_str_or_none(version))
    except ValidationError as exc:
        raise BadAnswer("The model's schema cannot be read as a model description.",
                        hint="Fix the model's OpenAPI schema.", details=str(exc)[:2000]) from None


# --------------------------------------------------------------------------- client

def setup_seconds(health: Mapping) -> Optional[float]:
    """The model's own setup time, from a /health-check answer's
    setup.started_at/completed_at (None when it does not say)."""
    import re
    from datetime import datetime

    setup = health.get("setup") if isinstance(health, Mapping) else None
    try:
        # Cog writes nanoseconds; fromisoformat takes at most microseconds.
        a, b = (datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", setup[k]))
                for k in ("started_at", "completed_at"))
    except (KeyError, TypeError, ValueError):
        return None
    return (b - a).total_seconds()


def _json(r: Reply) -> Any:
    return r.json_or_none()


def _error_text(body: Any, r: Reply) -> str:
    return http.error_text(body, r, keys=("error", "detail", "message"))


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
        # After a cancel, how long the server has to answer "canceled" before the
        # client abandons the request (a model stuck outside Python never returns).
        self.cancel_grace = 5.0
        self._session = http.make_session()
        self._spec: Optional[ModelSpec] = None

    # ---------------------------------------------------------------- plumbing

    def _auth(self) -> dict[str, str]:
        # Per request, never on the session: output fetches decide for themselves.
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _request(self, method: str, path: str, *, timeout: Optional[float] = None,
                 deadline: Optional[Deadline] = None, limit: int = http.MAX_META_BYTES,
                 json: Any = None, cancel=None, cancel_grace: float = 0.0) -> Reply:
        """One request, bounded as a whole by ``deadline`` (or ``timeout``, or the
        client's timeout); every failure typed (see protocols/http.py)."""
        deadline = deadline or Deadline(timeout or self.timeout)
        what = f"The Cog server at {self.url} ({method} {path.split('?')[0][:60]})"
        try:
            return http.call(self._session, method, self.url + path, what=what,
                             deadline=deadline, headers=self._auth(), json_body=json,
                             limit=limit, connect_timeout=min(10.0, self.timeout),
                             cancel=cancel, cancel_grace=cancel_grace)
        except TimedOut:
            raise
        except ConnectionFailed as exc:
            if getattr(exc, "refused", False) or "cannot reach" in exc.message \
                    or "connection failed" in exc.message:
                raise ConnectionFailed(
                    f"Cannot reach the Cog server at {self.url}.",
                    hint="Check that the model server is running and the URL is right.",
                    details=exc.details) from None
            raise

    def _raise_for(self, r: Reply, body: Any) -> None:
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
        if r.status_code in (502, 504) or (r.status_code == 503 and not text):
            raise ServerError(f"The Cog server at {self.url} is unavailable "
                              f"(HTTP {r.status_code}: {text or r.reason}).",
                              status=r.status_code,
                              hint="A proxy in front of it answered; check that the model "
                                   "server is running.", details=text)
        raise ServerError(f"The Cog server answered {r.status_code}: {text}",
                          status=r.status_code,
                          hint="See the details, and the model's logs.",
                          details=r.text[:4000])

    def _validation_error(self, body: Any, r: Reply) -> ServerError:
        """A 422 ``{"detail": [{"loc": ["body", "input", NAME], "msg": ...}]}`` as a
        ServerError naming the spec field."""
        items = body.get("detail") if isinstance(body, Mapping) else None
        if not isinstance(items, list) or not items:
            return ServerError(f"The Cog server rejected the input: {_error_text(body, r)}",
                               status=422, details=r.text[:4000],
                               hint="Check the inputs against the model's schema.")
        field, messages = None, []
        for item in items[:20]:
            raw_loc = item.get("loc") if isinstance(item, Mapping) else None
            loc = [str(x)[:100] for x in raw_loc] if isinstance(raw_loc, list) else []
            # loc is ["body", "input", name, ...]; keep the input name.
            name = loc[2] if len(loc) > 2 and loc[:2] == ["body", "input"] else None
            field = field or name
            msg = item.get("msg", "") if isinstance(item, Mapping) else item
            msg = " ".join(str(msg).split())[:300]
            messages.append(f"{name}: {msg}" if name else msg)
        return ServerError("The Cog server rejected the input: " + "; ".join(messages),
                           status=422, field=field, details=r.text[:4000],
                           hint=f"Change the value of {field!r} and run again." if field
                           else "Check the inputs against the model's schema.")

    def _context(self) -> WireContext:
        return cog_wire(shared_dir=self.shared_dir, fetch=self._fetch)

    def _fetch(self, url: str) -> bytes:
        """Output files that the server uploaded elsewhere (``--upload-url``): the
        token goes only to the Cog server's own origin; at most MAX_FILE_BYTES."""
        return http.fetch(self._session, url, what="Downloading a Cog output file",
                          deadline=getattr(self._run_deadline, "d", None)
                          or Deadline(self.timeout),
                          token=self.token, token_origin=self.url,
                          connect_timeout=min(10.0, self.timeout))

    # ---------------------------------------------------------------- health and spec

    def health(self, timeout: Optional[float] = None) -> Health:
        try:
            r = self._request("GET", "/health-check",
                              deadline=Deadline(timeout or self.health_timeout))
        except TimedOut:
            return Health(HealthState.UNHEALTHY, detail="the health check timed out")
        except ConnectionFailed as exc:
            return Health(HealthState.UNREACHABLE, detail=exc.message)
        except RunwayError as exc:
            return Health(HealthState.UNHEALTHY, detail=exc.message)
        body = _json(r)
        if r.status_code in (401, 403):
            try:
                self._raise_for(r, body)
            except AuthError as exc:
                return Health(HealthState.UNHEALTHY, detail=exc.message, error=exc)
        if not isinstance(body, Mapping) or "status" not in body:
            return Health(HealthState.UNHEALTHY,
                          detail=f"unexpected health answer {r.status_code}: "
                                 f"{_error_text(None, r)[:200]}")
        setup = body.get("setup")
        setup = setup if isinstance(setup, Mapping) else {}
        state = _STATES.get(str(body["status"]).upper()[:40], HealthState.UNHEALTHY)
        detail = str(body["status"])[:200]
        if state is HealthState.SETUP_FAILED:
            detail = "the model's setup() failed"
        elif state is HealthState.DEFUNCT:
            detail = "the model's worker died (DEFUNCT): restart the model server"
        logs = setup.get("logs")
        return Health(state, detail=detail, logs=str(logs)[:100_000] if logs else "",
                      setup_seconds=setup_seconds(body))

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
        body = r.json()  # typed: not JSON, too deep
        if not isinstance(body, Mapping):
            raise BadAnswer("The Cog server's /openapi.json is not a JSON object.",
                            status=r.status_code, details=r.text[:2000],
                            hint="Check that the URL points at a Cog model server.")
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

    _run_deadline = threading.local()

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
                    cancel_event: Optional[threading.Event] = None,
                    deadline: Optional[Deadline] = None) -> dict:
        """Send already-encoded input values, no client-side validation; return
        the prediction response (status succeeded or canceled).

        Uses ``PUT /predictions/{id}`` with a client-chosen id so a retry after
        409 cannot start the same prediction twice. A failed prediction (still
        HTTP 200) raises ServerError carrying the error and the logs. The whole
        call, retries included, ends by ``deadline`` (default: ``timeout`` from now).
        """
        deadline = deadline or Deadline(self.timeout)
        run_id = run_id or uuid.uuid4().hex
        if cancel_event is not None and cancel_event.is_set():
            raise Cancelled("The run was cancelled before it started.")
        finished = threading.Event()
        if cancel_event is not None:
            threading.Thread(target=self._cancel_watch, args=(run_id, cancel_event, finished),
                             name=f"cog-cancel-{run_id[:8]}", daemon=True).start()
        try:
            body = self._put_with_retry(run_id, {"id": run_id, "input": dict(wire_input)},
                                        cancel_event, deadline)
        except Cancelled:
            raise Cancelled("The run was cancelled.",
                            hint="The Cog server stops the prediction when control returns "
                                 "to Python in the model.") from None
        except TimedOut:
            if not finished.is_set():
                self._cancel_quietly(run_id)  # nobody waits for it any more
            raise
        finally:
            finished.set()
        status = body.get("status")
        logs = body.get("logs")
        logs = str(logs)[:1_000_000] if logs else ""
        if status == "failed":
            error = " ".join(str(body.get("error") or "unknown error").split())[:2000]
            raise ServerError(f"The model failed: {error}", status=200,
                              hint="See the details for the model's logs.",
                              details=(logs + "\n" + error).strip())
        if status == "canceled" or (cancel_event is not None and cancel_event.is_set()):
            raise Cancelled("The run was cancelled.", details=logs)
        if status != "succeeded":
            # A repeated id of a run still in progress answers 202 "processing".
            raise BadAnswer(f"The Cog server answered with status {str(status)[:40]!r} for run "
                            f"{run_id}.", hint="Use a fresh run id for each run.",
                            details=str(body)[:2000])
        return body

    def _cancel_quietly(self, run_id: str) -> None:
        try:
            self.cancel(run_id)
        except RunwayError:
            pass

    def _put_with_retry(self, run_id: str, payload: dict,
                        cancel_event: Optional[threading.Event], deadline: Deadline) -> dict:
        busy = deadline.within(self.busy_timeout)
        delay = 0.02
        checked = 0.0
        while True:
            # After a cancel, give the server 5 s to answer "canceled" before abandoning.
            r = self._request("PUT", f"/predictions/{run_id}", json=payload, deadline=deadline,
                              limit=http.MAX_BODY_BYTES, cancel=cancel_event,
                              cancel_grace=self.cancel_grace)
            if r.status_code != 409:
                break
            # At capacity: every slot busy -- or the worker died. Ask, now and then.
            now = time.monotonic()
            if now - checked > 2.0:
                checked = now
                h = self.health(timeout=max(0.05, min(2.0, deadline.left())))
                if h.state in (HealthState.DEFUNCT, HealthState.SETUP_FAILED):
                    raise ModelNotReady(f"The Cog model at {self.url} cannot run: {h.detail}.",
                                        hint="Restart the model server (Stop, then Start).",
                                        details=h.logs)
            if busy.left() < delay:
                if busy.at >= deadline.at:
                    raise TimedOut(f"The Cog server stayed busy (409 at capacity) until the "
                                   f"run's timeout of {deadline.total:g} s.", status=409,
                                   hint="Wait for the running prediction, or raise the timeout.")
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
        body = r.json()  # typed: not JSON, too deep
        if not isinstance(body, Mapping):
            raise BadAnswer("The Cog server's prediction answer is not a JSON object.",
                            status=r.status_code, details=r.text[:2000],
                            hint="Check that the URL points at a Cog model server.")
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
        """Validate, encode, predict, decode; the whole call ends within ``timeout``."""
        deadline = Deadline(self.timeout)
        cmd = command_of(self.spec(), command)
        values = validate_inputs(cmd.inputs, dict(inputs), protocol="cog")
        ctx = self._context()
        by_name = {f.name: f for f in cmd.inputs}
        # None means "not given": Cog applies its own default (or null).
        wire = {name: encode_value(by_name[name], value, ctx)
                for name, value in values.items() if value is not None and name in by_name}
        run_id = run_id or uuid.uuid4().hex
        body = self.predict_raw(wire, run_id=run_id, cancel_event=cancel_event,
                                deadline=deadline)
        self._run_deadline.d = deadline
        try:
            outputs = self._decode_outputs(cmd, body.get("output"), ctx)
        finally:
            self._run_deadline.d = None
        raw_metrics = body.get("metrics")
        metrics = {str(k): float(v) for k, v in
                   (raw_metrics.items() if isinstance(raw_metrics, Mapping) else ())
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        logs = body.get("logs")
        return RunResult(outputs=outputs, logs=str(logs)[:1_000_000] if logs else "",
                         metrics=metrics, run_id=run_id)

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
            out[field.name] = None if value is None else decode_typed(
                lambda: decode_value(field, value, ctx),
                f"The Cog model's output {field.name!r}",
                "Check the model's output against its schema.")
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
