"""What every protocol client offers; the rest of the add-on talks only to this."""
from __future__ import annotations

import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Optional

from ..errors import BadAnswer, Cancelled, ModelNotReady, RunwayError, UnknownCommand
from ..spec import Command, ModelSpec, Protocol
from .http import MAX_BODY_BYTES, clean_token

_CHUNK = 1 << 20


def command_of(spec: ModelSpec, name: Optional[str]) -> Command:
    """The named command (the first when None); UnknownCommand, naming what the model
    offers, before anything is sent."""
    if name is None:
        if not spec.commands:
            raise UnknownCommand("(default)", [])
        return spec.commands[0]
    if not isinstance(name, str):
        raise UnknownCommand(repr(name), [c.name for c in spec.commands])
    for cmd in spec.commands:
        if cmd.name == name:
            return cmd
    raise UnknownCommand(name, [c.name for c in spec.commands])


def read_body(r, what: str, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body of a ``stream=True`` response, read in 1 MB chunks and bounded by
    ``limit``. Kept for callers outside the protocols; the clients use
    ``http.call``, which also holds an overall deadline."""
    import requests

    from ..errors import ConnectionFailed, ServerError

    parts, size = [], 0
    try:
        for chunk in r.iter_content(_CHUNK):
            size += len(chunk)
            if size > limit:
                r.close()
                raise ServerError(f"{what}: the answer is larger than {limit >> 20} MB.",
                                  status=r.status_code, hint="Check the server.")
            parts.append(chunk)
    except (requests.RequestException, OSError, ValueError) as e:
        raise ConnectionFailed(f"{what}: the answer was cut off ({type(e).__name__}).",
                               hint="Check that the server is still running.",
                               details=str(e)) from e
    r._content = b"".join(parts)
    return r._content


OUTPUT_HINT = "The model's answer does not fit its own description; check the model (or its schema)."


def decode_typed(decode, what: str, hint: str):
    """``decode()`` for a model's outputs: a RunwayError gets the default hint, anything
    else a decoder trips on (a wrong shape, a runaway depth) becomes BadAnswer."""
    try:
        return decode()
    except RunwayError as exc:
        if not exc.hint:
            exc.hint = OUTPUT_HINT
        raise
    except (Exception, RecursionError) as exc:  # noqa: BLE001 (typed here, once)
        raise BadAnswer(f"{what} cannot be read ({type(exc).__name__}).", hint=hint,
                        details=str(exc)[:2000]) from None


class HealthState(str, Enum):
    STARTING = "starting"  # setting up; refused connections count as this
    READY = "ready"
    BUSY = "busy"
    SETUP_FAILED = "setup_failed"
    DEFUNCT = "defunct"
    UNHEALTHY = "unhealthy"
    UNREACHABLE = "unreachable"


@dataclass
class Health:
    state: HealthState
    detail: str = ""
    logs: str = ""  # e.g. the traceback of a failed Cog setup
    # Why it is unhealthy, where that says what to do (a refused token): raised as is.
    error: Optional[RunwayError] = None
    setup_seconds: Optional[float] = None  # the model's own setup time, where the server says


def setup_failure(logs: str) -> tuple[str, str]:
    """A failed setup's exception line and traceback from the server's setup logs:
    the traceback where the server keeps one (coglet 0.23.1 keeps only the
    exception line, wrapped in "worker setup failed (slot ...): ..."), else the
    logs' last lines."""
    logs = (logs or "").strip()
    trace = logs[logs.find("Traceback"):] if "Traceback" in logs else \
        "\n".join(logs.splitlines()[-30:])
    last = trace.splitlines()[-1] if trace else "no details"
    m = re.search(r"(\w+(?:Error|Exception|Exit|Interrupt)\b.*)$", last)
    return (m.group(1) if m else last), trace


@dataclass
class RunResult:
    outputs: dict[str, Any]  # decoded Python values, keyed by output field name
    logs: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. predict_time (s)
    run_id: Optional[str] = None


class ModelClient(ABC):
    """A connection to one running model server.

    ``run`` takes Python values (numpy arrays / PIL images for images, str,
    numbers, paths), validates them against the spec, encodes, sends, and
    decodes the outputs. ``cancel_event`` lets another thread abandon a run.
    """

    protocol: Protocol

    def __init__(self, url: str, *, token: Optional[str] = None, timeout: float = 600.0,
                 shared_dir: Optional[str] = None):
        self.url = str(url).rstrip("/")
        self.token = clean_token(token)  # refuses a token with a line break inside
        self.timeout = float(timeout)
        # A folder both this process and the server see under the same path:
        # large files then travel as bare paths instead of base64.
        self.shared_dir = shared_dir

    @abstractmethod
    def health(self, timeout: Optional[float] = None) -> Health:
        """The server's state now; ``timeout`` bounds this one check."""

    def wait_until_ready(self, timeout: float = 300.0, *,
                         cancel_event: Optional[threading.Event] = None,
                         first_delay: float = 0.05, max_delay: float = 0.5,
                         on_progress: Optional[Callable[[Health], None]] = None,
                         check: Optional[Callable[[Health], bool]] = None) -> Health:
        """Poll ``health()`` with backoff until READY (or BUSY: up and working).

        A refused connection or a setup still running keeps waiting; a failed
        setup (its exception in the message, its traceback as details), a
        defunct or unhealthy server raises ModelNotReady at once; so does running
        out of time. The error's ``health`` is the last answer. ``cancel_event``
        raises Cancelled.

        ``on_progress(health)`` hears the first answer and every change of state.
        ``check(health)``, for a server the caller started, sees every answer
        first: it raises to end the wait (its process died), or returns False
        when the answer is not yet to be trusted (another program may hold the
        port): the wait then goes on as if the server were still starting."""
        deadline = time.monotonic() + timeout
        delay = first_delay
        last: Optional[HealthState] = None
        while True:
            h = self.health(timeout=max(0.05, min(getattr(self, "health_timeout", 5.0),
                                                  deadline - time.monotonic())))
            if on_progress is not None and h.state is not last:
                on_progress(h)
            last = h.state
            if check is None or check(h) is not False:
                if h.state in (HealthState.READY, HealthState.BUSY):
                    return h
                if h.error is not None:
                    raise h.error
                if h.state is HealthState.SETUP_FAILED:
                    line, trace = setup_failure(h.logs)
                    raise ModelNotReady(f"The model at {self.url} cannot run: {h.detail}: "
                                        f"{line}", hint="See the model's logs.", details=trace,
                                        health=h)
                if h.state in (HealthState.DEFUNCT, HealthState.UNHEALTHY):
                    raise ModelNotReady(f"The model at {self.url} cannot run: "
                                        f"{h.detail or h.state.value}.",
                                        hint="See the model's logs.", details=h.logs, health=h)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ModelNotReady(
                    f"The model at {self.url} was not ready after {timeout:g} s "
                    f"(last state: {h.state.value}).", details=h.logs or h.detail,
                    hint="Wait longer (a large model may take minutes to set up), or see "
                         "the model's logs.", health=h)
            if cancel_event is not None:
                if cancel_event.wait(min(delay, left)):
                    raise Cancelled("Stopped waiting for the model.")
            else:
                time.sleep(min(delay, left))
            delay = min(delay * 1.5, max_delay)

    @abstractmethod
    def spec(self) -> ModelSpec: ...

    @abstractmethod
    def setup(self, options: dict[str, Any]) -> None: ...

    @abstractmethod
    def run(self, inputs: dict[str, Any], command: Optional[str] = None, *,
            run_id: Optional[str] = None,
            cancel_event: Optional[threading.Event] = None) -> RunResult: ...

    @abstractmethod
    def cancel(self, run_id: str) -> None: ...

    def close(self) -> None:
        """Release pooled connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:  # never shows the token
        return f"<{type(self).__name__} {self.url}>"
