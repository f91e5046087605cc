"""Model sessions seen from Blender: which runtime the preferences choose, where
their files live (the preferences' cache folder), and the start-up clean-up of
what a crashed Blender left running.

``open_session`` reads the preferences on the main thread and returns a session
that has not started: ``start()`` belongs on a worker thread (it may create an
environment or pull an image). The clean-up runs on a worker thread too.
"""
import threading
from pathlib import Path

import bpy

from . import preferences
from ..core.runtimes.base import RuntimeFailed

GB = 1024 ** 3


def cache_dir() -> Path:
    prefs = preferences.get_preferences()
    return Path(prefs.cache_path() if prefs else preferences.user_folder("cache"))


def runtime_dirs() -> dict:
    """Keyword arguments for ProcessSession: environments and session folders."""
    base = cache_dir()
    return {"env_root": base / "model-envs", "runtime_dir": base / "sessions"}


def open_session(card, *, runtime: str = "", on_event=None):
    """A session for the shelf model ``card`` where the preferences say models run
    (or ``runtime``, one of preferences.RUNTIMES). Not started."""
    from ..core.runtimes import docker, process, remote

    prefs = preferences.get_preferences()
    runtime = runtime or prefs.default_runtime
    if runtime == "LOCAL_PROCESS":
        return process.ProcessSession(card.folder, name=card.name, on_event=on_event,
                                      **runtime_dirs())
    if runtime in ("DOCKER_CPU", "DOCKER_GPU"):
        return docker.DockerSession(card.name, docker.image_tag(card.folder), on_event=on_event,
                                    mem_limit=prefs.memory_limit_gb * GB,
                                    gpu=runtime == "DOCKER_GPU",
                                    docker_host=prefs.docker_host or None)
    if runtime != "REMOTE":
        raise ValueError(f"unknown runtime {runtime!r}")
    if not 0 <= prefs.active_endpoint < len(prefs.endpoints):
        raise RuntimeFailed("No remote endpoint is selected.",
                            hint="Add one under Preferences > Add-ons > Runway for Blender > "
                                 "Remote endpoints, or run the model on this computer.")
    endpoint = prefs.endpoints[prefs.active_endpoint]
    if endpoint.kind == "DOCKER_HOST":  # the shelf model's image on a remote engine
        return docker.DockerSession(card.name, docker.image_tag(card.folder), on_event=on_event,
                                    mem_limit=prefs.memory_limit_gb * GB,
                                    docker_host=endpoint.url)
    # A model server or a Replicate model: the endpoint names the model itself.
    token = preferences.token_store().get(endpoint.name)
    online = bool(getattr(bpy.app, "online_access", True))
    if endpoint.kind == "REPLICATE":
        return remote.ReplicateSession(endpoint.url, token=token, name=endpoint.name,
                                       on_event=on_event, online_access=online)
    return remote.RemoteSession(endpoint.url, token=token, name=endpoint.name,
                                on_event=on_event, online_access=online)


def _cleanup(runtime_dir: Path, docker_host: str, report) -> None:
    from ..core.errors import RunwayError
    from ..core.runtimes import docker, process

    for line in process.cleanup_orphans(runtime_dir):
        report(f"stopped a model server left by an earlier Blender session: {line}")
    try:
        client = docker.connect_engine(docker_host or None, timeout=3)
    except RunwayError:
        return  # no Docker here: nothing of ours can be running in it
    try:
        for name in docker.cleanup_orphans(client, docker.default_owner()):
            report(f"removed a model container left by an earlier Blender session: {name}")
    finally:
        client.close()


def start_orphan_cleanup(report=print) -> threading.Thread:
    """Stop our own servers and containers whose Blender is gone, in the background.
    Nothing that another live Blender, or anyone else, started is touched."""
    prefs = preferences.get_preferences()
    runtime_dir = runtime_dirs()["runtime_dir"]
    docker_host = prefs.docker_host if prefs else ""
    # Not a daemon thread: Python waits for it before it shuts down (at most the
    # Docker timeout). A daemon thread still running at exit crashed Blender 4.2.
    thread = threading.Thread(target=_cleanup, args=(runtime_dir, docker_host,
                                                     lambda m: report(f"Runway: {m}")),
                              name="runway-orphan-cleanup")
    thread.start()
    return thread
