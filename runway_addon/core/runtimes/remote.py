"""Remote runtimes: a model server somebody else runs, and models on Replicate.

Neither session starts or stops a server. ``start()`` checks that the model
answers and ``stop()`` forgets it: a remote server is never shut down from
here (it may serve other people), and Replicate starts its hardware per
prediction, so ReplicateSession.stop() only cancels the predictions that its
own runs left running.

Blender's "Allow Online Access" preference (``bpy.app.online_access``) is
passed in as ``online_access``. When it is off, every remote session refuses
to start, loopback addresses included (the careful reading of Blender's rule);
a caller that counts loopback as local says ``allow_loopback_offline=True``.
The local runtimes (process, docker) are the add-on's own and are decided
elsewhere.

TLS certificates are always verified: there is no option to turn that off.
"""
from __future__ import annotations

import time
from typing import Optional, Union
from urllib.parse import urlsplit

from ..errors import AuthError, Kind, RunwayError
from ..protocols.base import ModelClient
from ..protocols.replicate import (DEFAULT_BASE_URL, TOKEN_HINT, PredictionTracker, Usage,
                                   is_loopback, parse_model_ref)
from ..spec import ModelSpec, Protocol
from .base import ModelSession, RuntimeFailed, SessionState

__all__ = ["RemoteSession", "ReplicateSession", "check_online_access", "OFFLINE_MESSAGE"]

OFFLINE_MESSAGE = "Online access is off, so remote servers cannot be reached"


def check_online_access(url: str, online_access: bool,
                        allow_loopback_offline: bool = False) -> None:
    """Raise RuntimeFailed when Blender's online access forbids reaching ``url``."""
    if online_access:
        return
    if allow_loopback_offline and is_loopback(urlsplit(url).hostname):
        return
    raise RuntimeFailed(OFFLINE_MESSAGE + ".", kind=Kind.ONLINE_ACCESS_OFF,
                        hint="Allow online access, or run the model locally (a local process "
                             "or Docker).")


class _RemoteBase(ModelSession):
    """What both remote sessions share: the online-access gate, how a failure is
    worded, and a short log of what the session did (a remote server's own logs
    cannot be read from here). The lifecycle is ModelSession's."""

    def __init__(self, name: str, *, on_event=None, online_access: bool = True,
                 allow_loopback_offline: bool = False):
        super().__init__(name, on_event)
        self.online_access = online_access
        self.allow_loopback_offline = allow_loopback_offline
        self.model_spec: Optional[ModelSpec] = None
        self._log: list[str] = []

    def _emit(self, state: SessionState, message: str = "", done=None, total=None) -> None:
        self._log.append(f"{time.strftime('%H:%M:%S')} {message}")
        super()._emit(state, message, done, total)

    def _advance(self, state: SessionState, message: str = "", done=None, total=None) -> None:
        super()._advance(state, message, done, total)
        self._log.append(f"{time.strftime('%H:%M:%S')} {message}")

    def logs(self) -> str:
        return "\n".join(self._log)

    def _check_online_access(self, address: str) -> None:
        check_online_access(address, self.online_access, self.allow_loopback_offline)

    def _running(self, url: str, message: str) -> None:
        """RUNNING at ``url``, unless stop() came first."""
        with self._lock:
            self._check_stop()
            self.url = url
        self._advance(SessionState.RUNNING, message)


class RemoteSession(_RemoteBase):
    """A model server already running at ``url`` (Runway Model SDK, Cog, or a
    Runway hosted model); its protocol is detected unless ``protocol`` is given.

    ``token`` is sent as a Bearer token; it needs https unless the server is on
    this computer (a token over plain http to another host would be readable on
    the way). ``start()``: STARTING, then the client's ``wait_until_ready`` (a
    sleeping hosted model wakes up), the spec, RUNNING. ``stop()`` forgets the
    server and never asks it to shut down: we did not start it.
    """

    def __init__(self, url: str, *, protocol: Union[Protocol, str, None] = None,
                 token: Optional[str] = None, name: Optional[str] = None, on_event=None,
                 online_access: bool = True, allow_loopback_offline: bool = False,
                 timeout: float = 600.0):
        super().__init__(name or url, on_event=on_event, online_access=online_access,
                         allow_loopback_offline=allow_loopback_offline)
        self.address = url.rstrip("/")
        self._given_protocol = Protocol(protocol) if protocol is not None else None
        if self._given_protocol is Protocol.REPLICATE:
            raise ValueError("use ReplicateSession for Replicate models")
        self._token = (token or "").strip() or None
        self.request_timeout = timeout

    def __repr__(self) -> str:  # never shows the token
        return f"<RemoteSession {self.address} {self.state.value}>"

    def _check_address(self) -> None:
        parts = urlsplit(self.address)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RuntimeFailed(f"{self.address!r} is not a model server URL.",
                                hint="Write it as https://host[:port] (or http:// on a local "
                                     "network without a token).")
        if self._token and parts.scheme == "http" and not is_loopback(parts.hostname):
            raise RuntimeFailed(
                "Refusing to send the access token over plain http to "
                f"{parts.hostname}.", hint="Use the server's https address.")

    stopped_message = "disconnected (the remote server keeps running)"

    @property
    def failure_what(self) -> str:
        return f"The model server at {self.address} cannot be used"

    def _start(self, timeout: float) -> None:
        """Wait (up to ``timeout`` s) until the server answers READY."""
        from ..client import connect
        from ..protocols.detect import detect_protocol

        self._check_online_access(self.address)
        client: Optional[ModelClient] = None
        try:
            self._check_address()
            self._advance(SessionState.STARTING, f"connecting to {self.address}")
            protocol = self._given_protocol or detect_protocol(
                self.address, token=self._token, timeout=min(timeout, 10.0))
            self.protocol = protocol
            client = connect(self.address, protocol=protocol, token=self._token,
                             timeout=self.request_timeout)
            self._advance(SessionState.STARTING, f"{protocol.value} server; waiting until ready")
            self._await_ready(client, timeout)
            self.model_spec = client.spec()
            self._running(client.url, f"ready at {self.address}")
        finally:
            if client is not None:
                client.close()

    def _release(self) -> None:
        """Forget the server. It keeps running: we did not start it, and it may
        serve others. Runs in progress are stopped by their own cancel events."""
        with self._lock:
            self.url = None

    def client(self, **kw) -> ModelClient:
        from ..client import connect
        if self.state is not SessionState.RUNNING or not self.url:
            raise RuntimeFailed(f"model {self.name!r} is not running ({self.state.value})",
                                hint="Start it first.")
        kw.setdefault("timeout", self.request_timeout)
        return connect(self.address, protocol=self.protocol, token=self._token, **kw)


class ReplicateSession(_RemoteBase):
    """A model (or deployment) on Replicate, by reference: ``owner/name``,
    ``owner/name:version`` or ``deployment:owner/name``.

    ``start()`` checks the token and loads the spec and the model card
    (``model_info``), then RUNNING. Every client from ``client()`` shares one
    PredictionTracker, so ``usage`` sums the billed seconds of the session's
    finished predictions and ``stop()`` cancels the predictions its runs left
    running (Replicate keeps billing a prediction nobody waits for).
    ``client_options`` go to every ReplicateClient (wait, poll_interval, ...).
    """

    protocol = Protocol.REPLICATE

    def __init__(self, model: str, *, token: Optional[str], base_url: str = DEFAULT_BASE_URL,
                 name: Optional[str] = None, on_event=None, online_access: bool = True,
                 allow_loopback_offline: bool = False, timeout: float = 600.0,
                 **client_options):
        self.ref = parse_model_ref(model)
        super().__init__(name or str(self.ref), on_event=on_event, online_access=online_access,
                         allow_loopback_offline=allow_loopback_offline)
        self.base_url = base_url.rstrip("/")
        self._token = (token or "").strip() or None
        self.request_timeout = timeout
        self.client_options = client_options
        self.model_info: dict = {}
        self._tracker = PredictionTracker()
        self._usage_before = Usage()  # from earlier starts of this session

    def __repr__(self) -> str:  # never shows the token
        return f"<ReplicateSession {self.ref} {self.state.value}>"

    @property
    def usage(self) -> Usage:
        """Finished predictions and their billed seconds (``predict_time``) since
        this session was made, over every start."""
        now = self._tracker.usage
        return Usage(self._usage_before.runs + now.runs,
                     self._usage_before.predict_time + now.predict_time)

    def _connect(self, tracker: PredictionTracker, **kw) -> ModelClient:
        from ..client import connect
        options = {"timeout": self.request_timeout, **self.client_options, **kw}
        return connect(str(self.ref), protocol=Protocol.REPLICATE, token=self._token,
                       base_url=self.base_url, tracker=tracker, **options)

    @property
    def failure_what(self) -> str:
        return f"The Replicate model {self.ref} cannot be used"

    def _start(self, timeout: float) -> None:
        """Check the token and load the model's spec; no hardware starts here."""
        self._check_online_access(self.base_url)
        client: Optional[ModelClient] = None
        try:
            if not self._token:
                raise AuthError("No Replicate API token is set.", hint=TOKEN_HINT,
                                kind=Kind.TOKEN_MISSING)
            self._advance(SessionState.STARTING, f"checking {self.ref} on Replicate")
            with self._lock:
                old, self._tracker = self._tracker, PredictionTracker()
                self._usage_before = Usage(self._usage_before.runs + old.usage.runs,
                                           self._usage_before.predict_time
                                           + old.usage.predict_time)
            client = self._connect(self._tracker)
            self.model_spec = client.spec()
            self.model_info = client.model_info()
            self._running(self.base_url, f"{self.ref} is ready on Replicate")
        finally:
            if client is not None:
                client.close()

    def _release(self) -> None:
        """Cancel the predictions this session's runs left running (Replicate keeps
        billing a prediction nobody waits for); forget the model."""
        with self._lock:
            running = self._tracker.close()
            self.url = None
        if not running:
            return
        # Cancel from a fresh client: the runs' own clients are busy waiting.
        client = self._connect(PredictionTracker())
        try:
            for pid in running:
                try:
                    client.cancel(pid)
                    self._log.append(f"cancelled prediction {pid}")
                except RunwayError as e:
                    self._log.append(f"could not cancel prediction {pid}: {e.message}")
        finally:
            client.close()

    def client(self, **kw) -> ModelClient:
        if self.state is not SessionState.RUNNING:
            raise RuntimeFailed(f"model {self.name!r} is not running ({self.state.value})",
                                hint="Start it first.")
        return self._connect(self._tracker, **kw)
