"""The one place an error becomes words in Blender's UI: an operator's ERROR line
and the Run panel's error box say what went wrong and what to do. Core errors carry
a neutral hint and a machine-readable ``kind`` (``core.errors.Kind``); only here is a
kind turned into the Blender button or preference that fixes it."""
from __future__ import annotations

from ..core.errors import Kind

PREFS = "Preferences > Add-ons > Runway for Blender"

# What to press in Blender, per kind (added after the core's own hint).
CONTROLS = {
    Kind.TOKEN_MISSING: f"In Blender: Set Token on the endpoint ({PREFS} > Remote endpoints).",
    Kind.TOKEN_REFUSED: f"In Blender: check it with Test Connection, or Set Token again "
                        f"({PREFS} > Remote endpoints).",
    Kind.ONLINE_ACCESS_OFF: "In Blender: turn on Allow Online Access (Preferences > System > "
                            "Network), or choose Local process or Docker in the Run panel.",
    Kind.CONTAINER_MEMORY: f"In Blender: raise Container memory ({PREFS}).",
    Kind.IMAGE_MISSING: "In Blender: or choose Local process in the Run panel.",
}


def hint_for(error) -> str:
    """The core's hint plus, for a known kind, the Blender control that fixes it.
    Takes a RunwayError or a job's Failure event."""
    hint = getattr(error, "hint", "") or ""
    extra = CONTROLS.get(getattr(error, "kind", "") or "", "")
    return f"{hint} {extra}".strip() if extra else hint


def describe(error) -> str:
    """One line for a report: message and hint (an OSError or other: its words)."""
    message = getattr(error, "message", None)
    if message is None:
        return str(error)
    hint = hint_for(error)
    return f"{message} {hint}".strip()


def report_error(op, error, prefix: str = "") -> set:
    op.report({"ERROR"}, prefix + describe(error))
    return {"CANCELLED"}
