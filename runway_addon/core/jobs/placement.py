"""Where a model runs, as plain values, and the one place that turns a model
reference and a placement into a session (not started).

The Blender side fills a Placement from its preferences on the main thread;
scripts and job files fill one themselves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..runtimes.base import ModelSession, RuntimeFailed
from .job import ModelRef

RUNTIMES = ("LOCAL_PROCESS", "DOCKER_CPU", "DOCKER_GPU", "REMOTE")
REMOTE_KINDS = ("URL", "DOCKER_HOST", "REPLICATE")


@dataclass(frozen=True)
class Placement:
    """``runtime`` is one of RUNTIMES. For REMOTE, ``remote_kind`` and
    ``remote_address`` name the endpoint (a model server URL, a remote Docker
    engine, or a Replicate model). The token never takes part in equality or
    repr: it must not reach logs or keys."""

    runtime: str = "LOCAL_PROCESS"
    env_root: Optional[str] = None  # local process: where environments live
    runtime_dir: Optional[str] = None  # local process: session folders, pid files
    mem_limit: Optional[int] = None  # Docker: bytes
    docker_host: Optional[str] = None  # Docker: None for the local engine
    docker_publish_ip: Optional[str] = None  # a remote engine's address for model ports
    remote_kind: str = "URL"
    remote_address: str = ""
    remote_name: str = ""
    token: Optional[str] = field(default=None, repr=False, compare=False)
    replicate_base_url: str = ""  # Replicate's API unless given (a gateway or a stand-in)
    online_access: bool = True
    replica: int = 0  # replicas of one model run side by side as separate sessions

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {self.runtime!r} (known: {', '.join(RUNTIMES)})")
        if self.remote_kind not in REMOTE_KINDS:
            raise ValueError(f"unknown remote kind {self.remote_kind!r}")


def open_session(model: ModelRef, placement: Placement, on_event=None) -> ModelSession:
    """A session for ``model`` where ``placement`` says. Not started: ``start()``
    belongs on a worker thread."""
    from ..runtimes import docker, process, remote

    p = placement
    if model.kind == "url":
        return remote.RemoteSession(model.value, token=p.token, name=model.name,
                                    on_event=on_event, online_access=p.online_access)
    replicate = {"base_url": p.replicate_base_url} if p.replicate_base_url else {}
    if model.kind == "replicate":
        return remote.ReplicateSession(model.value, token=p.token, name=model.name,
                                       on_event=on_event, online_access=p.online_access,
                                       **replicate)
    image = model.value if model.kind == "image" else docker.image_tag(model.value)
    if p.runtime == "LOCAL_PROCESS":
        if model.kind != "folder":
            raise RuntimeFailed(f"{model.name!r} is a Docker image, not a model folder.",
                                hint="Run it in Docker instead of as a local process.")
        return process.ProcessSession(model.value, name=model.name, on_event=on_event,
                                      env_root=p.env_root, runtime_dir=p.runtime_dir)
    if p.runtime in ("DOCKER_CPU", "DOCKER_GPU"):
        return docker.DockerSession(model.name, image, on_event=on_event, mem_limit=p.mem_limit,
                                    gpu=p.runtime == "DOCKER_GPU", docker_host=p.docker_host,
                                    publish_ip=p.docker_publish_ip)
    # REMOTE: the endpoint either runs this model's image or names a model itself.
    if not p.remote_address:
        raise RuntimeFailed("No remote endpoint is selected.", hint="Choose a remote endpoint, "
                            "or run the model on this computer.")
    name = p.remote_name or model.name
    if p.remote_kind == "DOCKER_HOST":
        return docker.DockerSession(model.name, image, on_event=on_event, mem_limit=p.mem_limit,
                                    docker_host=p.remote_address,
                                    publish_ip=p.docker_publish_ip)
    if p.remote_kind == "REPLICATE":
        return remote.ReplicateSession(p.remote_address, token=p.token, name=name,
                                       on_event=on_event, online_access=p.online_access,
                                       **replicate)
    return remote.RemoteSession(p.remote_address, token=p.token, name=name, on_event=on_event,
                                online_access=p.online_access)
