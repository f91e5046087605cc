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


@pytest.mark.docker
def test_enabling_again_keeps_this_blenders_own_container(blender, docker_client,
                                                          docker_images):
    """The extension enabled again in a Blender that runs a model in Docker: the
    clean-up it starts removes a crashed Blender's container, never this Blender's
    own, which keeps serving."""
    import io
    import socket
    import subprocess

    import docker.errors
    import numpy as np
    from PIL import Image

    from tests.helpers import DOCKER_TEST_IMAGES, mod

    rt = mod("core.runtimes.docker")
    owner = rt.default_owner()  # what the start-up clean-up looks for
    session = rt.DockerSession("invert", DOCKER_TEST_IMAGES["invert"])
    crashed = subprocess.Popen(["true"])
    crashed.wait()
    orphan = docker_client.containers.create(
        DOCKER_TEST_IMAGES["invert"], command=["sleep", "1"],
        labels={rt.OWNER_LABEL: owner, rt.PID_LABEL: str(crashed.pid),
                rt.HOST_LABEL: socket.gethostname(), rt.STARTED_LABEL: "boot:1"})
    try:
        session.start(timeout=120)
        blender.ops.preferences.addon_disable(module=ADDON_PKG)
        blender.ops.preferences.addon_enable(module=ADDON_PKG)
        cleanup = [t for t in threading.enumerate() if t.name == "runway-orphan-cleanup"]
        assert cleanup, "enabling the extension started no clean-up"
        for t in cleanup:
            t.join(60)
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(orphan.id)
        assert docker_client.containers.get(session.container_id).status == "running"
        img = np.random.default_rng(5).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
        with session.client() as client:
            out = client.run({"image": img}).outputs["output"]
        pixels = np.asarray(Image.open(io.BytesIO(out.read_bytes())).convert("RGB"))
        np.testing.assert_array_equal(pixels, 255 - img)
    finally:
        session.stop()
        try:
            orphan.remove(force=True)
        except docker.errors.NotFound:
            pass
