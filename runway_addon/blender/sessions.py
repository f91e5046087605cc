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


def placement(runtime: str = "", *, model_kind: str = "folder"):
    """Where models run, from the preferences (main thread): a core Placement.
    ``runtime`` (one of preferences.RUNTIMES) overrides the default. A Docker
    image (``model_kind``, core.jobs.ModelRef.kind) has no folder to run as a
    local process: where the default says Local process, it runs on Local CPU."""
    from ..core.jobs.placement import Placement

    prefs = preferences.get_preferences()
    if not runtime and model_kind == "image" and prefs.default_runtime == "LOCAL_PROCESS":
        runtime = "DOCKER_CPU"
    runtime = runtime or prefs.default_runtime
    problem = preferences.local_docker_problem(prefs.docker_host)
    if problem and runtime in ("DOCKER_CPU", "DOCKER_GPU"):
        raise RuntimeFailed(f"The Local Docker engine is set to {prefs.docker_host!r}.",
                            hint=problem)
    dirs = runtime_dirs()
    common = dict(runtime=runtime, env_root=str(dirs["env_root"]),
                  runtime_dir=str(dirs["runtime_dir"]), mem_limit=prefs.memory_limit_gb * GB,
                  docker_host=prefs.docker_host or None,
                  docker_publish_ip=prefs.docker_publish_address.strip() or None,
                  online_access=bool(getattr(bpy.app, "online_access", True)))
    if runtime != "REMOTE":
        return Placement(**common)
    if not 0 <= prefs.active_endpoint < len(prefs.endpoints):
        raise RuntimeFailed("No remote endpoint is selected.",
                            hint="Add one under Preferences > Add-ons > Runway for Blender > "
                                 "Remote endpoints, or run the model on this computer.")
    endpoint = prefs.endpoints[prefs.active_endpoint]
    return Placement(**common, remote_kind=endpoint.kind, remote_address=endpoint.url,
                     remote_name=endpoint.name, token=preferences.endpoint_token(endpoint))


def open_session(card, *, runtime: str = "", on_event=None):
    """A session for the shelf model ``card`` where the preferences say models run
    (or ``runtime``, one of preferences.RUNTIMES). Not started."""
    from ..core.jobs.job import ModelRef
    from ..core.jobs.placement import open_session as core_open_session

    return core_open_session(ModelRef.from_card(card), placement(runtime), on_event=on_event)


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
