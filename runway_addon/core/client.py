"""Run a model server from a plain Python script, without Blender.

    from runway_addon.core.client import connect

    with connect("http://127.0.0.1:5000") as model:      # protocol auto-detected
        model.wait_until_ready(60)                        # polls health(); every protocol
        spec = model.spec()                               # typed inputs and outputs
        print([f.name for f in spec.command().inputs])
        result = model.run({"image": pixels, "prompt": "a red fox"})
        result.outputs["output"]                          # numpy / PIL / FileValue / str ...
        result.metrics.get("predict_time")

Inputs are Python values: numpy arrays (HxWxC, top-down) or PIL images for
images, str, numbers, bools, lists, and paths or bytes for files. They are
checked against the spec before anything is sent (``SpecValidationError`` says
which field is wrong). Every failure is a ``core.errors.RunwayError`` whose
message says what went wrong and what to do.

``shared_dir``: a folder that this process and a local server see under the
same path; large files then travel as bare paths instead of base64.

To stop a run from another thread, pass ``cancel_event=threading.Event()`` to
``run`` and set it; ``run`` then raises ``core.errors.Cancelled``.

A model on Replicate is reached the same way, by its reference instead of a URL:

    with connect("owner/name:version", protocol="replicate", token=token) as model:
        result = model.run({"image": pixels})
        result.metrics["predict_time"]                    # seconds Replicate billed
"""
from __future__ import annotations

from typing import Optional, Union

from .errors import UsageError
from .protocols.base import ModelClient
from .protocols.detect import detect_protocol
from .spec import Protocol

__all__ = ["connect", "detect_protocol", "Protocol"]


def _client(cls, protocol: Protocol, url: str, **kwargs) -> ModelClient:
    """``cls(url, **kwargs)``; an option the class does not take is a UsageError that
    lists those it does (not the TypeError a typo in a script would otherwise give)."""
    import inspect

    known: set[str] = set()
    for klass in cls.__mro__:  # up the __init__s that pass **kwargs on
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]  # not self
        known.update(p.name for p in params if p.kind in (p.KEYWORD_ONLY,
                                                           p.POSITIONAL_OR_KEYWORD))
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise UsageError(f"A {protocol.value} model takes no option "
                         f"{', '.join(repr(str(k)[:40]) for k in unknown)}.",
                         hint=f"Its options: {', '.join(sorted(known - {'url', 'model'}))}.")
    return cls(url, **kwargs)


def connect(url: str, *, token: Optional[str] = None,
            protocol: Union[Protocol, str, None] = None, shared_dir: Optional[str] = None,
            timeout: float = 600.0, **options) -> ModelClient:
    """A client for the model server at ``url``.

    ``protocol`` (``"cog"``, ``"runway"``, ``"runway-hosted"``) skips detection;
    when None the server is probed once (a few quick GETs). ``timeout`` bounds
    each request of a run, in seconds.

    ``protocol="replicate"``: ``url`` is a model reference (``owner/name``,
    ``owner/name:version`` or ``deployment:owner/name``), never detected;
    ``options`` may hold ``base_url`` and the other ReplicateClient settings.
    Replicate sees no local folder, so ``shared_dir`` must stay None.
    Other ``options`` go to the client class as they are.
    """
    if protocol is not None:
        try:
            protocol = Protocol(protocol)
        except ValueError:
            known = ", ".join(p.value for p in Protocol)
            raise UsageError(f"Unknown protocol {str(protocol)[:40]!r}.",
                             hint=f"Use one of: {known}, or None to detect it.") from None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise UsageError(f"The timeout must be a positive number of seconds, not "
                         f"{str(timeout)[:40]!r}.", hint="Pass timeout=600 or similar.")
    if protocol is Protocol.REPLICATE:
        if shared_dir is not None:
            raise UsageError("Replicate cannot read a shared folder.",
                             hint="Leave shared_dir unset for Replicate.")
        from .protocols.replicate import ReplicateClient

        return _client(ReplicateClient, protocol, url, token=token, timeout=timeout,
                       **options)
    if protocol is None:
        protocol = detect_protocol(url, token=token, timeout=min(timeout, 10.0))
    protocol = Protocol(protocol)
    kwargs = dict(token=token, timeout=timeout, shared_dir=shared_dir, **options)
    if protocol is Protocol.COG:
        from .protocols.cog import CogClient

        return _client(CogClient, protocol, url, **kwargs)
    # Imported here so a Cog-only script does not load the Runway client.
    from .protocols.runway import HostedRunwayClient, RunwayClient

    if protocol is Protocol.RUNWAY:
        return _client(RunwayClient, protocol, url, **kwargs)
    return _client(HostedRunwayClient, protocol, url, **kwargs)
