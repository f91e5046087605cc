"""What a job tells its driver, as typed events (a closed vocabulary: the Blender
side maps each kind to words and reports in one place)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional


class JobState(str, Enum):
    QUEUED = "queued"
    STARTING = "starting"  # waiting for the model's session (environment, server, setup)
    RUNNING = "running"  # the model is working on it
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass
class JobEvent:
    job_id: str
    time: float = field(default_factory=time.time, kw_only=True)


@dataclass
class Status(JobEvent):
    state: JobState
    message: str = ""


@dataclass
class Progress(JobEvent):
    """A step of a long stage: bytes of an environment or image, frames of a job."""

    message: str
    done: Optional[int] = None
    total: Optional[int] = None

    @property
    def fraction(self) -> Optional[float]:
        if self.done is None or not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))


@dataclass
class Log(JobEvent):
    line: str


@dataclass
class Warning(JobEvent):  # noqa: A001 (the vocabulary's word; builtins' is never needed here)
    message: str


@dataclass
class Failure(JobEvent):
    """An error a person can act on: what went wrong, what to do, and the server's
    own words in ``details``. ``kind`` is the error's ``errors.Kind`` (or empty), for
    the UI to turn into words about its own buttons; ``error_type`` its class name."""

    message: str
    hint: str = ""
    details: str = ""
    kind: str = ""
    error_type: str = ""

    @classmethod
    def of(cls, job_id: str, error: Any, details: str = "") -> "Failure":
        return cls(job_id, error.message, error.hint, details or error.details,
                   getattr(error, "kind", ""), type(error).__name__)


@dataclass
class Done(JobEvent):
    """The last event of every job. ``result`` is a JobResult when ``state`` is DONE."""

    state: JobState
    result: Any = None
