"""Model sessions seen from Blender: where their files live (the preferences'
cache folder), and the start-up clean-up of what a crashed Blender left running.

The clean-up runs on a worker thread: reaching Docker can take seconds and
Blender must never wait for it.
"""
import threading
from pathlib import Path

from . import preferences


def cache_dir() -> Path:
    prefs = preferences.get_preferences()
    return Path(prefs.cache_path() if prefs else preferences.user_folder("cache"))


def runtime_dirs() -> dict:
    """Keyword arguments for ProcessSession: environments and session folders."""
    base = cache_dir()
    return {"env_root": base / "model-envs", "runtime_dir": base / "sessions"}


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
    thread = threading.Thread(target=_cleanup, args=(runtime_dir, docker_host,
                                                     lambda m: report(f"Runway: {m}")),
                              name="runway-orphan-cleanup", daemon=True)
    thread.start()
    return thread
