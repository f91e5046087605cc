"""The one HTTP toolkit every protocol client uses.

Each rule about talking to a server someone else runs is written once, here:

- ``call``: one request with an overall deadline. Per-read socket timeouts alone
  let a server that trickles a byte a second hold a call for ever, so a single
  watchdog thread shuts the connection's socket down when the call's deadline
  passes (or, with ``cancel``, when the event is set), which wakes the blocked
  read at once. Every failure, whatever requests, urllib3 or the socket raise,
  comes back as a ``core.errors`` type.
- Bodies are read streamed with a size cap (decoded bytes count, so a gzip bomb
  stops at the cap); ``Reply.json`` parses with typed errors and refuses
  documents nested deeper than ``MAX_JSON_DEPTH``.
- ``retry_after``: both forms of the header, bounded; ``error_text``: the
  server's own message, short, one line, tokens masked.
- ``fetch``: output files, with an origin policy (the token goes only to the
  origin it was given for, redirects included) and a size cap.
- ``clean_token``: a pasted token with a line break is refused without echoing it.
"""
from __future__ import annotations

import email.utils
import errno
import heapq
import json
import math
import socket
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Optional
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..errors import (AuthError, BadAnswer, Cancelled, ConnectionFailed, ServerError, TimedOut,
                      register_secret, scrub)

__all__ = ["Deadline", "Reply", "call", "fetch", "make_session", "watch_session", "retry_after",
           "error_text", "clean_token", "same_origin", "origin", "check_depth",
           "MAX_BODY_BYTES", "MAX_META_BYTES", "MAX_FILE_BYTES", "MAX_JSON_DEPTH",
           "MAX_RETRY_AFTER"]

MAX_BODY_BYTES = 1 << 30  # a prediction answer (data URIs of 4K frames fit many times over)
MAX_META_BYTES = 32 << 20  # a schema, /meta, a health answer, an error body
MAX_FILE_BYTES = 1 << 30  # one downloaded output file
MAX_JSON_DEPTH = 64  # nesting of any JSON document a server sends
MAX_RETRY_AFTER = 300.0  # seconds; a larger Retry-After is capped to this
MAX_REDIRECTS = 5
# A compressed answer may inflate to at most this many times its compressed size
# (beyond a floor): JSON and base64 compress 1.3 to 10 times; a bomb, a thousand.
MAX_INFLATE_RATIO = 100
INFLATE_FLOOR = 8 << 20
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- deadlines

class Deadline:
    """An absolute point in time (monotonic) that a whole call must finish by."""

    __slots__ = ("at", "total")

    def __init__(self, seconds: float):
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds <= 0:
            seconds = 0.0 if seconds <= 0 else 1e9
        self.total = seconds
        self.at = time.monotonic() + seconds

    @classmethod
    def of(cls, value: "Deadline | float | None", default: float) -> "Deadline":
        if isinstance(value, Deadline):
            return value
        return cls(default if value is None else value)

    def left(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.left() <= 0

    def within(self, seconds: float) -> "Deadline":
        """The earlier of this deadline and ``seconds`` from now."""
        d = Deadline(max(seconds, 0.0) or 1e-3)
        if d.at > self.at:
            d.at = self.at
        d.total = min(self.total, seconds)
        return d


# --------------------------------------------------------------------------- the watchdog

class _Watch:
    __slots__ = ("at", "cancel", "grace", "conns", "socks", "fired", "cancel_seen", "done")

    def __init__(self, at: float, cancel: Optional[threading.Event], grace: float):
        self.at, self.cancel, self.grace = at, cancel, grace
        self.conns: list = []
        # The sockets themselves: http.client drops conn.sock once a response that
        # closes the connection has started (the response keeps reading from it).
        self.socks: list = []
        self.fired: Optional[str] = None
        self.cancel_seen: Optional[float] = None
        self.done = False

    def __lt__(self, other: "_Watch") -> bool:  # for the heap
        return self.at < other.at

    def fire(self, reason: str) -> None:
        self.fired = reason
        socks = [getattr(c, "sock", None) for c in list(self.conns)] + list(self.socks)
        for sock in {id(x): x for x in socks if x is not None}.values():
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
            except (OSError, ValueError, AttributeError):
                pass


class _Watchdog:
    """One daemon thread for every call in the process (a constant, not one per call)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap: list[_Watch] = []
        self._cancellable: set[_Watch] = set()
        self._thread: Optional[threading.Thread] = None

    def add(self, w: _Watch) -> None:
        with self._cond:
            heapq.heappush(self._heap, w)
            if w.cancel is not None:
                self._cancellable.add(w)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="runway-http-watchdog",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def remove(self, w: _Watch) -> None:
        with self._cond:
            w.done = True
            self._cancellable.discard(w)
            # Finished watches leave the heap lazily; compact when they pile up.
            if len(self._heap) > 256:
                self._heap = [x for x in self._heap if not x.done]
                heapq.heapify(self._heap)

    def _loop(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                while self._heap and (self._heap[0].done or self._heap[0].fired):
                    heapq.heappop(self._heap)
                while self._heap and self._heap[0].at <= now:
                    w = heapq.heappop(self._heap)
                    if not w.done and not w.fired:
                        w.fire("deadline")
                wake = self._heap[0].at - now if self._heap else 30.0
                for w in list(self._cancellable):
                    if w.done or w.fired:
                        self._cancellable.discard(w)
                    elif w.cancel.is_set():
                        if w.cancel_seen is None:
                            w.cancel_seen = now
                        if now >= w.cancel_seen + w.grace:
                            w.fire("cancel")
                            self._cancellable.discard(w)
                        else:
                            wake = min(wake, w.cancel_seen + w.grace - now)
                    else:
                        wake = min(wake, 0.05)
                self._cond.wait(max(0.005, wake))


_WATCHDOG = _Watchdog()
_current = threading.local()


def _register(conn) -> None:
    w = getattr(_current, "watch", None)
    if w is not None:
        w.conns.append(conn)
        if getattr(conn, "sock", None) is not None:
            w.socks.append(conn.sock)
        if w.fired:  # fired before this connection was in use
            w.fire(w.fired)


def _register_sock(sock) -> None:
    w = getattr(_current, "watch", None)
    if w is not None and sock is not None:
        w.socks.append(sock)
        if w.fired:
            w.fire(w.fired)


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self):
        super().connect()
        _register_sock(self.sock)


class _WatchedHTTPSConnection(HTTPSConnection):
    def connect(self):
        super().connect()
        _register_sock(self.sock)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection

    def _make_request(self, conn, *args, **kwargs):
        _register(conn)
        return super()._make_request(conn, *args, **kwargs)


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _make_request(self, conn, *args, **kwargs):
        _register(conn)
        return super()._make_request(conn, *args, **kwargs)


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy, **kwargs):
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


def watch_session(session: requests.Session) -> requests.Session:
    """Mount the deadline-aware adapter on ``session`` (idempotent)."""
    if not isinstance(session.get_adapter("http://x"), _WatchedAdapter):
        session.mount("http://", _WatchedAdapter())
        session.mount("https://", _WatchedAdapter())
    return session


def make_session() -> requests.Session:
    return watch_session(requests.Session())


# --------------------------------------------------------------------------- replies

class Reply:
    """A whole, size-capped answer. Mirrors the parts of ``requests.Response`` the
    clients use (``status_code``, ``headers``, ``content``, ``text``, ``reason``)."""

    __slots__ = ("status_code", "headers", "content", "reason", "url", "what", "elapsed")

    def __init__(self, status_code: int, headers, content: bytes, reason: str, url: str,
                 what: str, elapsed: float = 0.0):
        self.status_code, self.headers, self.content = status_code, headers, content
        self.reason, self.url, self.what, self.elapsed = reason or "", url, what, elapsed

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; BadAnswer (with what it was) when it is not, or when it is
        nested deeper than MAX_JSON_DEPTH."""
        if not self.content.strip():
            raise BadAnswer(f"{self.what}: the answer (HTTP {self.status_code}) is empty.",
                            status=self.status_code, hint=_HINT_NOT_MODEL)
        try:
            text = self.content.decode("utf-8-sig")
            value = json.loads(text)
        except RecursionError:
            raise BadAnswer(f"{self.what}: the answer is JSON nested too deeply to read.",
                            status=self.status_code, hint=_HINT_NOT_MODEL) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadAnswer(
                f"{self.what}: the answer (HTTP {self.status_code}) is not JSON.",
                status=self.status_code, hint=_HINT_NOT_MODEL,
                details=f"{type(exc).__name__}: {exc}\n{self.text[:2000]}") from None
        check_depth(value, self.what)
        return value

    def json_or_none(self) -> Any:
        try:
            return self.json()
        except BadAnswer:
            return None

    def __repr__(self) -> str:
        return f"<Reply {self.status_code} {len(self.content)} bytes from {self.what}>"


_HINT_NOT_MODEL = "Check that the URL points at the model server, and that it is healthy."


def check_depth(value: Any, what: str = "the answer", limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse a document nested deeper than ``limit`` (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            raise BadAnswer(f"{what}: the document is nested more than {limit} levels deep.",
                            hint=_HINT_NOT_MODEL)
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values() if isinstance(x, (dict, list)))
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))


# --------------------------------------------------------------------------- errors

def refused(exc: Optional[BaseException]) -> bool:
    """Whether a requests error was a refused TCP connection (port closed)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConnectionRefusedError):
            return True
        if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
            return True
        nested = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        exc = nested or getattr(exc, "reason", None) or exc.__cause__ or exc.__context__
    return False


def _failure(exc: BaseException, what: str, deadline: Deadline, watch: _Watch,
             cancel: Optional[threading.Event], reading: bool):
    """The typed error for whatever a request raised."""
    detail = f"{type(exc).__name__}: {exc}"
    if watch.fired == "cancel" or (cancel is not None and cancel.is_set()):
        return Cancelled(f"{what}: cancelled.")
    if watch.fired == "deadline" or deadline.expired() or isinstance(exc, requests.Timeout):
        if isinstance(exc, requests.ConnectTimeout):
            return TimedOut(f"{what}: the server did not accept a connection in time.",
                            hint="Check the address and the network; the server may be down.",
                            details=detail)
        return TimedOut(f"{what}: no complete answer within {deadline.total:g} s.",
                        hint="The server is slow or stuck; raise the timeout, or check the "
                             "server's load and logs.", details=detail)
    if reading or isinstance(exc, (requests.exceptions.ChunkedEncodingError,
                                   requests.exceptions.ContentDecodingError)):
        return BadAnswer(f"{what}: the answer was cut off or malformed ({type(exc).__name__}).",
                         hint="Check that the server is still running; try again.",
                         details=detail)
    if isinstance(exc, (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL,
                        requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                        requests.exceptions.URLRequired, UnicodeError)):
        return ConnectionFailed(f"{what}: the request cannot be made ({type(exc).__name__}).",
                                hint="Check the URL and the token for stray characters.",
                                details=detail)
    err = ConnectionFailed(f"{what}: cannot reach the server.",
                           hint="Check the URL and that the server is running.", details=detail)
    if refused(exc):
        err = ConnectionFailed(f"{what}: nothing is listening (connection refused).",
                               hint="Start the server, or check the port.", details=detail)
        err.refused = True
    elif isinstance(exc, requests.ConnectionError):
        err.message = f"{what}: the connection failed or was closed by the server."
    return err


# --------------------------------------------------------------------------- one call

def call(session: requests.Session, method: str, url: str, *, what: str,
         deadline: "Deadline | float", connect_timeout: float = 10.0,
         headers: Optional[Mapping[str, str]] = None, data: Any = None, json_body: Any = None,
         files: Any = None, cancel: Optional[threading.Event] = None, cancel_grace: float = 0.0,
         limit: int = MAX_BODY_BYTES, allow_redirects: bool = True) -> Reply:
    """One request, its whole body read (at most ``limit`` bytes) by ``deadline``.

    Raises TimedOut (deadline passed), Cancelled (``cancel`` set, after
    ``cancel_grace`` seconds), ConnectionFailed (with ``.refused`` when the
    port is closed), BadAnswer (cut off, too large); never anything else."""
    deadline = Deadline.of(deadline, 600.0)
    if cancel is not None and cancel.is_set() and cancel_grace <= 0:
        raise Cancelled(f"{what}: cancelled.")
    left = deadline.left()
    if left <= 0:
        raise TimedOut(f"{what}: no time left (timeout {deadline.total:g} s).",
                       hint="Raise the timeout.")
    watch_session(session)
    watch = _Watch(deadline.at, cancel, cancel_grace)
    previous = getattr(_current, "watch", None)
    _current.watch = watch
    _WATCHDOG.add(watch)
    started = time.monotonic()
    r = None
    reading = False
    try:
        try:
            r = session.request(method, url, headers=dict(headers or {}), data=data,
                                json=json_body, files=files, stream=True,
                                allow_redirects=allow_redirects,
                                timeout=(max(0.001, min(connect_timeout, left)),
                                         max(0.001, left)))
            reading = True
            size = r.headers.get("Content-Length", "")
            if size.isdigit() and int(size) > limit:
                raise _TooLarge()
            encoded = (r.headers.get("Content-Encoding") or "").strip().lower() not in (
                "", "identity")
            tell = getattr(r.raw, "tell", None)
            parts, total = [], 0
            for chunk in r.iter_content(_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise _TooLarge()
                if encoded and total > INFLATE_FLOOR and tell is not None \
                        and total > MAX_INFLATE_RATIO * max(1, tell()):
                    raise _Bomb()
                parts.append(chunk)
            body = b"".join(parts)
        except _Bomb:
            raise BadAnswer(f"{what}: the compressed answer inflates more than "
                            f"{MAX_INFLATE_RATIO} times (a decompression bomb); refused.",
                            status=r.status_code if r is not None else None,
                            hint="Check the server; this answer is not one a model sends."
                            ) from None
        except _TooLarge:
            raise BadAnswer(f"{what}: the answer is larger than {_size(limit)}; refused.",
                            status=r.status_code if r is not None else None,
                            hint="Check the server; this answer is not one a model sends."
                            ) from None
        except (Exception, RecursionError) as exc:  # noqa: BLE001 (mapped to a typed error)
            if watch.fired is None and isinstance(exc, requests.ConnectionError) and reading \
                    and not deadline.expired():
                raise BadAnswer(f"{what}: the server closed the connection in the middle of "
                                "its answer.", hint="Check that the server is still running.",
                                details=f"{type(exc).__name__}: {exc}") from None
            raise _failure(exc, what, deadline, watch, cancel, reading) from None
        if watch.fired == "cancel":
            raise Cancelled(f"{what}: cancelled.")
        if watch.fired == "deadline":  # the shut-down socket read as a short, clean end
            raise TimedOut(f"{what}: no complete answer within {deadline.total:g} s.",
                           hint="The server is slow or stuck; raise the timeout, or check "
                                "the server's load and logs.")
        return Reply(r.status_code, r.headers, body, r.reason, r.url, what,
                     time.monotonic() - started)
    finally:
        _WATCHDOG.remove(watch)
        _current.watch = previous
        if r is not None:
            try:
                r.close()
            except Exception:  # noqa: BLE001 (closing a broken socket)
                pass


class _TooLarge(Exception):
    pass


class _Bomb(Exception):
    pass


def _size(n: int) -> str:
    return f"{n >> 20} MB" if n >= 1 << 20 else f"{n} bytes"


# --------------------------------------------------------------------------- advice, text

def retry_after(headers: Mapping[str, str], cap: float = MAX_RETRY_AFTER) -> Optional[float]:
    """Seconds a Retry-After header asks for (a number or an HTTP date), within
    [0, cap]; None when absent or unreadable."""
    value = (headers.get("Retry-After") or "").strip() if headers is not None else ""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = when.timestamp() - time.time()
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    if not math.isfinite(seconds):
        return cap if seconds > 0 else None
    return min(max(0.0, seconds), cap)


def error_text(body: Any, reply: Optional[Reply] = None,
               keys: Iterable[str] = ("error", "detail", "message", "title"),
               limit: int = 500) -> str:
    """The server's own message, on one short line, tokens masked."""
    text = ""
    if isinstance(body, Mapping):
        for key in keys:
            v = body.get(key)
            if isinstance(v, str) and v.strip():
                text = v
                break
    if not text and reply is not None:
        text = reply.text if len(reply.content) < 64 * 1024 else reply.content[:4096].decode(
            "utf-8", "replace")
        text = text.strip() or reply.reason
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit - 1] + "\u2026"
    return scrub(text)


def raise_auth(reply: Reply, who: str, hint: str) -> None:
    if reply.status_code in (401, 403):
        raise AuthError(f"{who} refused the access token (HTTP {reply.status_code}).",
                        status=reply.status_code, hint=hint,
                        details=error_text(reply.json_or_none(), reply))


def clean_token(token: Optional[str]) -> Optional[str]:
    """A token without surrounding whitespace (a pasted newline); AuthError, without
    the token, when one has a line break or control character inside."""
    if token is None:
        return None
    if not isinstance(token, str):
        raise AuthError("The access token is not text.", hint="Set the token again.")
    register_secret(token)
    cleaned = token.strip()
    if not cleaned:
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in cleaned) or any(c.isspace() for c in cleaned):
        raise AuthError("The access token has a line break, space or control character "
                        "inside it.", hint="Copy the token again and paste it as one line.")
    register_secret(cleaned)
    return cleaned


# --------------------------------------------------------------------------- origins, files

def origin(url: str) -> tuple[str, str, Optional[int]]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ("", "", None)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or default


def same_origin(a: str, b: str) -> bool:
    oa = origin(a)
    return bool(oa[0]) and oa == origin(b)


def fetch(session: requests.Session, url: str, *, what: str, deadline: "Deadline | float",
          token: Optional[str] = None, token_origin: Optional[str] = None,
          allow: Optional[Callable[[str], Optional[str]]] = None,
          limit: int = MAX_FILE_BYTES, connect_timeout: float = 10.0,
          cancel: Optional[threading.Event] = None) -> bytes:
    """Download an output file. The token is sent only to ``token_origin``
    (scheme, host and port), checked again at every redirect, which are
    followed here (at most MAX_REDIRECTS). ``allow(url)`` may return a reason
    to refuse a URL. Only http and https."""
    deadline = Deadline.of(deadline, 600.0)
    shown = _short(url)
    for _ in range(MAX_REDIRECTS + 1):
        scheme = origin(url)[0]
        if scheme not in ("http", "https"):
            raise BadAnswer(f"{what}: refusing to download {shown}: only http and https.",
                            hint="The server answered with an address of another kind.")
        reason = allow(url) if allow is not None else None
        if reason:
            raise BadAnswer(f"{what}: refusing to download {shown}: {reason}",
                            hint="The server's answer points somewhere it should not.")
        headers = {}
        if token and token_origin and same_origin(url, token_origin):
            headers["Authorization"] = f"Bearer {token}"
        reply = call(session, "GET", url, what=what, deadline=deadline, headers=headers,
                     limit=limit, allow_redirects=False, connect_timeout=connect_timeout,
                     cancel=cancel)
        if reply.status_code in (301, 302, 303, 307, 308) and reply.headers.get("Location"):
            url = urljoin(url, reply.headers["Location"])
            shown = _short(url)
            continue
        if reply.status_code >= 400:
            raise ServerError(f"{what}: downloading {shown} failed (HTTP {reply.status_code}).",
                              status=reply.status_code,
                              hint="The file may have expired or moved; run the model again.",
                              details=error_text(None, reply))
        return reply.content
    raise BadAnswer(f"{what}: more than {MAX_REDIRECTS} redirects for {shown}.",
                    hint="Check the server.")


def _short(url: str, limit: int = 120) -> str:
    """A URL for messages: without its query (signed URLs carry secrets there)."""
    try:
        p = urlsplit(url)
        text = f"{p.scheme}://{p.netloc.rsplit('@', 1)[-1]}{p.path}"
    except ValueError:
        text = "an unreadable URL"
    return scrub(text if len(text) <= limit else text[:limit - 1] + "\u2026")
