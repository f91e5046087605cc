"""What every protocol client offers; the rest of the add-on talks only to this."""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from ..spec import ModelSpec, Protocol


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
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        # A folder both this process and the server see under the same path:
        # large files then travel as bare paths instead of base64.
        self.shared_dir = shared_dir

    @abstractmethod
    def health(self) -> Health: ...

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
