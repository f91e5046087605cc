""""Docker available" / "Docker unavailable" for the Run panel, found off the main
thread: a panel asks, a short-lived thread pings the engine (at most every 15 s)
and the answer is kept for the next draws."""
from __future__ import annotations

import threading
import time

from . import preferences

RECHECK_SECONDS = 15.0
_state = {"ok": None, "text": "Checking Docker...", "checked": 0.0, "thread": None}
_lock = threading.Lock()


def _check(host: str) -> None:
    from ..core.errors import RunwayError
    from ..core.runtimes import docker
    try:
        client = docker.connect_engine(host or None, timeout=3)
        client.close()
        ok, text = True, "Docker available"
    except RunwayError as e:
        ok, text = False, str(e)
    with _lock:
        _state.update(ok=ok, text=text, checked=time.monotonic(), thread=None)


def status() -> tuple:
    """(True/False/None for unknown yet, words to show). Never blocks."""
    with _lock:
        due = time.monotonic() - _state["checked"] > RECHECK_SECONDS
        if due and _state["thread"] is None:
            prefs = preferences.get_preferences()
            t = threading.Thread(target=_check, args=(prefs.docker_host if prefs else "",),
                                 name="runway-docker-status")
            _state["thread"] = t
            t.start()
        return _state["ok"], _state["text"]
