"""Client for Replicate's HTTP API (Cog models hosted by Replicate).

What the API does is written down in docs/protocols/replicate-api.md, from
Replicate's public documentation. The live service could not be reached while
this was written: the client is tested against tests/servers/replicate_server.py,
a local stand-in that follows the same documented contract.

Choices that the documentation leaves to the client:

- Model references: ``owner/name:version`` runs that version (POST /v1/predictions),
  ``owner/name`` runs the model's current version through the official-model
  route (POST /v1/models/{owner}/{name}/predictions; community models must be
  pinned to a version), ``deployment:owner/name`` runs a deployment.
- The token goes in ``Authorization: Bearer`` only to the API's own origin
  (scheme, host and port of ``base_url``): uploads' ``urls.get`` live there,
  output files do not (they are public, signed delivery URLs), so downloads of
  outputs go without it. requests drops the header on a redirect to another
  host as well. The token never appears in repr, logs or error text.
- HTTPS only. Plain http is accepted for a loopback API (a local test server),
  and then for loopback downloads only; an https API never makes the client
  fetch plain-http or loopback URLs it did not ask for.
- Inputs are encoded as for a Cog server without a shared folder (data URIs);
  a file over ``upload_threshold`` bytes (256 KB, Replicate's advice) is
  uploaded with POST /v1/files and passed by its ``urls.get``.
"""
from __future__ import annotations

import ipaddress
import logging
import mimetypes
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional
from urllib.parse import quote

import requests

from ..codecs import WireContext, decode_value, encode_value, parse_data_uri
from ..errors import (AuthError, BadAnswer, Cancelled, ConnectionFailed, FieldIssue, Kind,
                      RunwayError, ServerError, SpecValidationError, TimedOut)
from ..spec import Command, ModelSpec, Protocol
from ..tokens import mask
from ..validation import validate_inputs
from . import http
from .base import Health, HealthState, ModelClient, RunResult, command_of, decode_typed
from .cog import SINGLE_OUTPUT, cog_wire, spec_from_openapi
from .http import Deadline, Reply

__all__ = ["ReplicateClient", "ModelRef", "parse_model_ref", "PredictionTracker", "Usage",
           "DEFAULT_BASE_URL", "TOKEN_HINT", "is_loopback"]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.replicate.com"
TOKEN_HINT = ("Set a Replicate API token for this endpoint, or in the REPLICATE_API_TOKEN "
              "environment variable.")
UPLOAD_THRESHOLD = 256 * 1024  # bytes; larger files go through POST /v1/files
MAX_WAIT = 60  # seconds Replicate holds a `Prefer: wait` request at most
TERMINAL = ("succeeded", "failed", "canceled", "aborted")

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_REF = re.compile(rf"^(?P<deployment>deployment:)?(?P<owner>{_NAME})/(?P<name>{_NAME})"
                  r"(?::(?P<version>[A-Za-z0-9]+))?$")


# --------------------------------------------------------------------------- references, URLs

@dataclass(frozen=True)
class ModelRef:
    owner: str
    name: str
    version: Optional[str] = None
    deployment: bool = False

    @property
    def path(self) -> str:
        return f"{quote(self.owner)}/{quote(self.name)}"

    def __str__(self) -> str:
        text = f"{self.owner}/{self.name}"
        if self.deployment:
            return "deployment:" + text
        return f"{text}:{self.version}" if self.version else text


def parse_model_ref(text: str) -> ModelRef:
    """``owner/name``, ``owner/name:version`` or ``deployment:owner/name``."""
    m = _REF.match((text or "").strip())
    if not m or (m.group("deployment") and m.group("version")):
        raise RunwayError(f"{text!r} is not a Replicate model reference.",
                          hint="Write it as owner/name, owner/name:version or "
                               "deployment:owner/name.")
    return ModelRef(m.group("owner"), m.group("name"), m.group("version"),
                    bool(m.group("deployment")))


def is_loopback(host: Optional[str]) -> bool:
    """Whether ``host`` names this computer (localhost, 127.0.0.0/8, ::1)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str, Optional[int]]:
    return http.origin(url)


# --------------------------------------------------------------------------- usage

@dataclass(frozen=True)
class Usage:
    """What a session's runs cost: finished predictions and their billed seconds."""

    runs: int = 0
    predict_time: float = 0.0


class PredictionTracker:
    """Predictions started and not yet finished, and the usage of finished ones.

    Shared by every client of one session, so the session can cancel what its
    runs left running and show usage. Once closed, a prediction that is only
    now created is refused (its creator cancels it)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open: dict[str, dict] = {}
        self._counted: set[str] = set()
        self._closed = False
        self._runs = 0
        self._predict_time = 0.0

    @property
    def closed(self) -> bool:
        return self._closed

    def add(self, prediction: Mapping[str, Any]) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._open[str(prediction.get("id"))] = dict(prediction)
            return True

    def finish(self, prediction: Mapping[str, Any]) -> None:
        """Forget a prediction; count it once when it reached a final state.
        Failed predictions are billed too, so their time counts."""
        pid = str(prediction.get("id"))
        with self._lock:
            self._open.pop(pid, None)
            if prediction.get("status") in TERMINAL and pid not in self._counted:
                self._counted.add(pid)
                self._runs += 1
                metrics = prediction.get("metrics")
                seconds = metrics.get("predict_time") if isinstance(metrics, Mapping) else None
                if isinstance(seconds, (int, float)):
                    self._predict_time += float(seconds)

    def close(self) -> list[str]:
        """Refuse new predictions; return the ids of those still running."""
        with self._lock:
            self._closed = True
            ids, self._open = list(self._open), {}
            return ids

    @property
    def usage(self) -> Usage:
        with self._lock:
            return Usage(self._runs, self._predict_time)


# --------------------------------------------------------------------------- helpers

def _json(r: Reply) -> Any:
    return r.json_or_none()


def _retry_after(r: Reply) -> Optional[float]:
    """Seconds from a Retry-After header (Replicate sends whole seconds)."""
    return http.retry_after(r.headers)


def _problem_text(body: Any, r: Reply) -> str:
    """The message of Replicate's problem+json answers ({title, detail, status})."""
    return http.error_text(body, r, keys=("detail", "title", "error"))


# --------------------------------------------------------------------------- client

class ReplicateClient(ModelClient):
    """One model (or deployment) on Replicate.

    ``wait`` is the ``Prefer: wait=N`` hold of the create request (1 to 60 s;
    0 sends no Prefer header); a prediction still running after it is polled
    every ``poll_interval`` seconds, the whole run bounded by ``timeout``. A
    429 answer is retried up to ``max_retries`` times after its Retry-After
    (at most ``max_retry_wait`` seconds each). ``tracker`` is shared by the
    clients of one session (see PredictionTracker).
    """

    protocol = Protocol.REPLICATE

    def __init__(self, model: str, *, token: Optional[str] = None,
                 base_url: str = DEFAULT_BASE_URL, timeout: float = 600.0, wait: int = MAX_WAIT,
                 poll_interval: float = 0.5, max_retries: int = 5, max_retry_wait: float = 30.0,
                 upload_threshold: int = UPLOAD_THRESHOLD, request_timeout: float = 30.0,
                 connect_timeout: float = 10.0, tracker: Optional[PredictionTracker] = None,
                 session: Optional[requests.Session] = None):
        super().__init__(base_url, token=(token or "").strip() or None, timeout=timeout)
        self.ref = parse_model_ref(model)
        scheme, host, _ = _origin(self.url)
        if scheme != "https" and not (scheme == "http" and is_loopback(host)):
            raise RunwayError(f"The Replicate API address {self.url} is not https.",
                              hint="Use https (plain http is accepted only on this computer, "
                                   "for tests).")
        self._origin = _origin(self.url)
        self._local_http = scheme == "http"
        self.wait = max(0, min(int(wait), MAX_WAIT))
        self.poll_interval = poll_interval
        self.max_retries = max(0, int(max_retries))
        self.max_retry_wait = max_retry_wait
        self.upload_threshold = upload_threshold
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.tracker = tracker or PredictionTracker()
        self._session = http.watch_session(session or requests.Session())
        self._model: Optional[dict] = None
        self._version: Optional[dict] = None
        self._spec: Optional[ModelSpec] = None

    def __repr__(self) -> str:  # never shows the token
        return f"<ReplicateClient {self.ref} at {self.url}>"

    # ---------------------------------------------------------------- plumbing

    def _scrub(self, text: str) -> str:
        """``text`` with the token masked, should a server ever echo it back."""
        return text.replace(self.token, mask(self.token)) if self.token and text else text

    def _own(self, url: str) -> bool:
        return _origin(url) == self._origin

    def _request(self, method: str, path: str, *, timeout: Optional[float] = None,
                 cancel_event: Optional[threading.Event] = None,
                 headers: Optional[Mapping[str, str]] = None,
                 deadline: Optional[Deadline] = None, json: Any = None, files: Any = None,
                 limit: int = http.MAX_BODY_BYTES) -> Reply:
        """One API request (path under the base URL), retried on 429; each attempt
        bounded by ``timeout`` and all of them by ``deadline``."""
        if not self.token:
            raise AuthError("No Replicate API token is set.", hint=TOKEN_HINT,
                            kind=Kind.TOKEN_MISSING)
        url = self.url + path
        all_headers = {"Accept": "application/json", "Authorization": f"Bearer {self.token}",
                       **(headers or {})}
        per_call = timeout or self.request_timeout
        deadline = deadline or Deadline(per_call * (self.max_retries + 1)
                                        + self.max_retry_wait * self.max_retries)
        for attempt in range(self.max_retries + 1):
            try:
                r = http.call(self._session, method, url, what=f"Replicate ({method} {path})",
                              deadline=deadline.within(per_call), headers=all_headers,
                              json_body=json, files=files, limit=limit,
                              connect_timeout=self.connect_timeout)
            except TimedOut as exc:
                raise TimedOut(f"Replicate did not answer {method} {path} in time.",
                               hint="Check the network, or try again later.",
                               details=exc.details) from None
            except Cancelled:
                raise Cancelled("The run was cancelled.") from None
            except BadAnswer:
                raise
            except ConnectionFailed as exc:
                raise ConnectionFailed(f"Cannot reach Replicate at {self.url}.",
                                       hint="Check the network connection.",
                                       details=exc.details) from None
            if r.status_code != 429 or attempt == self.max_retries:
                return r
            delay = _retry_after(r)
            delay = min(self.max_retry_wait, 2.0 ** attempt if delay is None else delay)
            if delay >= deadline.left():
                return r  # no time left for another attempt: reported as throttled
            log.info("Replicate throttled %s %s (429); retry %d of %d in %.1f s", method, path,
                     attempt + 1, self.max_retries, delay)
            if cancel_event is not None:
                if cancel_event.wait(delay):
                    raise Cancelled("The run was cancelled while Replicate throttled it.")
            else:
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _check(self, r: Reply, what: str) -> dict:
        """The JSON body of a successful answer, or the error a person can act on."""
        status = r.status_code
        if 200 <= status < 300:
            body = r.json()  # typed: not JSON, too deep
            if not isinstance(body, Mapping):
                raise BadAnswer(f"Replicate's answer for {what} is not a JSON object.",
                                status=status, details=self._scrub(r.text[:2000]),
                                hint="Check the API address (base_url).")
            return dict(body)
        body = _json(r)
        text = self._scrub(_problem_text(body, r))
        details = self._scrub(r.text[:4000])
        if status == 401:
            raise AuthError("Replicate refused the API token (401).", status=status,
                            hint=TOKEN_HINT, details=text, kind=Kind.TOKEN_REFUSED)
        if status == 403:
            raise AuthError(f"The Replicate token has no access to {self.ref} (403).",
                            status=status, hint="Check the model's visibility, or " + TOKEN_HINT,
                            details=text, kind=Kind.TOKEN_REFUSED)
        if status == 404:
            raise ServerError(f"Replicate has no {what} ({text}).", status=status,
                              hint="Check the model reference (owner/name[:version]).",
                              details=details)
        if status == 422:
            raise self._invalid_input(body, text, details)
        if status == 429:
            raise ServerError(f"Replicate kept throttling the requests after "
                              f"{self.max_retries} retries (429).", status=status,
                              hint="Wait a minute and run again.", details=details)
        raise ServerError(f"Replicate answered HTTP {status} for {what}: {text}", status=status,
                          details=details)

    @staticmethod
    def _invalid_input(body: Any, text: str, details: str) -> ServerError:
        """422 ``{"detail": ..., "invalid_fields": [{"field": ..., "description": ...}]}``."""
        fields = body.get("invalid_fields") if isinstance(body, Mapping) else None
        name = None
        if isinstance(fields, list) and fields and isinstance(fields[0], Mapping):
            name = str(fields[0].get("field") or "")[:100] or None
            if name and name.startswith("input."):
                name = name[len("input."):]
        return ServerError(f"Replicate rejected the input: {text}", status=422, field=name,
                           details=details)

    def _fetch(self, url: str) -> bytes:
        """Download an output file (the codecs call this for http(s) outputs)."""
        def allow(hop: str) -> Optional[str]:
            scheme, host, _ = _origin(hop)
            if scheme == "https" or (scheme == "http" and self._local_http and is_loopback(host)):
                return None
            return "not https"

        if allow(url):  # the first address: the message tests and users know
            raise BadAnswer(f"Refusing to download the output {http._short(url)}: not https.",
                            hint="Replicate's outputs are https URLs; this answer is unusual.")
        try:
            return http.fetch(self._session, url, what="Downloading a Replicate output",
                              deadline=getattr(self, "_fetch_deadline", None)
                              or Deadline(self.timeout),
                              token=self.token, token_origin=self.url, allow=allow,
                              connect_timeout=self.connect_timeout)
        except ServerError as exc:
            if exc.status and exc.status >= 400 and not isinstance(exc, BadAnswer):
                exc.hint = "Replicate keeps outputs for a limited time; run again."
            raise

    # ---------------------------------------------------------------- model, spec, health

    def _load(self) -> tuple[dict, dict]:
        """(model, version) JSON: the pinned version, the deployment's current
        release, or the model's latest version."""
        ref = self.ref
        if ref.deployment:
            dep = self._check(self._request("GET", f"/v1/deployments/{ref.path}"),
                              f"deployment {ref.owner}/{ref.name}")
            release = dep.get("current_release") or {}
            if not isinstance(release, Mapping) or not isinstance(release.get("model"), str) \
                    or not release.get("model"):
                raise ServerError(f"The Replicate deployment {ref} has no release yet.",
                                  hint="Create a release of the deployment on Replicate.")
            version = release.get("version")
            version = version if isinstance(version, str) else None
            try:
                model_ref = parse_model_ref(f"{release['model']}:{version}" if version
                                            else str(release["model"]))
            except RunwayError:
                raise BadAnswer(f"The Replicate deployment {ref} names a model that is not a "
                                "model reference.", hint="Check the deployment on Replicate.",
                                details=str(release)[:500]) from None
        else:
            model_ref = ref
        model = self._check(self._request("GET", f"/v1/models/{model_ref.path}"),
                            f"model {model_ref.owner}/{model_ref.name}")
        if model_ref.version:
            version = self._check(
                self._request("GET", f"/v1/models/{model_ref.path}/versions/"
                                     f"{quote(model_ref.version)}"),
                f"version {model_ref.version} of {model_ref.owner}/{model_ref.name}")
        else:
            version = model.get("latest_version") or {}
            if not isinstance(version, Mapping) or not version:
                raise ServerError(f"The Replicate model {ref} has no published version.",
                                  hint="Choose another model, or pin a version.")
        return model, dict(version)

    def _ensure_loaded(self) -> tuple[dict, dict]:
        if self._model is None or self._version is None:
            self._model, self._version = self._load()
        return self._model, self._version

    def spec(self) -> ModelSpec:
        """The version's ``openapi_schema``, mapped like a local Cog server's."""
        if self._spec is None:
            _, version = self._ensure_loaded()
            schema = version.get("openapi_schema")
            if not isinstance(schema, Mapping):
                raise ServerError(f"The Replicate model {self.ref} publishes no input schema.",
                                  hint="Choose another version of the model.")
            spec = spec_from_openapi(schema, version=version.get("id"))
            spec.protocol = Protocol.REPLICATE
            self._spec = spec
        return self._spec

    def model_info(self) -> dict[str, Any]:
        """What the model card shows: description, cover image, run count, links."""
        model, version = self._ensure_loaded()
        return {
            "ref": str(self.ref),
            "owner": model.get("owner"),
            "name": model.get("name"),
            "url": model.get("url"),
            "description": model.get("description") or "",
            "visibility": model.get("visibility"),
            "cover_image_url": model.get("cover_image_url"),
            "run_count": model.get("run_count"),
            "github_url": model.get("github_url"),
            "paper_url": model.get("paper_url"),
            "license_url": model.get("license_url"),
            "version": version.get("id"),
            "version_created_at": version.get("created_at"),
            "cog_version": version.get("cog_version"),
        }

    def health(self) -> Health:
        """READY when the API answers for this model with this token. A hosted
        model has no health of its own: Replicate starts it per prediction."""
        try:
            self._model, self._version = self._load()
        except AuthError as exc:
            return Health(HealthState.UNHEALTHY, detail=f"{exc.message} {exc.hint}")
        except ConnectionFailed as exc:
            return Health(HealthState.UNREACHABLE, detail=exc.message)
        except RunwayError as exc:
            return Health(HealthState.UNHEALTHY, detail=str(exc))
        return Health(HealthState.READY, detail=f"{self.ref} on Replicate")

    def setup(self, options: Mapping[str, Any]) -> None:
        """Replicate models take no setup options."""
        if options:
            raise SpecValidationError(
                [FieldIssue(name, value, "unknown", "a Replicate model takes no setup options")
                 for name, value in options.items()])

    # ---------------------------------------------------------------- files

    def upload_file(self, data: bytes, filename: str = "input",
                    content_type: str = "application/octet-stream", *,
                    cancel_event: Optional[threading.Event] = None) -> str:
        """POST /v1/files (multipart ``content``); return the file's ``urls.get``."""
        r = self._request("POST", "/v1/files", timeout=max(self.request_timeout, 120.0),
                          cancel_event=cancel_event,
                          files={"content": (filename, data, content_type)})
        body = self._check(r, f"the upload of {filename}")
        urls = body.get("urls")
        url = urls.get("get") if isinstance(urls, Mapping) else None
        if not isinstance(url, str):
            raise ServerError("Replicate's answer to a file upload has no urls.get.",
                              details=self._scrub(str(body)[:2000]))
        log.debug("uploaded %s (%d bytes) to Replicate", filename, len(data))
        return url

    def _upload_large(self, wire: Any, name: str,
                      cancel_event: Optional[threading.Event]) -> Any:
        """Data URIs over the threshold become uploaded files' URLs."""
        if isinstance(wire, list):
            return [self._upload_large(v, f"{name}-{i}", cancel_event) for i, v in enumerate(wire)]
        # The URI is longer than its bytes (base64), so short ones skip the decode.
        if isinstance(wire, str) and wire[:5].lower() == "data:" \
                and len(wire) > self.upload_threshold:
            data, mime = parse_data_uri(wire, name)
            if len(data) > self.upload_threshold:
                ext = mimetypes.guess_extension(mime or "") or ""
                return self.upload_file(data, f"{name}{ext}", mime or "application/octet-stream",
                                        cancel_event=cancel_event)
        return wire

    # ---------------------------------------------------------------- predictions

    def _route(self, wire_input: Mapping[str, Any]) -> tuple[str, dict]:
        ref = self.ref
        if ref.deployment:
            return f"/v1/deployments/{ref.path}/predictions", {"input": dict(wire_input)}
        if ref.version:
            return "/v1/predictions", {"version": ref.version, "input": dict(wire_input)}
        return f"/v1/models/{ref.path}/predictions", {"input": dict(wire_input)}

    def _create(self, wire_input: Mapping[str, Any],
                cancel_event: Optional[threading.Event]) -> dict:
        path, payload = self._route(wire_input)
        headers = {"Prefer": f"wait={self.wait}"} if self.wait else {}
        timeout = self.request_timeout + self.wait

        def send() -> dict:
            r = self._request("POST", path, json=payload, headers=headers, timeout=timeout,
                              cancel_event=cancel_event)
            return self._check(r, f"a prediction of {self.ref}")

        if cancel_event is None:
            return send()
        # The create request may be held for up to `wait` seconds and the id is
        # unknown until it answers: send it from a helper thread, stop waiting
        # when the event is set, and let the helper cancel the prediction once
        # its id arrives.
        lock = threading.Lock()
        box: dict[str, Any] = {}
        done = threading.Event()

        def work():
            prediction = None
            try:
                prediction = send()
            except BaseException as exc:  # handed over to the waiting thread
                box["error"] = exc
            with lock:
                box["prediction"] = prediction
                done.set()
                abandoned = box.get("abandoned", False)
            if abandoned and prediction is not None:
                self._cancel_quietly(prediction)

        threading.Thread(target=work, name="replicate-create", daemon=True).start()
        while not done.wait(0.05):
            if cancel_event.is_set():
                with lock:
                    if not done.is_set():
                        box["abandoned"] = True
                        raise Cancelled("The run was cancelled; its Replicate prediction is "
                                        "cancelled as soon as Replicate names it.")
        if "error" in box:
            raise box["error"]
        return box["prediction"]

    def _get(self, prediction_id: str, cancel_event: Optional[threading.Event],
             deadline: Optional[Deadline] = None) -> dict:
        # The same address as the prediction's urls.get, built from the base
        # URL so the token only ever goes to the API's origin.
        r = self._request("GET", f"/v1/predictions/{quote(prediction_id)}",
                          cancel_event=cancel_event, deadline=deadline)
        return self._check(r, f"prediction {prediction_id}")

    def _cancel_quietly(self, prediction: Mapping[str, Any]) -> None:
        if prediction.get("status") in TERMINAL or not prediction.get("id"):
            return
        try:
            self.cancel(str(prediction["id"]))
        except RunwayError as exc:
            log.warning("could not cancel Replicate prediction %s: %s", prediction["id"], exc)

    def predict_raw(self, wire_input: Mapping[str, Any], *,
                    cancel_event: Optional[threading.Event] = None) -> dict:
        """Send already-encoded inputs; return the succeeded prediction.

        failed -> ServerError with the error and the logs; canceled ->
        Cancelled; ``cancel_event`` set -> the prediction is cancelled on
        Replicate and Cancelled raised; over ``timeout`` -> cancelled and
        ServerError."""
        run_deadline = Deadline(self.timeout)
        deadline = run_deadline.at
        if cancel_event is not None and cancel_event.is_set():
            raise Cancelled("The run was cancelled before it started.")
        if self.tracker.closed:
            raise Cancelled("The Replicate session was stopped.")
        prediction = self._create(wire_input, cancel_event)
        pid = prediction.get("id")
        pid = str(pid)[:200] if isinstance(pid, (str, int)) else ""
        if not pid:
            raise BadAnswer("Replicate's prediction answer has no id.",
                            hint="Check the API address (base_url).",
                              details=self._scrub(str(prediction)[:2000]))
        log.debug("Replicate prediction %s: %s", pid, prediction.get("status"))
        if not self.tracker.add(prediction):
            self._cancel_quietly(prediction)
            raise Cancelled("The Replicate session was stopped.")
        try:
            while prediction.get("status") not in TERMINAL:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimedOut(f"The Replicate prediction {pid} did not finish in "
                                      f"{self.timeout:g} s; it was cancelled.",
                                      hint="Raise the timeout for long runs.")
                pause = min(self.poll_interval, left)
                if cancel_event is not None:
                    if cancel_event.wait(pause):
                        raise Cancelled("The run was cancelled.",
                                        details=str(prediction.get("logs") or ""))
                else:
                    time.sleep(pause)
                try:
                    prediction = self._get(pid, cancel_event, run_deadline)
                except TimedOut:
                    if run_deadline.expired():
                        raise TimedOut(f"The Replicate prediction {pid} did not finish in "
                                       f"{self.timeout:g} s; it was cancelled.",
                                       hint="Raise the timeout for long runs.") from None
                    raise
        finally:
            # Nobody waits for it any more (cancelled, timed out, network lost):
            # cancel it so Replicate stops billing it.
            self._cancel_quietly(prediction)
            self.tracker.finish(prediction)
        status = prediction["status"]
        logs = str(prediction.get("logs") or "")
        if status == "canceled":
            raise Cancelled("The Replicate prediction was cancelled.", details=logs)
        if status != "succeeded":
            error = str(prediction.get("error") or f"the prediction ended as {status}")
            raise ServerError(f"The model failed on Replicate: {error}",
                              hint="See the logs in the details.",
                              details=self._scrub(f"{logs}\n{error}".strip()))
        return prediction

    def run(self, inputs: Mapping[str, Any], command: Optional[str] = None, *,
            run_id: Optional[str] = None,
            cancel_event: Optional[threading.Event] = None) -> RunResult:
        """Validate, encode (uploading large files), predict, download and decode.

        ``run_id`` is ignored: Replicate names its predictions; the result's
        ``run_id`` is that name. ``metrics["predict_time"]`` is the billed time."""
        cmd = command_of(self.spec(), command)
        values = validate_inputs(cmd.inputs, dict(inputs), protocol="cog")
        ctx = self._context()
        by_name = {f.name: f for f in cmd.inputs}
        wire = {}
        for name, value in values.items():
            if value is None or name not in by_name:
                continue  # None: Replicate applies the model's own default
            wire[name] = self._upload_large(encode_value(by_name[name], value, ctx), name,
                                            cancel_event)
        prediction = self.predict_raw(wire, cancel_event=cancel_event)
        outputs = self._decode_outputs(cmd, prediction.get("output"), ctx)
        raw_metrics = prediction.get("metrics")
        metrics = {str(k): float(v) for k, v in
                   (raw_metrics.items() if isinstance(raw_metrics, Mapping) else ())
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return RunResult(outputs=outputs, logs=str(prediction.get("logs") or ""),
                         metrics=metrics, run_id=str(prediction["id"]))

    def _context(self) -> WireContext:
        # Bytes cost more than CPU over the internet: deflate PNGs (see codecs).
        return cog_wire(fetch=self._fetch, png_compress_level=1)

    @staticmethod
    def _decode_outputs(cmd: Command, wire: Any, ctx: WireContext) -> dict[str, Any]:
        if len(cmd.outputs) == 1 and cmd.outputs[0].name == SINGLE_OUTPUT:
            named = {SINGLE_OUTPUT: wire}
        elif isinstance(wire, Mapping):
            named = dict(wire)
        else:
            raise ServerError("The Replicate model returned a value its schema does not "
                              "describe.", details=repr(wire)[:2000])
        return decode_typed(lambda: {f.name: None if named.get(f.name) is None
                                     else decode_value(f, named[f.name], ctx)
                                     for f in cmd.outputs},
                            "The Replicate model's outputs", "Check the model's outputs.")

    def cancel(self, run_id: str) -> None:
        """POST /v1/predictions/{id}/cancel; an unknown prediction is no error."""
        r = self._request("POST", f"/v1/predictions/{quote(run_id)}/cancel")
        if r.status_code == 404:
            return
        self._check(r, f"the cancel of prediction {run_id}")
        log.debug("cancelled Replicate prediction %s", run_id)

    def close(self) -> None:
        self._session.close()
