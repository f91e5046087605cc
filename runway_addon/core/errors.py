"""Errors a person can act on: every one says what went wrong and what to do."""
from __future__ import annotations

import threading
from typing import Any, Optional

# --------------------------------------------------------------------------- secrets

_SECRETS: dict[str, None] = {}  # insertion-ordered set of strings never to show
_SECRETS_LOCK = threading.Lock()
_MAX_SECRETS = 256
SECRET_MASK = "\u2022" * 8


def register_secret(value: Any) -> None:
    """Remember ``value`` (a token, a secret input) so that no error message, hint,
    details or repr built afterwards shows it, even when a server echoes it back.
    Its stripped form and each of its lines count too (a token pasted with a newline)."""
    if not isinstance(value, str):
        return
    from urllib.parse import quote

    # Short strings are not taken: masking every "wrong" in every message hides nothing.
    parts = {p for p in (value, value.strip(), quote(value.strip(), safe="")) if len(p) >= 6}
    parts.update(p for p in value.split() if len(p) >= 8)
    with _SECRETS_LOCK:
        for part in parts:
            if part.strip():
                _SECRETS.pop(part, None)
                _SECRETS[part] = None
        while len(_SECRETS) > _MAX_SECRETS:
            _SECRETS.pop(next(iter(_SECRETS)))


def scrub(text: Any) -> Any:
    """``text`` with every registered secret masked (non-strings as they are)."""
    if not isinstance(text, str) or not text or not _SECRETS:
        return text
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, SECRET_MASK)
    return text


class Kind:
    """Machine-readable reasons that a user interface words for its own controls
    (core hints stay neutral: core knows no buttons; ``blender/reports.py`` says
    which preference or button fixes each)."""

    TOKEN_MISSING = "token-missing"          # no access token for this service
    TOKEN_REFUSED = "token-refused"          # the service refused the token (401/403)
    ONLINE_ACCESS_OFF = "online-access-off"  # the host application forbids the network
    CONTAINER_MEMORY = "container-memory"    # a container was killed for memory
    IMAGE_MISSING = "image-missing"          # a Docker image is neither here nor pullable


class RunwayError(Exception):
    """Base of every error the add-on shows. ``hint`` says what to do about it;
    ``kind`` (one of ``Kind``, or empty) lets a UI add words about its own controls.
    Message, hint and details never show a registered secret (``register_secret``)."""

    def __init__(self, message: str, *, hint: str = "", details: str = "", kind: str = ""):
        message, hint, details = scrub(str(message)), scrub(str(hint or "")), \
            scrub(str(details or ""))
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details  # server traceback or logs, shown on demand
        self.kind = kind

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("message", "hint", "details"):
            value = scrub(value)
        super().__setattr__(name, value)

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip() if self.hint else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class FieldIssue:
    """One value that breaks one rule of one field."""

    __slots__ = ("field", "value", "rule", "message")

    def __init__(self, field: str, value: Any, rule: str, message: str):
        self.field, self.value, self.rule, self.message = field, value, rule, message

    def __repr__(self) -> str:
        return f"FieldIssue({self.field!r}, rule={self.rule!r}: {self.message})"

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecValidationError(RunwayError, ValueError):
    """Values that do not fit the model's spec, found before anything was sent."""

    def __init__(self, issues: list[FieldIssue], *, hint: str = ""):
        self.issues = list(issues)
        super().__init__("; ".join(str(i) for i in self.issues) or "invalid values",
                         hint=hint or "Change these values and try again.")


class UsageError(RunwayError, ValueError):
    """The call itself is wrong (an unknown protocol name, options that do not fit)."""


class CodecError(RunwayError, ValueError):
    """A value that cannot be turned into (or out of) its wire form."""


class ConnectionFailed(RunwayError):
    """The server cannot be reached at all."""


class ServerError(RunwayError):
    """The server answered, with an error. ``status`` is the HTTP status (or None)."""

    def __init__(self, message: str, *, status: Optional[int] = None, hint: str = "",
                 details: str = "", field: Optional[str] = None, kind: str = ""):
        super().__init__(message, hint=hint, details=details, kind=kind)
        self.status = status
        self.field = field


class AuthError(ServerError):
    """The server refused the token (401/403), or the token itself is unusable."""

    def __init__(self, message: str, **kw: Any):
        kw["kind"] = kw.get("kind") or Kind.TOKEN_REFUSED
        super().__init__(message, **kw)


class BadAnswer(ServerError):
    """The server answered something unusable: not JSON, the wrong shape, cut off,
    too large or too deep, or a document that is not a model's description."""


class TimedOut(ConnectionFailed, ServerError):
    """No complete answer within the call's overall deadline."""


class UnknownCommand(SpecValidationError, KeyError):
    """A command name the model's spec does not have (refused before sending)."""

    def __init__(self, name: str, known: list[str]):
        self.command = name
        listed = ", ".join(known) or "none"
        super().__init__([FieldIssue("command", name, "unknown",
                                     f"the model has no command {name!r} (it has: {listed})")],
                         hint="Use one of the commands the model offers.")

    def __str__(self) -> str:
        return RunwayError.__str__(self)


class NotFound(RunwayError, KeyError):
    """A name that is not there (a model in the catalog, a field of a command); a
    KeyError too, for code that looks names up."""

    def __str__(self) -> str:
        return RunwayError.__str__(self)


class ModelNotReady(RunwayError):
    """The model server is starting, failed its setup, or is unhealthy; ``health``
    is its last answer where a wait saw one (state, setup logs)."""

    def __init__(self, message: str, *, health: Any = None, **kw: Any):
        super().__init__(message, **kw)
        self.health = health


class Cancelled(RunwayError):
    """The run was cancelled by the user."""
