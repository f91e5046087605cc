"""Errors a person can act on: every one says what went wrong and what to do."""
from __future__ import annotations

from typing import Any, Optional


class RunwayError(Exception):
    """Base of every error the add-on shows. ``hint`` says what to do about it."""

    def __init__(self, message: str, *, hint: str = "", details: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details  # server traceback or logs, shown on demand

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip() if self.hint else self.message


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
        super().__init__("; ".join(str(i) for i in self.issues) or "invalid values", hint=hint)


class CodecError(RunwayError, ValueError):
    """A value that cannot be turned into (or out of) its wire form."""


class ConnectionFailed(RunwayError):
    """The server cannot be reached at all."""


class ServerError(RunwayError):
    """The server answered, with an error. ``status`` is the HTTP status (or None)."""

    def __init__(self, message: str, *, status: Optional[int] = None, hint: str = "",
                 details: str = "", field: Optional[str] = None):
        super().__init__(message, hint=hint, details=details)
        self.status = status
        self.field = field


class AuthError(ServerError):
    """The server refused the token (401/403)."""


class ModelNotReady(RunwayError):
    """The model server is starting, failed its setup, or is unhealthy."""


class Cancelled(RunwayError):
    """The run was cancelled by the user."""
