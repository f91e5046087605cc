"""Warm model sessions: one per (model, placement, setup options), started on
first use and reused by every later run, so only the first run pays the start.

- A changed setup option retires the old session (stopped once its runs end)
  and starts a new one.
- A session that died or failed is dropped; the next job starts it again.
- ``stop_idle()`` stops sessions unused for ``idle_timeout`` seconds; drivers
  call it as they poll. ``stop_all()`` at unregister, file load and exit.
- A job waiting for a start can be cancelled: when no other job waits for the
  same session, the start itself is aborted.

Stopping a session can take seconds (a server shutting down), so the stops a UI
triggers run on short-lived threads; ``stop_all(wait=True)`` joins them.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..errors import Cancelled, RunwayError, SpecValidationError, FieldIssue
from ..runtimes.base import ModelSession, SessionEvent, SessionState
from ..spec import Protocol
from .events import Progress
from .job import Job, ModelRef
from .placement import Placement, open_session

Emit = Callable[[Any], None]


def options_key(options: dict) -> str:
    return json.dumps(options or {}, sort_keys=True, default=str)


@dataclass(eq=False)
class PooledSession:
    """One warm session and who uses it."""

    model: ModelRef
    placement: Placement
    options: dict
    session: Optional[ModelSession] = None
    client: Any = None
    starts: int = 0  # starts of this model at this placement, across restarts
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)
    ready: threading.Event = field(default_factory=threading.Event)
    error: Optional[RunwayError] = None
    retired: bool = False
    listeners: dict = field(default_factory=dict)  # job id -> emit, while waiting for the start
    started_by: str = ""  # the job whose acquire started it
    # One run at a time per session: a local Cog server predicts one at a time and
    # answers a second request "409 at capacity"; queued here, runs keep their order.
    busy: threading.Lock = field(default_factory=threading.Lock)

    def starts_by_this_job(self, job_id: str) -> bool:
        return self.started_by == job_id

    @property
    def slot(self) -> tuple:
        return (self.model.key, self.placement)

    @property
    def state(self) -> SessionState:
        return self.session.state if self.session else SessionState.STOPPED

    @property
    def alive(self) -> bool:
        return not self.ready.is_set() or (self.error is None and
                                           self.state is SessionState.RUNNING)

    def describe(self) -> dict:
        return {"model": self.model.name, "runtime": self.placement.runtime,
                "state": self.state.value, "starts": self.starts, "users": self.users,
                "idle_seconds": 0.0 if self.users else time.monotonic() - self.last_used,
                "url": getattr(self.session, "url", None)}


class SessionPool:
    def __init__(self, *, placement: Optional[Placement] = None, idle_timeout: float = 900.0,
                 start_timeout: float = 600.0,
                 session_factory: Callable[..., ModelSession] = open_session):
        self.placement = placement or Placement()
        self.idle_timeout = idle_timeout  # seconds; 0 or less: never stop idle sessions
        self.start_timeout = start_timeout
        self._factory = session_factory
        self._lock = threading.RLock()
        self._entries: dict[tuple, PooledSession] = {}
        self._starts: dict[tuple, int] = {}
        self._stoppers: list[threading.Thread] = []

    # ------------------------------------------------------------ use

    def acquire(self, job: Job, cancel_event: Optional[threading.Event] = None,
                emit: Emit = lambda e: None) -> PooledSession:
        """The running session for ``job`` (started here if needed), counted as in
        use until ``release``. Raises Cancelled, RuntimeFailed or the setup's error."""
        cancel_event = cancel_event or threading.Event()
        placement = job.placement or self.placement
        slot = (job.model.key, placement)
        with self._lock:
            entry = self._entries.get(slot)
            if entry is not None and (options_key(entry.options) != options_key(job.options)
                                      or not entry.alive):
                self._retire(entry)
                entry = None
            starter = entry is None
            if starter:
                entry = PooledSession(job.model, placement, dict(job.options or {}),
                                      started_by=job.id)
                self._entries[slot] = entry
                self._starts[slot] = self._starts.get(slot, 0) + 1
                entry.starts = self._starts[slot]
            entry.users += 1
            if not entry.ready.is_set():
                entry.listeners[job.id] = emit
        try:
            if starter:
                self._start(entry, job, cancel_event)
            else:
                while not entry.ready.wait(0.05):
                    if cancel_event.is_set():
                        raise Cancelled("Cancelled while the model was starting.")
                if entry.error is not None:
                    raise entry.error
        except BaseException:
            with self._lock:
                entry.listeners.pop(job.id, None)
            self.release(entry)
            raise
        with self._lock:
            entry.listeners.pop(job.id, None)
        return entry

    def release(self, entry: PooledSession, broken: bool = False) -> None:
        """The job is done with ``entry``. ``broken``: the server could not be
        reached during the run, so the session is not reused (the next job starts
        a new one) even before its watcher notices that it died."""
        with self._lock:
            if broken:
                self._drop(entry)
                entry.retired = True
            entry.users = max(0, entry.users - 1)
            entry.last_used = time.monotonic()
            stop_now = entry.users == 0 and (entry.retired or not entry.alive)
            if stop_now:
                self._drop(entry)
        if stop_now:
            self._stop_in_background(entry)

    def abort_start(self, job_id: str) -> None:
        """``job_id`` was cancelled: if it alone waits for a session that is still
        starting, stop that start (from any thread; returns at once)."""
        with self._lock:
            for entry in self._entries.values():
                if job_id in entry.listeners and not entry.ready.is_set() and \
                        len(entry.listeners) == 1 and entry.session is not None:
                    self._stop_in_background(entry, drop=False)

    # ------------------------------------------------------------ start

    def _forward(self, entry: PooledSession) -> Callable[[SessionEvent], None]:
        def on_event(ev: SessionEvent) -> None:
            with self._lock:
                listeners = list(entry.listeners.items())
            for job_id, emit in listeners:
                emit(Progress(job_id, f"{entry.model.name}: {ev.message or ev.state.value}",
                              ev.done, ev.total))
        return on_event

    def _start(self, entry: PooledSession, job: Job, cancel_event: threading.Event) -> None:
        try:
            with self._lock:
                entry.session = self._factory(entry.model, entry.placement,
                                              on_event=self._forward(entry))
            if cancel_event.is_set():
                raise Cancelled("Cancelled before the model started.")
            entry.session.start(timeout=self.start_timeout)
            client = entry.session.client()
            try:
                self._setup(entry, client)
            except BaseException:
                client.close()
                raise
            entry.client = client
        except RunwayError as e:  # StartAborted included: a stop came during the start
            entry.error = Cancelled("Cancelled while the model was starting.") \
                if cancel_event.is_set() else e
            self._fail(entry)
            if entry.error is e:
                raise
            raise entry.error from None
        except BaseException as e:
            entry.error = RunwayError(f"model {entry.model.name!r} could not start: {e}")
            self._fail(entry)
            raise entry.error from e
        finally:
            entry.ready.set()

    def _setup(self, entry: PooledSession, client) -> None:
        options = entry.options
        if client.protocol in (Protocol.RUNWAY, Protocol.RUNWAY_HOSTED):
            client.setup(options)  # the full set: the SDK forgets omitted options
        elif options:
            # Cog and Replicate models have no setup options; every value is a run input.
            raise SpecValidationError([FieldIssue(k, v, "unknown", "the model has no setup "
                                                  "option of this name") for k, v in
                                       options.items()],
                                      hint="Pass it as an input of the run instead.")

    def _fail(self, entry: PooledSession) -> None:
        with self._lock:
            self._drop(entry)
        if entry.session is not None:
            try:
                entry.session.stop()
            except RunwayError:
                pass

    # ------------------------------------------------------------ stop

    def _drop(self, entry: PooledSession) -> None:
        if self._entries.get(entry.slot) is entry:
            del self._entries[entry.slot]

    def _retire(self, entry: PooledSession) -> None:
        """Out of the pool; stopped now if unused, else when its last run ends."""
        self._drop(entry)
        entry.retired = True
        if entry.users == 0:
            self._stop_in_background(entry)

    def _stop_in_background(self, entry: PooledSession, drop: bool = True) -> None:
        if drop:
            with self._lock:
                self._drop(entry)
        thread = threading.Thread(target=self._stop_entry, args=(entry,),
                                  name=f"runway-stop-{entry.model.name}")
        with self._lock:
            self._stoppers = [t for t in self._stoppers if t.is_alive()] + [thread]
        thread.start()

    @staticmethod
    def _stop_entry(entry: PooledSession) -> None:
        client, entry.client = entry.client, None
        if client is not None:
            client.close()
        if entry.session is not None:
            try:
                entry.session.stop()
            except RunwayError:
                pass  # stop() frees what it can; nothing to tell a caller that is gone

    def stop(self, model: ModelRef, placement: Optional[Placement] = None) -> bool:
        """Stop the model's session (at ``placement``, or any). True if one was found."""
        with self._lock:
            found = [e for e in self._entries.values() if e.model.key == model.key and
                     (placement is None or e.placement == placement)]
            for e in found:
                self._drop(e)
        for e in found:
            self._stop_in_background(e, drop=False)
        return bool(found)

    def stop_idle(self, now: Optional[float] = None) -> list[str]:
        """Stop sessions unused for ``idle_timeout``; the names of those stopped."""
        if self.idle_timeout <= 0:
            return []
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [e for e in self._entries.values() if e.users == 0 and e.ready.is_set()
                    and now - e.last_used >= self.idle_timeout]
            for e in idle:
                self._drop(e)
        for e in idle:
            self._stop_in_background(e, drop=False)
        return [e.model.name for e in idle]

    def stop_all(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Stop every session (and any start in progress)."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for e in entries:
            self._stop_in_background(e, drop=False)
        if wait:
            self.join(timeout)

    def join(self, timeout: float = 30.0) -> None:
        """Wait for the stops under way (bounded)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._stoppers)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------ look

    def sessions(self) -> list[dict]:
        with self._lock:
            return [e.describe() for e in self._entries.values()]

    def find(self, model: ModelRef, placement: Optional[Placement] = None
             ) -> Optional[PooledSession]:
        with self._lock:
            for e in self._entries.values():
                if e.model.key == model.key and (placement is None or e.placement == placement):
                    return e
        return None

    def start_count(self, model: ModelRef, placement: Optional[Placement] = None) -> int:
        """How often the model was started (at ``placement``, or anywhere)."""
        with self._lock:
            return sum(n for (key, where), n in self._starts.items()
                       if key == model.key and (placement is None or where == placement))
