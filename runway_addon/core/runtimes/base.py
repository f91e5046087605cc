"""One session lifecycle for every place a model runs: the guards, stop requests, the
outcome of a failed or stopped start and the wait for readiness live here; a runtime
(process, docker, remote) supplies only its steps."""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Optional

from ..errors import Cancelled, ModelNotReady, RunwayError
from ..protocols.base import HealthState, setup_failure
from ..spec import Protocol
from .processes import output_tail


class SessionState(str, Enum):
    PREPARING = "preparing"  # pulling/building an image, creating an environment
    STARTING = "starting"  # server process/container up, model setting up
    RUNNING = "running"  # ready for runs
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"  # see ModelSession.reason


@dataclass
class SessionEvent:
    """A state change or a progress step. ``done``/``total`` are bytes or steps."""

    state: SessionState
    message: str = ""
    done: Optional[int] = None
    total: Optional[int] = None
    time: float = 0.0


class RuntimeFailed(RunwayError):
    """The model could not be started or died; ``message`` + ``hint`` say what to do."""


class StartAborted(RuntimeFailed):
    """``stop()`` was called while ``start()`` ran: the session is STOPPED, not FAILED."""


class _Stopped(Exception):
    """stop() was asked for while start() ran (internal: start() turns it into StartAborted)."""


_BUSY = (SessionState.PREPARING, SessionState.STARTING, SessionState.RUNNING,
         SessionState.STOPPING)


class ModelSession(ABC):
    """A model server started somewhere. Thread-safe: ``stop`` may be called from
    any thread, in any state, any number of times, and frees everything.

    The lifecycle is this class's; a runtime supplies its steps:

    - ``start()``: refused while busy; ``_start(timeout)`` runs the steps, reporting
      each with ``_advance`` (which raises once stop() was asked for, so a late
      progress step never overwrites STOPPING/STOPPED); ``_await_ready`` waits
      through the protocol client, for every runtime (the local ones pass a
      check that sees their process or container die between polls). Any
      failure: ``_release()``, then FAILED with the error's message and details
      as ``reason`` and a RuntimeFailed raised (``_as_failure`` words errors that
      are not); after a stop() it is StartAborted instead, and the session ends
      STOPPED.
    - ``stop()``: STOPPING, ``_stop_steps`` (default ``_release``), waits for a
      start() on another thread to finish its own clean-up, STOPPED. A FAILED
      session keeps its state and reason; what it may still hold is freed.
    """

    protocol: Protocol = Protocol.COG
    stopped_message = "stopped"
    poll_interval = 0.1  # health polls while a server this session started sets up (s)

    def __init__(self, name: str, on_event: Optional[Callable[[SessionEvent], None]] = None):
        self.name = name
        self.state = SessionState.STOPPED
        self.reason = ""  # why it FAILED, in words a person can act on
        self.url: Optional[str] = None  # base URL once STARTING/RUNNING
        self.shared_dir: Optional[str] = None  # folder seen by both sides under one path
        self._on_event = on_event
        self._lock = threading.RLock()
        self._stop_requested = threading.Event()
        self._start_done = threading.Event()
        self._start_done.set()
        self._starter: Optional[int] = None  # the thread in start(), which stop() never waits on

    def _emit(self, state: SessionState, message: str = "", done=None, total=None) -> None:
        with self._lock:
            self.state = state
            if state is SessionState.FAILED:
                self.reason = message
        if self._on_event:
            self._on_event(SessionEvent(state, message, done, total, time.time()))

    def _advance(self, state: SessionState, message: str = "", done=None, total=None) -> None:
        """A progress step of start(): refused (``_Stopped``) once stop() was asked for."""
        with self._lock:
            if self._stop_requested.is_set():
                raise _Stopped()
            self.state = state
        if self._on_event:
            self._on_event(SessionEvent(state, message, done, total, time.time()))

    def _check_stop(self) -> None:
        if self._stop_requested.is_set():
            raise _Stopped()

    # ---- start
    def start(self, timeout: float = 600.0) -> None:
        """Prepare, start and wait until RUNNING; raise RuntimeFailed otherwise
        (the session is then FAILED and holds nothing), or StartAborted when
        stop() was called meanwhile (STOPPED)."""
        with self._lock:
            if self.state in _BUSY:
                raise RuntimeFailed(f"model {self.name!r} is already {self.state.value}",
                                    hint="Stop it first.")
            self._stop_requested.clear()
            self._start_done.clear()
            self._starter = threading.get_ident()
            self.reason = ""
            self._reset()
        try:
            self._start(timeout)
        except BaseException as exc:
            outcome = self._start_outcome(exc)
            if outcome is exc:
                raise
            raise outcome from (None if isinstance(outcome, StartAborted) else exc)
        finally:
            self._start_done.set()

    def _start_outcome(self, exc: BaseException) -> RuntimeFailed:
        """What a failed start() raises, after freeing everything it made."""
        aborted = self._stop_requested.is_set() or isinstance(exc, (_Stopped, StartAborted,
                                                                     Cancelled))
        failure = None if aborted else self._as_failure(exc)
        self._release()
        if aborted or self._stop_requested.is_set():
            with self._lock:
                reported = self.state is SessionState.STOPPED  # by a stop() on this thread
            if not reported:  # STOPPED once start() returns, whichever thread stops
                self._emit(SessionState.STOPPED, "stopped before it was ready")
            return StartAborted(f"model {self.name!r} was stopped before it was ready",
                                hint="Start it again when you want to run it.")
        reason = failure.message + (f"\n{failure.details}" if failure.details else "")
        self._emit(SessionState.FAILED, reason)
        return failure

    @property
    def failure_what(self) -> str:
        """What could not be done, the start of a wrapped error's message."""
        return f"model {self.name!r} could not start"

    def _as_failure(self, exc: BaseException) -> RuntimeFailed:
        """An error of a start step as the RuntimeFailed a caller gets."""
        if isinstance(exc, RuntimeFailed):
            return exc
        if isinstance(exc, RunwayError):
            return RuntimeFailed(f"{self.failure_what}: {exc.message}", hint=exc.hint,
                                 details=exc.details)
        return RuntimeFailed(f"{self.failure_what}: {exc}", details=self.logs())

    def _reset(self) -> None:
        """Clear what the last start() left (called under the lock)."""

    @abstractmethod
    def _start(self, timeout: float) -> None:
        """The runtime's start steps, ending with ``_advance(RUNNING, ...)``."""

    def _await_ready(self, client, timeout: float,
                     check: Optional[Callable[..., bool]] = None):
        """Wait through the protocol client until the server says READY; a stop()
        or ``timeout`` ends the wait. The health it answered.

        ``check(health)`` is for a server this session started (a process, a
        container): it sees every answer, raises once the server died and
        returns False while an answer may not be the server's own. Such a
        session hears "server up; model setting up" once its server answers,
        polls every ``poll_interval`` and gets the client's failures in its own
        words (a failed setup with its exception, traceback and server log)."""
        kw = {}
        if check is not None:
            answered = []

            def progress(health) -> None:
                if health.state is not HealthState.UNREACHABLE and not answered:
                    answered.append(health)
                    self._advance(SessionState.STARTING, "server up; model setting up")

            kw = dict(on_progress=progress, check=check, first_delay=self.poll_interval,
                      max_delay=self.poll_interval)
        try:
            return client.wait_until_ready(max(0.0, timeout),
                                           cancel_event=self._stop_requested, **kw)
        except Cancelled:
            raise _Stopped() from None
        except ModelNotReady as exc:
            if check is None:  # a remote server: _as_failure words it
                raise
            raise self._not_ready(exc) from None

    def _not_ready(self, exc: ModelNotReady) -> RuntimeFailed:
        """Why a server this session started did not become ready."""
        health, log = exc.health, output_tail(self.logs())
        state = health.state if health is not None else None
        if state is HealthState.SETUP_FAILED:
            line, trace = setup_failure(health.logs)
            return RuntimeFailed(
                f"Model {self.name!r} failed its setup: {line}",
                hint="The model folder or its weights may need fixing; see the details.",
                details=f"{trace}\n\nServer log:\n{log}".strip())
        if state in (HealthState.DEFUNCT, HealthState.UNHEALTHY):
            return RuntimeFailed(f"Model {self.name!r} cannot run: "
                                 f"{health.detail or state.value}.",
                                 hint="See the model's logs; start it again.", details=log)
        return RuntimeFailed(f"Model {self.name!r} was not ready in time (last health: "
                             f"{state.value if state else 'no answer'}).",
                             hint="Its setup may need a longer start timeout; see the log.",
                             details=log)

    # ---- stop
    def stop(self) -> None:
        """Free the port, the process or container, and GPU memory."""
        with self._lock:
            self._stop_requested.set()
            starting = not self._start_done.is_set()
            settled = not starting and self.state in (SessionState.STOPPED, SessionState.FAILED)
            was_running = self.state is SessionState.RUNNING
            if not settled:
                self.state = SessionState.STOPPING
        if settled:
            self._release()  # a FAILED session keeps its state and reason
            return
        self._emit(SessionState.STOPPING, "stopping")
        self._stop_steps(was_running)
        # Let a start() on another thread finish its own clean-up (never wait
        # on ourselves: stop() may be called from an event callback).
        if starting and self._starter != threading.get_ident():
            self._start_done.wait(30.0)
        with self._lock:
            reported = self.state is SessionState.STOPPED  # by the aborted start()
        if not reported:
            self._emit(SessionState.STOPPED, self.stopped_message)

    def _stop_steps(self, was_running: bool) -> None:
        """Free everything; ``was_running``: it was RUNNING (a graceful shutdown may go first)."""
        self._release()

    @abstractmethod
    def _release(self) -> None:
        """Free everything the session holds. Idempotent, safe from any thread."""

    @abstractmethod
    def logs(self) -> str:
        """The server's output so far (may be called at any time)."""

    def client(self, **kw):
        """A protocol client connected to this session."""
        from ..client import connect
        if self.state is not SessionState.RUNNING or not self.url:
            raise RuntimeFailed(f"model {self.name!r} is not running ({self.state.value})",
                                hint="Start it first.")
        return connect(self.url, protocol=self.protocol, shared_dir=self.shared_dir, **kw)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
