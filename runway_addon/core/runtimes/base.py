"""One session lifecycle for every place a model runs."""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Optional

from ..errors import RunwayError
from ..spec import Protocol


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


class ModelSession(ABC):
    """A model server started somewhere. Thread-safe: ``stop`` may be called from
    any thread, in any state, any number of times, and frees everything."""

    protocol: Protocol = Protocol.COG

    def __init__(self, name: str, on_event: Optional[Callable[[SessionEvent], None]] = None):
        self.name = name
        self.state = SessionState.STOPPED
        self.reason = ""  # why it FAILED, in words a person can act on
        self.url: Optional[str] = None  # base URL once STARTING/RUNNING
        self.shared_dir: Optional[str] = None  # folder seen by both sides under one path
        self._on_event = on_event
        self._lock = threading.RLock()
        self._stop_requested = threading.Event()

    def _emit(self, state: SessionState, message: str = "", done=None, total=None) -> None:
        with self._lock:
            self.state = state
            if state is SessionState.FAILED:
                self.reason = message
        if self._on_event:
            self._on_event(SessionEvent(state, message, done, total, time.time()))

    @abstractmethod
    def start(self, timeout: float = 600.0) -> None:
        """Prepare, start and wait until RUNNING; raise RuntimeFailed otherwise
        (the session is then FAILED and holds nothing)."""

    @abstractmethod
    def stop(self) -> None:
        """Free the port, the process or container, and GPU memory."""

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
