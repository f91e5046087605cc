"""A job: which model, where, which command, with which values; and its result.

Values are plain Python (numbers, text, numpy arrays, paths), gathered by the
caller on its own thread. A value that is costly to produce (pixels to convert,
a file to read) may be a ``Deferred``: the worker thread resolves it, so a UI
thread only copies buffers out and never converts or encodes.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

MODEL_KINDS = ("folder", "image", "url", "replicate")


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from.

    ``folder``: a model folder (a catalog card's folder, or the user's own);
    ``image``: a Docker image tag; ``url``: a running model server;
    ``replicate``: ``owner/name[:version]`` or ``deployment:owner/name``."""

    kind: Literal["folder", "image", "url", "replicate"]
    value: str
    name: str = ""

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r} (known: {', '.join(MODEL_KINDS)})")
        if not self.name:
            default = Path(self.value).name if self.kind == "folder" else self.value
            object.__setattr__(self, "name", default)

    @classmethod
    def from_card(cls, card) -> "ModelRef":
        """A catalog card's model: its folder, or for a card the user added from a
        server URL, a Docker image or Replicate, that source."""
        src = getattr(card, "source", None)
        if src is not None and getattr(src, "kind", None) in ("url", "image", "replicate"):
            return cls(src.kind, src.value, card.name)
        if not card.folder:
            raise ValueError(f"model card {card.name!r} has no folder to run")
        return cls("folder", str(Path(card.folder).resolve()), card.name)

    @property
    def key(self) -> tuple:
        return (self.kind, self.value)


class Deferred:
    """A value the worker computes just before the run (``fn(*args)``)."""

    __slots__ = ("fn", "args", "describe")

    def __init__(self, fn: Callable[..., Any], *args: Any, describe: str = ""):
        self.fn, self.args, self.describe = fn, args, describe

    def resolve(self) -> Any:
        return self.fn(*self.args)

    def __repr__(self) -> str:
        return f"Deferred({self.describe or getattr(self.fn, '__name__', 'value')})"


def resolve_inputs(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.resolve() if isinstance(v, Deferred) else v for k, v in values.items()}


@dataclass
class Job:
    """One run of one model. ``options`` are setup options (a change restarts the
    model's session); ``inputs`` are the command's per-run values. ``outputs``
    names the outputs wanted (None: all). ``placement`` says where it runs (a
    ``Placement``; None: the pool's default). ``context`` travels untouched to
    the driver (e.g. where the Blender side puts each output)."""

    model: ModelRef
    inputs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    command: Optional[str] = None
    outputs: Optional[list[str]] = None
    placement: Any = None
    label: str = ""
    context: Any = None
    timeout: float = 600.0  # bounds the run itself; the session start has its own
    # Applied by the worker to the outputs after the run (e.g. decode images into
    # buffers ready for Blender), so the driver's thread has less to do.
    prepare: Optional[Callable[[dict], dict]] = field(default=None, repr=False)
    start_only: bool = False  # start (or reuse) the model's session, run nothing
    # Temporary folders only this job reads (a render saved for it): the queue
    # removes them when the job ends, however it ends.
    scratch: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self):
        if not self.label:
            self.label = self.model.name


@dataclass
class JobResult:
    """What a finished run gave: decoded outputs (only the wanted ones), the
    server's logs and metrics (``predict_time`` in seconds), the session's
    identity (how many times that session was started, for reuse checks)."""

    job_id: str
    outputs: dict[str, Any]
    logs: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: Optional[str] = None
    session_starts: int = 0
    seconds: float = 0.0  # submit to done, as the engine measured it
    run_seconds: float = 0.0  # the run alone (encode, send, predict, decode)
    inputs: dict[str, Any] = field(default_factory=dict, repr=False)  # as sent (resolved)
