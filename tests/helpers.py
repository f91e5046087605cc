"""Helpers the tests share (fixtures live in the conftest.py files; the servers the
tests start, real ones and stand-ins, in tests/servers/).

Every test module imports from the repository root as a package (``tests.helpers``,
``tests.servers``, ``runway_addon``): pytest.ini puts the root on sys.path once.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
ADDON_PKG = "bl_ext.user_default.runway"  # the extension installed from its zip


def mod(name: str):
    """The installed extension's module ``name`` (``"core.spec"``, ``"blender.engine"``)."""
    return importlib.import_module(f"{ADDON_PKG}.{name}")


def python_env(env: Optional[dict] = None) -> dict:
    """``env`` (default: this process's environment) with the repository root first on
    PYTHONPATH, for a Python subprocess that imports runway_addon or tests."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Terminate a server process, killing it if it does not exit within ``grace``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(predicate, timeout: float = 15.0, step: float = 0.1) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def docker_engine(timeout: int = 60):
    """A Docker client that answered a ping. No engine is a failure, not a skip:
    CI starts dockerd, so a missing engine means a broken run."""
    import docker
    import pytest
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001 (reported as the failure)
        pytest.fail(f"no Docker engine reachable ({exc}); start dockerd (.ci/run does)",
                    pytrace=False)
