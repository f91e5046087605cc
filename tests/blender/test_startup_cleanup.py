"""Blender crashed while a model ran: the next time the extension starts it
stops that model server, and nothing else."""
import sys
import threading

import pytest
import requests

from runway_addon.core.runtimes import process
from tests.helpers import ADDON_PKG, ROOT, SHARED_ENVS, gone, owner_that_crashes, port_refused

ECHO = ROOT / "tests" / "model_servers" / "process" / "echo"

pytestmark = [pytest.mark.blender, pytest.mark.network, pytest.mark.slow]


def test_enabling_the_extension_stops_what_a_crashed_blender_left(blender):
    sessions = sys.modules[ADDON_PKG + ".blender.sessions"]
    runtime_dir = sessions.runtime_dirs()["runtime_dir"]
    assert str(runtime_dir).startswith(blender.utils.extension_path_user(ADDON_PKG))
    process.ModelEnvironment(ECHO, SHARED_ENVS).ensure()
    # A "Blender" that started a model with the extension's folders, then died.
    owner, info = owner_that_crashes(ECHO, SHARED_ENVS, runtime_dir)
    owner.kill()
    owner.wait()
    pid, port = info["pid"], info["port"]
    assert requests.get(f"http://127.0.0.1:{port}/health-check", timeout=5).ok

    blender.ops.preferences.addon_disable(module=ADDON_PKG)
    blender.ops.preferences.addon_enable(module=ADDON_PKG)  # what a Blender start does
    cleanup = [t for t in threading.enumerate() if t.name == "runway-orphan-cleanup"]
    assert cleanup, "enabling the extension started no clean-up"
    for t in cleanup:
        t.join(30)
    assert process._wait_until(lambda: gone(pid), 10)
    assert port_refused(port)
    assert not any(runtime_dir.iterdir())
