"""Helpers the tests share (fixtures live in the conftest.py files; the servers the
tests start, real ones and stand-ins, in tests/servers/).

Every test module imports from the repository root as a package (``tests.helpers``,
``tests.servers``, ``runway_addon``): pytest.ini puts the root on sys.path once.
"""
from __future__ import annotations

import functools
import importlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

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


def in_threads(work, n: int, timeout: Optional[float] = None) -> None:
    """Call ``work(0)`` ... ``work(n - 1)`` at once, each in its own thread, and wait
    for them all (each up to ``timeout`` s)."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)


DOCKER_TEST_MODELS = ROOT / "tests" / "model_servers" / "docker"
# The images built from those folders (buildtools.images, offline), by folder name.
DOCKER_TEST_IMAGES = {"invert": "runway-test/invert:latest",
                      "memhog": "runway-test/memhog:latest"}


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


# --------------------------------------------------------------------------- processes

SHARED_ENVS = ROOT / ".cache" / "model-envs"  # model environments the tests share (built once)

CRASHING_OWNER = textwrap.dedent("""
    import json, sys, time
    from runway_addon.core.runtimes.process import ProcessSession
    watch = len(sys.argv) > 4 and sys.argv[4] == "watch"
    s = ProcessSession(sys.argv[1], env_root=sys.argv[2], runtime_dir=sys.argv[3],
                       watch_owner=watch)
    s.start(timeout=120)
    print(json.dumps({"pid": s.pid, "port": s.port}), flush=True)
    time.sleep(600)  # killed with SIGKILL: no stop(), as when Blender crashes
""")


def owner_that_crashes(model_dir, env_root, runtime_dir, *, watch: bool = False):
    """A process that starts ``model_dir`` on the local-process runtime (``watch``: with
    the owner watch), prints the server's pid and port and waits to be killed, as a
    Blender that crashes: ``(process, {"pid", "port"})``. The caller kills it."""
    owner = subprocess.Popen(
        [sys.executable, "-c", CRASHING_OWNER, str(model_dir), str(env_root), str(runtime_dir),
         *(["watch"] if watch else [])], stdout=subprocess.PIPE, text=True, env=python_env())
    try:
        return owner, json.loads(owner.stdout.readline())
    except BaseException:
        owner.kill()
        owner.wait()
        raise


def port_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def zombie(pid: int) -> bool:
    """Exited but not reaped (or gone): what /proc says of ``pid``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


def gone(pid: int) -> bool:
    """``pid`` and its process group have ended."""
    from runway_addon.core.runtimes import process
    return not process._group_alive(pid) and (
        process.process_start_time(pid) is None or zombie(pid))


# --------------------------------------------------------------------------- Blender images

def known_pixels(w=8, h=6) -> np.ndarray:
    """Top-down uint8 RGBA; the top-left pixel is pure red, rows and columns differ."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.dstack([x * 30, y * 40, (x + y) * 10, np.full_like(x, 255)]).astype(np.uint8)
    img[0, 0] = (255, 0, 0, 255)
    return img


def byte_image(bpy, name, img):
    """A Blender image holding the top-down uint8 array ``img``."""
    h, w = img.shape[:2]
    image = bpy.data.images.new(name, width=w, height=h, alpha=True)
    image.pixels.foreach_set((img[::-1].astype(np.float32) / 255).reshape(-1))
    return image


def pixels_top_down(image) -> np.ndarray:
    """A Blender image's float pixels, HxWxC, top row first (Blender keeps bottom first)."""
    w, h = image.size
    buf = np.empty(w * h * image.channels, np.float32)
    image.pixels.foreach_get(buf)
    return buf.reshape(h, w, image.channels)[::-1]


# --------------------------------------------------------------------------- shelf inputs

@functools.lru_cache(maxsize=None)
def photo() -> np.ndarray:
    """Grace Hopper, 512 x 600 RGB uint8 (public domain), from models/testdata."""
    from runway_addon.core.codecs import decode_image_bytes
    arr = decode_image_bytes((ROOT / "models" / "testdata" / "grace_hopper.jpg").read_bytes())
    arr.flags.writeable = False
    return arr


def photo_512() -> np.ndarray:
    return photo()[:512, :512]


def image(value) -> np.ndarray:
    """A file output that must be an image, decoded by the project's codecs."""
    from runway_addon.core.codecs import FileValue, decode_image_bytes
    assert isinstance(value, FileValue), f"expected a file, got {value!r}"
    assert (value.mime or "").startswith("image/"), f"expected an image, got {value.mime}"
    return decode_image_bytes(value.read_bytes())


def to01(a: np.ndarray) -> np.ndarray:
    """uint8 or uint16 pixels as floats in 0..1."""
    return a.astype(np.float64) / (65535.0 if a.dtype == np.uint16 else 255.0)


# --------------------------------------------------------------------------- Blender drawing

class Layout:
    """A stand-in for bpy's UILayout that records what a draw() puts in it (labels,
    operator buttons, menus, properties; nested rows and boxes share one log)."""

    def __init__(self, log=None):
        self.log = log if log is not None else []

    def __getattr__(self, name):  # row(), column(), box(), prop(), operator(), ...
        def call(*args, **kw):
            if name in ("label", "operator", "menu", "prop"):
                self.log.append((name, kw.get("text", ""), args[:2] if name != "prop"
                                 else args[1:2]))
            return Layout(self.log)
        return call

    @property
    def labels(self) -> list[str]:
        return [text for kind, text, _ in self.log if kind == "label"]


def example_card(**over) -> dict:
    """A complete, valid model card (the catalog's and the fuzzer's starting point)."""
    base = {
        "name": "edge-finder", "title": "Edge Finder", "task": "identify",
        "overview": "Finds edges in a photograph.",
        "licence": {"code": [{"component": "finder", "spdx": "MIT"}],
                    "weights": [{"component": "weights", "spdx": "Apache-2.0"}],
                    "commercial_use": {"allowed": True}, "summary": "MIT code"},
        "publishers": [{"name": "Acme Lab"}],
        "characteristics": {"input_types": ["image"], "output_types": ["image"],
                            "cpu": True, "gpu": False},
        "keywords": ["edges", "lines"],
    }
    base.update(over)
    return base
