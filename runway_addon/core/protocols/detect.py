"""Which wire protocol a bare model-server URL speaks.

The probes are cheap GETs, each told apart by what only that server says:
- hosted models: the URL ends in ``/v1``; GET of it answers ``queryRoute``;
- Cog: GET / has ``cog_version``, or GET /health-check answers ``status`` and ``setup``;
- Runway Model SDK: GET / or /meta has ``commands`` or ``modelSDKVersion``, or
  GET /healthcheck answers ``RUNNING``/``STARTING``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

from ..errors import AuthError, BadAnswer, ConnectionFailed, ServerError, TimedOut
from ..spec import Protocol
from . import http

__all__ = ["detect_protocol"]


def _classify(body: Any) -> Optional[Protocol]:
    if not isinstance(body, Mapping):
        return None
    if "cog_version" in body:
        return Protocol.COG
    if "queryRoute" in body:
        return Protocol.RUNWAY_HOSTED
    if "modelSDKVersion" in body or isinstance(body.get("commands"), list):
        return Protocol.RUNWAY
    return None


def detect_protocol(url: str, token: Optional[str] = None, timeout: float = 5.0) -> Protocol:
    """Probe ``url`` and say which protocol it speaks.

    Raises ConnectionFailed when nothing answers at all (a Runway SDK server
    also refuses connections while its first setup runs), AuthError when the
    server wants a token, and ServerError when something answers that is none
    of the known model servers.
    """
    base = str(url).rstrip("/")
    try:
        scheme = urlsplit(base).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https"):
        raise ConnectionFailed(f"{str(url)[:200]!r} is not a URL.",
                               hint="Write it as http://host:port.")
    token = http.clean_token(token)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # One overall deadline for every probe together: a slow server cannot
    # multiply the timeout by the number of probes.
    deadline = http.Deadline(timeout * 2)
    session = http.make_session()
    answered: list[str] = []  # what answered, for the "unknown server" message
    errors: list[str] = []

    def probe(path: str) -> Any:
        if deadline.expired():
            errors.append(f"GET {path or '/'}: not tried (out of time)")
            return None
        try:
            r = http.call(session, "GET", base + path, what=f"GET {path or '/'}",
                          deadline=deadline.within(timeout), headers=headers,
                          limit=http.MAX_META_BYTES, connect_timeout=timeout)
        except TimedOut as exc:
            answered.append(f"GET {path or '/'}: no answer in time")
            errors.append(exc.message)
            return None
        except (ConnectionFailed, BadAnswer) as exc:
            errors.append(exc.message)
            return None
        answered.append(f"GET {path or '/'} -> {r.status_code}")
        if r.status_code in (401, 403):
            raise AuthError(f"The server at {url} wants an access token ({r.status_code}).",
                            status=r.status_code, hint="Set the token for this endpoint.")
        return r.json_or_none()

    try:
        return _detect(url, base, probe, answered, errors)
    finally:
        session.close()


def _detect(url, base, probe, answered, errors) -> Protocol:
    if urlsplit(base).path.endswith("/v1"):
        found = _classify(probe("/"))
        if found is not None:
            return found

    body = probe("/")
    found = _classify(body)
    if found is not None:
        return found
    if not answered:
        # Nothing listens: no point in probing the other paths.
        raise ConnectionFailed(
            f"No model server answers at {url}.",
            hint="Check the URL, and that the server has started (a Runway model refuses "
                 "connections until its setup is done).", details="\n".join(errors))

    h = probe("/health-check")
    if isinstance(h, Mapping) and "status" in h and "setup" in h:
        return Protocol.COG
    found = _classify(probe("/meta"))
    if found is not None:
        return found
    h = probe("/healthcheck")
    if isinstance(h, Mapping) and h.get("status") in ("RUNNING", "STARTING"):
        return Protocol.RUNWAY
    raise ServerError(
        f"The server at {url} is not a known model server (Cog, Runway Model SDK, or "
        "Runway hosted model).",
        hint="Check the URL and port; for a hosted model the URL ends in /v1.",
        details="\n".join(answered + errors))
